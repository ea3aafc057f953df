"""OAuth connect against a real OAuth-protected MCP peer built from the SDK's authorization-server pieces.

The browser part is only redirects: the peer's /authorize approves at once, so the test follows the
302s itself with `requests` and hands the callback URL to the Django test client (same session).
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.db import connection
from django.utils import timezone

from accounts.models import AuditEvent
from mcpsettings import discovery, oauth
from mcpsettings.models import Credential, McpServer, OAuthClient, TokenStatus
from tests.factories import make_server
from tests.peers.oauth_peer import OAuthPeer

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("allow_private")]


def start(client, server) -> requests.Response:
    """Click Connect; return the provider's answer to the authorization request (not followed)."""
    res = client.post(f"/settings/mcps/{server.pk}/connect/")
    assert res.status_code == 302, res.content.decode()[:2000]
    return requests.get(res["Location"], allow_redirects=False, timeout=5)


def callback_path(provider_answer: requests.Response) -> str:
    assert provider_answer.status_code == 302, provider_answer.text
    location = urlsplit(provider_answer.headers["Location"])
    assert location.path == "/oauth/callback"
    return f"{location.path}?{location.query}"


def connect(client, server) -> str:
    path = callback_path(start(client, server))
    res = client.get(path)
    assert res.status_code == 302, res.content.decode()[:2000]
    return path


@pytest.fixture
def peer():
    with OAuthPeer(access_ttl=3600) as running:
        yield running


@pytest.fixture
def oauth_server(owner, peer):
    return make_server(
        owner,
        name="Notion-ish",
        endpoint_url=peer.url,
        auth_type="oauth",
        oauth={"extra_auth_params": {"audience": "api.example"}},
    )


def test_full_flow_dcr_connect_discover_call_refresh_revoke(client, owner, peer, oauth_server):
    client.force_login(owner)
    page = client.get(f"/settings/mcps/{oauth_server.pk}/connect/").content.decode()
    assert "http://testserver/oauth/callback" in page  # the redirect URI to give providers

    connect(client, oauth_server)

    # The authorization request was PKCE S256, with state, resource, scopes and the extra parameter.
    auth_req = peer.provider.authorize_requests[-1]
    assert auth_req["code_challenge_method"] == "S256" and len(auth_req["code_challenge"]) >= 43
    assert auth_req["resource"] == peer.url and auth_req["audience"] == "api.example"
    assert set(auth_req["scope"].split()) == {"mcp.read", "mcp.write"} and auth_req["state"]
    token_req = peer.provider.token_requests[-1]
    assert token_req["grant_type"] == "authorization_code" and token_req["resource"] == peer.url
    assert token_req["code_verifier"]
    assert OAuthClient.objects.get(server=oauth_server).registration_mode == "dcr"

    # Tokens stored encrypted, per user; never in any page or JSON.
    cred = Credential.objects.get(server=oauth_server, user=owner)
    assert cred.access_token and cred.refresh_token and cred.token_status == TokenStatus.VALID
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT access_token, refresh_token FROM mcpsettings_credential WHERE id = %s",
            [cred.pk.hex if connection.vendor == "sqlite" else cred.pk],
        )
        raw_access, raw_refresh = cursor.fetchone()
    assert cred.access_token not in raw_access and cred.refresh_token not in raw_refresh
    detail = client.get(f"/settings/mcps/{oauth_server.pk}/").content.decode()
    body = client.get(f"/api/v1/settings/mcps/{oauth_server.pk}").content.decode()
    for text in (detail, body):
        assert cred.access_token not in text and cred.refresh_token not in text
    assert '"token_status":"valid"' in body.replace(" ", "")
    assert not any(cred.access_token in str(e.changes) for e in AuditEvent.objects.all())

    # Discovery ran after the callback.
    server = McpServer.objects.get(pk=oauth_server.pk)
    assert server.status == "active" and len(server.tools_manifest) == 5

    # A tool call with the user's token.
    result = discovery.with_client(server, owner, lambda c: c.call_tool("echo", {"text": "hi"}))
    assert result["content"][0]["text"] == "hi"

    # Expiry: refreshed ahead of time (within 60 s), refresh token rotated.
    old_refresh = cred.refresh_token
    Credential.objects.filter(pk=cred.pk).update(expires_at=timezone.now() + timedelta(seconds=30))
    peer.expire_access_tokens()
    assert discovery.discover(server, actor=owner).ok
    cred.refresh_from_db()
    assert peer.provider.refresh_count == 1 and cred.refresh_token != old_refresh
    assert peer.provider.token_requests[-1]["resource"] == peer.url

    # A 401 mid-life (token revoked early at the provider) refreshes once and retries.
    peer.expire_access_tokens()
    assert discovery.discover(server, actor=owner).ok
    assert peer.provider.refresh_count == 2

    # Disconnect revokes at the provider and deletes the tokens.
    refresh_token = Credential.objects.get(pk=cred.pk).refresh_token
    assert client.post(f"/settings/mcps/{oauth_server.pk}/disconnect/").status_code == 302
    assert refresh_token in peer.provider.revoked
    assert not Credential.objects.filter(server=oauth_server, user=owner).exists()
    assert AuditEvent.objects.filter(action="credential.oauth_disconnect").exists()


