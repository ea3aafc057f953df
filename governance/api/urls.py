from django.urls import path

from governance.agents import rest
from governance.api import views

urlpatterns = [
    path("tools", rest.AgentToolsView.as_view(), name="tools"),
    path("tools/call", rest.ToolCallView.as_view(), name="tools-call"),
    path("settings/mcps/<uuid:pk>/tools", views.ServerToolsView.as_view(), name="mcp-tools"),
    path("settings/mcps/<uuid:pk>/tools/<path:tool>", views.ServerToolDetailView.as_view(), name="mcp-tool-detail"),
    path("approvals", views.ApprovalListView.as_view(), name="approvals"),
    path("approvals/<uuid:pk>", views.ApprovalDetailView.as_view(), name="approval-detail"),
    path("approvals/<uuid:pk>/decide", views.ApprovalDecideView.as_view(), name="approval-decide"),
    path("logs", views.LogListView.as_view(), name="logs"),
    path("usage", views.UsageView.as_view(), name="usage"),
]
