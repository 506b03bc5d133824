"""Per-address limit on new participations, kept in Django's cache (Redis or a database table).

Only a *new* participation counts: a rater resuming (same PROLIFIC_PID and SESSION_ID) is
never refused. A fixed one-hour window per address, an IPv6 address by its /64 network
(``studyapp.addresses``).

Atomic on every cache backend: the window's N allowed entries are N numbered tokens, and
an entry takes the first free one with the cache's ``add`` (store only if absent), which
every backend does atomically for a new key (Redis ``SET NX``, the database cache's
primary key, memcached's ``add``, the local-memory cache's lock). ``incr`` is ``get``
then ``set`` on the database cache: 21-24 of 20 entries passed it under concurrency.
When the cache cannot be reached (Redis down) entries are allowed and a warning is
logged: a rater must never be turned away because a protection is unavailable.
"""

from __future__ import annotations

import hashlib
import logging
import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

from studyapp.addresses import client_address, client_network

logger = logging.getLogger(__name__)
WINDOW_SECONDS = 3600


def entry_rate_allow(*, request: HttpRequest) -> bool:
    """Take one of the hour's entry tokens of this address; False once all are taken."""
    limit = settings.ENTRY_RATE_LIMIT_PER_HOUR
    if limit <= 0:
        return True
    window = int(time.time()) // WINDOW_SECONDS
    # Hashed: the cache never holds raters' IP addresses in clear.
    address = client_address(request)
    address = hashlib.sha256((client_network(address) or address).encode()).hexdigest()[:32]
    prefix = f"rating:entry:{window}:{address}"
    timeout = WINDOW_SECONDS + 60
    try:
        # Tokens are taken in order, so tokens 0..k-1 are gone once k is. The hint is a
        # lower bound of the tokens taken (each entry writes "mine + 1", which may lag a
        # concurrent one): it only saves trying tokens known to be gone, in one read.
        start = cache.get(f"{prefix}:taken", 0)
        for token in range(start, limit):
            if cache.add(f"{prefix}:{token}", 1, timeout=timeout):
                cache.set(f"{prefix}:taken", token + 1, timeout=timeout)
                return True
        return False
    except Exception:  # any cache fault: fail open, see the module docstring
        logger.warning("entry rate limit unavailable (cache unreachable); entry allowed", exc_info=True)
        return True
