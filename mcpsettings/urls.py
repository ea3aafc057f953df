from django.urls import path

from mcpsettings import views

app_name = "mcpsettings"

urlpatterns = [
    path("settings/mcps/", views.server_list, name="server_list"),
    path("settings/mcps/new/", views.server_new, name="server_new"),
    path("settings/mcps/trash/", views.server_trash, name="server_trash"),
    path("settings/mcps/<uuid:pk>/", views.server_detail, name="server_detail"),
    path("settings/mcps/<uuid:pk>/edit/", views.server_edit, name="server_edit"),
    path("settings/mcps/<uuid:pk>/delete/", views.server_delete, name="server_delete"),
    path("settings/mcps/<uuid:pk>/restore/", views.server_restore, name="server_restore"),
    path("settings/mcps/<uuid:pk>/context/", views.server_context, name="server_context"),
    path("settings/mcps/<uuid:pk>/discover/", views.server_discover, name="server_discover"),
    path("settings/mcps/<uuid:pk>/connect/", views.server_connect, name="server_connect"),
    path("settings/mcps/<uuid:pk>/disconnect/", views.server_disconnect, name="server_disconnect"),
    path("gateways/", views.gateway_list, name="gateway_list"),
    path("gateways/<uuid:pk>/", views.gateway_detail, name="gateway_detail"),
    path("gateways/<uuid:pk>/delete/", views.gateway_delete, name="gateway_delete"),
    path("gateways/<uuid:pk>/restore/", views.gateway_restore, name="gateway_restore"),
]
