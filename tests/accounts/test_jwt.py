"""JWT for scripts: POST /api/v1/auth/token (+ /refresh, /revoke) — a short-lived access token that works where
a key does (REST and /mcp), with the scopes asked for, logged under its script session, revocable at once."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiKey, AuditEvent
from governance.models import RequestLog
from mcpsettings import discovery
from tests.factories import PASSWORD, make_server
from tests.governance.helpers import allow, mcp_call
from tests.peers.sdk import Peer

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("allow_private")]


@pytest.fixture(scope="module")
def peer():
    with Peer("json") as running:
        yield running


def pair(client, email="owner@example.com", password=PASSWORD, **extra):
    return client.post("/api/v1/auth/token", {"email": email, "password": password, **extra}, format="json")


def with_token(access: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return api


def test_a_script_signs_in_calls_refreshes_and_revokes(owner, peer):
    server = make_server(owner, name="Peer", endpoint_url=peer.url)
    assert discovery.discover(server).ok
    allow(owner, server, "echo")
    client = APIClient()
    res = pair(client)
    assert res.status_code == 200, res.content
    tokens = res.json()
    assert set(tokens) == {"access", "refresh"}

    agent = with_token(tokens["access"])
    assert agent.get("/api/v1/tools").status_code == 200
    called = agent.post(
        "/api/v1/tools/call", {"server": str(server.pk), "tool": "echo", "arguments": {"text": "j"}}, format="json"
    )
    assert called.status_code == 200 and called.json()["result"]["content"][0]["text"] == "j"
    assert mcp_call(agent, "peer__echo", {"text": "m"}).json()["result"]["content"][0]["text"] == "m"
    session = ApiKey.objects.get(user=owner, prefix="jwt")
    assert set(RequestLog.objects.values_list("api_key_id", flat=True)) == {session.pk}
    assert session.scopes == ["read", "call"]
    create = {"name": "X", "endpoint_url": "https://example.com/mcp"}
    assert agent.post("/api/v1/settings/mcps", create, format="json").status_code == 403  # `manage`: only if asked

    fresh = client.post("/api/v1/auth/token/refresh", {"refresh": tokens["refresh"]}, format="json").json()
    assert fresh["refresh"] != tokens["refresh"]
    assert client.post("/api/v1/auth/token/refresh", {"refresh": tokens["refresh"]}, format="json").status_code == 401
    assert with_token(fresh["access"]).get("/api/v1/tools").status_code == 200

    assert client.post("/api/v1/auth/token/revoke", {"refresh": fresh["refresh"]}, format="json").status_code == 200
    assert with_token(fresh["access"]).get("/api/v1/tools").status_code == 401  # at once, not at expiry
    assert client.post("/api/v1/auth/token/refresh", {"refresh": fresh["refresh"]}, format="json").status_code == 401
    assert {"jwt.issue", "jwt.revoke"} <= set(AuditEvent.objects.values_list("action", flat=True))


def test_scopes_are_those_asked_for_and_manage_only_when_asked(owner):
    client = APIClient()
    read_only = pair(client, scopes=["read"]).json()
    assert with_token(read_only["access"]).post("/api/v1/tools/call", {}, format="json").status_code == 403
    manager = pair(client, scopes=["read", "call", "manage"]).json()
    create = {"name": "X", "endpoint_url": "https://example.com/mcp"}
    assert with_token(read_only["access"]).post("/api/v1/settings/mcps", create, format="json").status_code == 403
    assert with_token(manager["access"]).post("/api/v1/settings/mcps", create, format="json").status_code == 201
    assert pair(client, scopes=["root"]).status_code == 400


def test_wrong_passwords_are_refused_and_rate_limited_like_login(owner, settings):
    settings.LOGIN_RATE_LIMIT = (3, 900)
    client = APIClient()
    for _ in range(3):
        assert pair(client, password="wrong").status_code == 401
    assert pair(client).status_code == 429  # even the right password, once the limit is reached
    assert pair(client, email="not-an-email").status_code == 400


def test_a_session_revoked_on_the_keys_page_stops_its_tokens(owner, client):
    tokens = pair(APIClient()).json()
    session = ApiKey.objects.get(user=owner, prefix="jwt")
    client.force_login(owner)
    assert "Script session (JWT)" in client.get("/settings/api-keys/").content.decode()
    assert client.post(f"/settings/api-keys/{session.pk}/revoke/").status_code == 302
    assert with_token(tokens["access"]).get("/api/v1/tools").status_code == 401
    refreshed = APIClient().post("/api/v1/auth/token/refresh", {"refresh": tokens["refresh"]}, format="json")
    assert refreshed.status_code == 401


def test_a_forged_or_foreign_token_is_refused(owner, outsider):
    tokens = pair(APIClient()).json()
    head, body, signature = tokens["access"].split(".")
    forged = f"{head}.{body}.{signature[:-4]}AAAA"
    assert with_token(forged).get("/api/v1/tools").status_code == 401
    assert with_token("eyJhbGciOiJub25lIn0.eyJ1c2VyX2lkIjoxfQ.").get("/api/v1/tools").status_code == 401


def test_refresh_tokens_are_not_kept_in_clear(owner):
    from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

    tokens = pair(APIClient()).json()
    APIClient().post("/api/v1/auth/token/refresh", {"refresh": tokens["refresh"]}, format="json")
    assert OutstandingToken.objects.exists()
    assert set(OutstandingToken.objects.values_list("token", flat=True)) == {""}
