"""Security headers Django 5.2 does not set by itself."""

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
        response.setdefault("Content-Security-Policy", CSP)
        response.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if request.path.startswith(DOCS_PREFIX):
            # `docs/?script=` is JavaScript carrying the CSRF token: other sites must not run it via <script src>.
            response.setdefault("Cross-Origin-Resource-Policy", "same-origin")
        return response
