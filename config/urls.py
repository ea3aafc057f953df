from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from oauth2_provider import views as oauth_views

from governance import views as governance_views
from governance.agents import mcp as mcp_endpoint
from governance.agents import oauth_server
from mcpsettings import views as mcp_views


def healthz(request: HttpRequest) -> JsonResponse:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:
        return JsonResponse({"status": "error", "database": "unavailable"}, status=503)
    return JsonResponse({"status": "ok", "database": "ok"})


# The OAuth authorization server for MCP clients (governance.agents.oauth_server): code + PKCE only, so
# of django-oauth-toolkit's routes only authorize, token, revocation and dynamic registration are served.
oauth_server_urls = (
    [
        path("authorize/", oauth_server.McpAuthorizationView.as_view(), name="authorize"),
        path("token/", oauth_views.TokenView.as_view(), name="token"),
        path("revoke_token/", oauth_views.RevokeTokenView.as_view(), name="revoke-token"),
        path("register/", oauth_views.DynamicClientRegistrationView.as_view(), name="dcr-register"),
        # RFC 7592 read and update only: a client deleting itself would erase the record its calls are logged under.
        path(
            "register/<str:client_id>/",
            oauth_server.ClientConfigurationView.as_view(),
            name="dcr-register-management",
        ),
    ],
    "oauth2_provider",
)

# The admin's own log-in would skip the second factor: it goes through allauth's log-in flow instead.
admin.site.login = secure_admin_login(admin.site.login)

api_v1 = [
    path("", include("accounts.api.urls")),
    path("", include("mcpsettings.api.urls")),
    path("", include("governance.api.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger's bootstrap script from `docs/?script=`, so the page needs no inline script.
    path(
        "docs/",
        SpectacularSwaggerSplitView.as_view(url_name="schema", template_name="api/swagger_ui.html"),
        name="docs",
    ),
]

urlpatterns = [
    path("", governance_views.dashboard, name="home"),
    path("healthz", healthz, name="healthz"),
    path("mcp", mcp_endpoint.mcp_endpoint, name="mcp"),
    path("mcp/<slug:slug>", mcp_endpoint.mcp_endpoint, name="mcp_gateway"),
    path("oauth/callback", mcp_views.oauth_callback, name="oauth_callback"),
    path("oauth/client-metadata.json", mcp_views.oauth_client_metadata, name="oauth_client_metadata"),
    path("o/", include(oauth_server_urls)),
    path("auth/", include("accounts.social_urls")),
    path(
        ".well-known/oauth-authorization-server",
        oauth_views.OAuthServerMetadataView.as_view(),
        name="oauth_server_metadata",
    ),
    path(
        ".well-known/oauth-protected-resource/mcp",
        oauth_server.McpResourceMetadataView.as_view(),
        name="oauth_resource_metadata",
    ),
    path(
        ".well-known/oauth-protected-resource/mcp/<slug:slug>",
        oauth_server.McpResourceMetadataView.as_view(),
        name="oauth_resource_metadata_gateway",
    ),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("", include("accounts.urls")),
    path("", include("mcpsettings.urls")),
    path("", include("governance.urls")),
]
