from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("accounts/signup/", views.signup, name="signup"),
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/guest/", views.guest, name="guest"),
    path("accounts/claim/", views.claim, name="claim"),
    path("accounts/password/", views.password_change, name="password_change"),
    path("settings/api-keys/", views.api_keys, name="api_keys"),
    path("settings/api-keys/<uuid:key_id>/revoke/", views.api_key_revoke, name="api_key_revoke"),
    path("settings/connected-apps/", views.connected_apps, name="connected_apps"),
    path(
        "settings/connected-apps/<uuid:key_id>/disconnect/",
        views.connected_app_disconnect,
        name="connected_app_disconnect",
    ),
    path("orgs/", views.org_list, name="org_list"),
    path("orgs/new/", views.org_new, name="org_new"),
    path("orgs/<slug:slug>/", views.org_detail, name="org_detail"),
    path("orgs/<slug:slug>/members/<int:membership_id>/", views.org_member, name="org_member"),
    path("orgs/<slug:slug>/leave/", views.org_leave, name="org_leave"),
    path(
        "orgs/<slug:slug>/invitations/<uuid:invitation_id>/revoke/",
        views.org_invitation_revoke,
        name="org_invitation_revoke",
    ),
    path("invitations/<uuid:invitation_id>/respond/", views.invitation_respond, name="invitation_respond"),
    path("invitations/<str:token>/", views.invitation, name="invitation"),
]
