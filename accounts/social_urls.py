"""The routes of allauth that sign-in with providers needs, under /auth/ (config.urls), and nothing else:
Gatehouse keeps its own log-in, sign-up, log-out and password pages, and allauth's names for those
pages lead to Gatehouse's."""

from allauth.account import views as account_views
from allauth.urls import build_provider_urlpatterns
from django.urls import include, path
from django.views.generic import RedirectView

ALIASES = {
    "account_login": "accounts:login",
    "account_signup": "accounts:signup",
    "account_logout": "accounts:logout",
    "account_inactive": "accounts:login",
    "account_reset_password": "accounts:login",
    "account_change_password": "accounts:password_change",
    "account_set_password": "accounts:password_change",
    "account_email": "accounts:password_change",
}

urlpatterns = [
    *[
        path(
            f"account/{name.removeprefix('account_')}/",
            RedirectView.as_view(pattern_name=to, query_string=True),
            name=name,
        )
        for name, to in ALIASES.items()
    ],
    # Confirming your password again before a sensitive change (adding or removing a second factor).
    path("account/reauthenticate/", account_views.reauthenticate, name="account_reauthenticate"),
    path("2fa/", include("allauth.mfa.urls")),
    path("3rdparty/", include("allauth.socialaccount.urls")),
    *build_provider_urlpatterns(),
]
