"""Template context of rater pages."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def heartbeat(request: HttpRequest) -> dict[str, int]:
    """How often an open rater page sends its heartbeat (templates/rating/_heartbeat.html)."""
    return {"rater_heartbeat_ms": int(settings.RATER_HEARTBEAT_SECONDS * 1000)}
