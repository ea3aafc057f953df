from django.urls import path

from governance.agents import rest, rest_items
from governance.api import views

urlpatterns = [
    path("tools", rest.AgentToolsView.as_view(), name="tools"),
    path("tools/call", rest.ToolCallView.as_view(), name="tools-call"),
    path("resources", rest_items.AgentResourcesView.as_view(), name="resources"),
    path("resources/read", rest_items.ResourceReadView.as_view(), name="resources-read"),
    path("prompts", rest_items.AgentPromptsView.as_view(), name="prompts"),
    path("prompts/get", rest_items.PromptGetView.as_view(), name="prompts-get"),
    path("completion/complete", rest_items.CompletionView.as_view(), name="completion-complete"),
    path("settings/mcps/<uuid:pk>/items", views.ServerItemsView.as_view(), name="mcp-items"),
    path("settings/mcps/<uuid:pk>/items/<int:item_id>", views.ServerItemDetailView.as_view(), name="mcp-item-detail"),
    path("settings/mcps/<uuid:pk>/tools", views.ServerToolsView.as_view(), name="mcp-tools"),
    path("settings/mcps/<uuid:pk>/tools/<path:tool>", views.ServerToolDetailView.as_view(), name="mcp-tool-detail"),
    path("approvals", views.ApprovalListView.as_view(), name="approvals"),
    path("approvals/<uuid:pk>", views.ApprovalDetailView.as_view(), name="approval-detail"),
    path("approvals/<uuid:pk>/decide", views.ApprovalDecideView.as_view(), name="approval-decide"),
    path("logs", views.LogListView.as_view(), name="logs"),
    path("usage", views.UsageView.as_view(), name="usage"),
]
