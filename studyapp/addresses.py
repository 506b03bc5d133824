"""Who a request comes from, as the protections count it: the entry limit and the login lockout.

The client address is ``REMOTE_ADDR``, or behind a reverse proxy (``USE_X_FORWARDED_FOR``)
the last address the proxy appended. An IPv6 address counts by its /64 network: one
subscriber is usually given a whole /64, so counting single IPv6 addresses would give one
machine 2^64 allowances.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest

IPV6_PREFIX = 64


def client_address(request: HttpRequest) -> str:
    if settings.USE_X_FORWARDED_FOR:
        forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",") if part.strip()]
        if forwarded:
            return forwarded[-1]  # the hop our own proxy appended; earlier ones are the client's word
    return request.META.get("REMOTE_ADDR", "")


def client_network(address: str) -> str | None:
    """What a limit counts, as an address: an IPv4 address, the network address of an IPv6
    address's /64 (IPv4-mapped IPv6 as its IPv4 address); None when it is no address."""
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])  # a zone index (fe80::1%eth0) names no network
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, IPV6_PREFIX), strict=False).network_address)
    return str(parsed)


def request_client_network(request: HttpRequest) -> str | None:
    """:func:`client_network` of the request's client (django-axes' ``AXES_CLIENT_IP_CALLABLE``)."""
    return client_network(client_address(request))
