"""Inputs that used to 500 or half-write, and credentials that outlived their auth type."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import AuditEvent
from governance.models import ToolApproval
from mcpsettings.models import Credential, McpServer, McpTool
from tests.conftest import key_client
from tests.factories import make_server

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("allow_private")]
TOKEN = "org-bearer-token-41f0c2aa"


@pytest.fixture
def bearer_server(owner, org, upstream):
    server = make_server(
        owner, name="Shared", endpoint_url=upstream.url("run"), organization=org, auth_type="bearer", token=TOKEN
    )
    McpTool.objects.create(server=server, name="t", digest="0" * 64, last_seen=timezone.now())
    return server


def call(user, server):
    ToolApproval.objects.get_or_create(user=user, server=server, tool_name="t", approval_type="always")
    return key_client(user).post(
        "/api/v1/tools/call", {"server": str(server.pk), "tool": "t", "arguments": {}}, format="json"
    )


def sent_tokens(upstream) -> list[str]:
    return [h.get("Authorization", "") for _, method, h in upstream.requests if method == "tools/call"]


def test_switching_bearer_to_oauth_drops_the_shared_token(owner, teammate, bearer_server, upstream):
    assert call(teammate, bearer_server).status_code == 200
    res = key_client(owner).patch(f"/api/v1/settings/mcps/{bearer_server.pk}", {"auth_type": "oauth"}, format="json")
    assert res.status_code == 200 and res.json()["has_credentials"] is False
    assert not Credential.objects.filter(server=bearer_server).exists()
    event = AuditEvent.objects.filter(action="mcp_server.update").latest("created_at")
    assert event.changes["token"] == ["(changed)", "(changed)"] and TOKEN not in str(event.changes)
    upstream.requests.clear()
    res = call(teammate, bearer_server)  # never connected: not usable until they connect their own account
    assert res.status_code == 409 and res.json()["code"] == "reconnect_needed"
    assert not any(TOKEN in t for t in sent_tokens(upstream))


def test_a_leftover_shared_row_is_never_lent_on_an_oauth_server(owner, teammate, bearer_server, upstream):
    McpServer.objects.filter(pk=bearer_server.pk).update(auth_type="oauth")  # as old data could have it
    upstream.requests.clear()
    assert call(teammate, bearer_server).status_code == 409
    assert sent_tokens(upstream) == []


def test_switching_away_from_oauth_removes_peoples_tokens(owner, teammate, bearer_server):
    McpServer.objects.filter(pk=bearer_server.pk).update(auth_type="oauth")
    Credential.objects.filter(server=bearer_server).delete()
    Credential.objects.create(server=bearer_server, user=teammate, access_token="teammate-oauth-access-1")
    res = key_client(owner).patch(f"/api/v1/settings/mcps/{bearer_server.pk}", {"auth_type": "none"}, format="json")
    assert res.status_code == 200
    assert not Credential.objects.filter(server=bearer_server).exists()
    event = AuditEvent.objects.filter(action="mcp_server.update").latest("created_at")
    assert event.changes["oauth_tokens"] == ["1 connected account(s)", "removed"]


@pytest.mark.parametrize("token", ["tökén-with-umlauts", "токен", "emoji-💥-token", "tab\there"])
def test_a_token_a_header_cannot_carry_is_refused_before_anything_is_saved(owner, token):
    client = key_client(owner)
    res = client.post(
        "/api/v1/settings/mcps",
        {"name": "Unicode", "endpoint_url": "https://mcp.example.com/mcp", "auth_type": "bearer", "token": token},
        format="json",
    )
    assert res.status_code == 400 and "ASCII" in res.json()["token"][0]
    assert not McpServer.objects.filter(name="Unicode").exists()


def test_nul_in_extra_auth_params_is_a_field_error(owner):
    res = key_client(owner).post(
        "/api/v1/settings/mcps",
        {
            "name": "Nul params",
            "endpoint_url": "https://mcp.example.com/mcp",
            "auth_type": "oauth",
            "extra_auth_params": {"aud\u0000ience": "x"},
        },
        format="json",
    )
    assert res.status_code == 400 and "extra_auth_params" in res.json()
    assert not McpServer.objects.filter(name="Nul params").exists()


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/logs?status=%00",
        "/api/v1/approvals?status=ok%00",
        "/api/v1/settings/mcps/{pk}/tools/a%00b",
        "/settings/mcps/{pk}/tools/a%00b/",
        "/activity/?status=%00",
    ],
)
def test_nul_in_urls_is_a_clean_400(owner, bearer_server, path):
    client = key_client(owner)
    res = client.get(path.format(pk=bearer_server.pk))
    assert res.status_code == 400 and "NUL" in res.content.decode()
    web = Client()
    web.force_login(owner)
    assert web.get(path.format(pk=bearer_server.pk)).status_code == 400


def test_nul_in_a_form_is_a_clean_400(owner, bearer_server):
    web = Client()
    web.force_login(owner)
    res = web.post(f"/settings/mcps/{bearer_server.pk}/edit/", {"name": "a\u0000b"})
    assert res.status_code == 400
    assert McpServer.objects.get(pk=bearer_server.pk).name == "Shared"


def test_switching_to_oauth_with_a_token_in_the_same_request_still_drops_the_shared_token(owner, bearer_server):
    res = key_client(owner).patch(
        f"/api/v1/settings/mcps/{bearer_server.pk}", {"auth_type": "oauth", "token": "new-token-x1"}, format="json"
    )
    assert res.status_code == 200
    assert not Credential.objects.filter(server=bearer_server).exists()


def test_a_multipart_post_to_mcp_is_a_clean_error(owner):
    client = key_client(owner)
    res = client.post("/mcp", {"a": "b"}, format="multipart")
    assert res.status_code == 400
