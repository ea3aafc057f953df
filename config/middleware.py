"""Security headers Django 5.2 does not set by itself, and the lane agents' calls take past browser middleware."""

from django.conf import settings
from django.urls import resolve

# One policy for every page, the admin and the API docs included: scripts and styles only from this site,
# never inline. The admin uses external scripts (its data blocks are type="application/json", not run), and
# Swagger UI's bootstrap script is a separate request (SpectacularSwaggerSplitView) with its page styles in
# static/css/swagger-page.css, so no path needs 'unsafe-inline' or a nonce.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'"
)
DOCS_PREFIX = "/api/v1/docs/"


class SecurityHeadersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        extra = getattr(response, "csp_form_action", "")  # a page that posts to one more origin (OAuth consent)
        csp = CSP.replace("form-action 'self'", f"form-action 'self' {extra}") if extra else CSP
        response.setdefault("Content-Security-Policy", csp)
        response.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if request.path.startswith(DOCS_PREFIX):
            # `docs/?script=` is JavaScript carrying the CSRF token: other sites must not run it via <script src>.
            response.setdefault("Cross-Origin-Resource-Policy", "same-origin")
        return response


def _agent_call(request) -> bool:
    path = request.path_info
    return (
        request.method == "POST"
        and (path == "/api/v1/tools/call" or path == "/mcp" or path.startswith("/mcp/"))
        and not request.META.get("QUERY_STRING")
        and request.META.get("HTTP_AUTHORIZATION", "")[:7].lower() == "bearer "
    )


class AgentLaneMiddleware:
    """An agent's governed call (a Bearer-keyed POST to /api/v1/tools/call or /mcp, no query string) goes
    straight to its view, past the middleware that serves browsers: sessions, CSRF (both views are
    csrf_exempt), the session user and guest logout, messages, static files, the NUL check of query strings
    and forms (it has neither). It sits below SecurityMiddleware and SecurityHeadersMiddleware, so the HTTPS
    redirect, HSTS and the security headers still apply; the Host is validated as CommonMiddleware would.
    Skipping them saves ~0.3 ms of CPU on every call (bench/RESULTS.md)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not _agent_call(request):
            return self.get_response(request)
        request.get_host()  # DisallowedHost (a 400) for a Host not in ALLOWED_HOSTS
        match = resolve(request.path_info)
        request.resolver_match = match
        response = match.func(request, *match.args, **match.kwargs)
        if callable(getattr(response, "render", None)):  # DRF's answers (the fallback path) render late
            response = response.render()
        response.setdefault("X-Frame-Options", settings.X_FRAME_OPTIONS)
        return response
