from django.urls import path

from governance import views

app_name = "governance"

urlpatterns = [
    path("approvals/", views.approvals, name="approvals"),
    path("approvals/<uuid:pk>/", views.approval_detail, name="approval_detail"),
    path("approvals/<uuid:pk>/decide/", views.approval_decide, name="approval_decide"),
    path("activity/", views.activity, name="activity"),
    path("audit/", views.audit, name="audit"),
    path("settings/mcps/<uuid:pk>/tools/<path:tool>/", views.tool_settings, name="tool_settings"),
    path("settings/mcps/<uuid:pk>/items/<int:item_id>/", views.item_settings, name="item_settings"),
]
