from allauth.mfa.utils import is_mfa_enabled
from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect

from accounts.models import ADMIN_ROLES, Membership

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


MFA_EXEMPT = ("/auth/2fa/", "/auth/account/reauthenticate/", "/accounts/logout/", "/static/")
MFA_SESSION_KEY = "gatehouse_mfa_required"


def mfa_required(user) -> bool:
    """An owner or admin of an org that requires a second factor of them, who has none yet."""
    strict = Membership.objects.filter(user=user, role__in=ADMIN_ROLES, organization__settings__require_admin_mfa=True)
    return strict.exists() and not is_mfa_enabled(user)


class RequireMfaMiddleware:
    """Sends an owner or admin whose org requires two-factor sign-in to set it up before anything else. Whether
    the rule holds them back is worked out at sign-in and kept in the session (no query per page), then
    again on each page while it does."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or request.path.startswith(MFA_EXEMPT):
            return self.get_response(request)
        remembered = request.session.get(MFA_SESSION_KEY)  # set at sign-in (accounts.social)
        required = remembered
        if remembered is not False:  # held back (until the factor is there), or a session from before
            required = mfa_required(user)
            if remembered is True and not required:
                request.session[MFA_SESSION_KEY] = False
        if required:
            messages.info(
                request, "Your organization requires two-factor sign-in for owners and admins. Set it up to go on."
            )
            return redirect("mfa_index")
        return self.get_response(request)