def test_tokens_are_per_user(client, owner, teammate, org, peer):
    server = make_server(owner, name="Team OAuth", endpoint_url=peer.url, auth_type="oauth", organization=org)
    client.force_login(owner)
    connect(client, server)
    assert discovery.with_client(server, owner, lambda c: len(c.list_tools())) == 5
    with pytest.raises(discovery.McpError) as info:
        discovery.with_client(server, teammate, lambda c: c.list_tools())
    assert info.value.kind == "reconnect_needed"  # the owner's token is never lent to a teammate


def test_manual_client(client, owner, peer):
    server = make_server(
        owner,
        name="Manual",
        endpoint_url=peer.url,
        auth_type="oauth",
        oauth={
            "registration_mode": "manual",
            "oauth_client_id": "gatehouse-manual",
            "oauth_client_secret": "manual-secret-xyz",
        },
    )
    peer.register_manual_client("gatehouse-manual", "manual-secret-xyz", ["http://testserver/oauth/callback"])
    client.force_login(owner)
    connect(client, server)
    assert peer.provider.authorize_requests[-1]["client_id"] == "gatehouse-manual"
    assert Credential.objects.get(server=server, user=owner).access_token
    assert not peer.provider.registered_clients.keys() - {"gatehouse-manual"}  # no dynamic registration
    edit = client.get(f"/settings/mcps/{server.pk}/edit/").content.decode()
    assert "manual-secret-xyz" not in edit and "gatehouse-manual" in edit


def test_manual_mode_requires_a_client_id(owner_api, peer):
    res = owner_api.post(
        "/api/v1/settings/mcps",
        {"name": "M", "endpoint_url": peer.url, "auth_type": "oauth", "registration_mode": "manual"},
        format="json",
    )
    assert res.status_code == 400 and "oauth_client_id" in res.json()


def test_client_id_metadata_document(client, owner, settings):
    settings.GATEHOUSE_PUBLIC_URL = "http://testserver"
    doc = client.get("/oauth/client-metadata.json").json()
    assert doc["client_id"] == "http://testserver/oauth/client-metadata.json"
    assert doc["redirect_uris"] == ["http://testserver/oauth/callback"] and doc["token_endpoint_auth_method"] == "none"
    with OAuthPeer(cimd=True) as peer:
        server = make_server(owner, name="CIMD", endpoint_url=peer.url, auth_type="oauth")
        client.force_login(owner)
        connect(client, server)
        assert peer.provider.authorize_requests[-1]["client_id"] == doc["client_id"]
        assert OAuthClient.objects.get(server=server).registration_mode == "cimd"
        assert not peer.provider.registered_clients


