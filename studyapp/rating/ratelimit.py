"""Per-address limit on new participations, kept in Django's cache (Redis or a database table).

Only a *new* participation counts: a rater resuming (same PROLIFIC_PID and SESSION_ID) is
never refused. A fixed one-hour window per address. An IPv6 address counts by its /64
network: one subscriber is usually given a whole /64, so keying single IPv6 addresses
would give one machine 2^64 limits.

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
import ipaddress
import logging
import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

logger = logging.getLogger(__name__)
WINDOW_SECONDS = 3600
IPV6_PREFIX = 64


def client_address(request: HttpRequest) -> str:
    if settings.USE_X_FORWARDED_FOR:
        forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",") if part.strip()]
        if forwarded:
            return forwarded[-1]  # the hop our own proxy appended; earlier ones are the client's word
    return request.META.get("REMOTE_ADDR", "")


def address_key(address: str) -> str:
    """What one limit counts: an IPv4 address, an IPv6 address's /64 network (IPv4-mapped
    IPv6 as its IPv4 address), anything unparsable as given."""
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])  # a zone index (fe80::1%eth0) names no network
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, IPV6_PREFIX), strict=False))
    return str(parsed)


def entry_rate_allow(*, request: HttpRequest) -> bool:
    """Take one of the hour's entry tokens of this address; False once all are taken."""
    limit = settings.ENTRY_RATE_LIMIT_PER_HOUR
    if limit <= 0:
        return True
    window = int(time.time()) // WINDOW_SECONDS
    # Hashed: the cache never holds raters' IP addresses in clear.
    address = hashlib.sha256(address_key(client_address(request)).encode()).hexdigest()[:32]
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
