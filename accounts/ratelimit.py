"""Failure counters in Django's cache (Redis when CACHE_URL points at it)."""

from __future__ import annotations

import hashlib
import ipaddress

from django.conf import settings
from django.core.cache import cache
from ipware import get_client_ip


def _key(scope: str, ident: str) -> str:
    # Hash the identifier: it may hold an email, and cache keys must stay short and safe.
    return f"rl:{scope}:{hashlib.sha256(ident.encode()).hexdigest()[:32]}"


def is_limited(scope: str, ident: str, limit: int) -> bool:
    return (cache.get(_key(scope, ident)) or 0) >= limit


def record_failure(scope: str, ident: str, window: int) -> int:
    key = _key(scope, ident)
    if cache.add(key, 1, timeout=window):
        return 1
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=window)
        return 1


def reset(scope: str, ident: str) -> None:
    cache.delete(_key(scope, ident))


class _ForwardedBy:
    """What django-ipware reads (`META`), holding only the part of X-Forwarded-For our own proxies wrote."""

    def __init__(self, chain: str) -> None:
        self.META = {"HTTP_X_FORWARDED_FOR": chain}


def valid_ip(value) -> str | None:
    """A well-formed address as stored (no zone id), or None: a forged header never becomes a 500."""
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    # A zone id ("fe80::1%eth0") is not an address a database column takes.
    return None if getattr(address, "scope_id", None) else str(address)


def _trusted_proxy_count() -> int:
    try:
        return max(0, int(settings.TRUSTED_PROXY_COUNT))
    except (TypeError, ValueError):
        return 1


def client_ip(request) -> str | None:
    """The client's address, for rate limits, logs and audit rows; None when there is no valid one.

    Without a TLS proxy (BEHIND_TLS_PROXY, i.e. SECURE_PROXY_SSL_HEADER) it is REMOTE_ADDR. Behind
    TRUSTED_PROXY_COUNT proxies, each appends the address it saw to X-Forwarded-For, so the client is
    the TRUSTED_PROXY_COUNT-th entry from the right. Everything to its left was sent by the client and
    is never read. A chain too short or with an entry that is not an IP there gives REMOTE_ADDR.
    """
    remote = valid_ip(request.META.get("REMOTE_ADDR"))
    count = _trusted_proxy_count()
    if not settings.SECURE_PROXY_SSL_HEADER or count == 0:
        return remote
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if not isinstance(forwarded, str) or not forwarded.strip():
        return remote
    tail = forwarded.rsplit(",", count)[-count:]
    if len(tail) < count or any(len(hop) > 100 for hop in tail):
        return remote
    try:
        # strict: exactly count-1 proxy hops after the client, every one a valid IP.
        ip, _routable = get_client_ip(
            _ForwardedBy(",".join(tail)),
            proxy_order="left-most",
            proxy_count=count - 1,
            request_header_order=["HTTP_X_FORWARDED_FOR"],
            strict=True,
            algorithm="modern",
        )
    except (ValueError, TypeError):
        return remote
    return valid_ip(ip) or remote
