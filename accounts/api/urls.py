from django.urls import path

from accounts.api import views

urlpatterns = [
    path("api-keys", views.ApiKeyListView.as_view(), name="api-keys"),
    path("api-keys/<uuid:key_id>", views.ApiKeyDetailView.as_view(), name="api-key-detail"),
]
