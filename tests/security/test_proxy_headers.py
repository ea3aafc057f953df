"""Behind a TLS proxy, a forged X-Forwarded-For neither escapes the rate limits nor reaches the audit trail.

The proxy (REMOTE_ADDR 10.0.0.5) appends the address it saw; whatever the client sent is to its left.
"""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import AuditEvent, User
from tests.factories import PASSWORD, UserFactory, make_api_key

pytestmark = pytest.mark.django_db

PROXY = "10.0.0.5"
CLIENT = "203.0.113.9"
GARBAGE = ["abc", "1.2.3.4.5", "::ffff:zz", "\u0000", "9" * 5000, "1.1.1.1, abc", "1.1.1.1, ::ffff:zz"]


@pytest.fixture(autouse=True)
def behind_proxy(settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.TRUSTED_PROXY_COUNT = 1


def via_proxy(spoofed: str | None, client_ip: str = CLIENT) -> dict:
    chain = f"{spoofed}, {client_ip}" if spoofed else client_ip
    return {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": chain, "HTTP_X_FORWARDED_PROTO": "https"}


def test_rotating_spoofed_addresses_do_not_escape_the_api_key_rate_limit(settings):
    settings.API_KEY_RATE_LIMIT = (3, 60)
    owner = UserFactory()
    _, good = make_api_key(owner)
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer gh_wrong")
    for n in range(3):
        assert bad.get("/api/v1/api-keys", **via_proxy(f"198.51.100.{n}")).status_code == 401
    res = bad.get("/api/v1/api-keys", **via_proxy("198.51.100.99"))
    assert res.status_code == 429
    assert bad.post("/mcp", {}, format="json", **via_proxy("198.51.100.100")).status_code == 429
    agent = APIClient()
    agent.credentials(HTTP_AUTHORIZATION=f"Bearer {good}")
    assert agent.get("/api/v1/api-keys", **via_proxy("198.51.100.101")).status_code == 429  # same client
    assert agent.get("/api/v1/api-keys", **via_proxy(CLIENT, client_ip="192.0.2.44")).status_code == 200  # another


def test_rotating_spoofed_addresses_do_not_escape_the_login_rate_limit(settings):
    settings.LOGIN_RATE_LIMIT = (3, 900)
    UserFactory(email="victim@example.com")
    client = Client()
    for n in range(3):
        res = client.post(
            "/accounts/login/", {"username": "victim@example.com", "password": "guess"}, **via_proxy(f"198.51.100.{n}")
        )
        assert res.status_code == 400 and "Too many" not in res.content.decode()
    res = client.post(
        "/accounts/login/", {"username": "victim@example.com", "password": PASSWORD}, **via_proxy("198.51.100.77")
    )
    assert res.status_code == 400 and "Too many failed log-in attempts" in res.content.decode()


def test_the_audit_row_gets_the_proxy_seen_address_not_the_spoofed_one():
    client = Client()
    res = client.post(
        "/accounts/signup/",
        {"email": "spoof@example.com", "password": "a-strong-pass-123"},
        **via_proxy("198.51.100.66"),
    )
    assert res.status_code == 302
    assert AuditEvent.objects.get(action="user.signup").ip == CLIENT


@pytest.mark.parametrize("garbage", GARBAGE)
def test_garbage_forwarded_for_gives_no_500_and_a_real_address_in_the_audit_row(garbage):
    # The proxy appended nothing valid (or the header is all garbage): the peer address is used.
    web = Client()
    meta = {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": garbage, "HTTP_X_FORWARDED_PROTO": "https"}
    res = web.post("/accounts/signup/", {"email": "g@example.com", "password": "a-strong-pass-123"}, **meta)
    assert res.status_code == 302
    assert AuditEvent.objects.get(action="user.signup").ip == PROXY
    # Garbage to the left of the proxy's entry is never read.
    api = APIClient()
    api.force_login(User.objects.get(email="g@example.com"))
    res = api.post("/api/v1/api-keys", {"name": "k", "scopes": ["read"]}, format="json", **via_proxy(garbage))
    assert res.status_code == 201
    assert AuditEvent.objects.get(action="api_key.create").ip == CLIENT
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer gh_wrong")
    assert bad.get("/api/v1/api-keys", **meta).status_code == 401
