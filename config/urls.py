from django.contrib import admin
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from governance import views as governance_views
from governance.agents import mcp as mcp_endpoint
from mcpsettings import views as mcp_views


def healthz(request: HttpRequest) -> JsonResponse:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:
        return JsonResponse({"status": "error", "database": "unavailable"}, status=503)
    return JsonResponse({"status": "ok", "database": "ok"})


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
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("", include("accounts.urls")),
    path("", include("mcpsettings.urls")),
    path("", include("governance.urls")),
]
