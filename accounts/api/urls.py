from django.urls import path

from accounts.api import auth_views, views

urlpatterns = [
    path("api-keys", views.ApiKeyListView.as_view(), name="api-keys"),
    path("api-keys/<uuid:key_id>", views.ApiKeyDetailView.as_view(), name="api-key-detail"),
    path("auth/token", auth_views.TokenView.as_view(), name="auth-token"),
    path("auth/token/refresh", auth_views.RefreshView.as_view(), name="auth-token-refresh"),
    path("auth/token/revoke", auth_views.RevokeView.as_view(), name="auth-token-revoke"),
]