@pytest.mark.parametrize(
    "flags, words",
    [({"s256": False}, "S256"), ({"wrong_issuer": True}, "different issuer"), ({"dcr": False}, "manual")],
)
def test_refusals_before_any_redirect(client, owner, flags, words):
    with OAuthPeer(**flags) as peer:
        server = make_server(owner, endpoint_url=peer.url, auth_type="oauth")
        client.force_login(owner)
        res = client.post(f"/settings/mcps/{server.pk}/connect/")
        assert res.status_code == 502 and words in res.content.decode()
        assert not peer.provider.authorize_requests
    assert not Credential.objects.filter(server=server).exists()


def test_metadata_found_through_the_well_known_url_when_the_challenge_has_none(client, owner):
    with OAuthPeer(resource_metadata_in_challenge=False) as peer:
        server = make_server(owner, endpoint_url=peer.url, auth_type="oauth")
        client.force_login(owner)
        connect(client, server)
        assert Credential.objects.filter(server=server, user=owner).exists()


def test_state_is_single_use(client, owner, oauth_server):
    client.force_login(owner)
    path = connect(client, oauth_server)
    cred = Credential.objects.get(server=oauth_server, user=owner)
    res = client.get(path)  # replay the same callback
    assert res.status_code == 400 and "already used" in res.content.decode()
    assert Credential.objects.get(pk=cred.pk).access_token == cred.access_token


def test_state_from_another_session_is_refused(client, owner, outsider, oauth_server):
    client.force_login(owner)
    path = callback_path(start(client, oauth_server))
    from django.test import Client

    other = Client()
    other.force_login(outsider)
    res = other.get(path)
    assert res.status_code == 400
    assert not Credential.objects.exists()


def test_expired_state(client, owner, oauth_server):
    client.force_login(owner)
    path = callback_path(start(client, oauth_server))
    session = client.session
    states = session[oauth.SESSION_KEY]
    for value in states.values():
        value["exp"] = 0
    session[oauth.SESSION_KEY] = states
    session.save()
    res = client.get(path)
    assert res.status_code == 400 and "10 minutes" in res.content.decode()
    assert not Credential.objects.exists()


def test_access_denied_changes_nothing(client, owner, oauth_server):
    client.force_login(owner)
    path = callback_path(start(client, oauth_server))
    state = parse_qs(urlsplit(path).query)["state"][0]
    res = client.get(f"/oauth/callback?error=access_denied&state={state}")
    assert res.status_code == 400 and "declined" in res.content.decode()
    assert not Credential.objects.exists()


def test_refresh_failure_asks_for_reconnect(client, owner, peer, oauth_server):
    client.force_login(owner)
    connect(client, oauth_server)
    peer.revoke_all_refresh_tokens()
    peer.expire_access_tokens()
    Credential.objects.filter(user=owner).update(expires_at=timezone.now() - timedelta(seconds=1))
    server = McpServer.objects.get(pk=oauth_server.pk)
    result = discovery.discover(server, actor=owner)
    assert not result.ok and result.error.kind == "reconnect_needed"
    cred = Credential.objects.get(user=owner)
    assert cred.token_status == TokenStatus.REFRESH_FAILED
    page = client.get(f"/settings/mcps/{server.pk}/connect/").content.decode()
    assert "Reconnect" in page and "no longer accepts" in page
    body = client.get(f"/api/v1/settings/mcps/{server.pk}").json()
    assert body["token_status"] == "refresh_failed"
    # Reconnecting fixes it.
    connect(client, server)
    assert Credential.objects.get(user=owner).token_status == TokenStatus.VALID


def test_issuer_change_registers_a_new_client(client, owner, oauth_server):
    OAuthClient.objects.create(
        server=oauth_server, issuer="https://old-issuer.example", registration_mode="dcr", client_id="stale"
    )
    client.force_login(owner)
    connect(client, oauth_server)
    clients = list(OAuthClient.objects.filter(server=oauth_server))
    assert len(clients) == 1 and clients[0].client_id != "stale"


def test_outsider_cannot_connect_someone_elses_server(client, outsider, oauth_server):
    client.force_login(outsider)
    assert client.get(f"/settings/mcps/{oauth_server.pk}/connect/").status_code == 404
    assert client.post(f"/settings/mcps/{oauth_server.pk}/connect/").status_code == 404
    assert client.post(f"/settings/mcps/{oauth_server.pk}/disconnect/").status_code == 404


