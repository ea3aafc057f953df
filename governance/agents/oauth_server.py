"""Gatehouse as the OAuth 2.1 authorization server of its own MCP endpoints: the MCP-specific parts.

django-oauth-toolkit runs the protocol (authorize, token, revocation, dynamic registration, client ID
metadata documents, RFC 8414 and RFC 9728 metadata). What it cannot know, written here:
- which resources exist: `/mcp` (all the person's tools) and `/mcp/<gateway>` for gateways they can
  see; an authorization for anything else is refused before the consent page, and a request naming no
  resource is bound to `/mcp`;
- the consent page in Gatehouse's style, naming the client, where it sends the person back, what it
  will reach and the scopes (never `manage`); the page may post to, and be redirected to, only the
  client's own redirect origin (CSP form-action), and never be framed;
- protected-resource metadata only for those endpoints.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.http import HttpResponse
from oauth2_provider.views import (
    AuthorizationView,
    DynamicClientRegistrationManagementView,
    OAuthProtectedResourceMetadataView,
)

from mcpsettings.models import Gateway

MCP_PATH = "/mcp"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def origin(request) -> str:
    return f"{request.scheme}://{request.get_host()}"


def endpoint_label(request, resource: str) -> str | None:
    """What a resource indicator reaches, in words ("all your tools", a gateway's name), or None when it is
    not one of this site's MCP endpoints the person can use."""
    parts = urlsplit(resource)
    if f"{parts.scheme}://{parts.netloc}" != origin(request) or parts.query or parts.fragment:
        return None
    path = parts.path.rstrip("/")
    if path == MCP_PATH:
        return "all your tools"
    slug = path.removeprefix(MCP_PATH + "/")
    if path.startswith(MCP_PATH + "/") and "/" not in slug:
        gateway = Gateway.objects.visible_to(request.user).live().filter(slug=slug).first()
        return f"the gateway “{gateway.name}”" if gateway is not None else None
    return None


def metadata_url(request, path: str) -> str:
    """Where the protected-resource metadata of an MCP endpoint lives (RFC 9728, path form)."""
    return f"{origin(request)}/.well-known/oauth-protected-resource{path}"


class McpAuthorizationView(AuthorizationView):
    template_name = "oauth2_provider/authorize.html"

    def get(self, request, *args, **kwargs):
        if "code_challenge" in request.GET and request.GET.get("code_challenge_method") != "S256":
            # "plain" (the default) would be refused only when the code is made, after the person consented.
            return self._refuse("This client must use PKCE with S256; Gatehouse does not accept “plain”.")
        request.GET = request.GET.copy()
        request.GET.pop("approval_prompt", None)  # consent is asked every time; "auto" would skip it
        if not request.GET.get("redirect_uri"):
            return self._refuse("The client must say where to send you back (redirect_uri).")
        redirect = urlsplit(request.GET.get("redirect_uri", ""))
        if redirect.scheme == "http" and redirect.hostname not in LOOPBACK:
            return self._refuse("A redirect over plain http is allowed only to this computer (127.0.0.1, localhost).")
        resources = request.GET.getlist("resource")
        if not resources:  # bound to /mcp: a token is always for one endpoint
            request.GET.setlist("resource", [origin(request) + MCP_PATH])
        elif len(resources) > 1 or endpoint_label(request, resources[0]) is None:
            return self._refuse("The client asked for access to something that is not one of your MCP endpoints.")
        return super().get(request, *args, **kwargs)

    def form_valid(self, form):
        resource = (form.cleaned_data.get("resource") or "").split()
        if len(resource) != 1 or endpoint_label(self.request, resource[0]) is None:  # the hidden field, tampered
            return self._refuse("The client asked for access to something that is not one of your MCP endpoints.")
        return super().form_valid(form)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        resource = str(kwargs.get("resource") or "")
        context["endpoint_label"] = endpoint_label(self.request, resource) if resource else None
        redirect = urlsplit(str(kwargs.get("redirect_uri") or ""))
        context["redirect_host"] = redirect.netloc
        self._redirect_origin = f"{redirect.scheme}://{redirect.netloc}" if redirect.netloc else ""
        return context

    def render_to_response(self, context, **kwargs):
        response = super().render_to_response(context, **kwargs)
        # The consent form posts here, and the answer redirects to the client: that origin is allowed too
        # (config.middleware.SecurityHeadersMiddleware adds it to the page's form-action).
        response.csp_form_action = getattr(self, "_redirect_origin", "")
        return response

    def _refuse(self, text: str) -> HttpResponse:
        # Never redirected to the client: its redirect URI is not known to be its own yet.
        context = {"error": {"error": "invalid_target", "description": text}}
        return self.render_to_response(context, status=400)


class McpResourceMetadataView(OAuthProtectedResourceMetadataView):
    """RFC 9728 metadata for /mcp and /mcp/<gateway>; this site is their authorization server. The answer is
    the same for any slug (clients read it before anyone signs in: it must not tell which gateways exist)."""

    def get_resource(self, request):
        return origin(request) + request.path.removeprefix("/.well-known/oauth-protected-resource")

    def get_authorization_servers(self, request):
        return [origin(request)]


class ClientConfigurationView(DynamicClientRegistrationManagementView):
    """RFC 7592 without DELETE: a registered client reads and updates its registration, but cannot delete the
    application its connections (and so its logged calls) belong to. People disconnect it instead."""

    http_method_names = ["get", "put", "options"]
