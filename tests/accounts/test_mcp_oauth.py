"""Gatehouse as the OAuth authorization server of /mcp: discovery, dynamic registration, consent, tokens bound to
one endpoint, refresh rotation, revocation — the protocol steps an MCP client takes, driven here with Django's
test client against a real upstream peer (the browser and SDK clients: test_mcp_oauth_clients.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiKey, AuditEvent
from governance.models import RequestLog
from mcpsettings import discovery, services
from tests.factories import make_server
from tests.governance.helpers import allow, mcp_rpc
from tests.peers.sdk import Peer

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("allow_private")]

ORIGIN = "http://testserver"
REDIRECT = "http://127.0.0.1:53682/callback"


@pytest.fixture(scope="module")
def peer():
    with Peer("json") as running:
        yield running


@pytest.fixture
def upstream(owner, peer):
    server = make_server(owner, name="Peer", endpoint_url=peer.url)
    assert discovery.discover(server).ok
    allow(owner, server, "echo")
    return server


def register(client, **extra) -> dict:
    body = {
        "client_name": "Test Desktop",
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        **extra,
    }
    res = client.post("/o/register/", json.dumps(body), content_type="application/json")
    assert res.status_code == 201, res.content
    return res.json()


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_params(client_id: str, challenge: str, resource: str | None = ORIGIN + "/mcp", **extra) -> dict:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "st-1",
        "scope": "read call",
        **extra,
    }
    if resource:
        params["resource"] = resource
    return params


def consent(client, user, params: dict) -> str:
    """Sign in, see the consent page, allow; the code the client gets back."""
    client.force_login(user)
    page = client.get("/o/authorize/?" + urlencode(params))
    assert page.status_code == 200, page.content
    form = {k: v for k, v in params.items() if k != "scope"} | {"scope": params["scope"], "allow": "Authorize"}
    answer = client.post("/o/authorize/?" + urlencode(params), form)
    assert answer.status_code == 302, answer.content
    target = urlsplit(answer["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == REDIRECT
    query = parse_qs(target.query)
    assert query["state"] == ["st-1"]
    client.logout()
    return query["code"][0]


def token(client, **form) -> dict:
    res = client.post("/o/token/", form)
    assert res.status_code == 200, res.content
    return res.json()


def connect(client, user, resource: str = ORIGIN + "/mcp") -> tuple[dict, dict]:
    registered = register(client)
    verifier, challenge = pkce()
    code = consent(client, user, authorize_params(registered["client_id"], challenge, resource))
    tokens = token(
        client,
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT,
        client_id=registered["client_id"],
        code_verifier=verifier,
        resource=resource,
    )
    return registered, tokens


def bearer(access: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {access}"}


def test_discovery_starts_at_the_401(client):
    res = client.post("/mcp", "{}", content_type="application/json")
    assert res.status_code == 401
    challenge = res["WWW-Authenticate"]
    assert challenge.startswith("Bearer ") and 'resource_metadata="http://testserver/.well-known/' in challenge
    metadata = client.get("/.well-known/oauth-protected-resource/mcp").json()
    assert metadata["resource"] == ORIGIN + "/mcp" and metadata["authorization_servers"] == [ORIGIN]
    assert set(metadata["scopes_supported"]) == {"read", "call"}
    server = client.get("/.well-known/oauth-authorization-server").json()
    assert server["issuer"] == ORIGIN and server["authorization_endpoint"] == ORIGIN + "/o/authorize/"
    assert server["code_challenge_methods_supported"] == ["S256"] and server["response_types_supported"] == ["code"]
    assert server["registration_endpoint"] == ORIGIN + "/o/register/"
    assert server["client_id_metadata_document_supported"] is True
    assert "manage" not in server["scopes_supported"]
    assert client.get("/.well-known/oauth-protected-resource/api/v1").status_code == 404


def test_a_client_connects_calls_as_the_person_refreshes_and_is_revoked(client, owner, upstream):
    registered, tokens = connect(client, owner)
    access = tokens["access_token"]
    assert tokens["token_type"].lower() == "bearer" and tokens["expires_in"] <= 3600 and tokens["refresh_token"]

    called = mcp_rpc(APIClient(), "tools/call", {"name": "peer__echo", "arguments": {"text": "hi"}}, **bearer(access))
    assert called.json()["result"]["content"][0]["text"] == "hi"
    row = RequestLog.objects.get(tool_name="echo")
    connection = ApiKey.objects.connections().get(user=owner)
    assert row.user == owner and row.api_key_id == connection.pk and connection.audience == "/mcp"
    assert connection.name == "Test Desktop" and connection.scopes == ["read", "call"]
    assert AuditEvent.objects.filter(action="oauth.connect").exists()

    # Refresh rotates: the new access token works, the old refresh token is spent, and replaying it (a stolen
    # copy) ends the whole family, the new tokens included (RFC 9700 reuse detection).
    client_id = registered["client_id"]
    fresh = token(client, grant_type="refresh_token", refresh_token=tokens["refresh_token"], client_id=client_id)
    assert fresh["refresh_token"] != tokens["refresh_token"]
    assert mcp_rpc(APIClient(), "tools/list", **bearer(fresh["access_token"])).status_code == 200
    replay = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": client_id}
    assert client.post("/o/token/", replay).status_code == 400
    assert mcp_rpc(APIClient(), "tools/list", **bearer(fresh["access_token"])).status_code == 401

    _, fresh = connect(client, owner)
    # Not a key for the REST API.
    assert client.get("/api/v1/tools", **bearer(fresh["access_token"])).status_code == 401

    # The person disconnects it: the very next call is refused.
    connection = ApiKey.objects.connections().filter(user=owner, revoked_at=None).latest("created_at")
    client.force_login(owner)
    page = client.get("/settings/connected-apps/").content.decode()
    assert "Test Desktop" in page and REDIRECT in page and fresh["access_token"] not in page
    assert client.post(f"/settings/connected-apps/{connection.pk}/disconnect/").status_code == 302
    client.logout()
    assert mcp_rpc(APIClient(), "tools/list", **bearer(fresh["access_token"])).status_code == 401


def test_a_token_for_one_gateway_is_refused_at_another(client, owner, upstream):
    first = services.gateway_create(actor=owner, name="First", source_ids=[upstream.pk])
    second = services.gateway_create(actor=owner, name="Second", source_ids=[upstream.pk])
    _, tokens = connect(client, owner, resource=f"{ORIGIN}/mcp/{first.slug}")
    access = tokens["access_token"]
    listed = mcp_rpc(APIClient(), "tools/list", path=f"/mcp/{first.slug}", **bearer(access))
    assert listed.status_code == 200 and listed.json()["result"]["tools"]
    for elsewhere in (f"/mcp/{second.slug}", "/mcp"):
        refused = mcp_rpc(APIClient(), "tools/list", path=elsewhere, **bearer(access))
        assert refused.status_code == 401 and "another MCP endpoint" in refused.json()["error_description"]


def test_the_consent_page_names_the_client_the_target_and_cannot_be_framed(client, owner, upstream):
    gateway = services.gateway_create(actor=owner, name="Docs only", source_ids=[upstream.pk])
    registered = register(client, client_name="Shiny Agent")
    _, challenge = pkce()
    client.force_login(owner)
    page = client.get(
        "/o/authorize/?"
        + urlencode(authorize_params(registered["client_id"], challenge, f"{ORIGIN}/mcp/{gateway.slug}"))
    )
    text = page.content.decode()
    assert page.status_code == 200 and "Shiny Agent" in text and "127.0.0.1:53682" in text and "Docs only" in text
    assert "Call those tools" in text and "manage" not in text.lower().replace("management", "")
    assert page["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in page["Content-Security-Policy"]
    assert "form-action 'self' http://127.0.0.1:53682" in page["Content-Security-Policy"]


def test_pkce_is_required_and_s256_only(client, owner):
    registered = register(client)
    client.force_login(owner)
    _, challenge = pkce()
    without = {
        k: v for k, v in authorize_params(registered["client_id"], challenge).items() if not k.startswith("code_")
    }
    plain = authorize_params(registered["client_id"], "x" * 50, code_challenge_method="plain")
    for params in (without, plain):
        res = client.get("/o/authorize/?" + urlencode(params))
        assert res.status_code in (302, 400)
        if res.status_code == 302:  # the error goes back to the (registered) client, never a code
            assert "error=" in res["Location"] and "code=" not in res["Location"]


def test_redirect_uri_must_match_exactly_and_errors_never_go_elsewhere(client, owner):
    registered = register(client)
    client.force_login(owner)
    _, challenge = pkce()
    for redirect in ("http://127.0.0.1:53682/callback/other", "https://evil.example/callback", REDIRECT + "?x=1"):
        params = authorize_params(registered["client_id"], challenge, redirect_uri=redirect)
        res = client.get("/o/authorize/?" + urlencode(params))
        assert res.status_code == 400 or (res.status_code == 302 and not res["Location"].startswith("https://evil")), (
            redirect,
            res.status_code,
        )
        assert res.status_code == 400, redirect


def test_only_this_sites_mcp_endpoints_can_be_authorized(client, owner, outsider, upstream):
    theirs = services.gateway_create(actor=outsider, name="Theirs")
    registered = register(client)
    client.force_login(owner)
    _, challenge = pkce()
    for resource in ("https://evil.example/mcp", f"{ORIGIN}/api/v1/tools", f"{ORIGIN}/mcp/{theirs.slug}"):
        res = client.get("/o/authorize/?" + urlencode(authorize_params(registered["client_id"], challenge, resource)))
        assert res.status_code == 400 and "not one of your MCP endpoints" in res.content.decode(), resource


def test_registration_floods_are_limited(client, settings):
    settings.OAUTH_REGISTRATION_RATE_LIMIT = (3, 3600)
    for _ in range(3):
        register(client)
    body = {"client_name": "flood", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}
    res = client.post("/o/register/", json.dumps(body), content_type="application/json")
    assert res.status_code in (401, 403)


def test_client_id_metadata_documents_are_fetched_ssrf_checked(client, owner, settings):
    settings.MCP_ALLOW_PRIVATE_NETWORKS = False
    client.force_login(owner)
    _, challenge = pkce()
    for client_id in ("https://127.0.0.1/client.json", "https://10.1.2.3/client.json", "https://localhost/c.json"):
        res = client.get("/o/authorize/?" + urlencode(authorize_params(client_id, challenge)))
        assert res.status_code == 400, (client_id, res.status_code)


def test_tokens_never_reach_logs_audit_or_admin(client, owner, upstream, admin_client):
    _, tokens = connect(client, owner)
    mcp_rpc(
        APIClient(), "tools/call", {"name": "peer__echo", "arguments": {"text": "x"}}, **bearer(tokens["access_token"])
    )
    stored = json.dumps([list(RequestLog.objects.values()), list(AuditEvent.objects.values())], default=str)
    admin_pages = "".join(
        admin_client.get(f"/admin/oauth2_provider/{model}/").content.decode()
        for model in ("accesstoken", "refreshtoken", "grant", "application")
    )
    for secret in (tokens["access_token"], tokens["refresh_token"]):
        assert secret not in stored and secret not in admin_pages


def test_another_person_cannot_see_or_disconnect_a_connection(client, owner, outsider, upstream):
    connect(client, owner)
    connection = ApiKey.objects.connections().get(user=owner)
    client.force_login(outsider)
    assert "Test Desktop" not in client.get("/settings/connected-apps/").content.decode()
    assert client.post(f"/settings/connected-apps/{connection.pk}/disconnect/").status_code == 404
    assert ApiKey.objects.get(pk=connection.pk).revoked_at is None
    assert str(connection.pk) not in client.get("/api/v1/api-keys").content.decode()


def test_review_fixes_a_token_never_on_rest_consent_never_skipped_revocation_sticks(client, owner, upstream):
    registered, tokens = connect(client, owner)
    call = {"server": str(upstream.pk), "tool": "echo", "arguments": {"text": "x"}}
    for _ in range(2):  # the second would take the fast path once the first had remembered the token
        rest = APIClient().post("/api/v1/tools/call", call, format="json", **bearer(tokens["access_token"]))
        assert rest.status_code == 401

    # approval_prompt=auto never skips the consent page (nor widens what the client reaches).
    _, challenge = pkce()
    client.force_login(owner)
    params = authorize_params(registered["client_id"], challenge, approval_prompt="auto")
    page = client.get("/o/authorize/?" + urlencode(params))
    assert page.status_code == 200 and b"authorizationForm" in page.content
    without_redirect = {k: v for k, v in params.items() if k != "redirect_uri"}
    assert client.get("/o/authorize/?" + urlencode(without_redirect)).status_code == 400
    client.logout()

    # Revoked in the admin's way (api_key_revoke): the next refresh does not bring the connection back.
    from accounts import services as account_services

    connection = ApiKey.objects.connections().get(user=owner)
    account_services.api_key_revoke(actor=owner, api_key=connection)
    refresh = {
        "grant_type": "refresh_token",
        "refresh_token": tokens["refresh_token"],
        "client_id": registered["client_id"],
    }
    assert client.post("/o/token/", refresh).status_code == 400
    assert not ApiKey.objects.connections().filter(user=owner, revoked_at=None).exists()
    assert mcp_rpc(APIClient(), "tools/list", **bearer(tokens["access_token"])).status_code == 401

    # A registered client cannot delete itself (and with it the record its calls are logged under).
    managed = client.delete(
        f"/o/register/{registered['client_id']}/",
        HTTP_AUTHORIZATION=f"Bearer {registered['registration_access_token']}",
    )
    assert managed.status_code == 405
