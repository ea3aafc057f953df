"""Failure counters in Django's cache (Redis when CACHE_URL points at it)."""

from __future__ import annotations

import hashlib

from django.core.cache import cache


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


def client_ip(request) -> str | None:
    """The peer address. X-Forwarded-For is trusted only behind a configured TLS proxy."""
    from django.conf import settings

    if getattr(settings, "SECURE_PROXY_SSL_HEADER", None):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return forwarded.split(",")[0].strip() or None
    return request.META.get("REMOTE_ADDR") or None
