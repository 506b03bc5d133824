"""Per-IP limit on new participations, kept in Django's cache (Redis or a database table).

Only a *new* participation counts: a rater resuming (same PROLIFIC_PID and SESSION_ID) is
never refused. A fixed one-hour window per address, counted with the cache's atomic
``incr``. When the cache cannot be reached (Redis down) entries are allowed and a warning
is logged: a rater must never be turned away because a protection is unavailable.
"""

from __future__ import annotations

import hashlib
import logging
import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

logger = logging.getLogger(__name__)
WINDOW_SECONDS = 3600


def client_address(request: HttpRequest) -> str:
    if settings.USE_X_FORWARDED_FOR:
        forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",") if part.strip()]
        if forwarded:
            return forwarded[-1]  # the hop our own proxy appended; earlier ones are the client's word
    return request.META.get("REMOTE_ADDR", "")


def entry_rate_allow(*, request: HttpRequest) -> bool:
    """Count one new entry from this address; False once the hour's limit is exceeded."""
    limit = settings.ENTRY_RATE_LIMIT_PER_HOUR
    if limit <= 0:
        return True
    window = int(time.time()) // WINDOW_SECONDS
    # Hashed: the cache never holds raters' IP addresses in clear.
    address = hashlib.sha256(client_address(request).encode()).hexdigest()[:32]
    key = f"rating:entry:{window}:{address}"
    try:
        cache.add(key, 0, timeout=WINDOW_SECONDS + 60)
        count = cache.incr(key)
    except Exception:  # any cache fault: fail open, see the module docstring
        logger.warning("entry rate limit unavailable (cache unreachable); entry allowed", exc_info=True)
        return True
    return count <= limit
