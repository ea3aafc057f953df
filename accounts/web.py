"""This site's own addresses, as the world sees them."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def public_url(request: HttpRequest | None, path: str) -> str:
    """The absolute URL of `path` on this site: GATEHOUSE_PUBLIC_URL when set (behind a proxy, in links
    sent elsewhere), else the request's own scheme and host; without either, the path itself."""
    base = settings.GATEHOUSE_PUBLIC_URL.rstrip("/")
    if base:
        return base + path
    return request.build_absolute_uri(path) if request is not None else path


def query_flag(request, name: str) -> bool:
    """`?deleted=true`, `?hard=1`…: a boolean query parameter, false when absent."""
    return request.GET.get(name, "").lower() in ("1", "true", "yes")
