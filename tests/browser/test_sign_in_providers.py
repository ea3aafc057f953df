"""Sign-in with GitHub and an OpenID Connect provider, in the browser. The providers cannot be reached from the
test machines, so each runs as a local stand-in started by the test (tests/peers/idp.py); everything on
Gatehouse's side — the POST that starts the flow, state, PKCE, the redirect and callback, the code exchange and
the profile requests — is the real thing. GitHub's URLs are fixed when allauth loads, so the test points its
adapter at the stand-in (the one thing patched)."""

from __future__ import annotations

import pytest
from allauth.socialaccount.models import SocialAccount
from allauth.socialaccount.providers.github.views import GitHubOAuth2Adapter

from accounts.models import Membership, Organization, Role, User
from tests.browser.conftest import check_page
from tests.factories import PASSWORD
from tests.peers.idp import FakeProvider

pytestmark = pytest.mark.django_db(transaction=True)

OCTO = {"octo": {"id": 583231, "name": "Octo Cat", "email": "octo@example.com"}}


@pytest.fixture
def github(settings, monkeypatch):
    with FakeProvider("github", OCTO) as fake:
        for name, path in [
            ("authorize_url", "/login/oauth/authorize"),
            ("access_token_url", "/login/oauth/access_token"),
            ("profile_url", "/api/v3/user"),
            ("emails_url", "/api/v3/user/emails"),
        ]:
            monkeypatch.setattr(GitHubOAuth2Adapter, name, fake.url + path)
        settings.SOCIALACCOUNT_PROVIDERS = {
            "github": {
                "APPS": [{"client_id": fake.client_id, "secret": fake.secret}],
                "SCOPE": ["read:user", "user:email"],
                "OAUTH_PKCE_ENABLED": True,
            }
        }
        yield fake


def choose(page, login: str) -> None:
    """At the provider: sign in as `login` (GET confirmations of allauth's own are passed first)."""
    if page.get_by_role("button", name="Continue").count():
        page.get_by_role("button", name="Continue").click()
    page.get_by_role("button", name=f"Sign in as {login}").click()


def test_sign_up_with_github(page, live_server, github):
    base = live_server.url
    page.goto(f"{base}/accounts/login/")
    check_page(page, "login-with-providers")
    page.get_by_role("button", name="Continue with GitHub").click()
    choose(page, "octo")
    page.wait_for_url(f"{base}/")
    user = User.objects.get(email="octo@example.com")
    assert SocialAccount.objects.get(user=user).provider == "github" and not user.has_usable_password()
    asked = next(r for r in github.requests if r["path"] == "/login/oauth/authorize")["query"]
    assert asked["state"] and asked["code_challenge_method"] == "S256"
    exchanged = next(r for r in github.requests if r["path"] == "/login/oauth/access_token")["form"]
    assert exchanged["code_verifier"] and exchanged["redirect_uri"] == f"{base}/auth/github/login/callback/"


def test_an_email_match_is_not_a_sign_in_link_it_instead(page, live_server, github):
    base = live_server.url
    owner = User.objects.create_user("octo@example.com", PASSWORD)
    page.goto(f"{base}/accounts/login/")
    page.get_by_role("button", name="Continue with GitHub").click()
    choose(page, "octo")
    page.wait_for_url(f"{base}/auth/3rdparty/signup/")  # asked for another email: not signed in to the match
    assert page.get_by_role("button", name="Log out").count() == 0
    assert not SocialAccount.objects.exists()  # the existing account was not taken over

    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email").fill(owner.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/")
    page.get_by_role("link", name="Sign-in methods").click()
    check_page(page, "sign-in-methods")
    page.get_by_role("button", name="GitHub").or_(page.get_by_role("link", name="GitHub")).first.click()
    choose(page, "octo")
    page.wait_for_url(f"{base}/auth/3rdparty/**")
    assert SocialAccount.objects.get(provider="github").user == owner


def test_a_guest_claims_the_account_with_github(page, live_server, github):
    base = live_server.url
    page.goto(f"{base}/accounts/login/")
    page.get_by_role("button", name="Try it as a guest").click()
    page.wait_for_url(f"{base}/")
    guest = User.objects.get(is_guest=True)
    page.goto(f"{base}/accounts/claim/")
    page.get_by_role("button", name="Use GitHub").click()
    choose(page, "octo")
    page.wait_for_load_state()
    claimed = User.objects.get(pk=guest.pk)
    assert not claimed.is_guest and claimed.email == "octo@example.com" and claimed.guest_expires_at is None


def test_single_sign_on_joins_the_org_of_the_email_domain(page, live_server, settings):
    Organization.objects.create(name="Acme", slug="acme")
    users = {"ada": {"id": 7, "name": "Ada", "email": "ada@acme.example"}}
    with FakeProvider("oidc", users) as sso:
        settings.SOCIALACCOUNT_PROVIDERS = {
            "openid_connect": {
                "OAUTH_PKCE_ENABLED": True,
                "APPS": [
                    {
                        "provider_id": "acme-sso",
                        "name": "Acme SSO",
                        "client_id": sso.client_id,
                        "secret": sso.secret,
                        "settings": {
                            "server_url": sso.url,
                            "join": {"domain": "acme.example", "org": "acme", "role": "developer"},
                        },
                    }
                ],
            }
        }
        base = live_server.url
        page.goto(f"{base}/accounts/login/")
        page.get_by_role("button", name="Continue with Acme SSO").click()
        choose(page, "ada")
        page.wait_for_url(f"{base}/")
    ada = User.objects.get(email="ada@acme.example")
    assert Membership.objects.get(user=ada, organization__slug="acme").role == Role.DEVELOPER
