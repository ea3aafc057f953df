from django.contrib.auth import logout
from django.http import HttpResponseBadRequest, JsonResponse

NUL_REFUSED = "The request contains a NUL (\\u0000) character, which Gatehouse does not accept in URLs or forms."


class RejectNulMiddleware:
    """A NUL in the path, the query string or a form reaches database lookups that PostgreSQL refuses
    (a 500); it is never meaningful there, so the request is refused up front with a clear 400."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if _has_nul(request):
            if request.path.startswith(("/api/", "/mcp")):
                return JsonResponse({"detail": NUL_REFUSED}, status=400)
            return HttpResponseBadRequest(NUL_REFUSED, content_type="text/plain; charset=utf-8")
        return self.get_response(request)


def _has_nul(request) -> bool:
    if "\x00" in request.path or "%00" in request.META.get("QUERY_STRING", ""):
        return True
    if request.path.startswith(("/api/", "/mcp")):
        return False  # JSON endpoints: their parsers judge the body (reading a form here would consume it)
    if request.method == "POST" and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        return any("\x00" in k or any("\x00" in v for v in values) for k, values in request.POST.lists())
    return False


class GuestExpiryMiddleware:
    """Ends a guest's session once it has expired (their data waits for clean-up)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and user.guest_expired:
            logout(request)
        return self.get_response(request)
