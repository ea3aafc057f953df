from django.urls import path

from mcpsettings.api import views

urlpatterns = [
    path("settings/mcps", views.McpServerListView.as_view(), name="mcps"),
    path("settings/mcps/<uuid:pk>", views.McpServerDetailView.as_view(), name="mcp-detail"),
    path("settings/mcps/<uuid:pk>/restore", views.McpServerRestoreView.as_view(), name="mcp-restore"),
    path("settings/mcps/<uuid:pk>/discover", views.McpServerDiscoverView.as_view(), name="mcp-discover"),
    path("context", views.ContextView.as_view(), name="context"),
    path("gateways", views.GatewayListView.as_view(), name="gateways"),
    path("gateways/<uuid:pk>", views.GatewayDetailView.as_view(), name="gateway-detail"),
    path("gateways/<uuid:pk>/restore", views.GatewayRestoreView.as_view(), name="gateway-restore"),
    path("gateways/<uuid:pk>/servers", views.GatewaySourcesView.as_view(), name="gateway-sources"),
    path(
        "gateways/<uuid:pk>/servers/<uuid:server_id>",
        views.GatewaySourceDetailView.as_view(),
        name="gateway-source-detail",
    ),
]