def test_oauth_urls_are_ssrf_checked_and_https_only(settings):
    settings.MCP_ALLOW_PRIVATE_NETWORKS = False
    with pytest.raises(oauth.OAuthError, match="https"):
        oauth._get_json("http://public.example.test/.well-known/oauth-authorization-server")
    with pytest.raises(oauth.OAuthError, match="link-local"):
        oauth._get_json("https://169.254.169.254/.well-known/oauth-authorization-server")
    with pytest.raises(oauth.OAuthError, match="loopback"):
        oauth._get_json("https://127.0.0.1:9/.well-known/oauth-authorization-server")


def test_www_authenticate_parsing():
    header = 'Bearer realm="mcp", error="insufficient_scope", scope="a b", resource_metadata="https://x/y"'
    assert oauth.parse_www_authenticate(header) == {
        "realm": "mcp",
        "error": "insufficient_scope",
        "scope": "a b",
        "resource_metadata": "https://x/y",
    }


def test_step_up_on_insufficient_scope(client, owner, peer):
    server = make_server(owner, name="Narrow", endpoint_url=peer.url, auth_type="oauth", oauth={"scopes": ["mcp.read"]})
    client.force_login(owner)
    connect(client, server)
    assert peer.provider.authorize_requests[-1]["scope"] == "mcp.read"
    result = discovery.discover(McpServer.objects.get(pk=server.pk), actor=owner)
    assert not result.ok and result.error.kind == "forbidden"
    cred = Credential.objects.get(server=server, user=owner)
    assert "insufficient_scope" in cred.metadata
    page = client.get(f"/settings/mcps/{server.pk}/connect/").content.decode()
    assert "asked for more permissions" in page and "Reconnect" in page
    connect(client, server)  # reconnect asks for the wider scope
    assert set(peer.provider.authorize_requests[-1]["scope"].split()) == {"mcp.read", "mcp.write"}
    assert "insufficient_scope" not in Credential.objects.get(server=server, user=owner).metadata
    assert discovery.discover(McpServer.objects.get(pk=server.pk), actor=owner).ok


def test_an_expired_token_without_a_refresh_token_is_marked_expired(owner, oauth_server):
    cred = Credential.objects.create(
        server=oauth_server, user=owner, access_token="no-refresh", expires_at=timezone.now() - timedelta(seconds=5)
    )
    with pytest.raises(oauth.ReconnectNeeded, match="no refresh token"):
        oauth.fresh(cred)
    assert Credential.objects.get(pk=cred.pk).token_status == TokenStatus.EXPIRED  # kept, not rolled back


def _token_echoing_server():
    """A hostile peer: its `whoami` tool answers with the bearer token it was sent."""
    from mcp.server.auth.middleware.auth_context import get_access_token

    from tests.peers.sdk import build_server

    server = build_server()

    @server.tool()
    def whoami() -> str:
        """Say which token came in."""
        return f"you sent {get_access_token().token}"

    return server


def test_a_token_refreshed_for_the_call_is_cut_from_its_result_and_record(client, owner):
    from governance import calls
    from governance.models import RequestLog
    from tests.governance.helpers import allow

    with OAuthPeer(server=_token_echoing_server()) as peer:
        server = make_server(owner, name="Echoes", endpoint_url=peer.url, auth_type="oauth")
        client.force_login(owner)
        connect(client, server)
        old = Credential.objects.get(server=server, user=owner).access_token
        allow(owner, server, "whoami")
        # Expiring within the minute: the call refreshes the token first and sends the new one.
        Credential.objects.filter(server=server).update(expires_at=timezone.now() + timedelta(seconds=30))
        result = calls.governed_call(
            user=owner, server=McpServer.objects.get(pk=server.pk), tool="whoami", arguments={}
        )
    new = Credential.objects.get(server=server, user=owner).access_token
    assert new != old and peer.provider.refresh_count == 1
    text = result.result["content"][0]["text"]
    assert text.startswith("you sent ") and new not in text
    assert new not in str(RequestLog.objects.get(tool_name="whoami").response_body)
