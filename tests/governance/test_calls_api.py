"""Governed calls through the REST API, against a real SDK peer: permissions, approvals, logs, usage, redaction."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from accounts import epoch
from accounts.models import AuditEvent
from governance.models import ApprovalRequest, RequestLog, ToolApproval, UsageDaily
from mcpsettings import discovery
from mcpsettings.models import McpServer
from tests.conftest import key_client
from tests.factories import make_api_key, make_server
from tests.governance.helpers import CALL, CANARY, allow, call, mcp_call
from tests.peers.faults import FaultServer

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("allow_private")]


def test_agent_tool_list(owner_api, server):
    res = owner_api.get("/api/v1/tools")
    assert res.status_code == 200
    body = res.json()
    assert body["count"] == 5
    echo = next(t for t in body["tools"] if t["name"] == "echo")
    assert {
        "server",
        "server_id",
        "name",
        "qualified_name",
        "description",
        "input_schema",
        "annotations",
        "approval",
    } <= set(echo)
    assert echo["server"] == "Peer" and echo["qualified_name"] == "peer__echo" and echo["approval"] == "ask"
    assert echo["annotations"]["readOnlyHint"] is True and echo["input_schema"]["required"] == ["text"]


def test_ask_then_approve_once_then_the_retry_runs_once(owner, owner_api, server, peer):
    res = call(owner_api, server, "echo", {"text": "hello"})
    assert res.status_code == 202, res.content
    body = res.json()
    assert body["status"] == "pending" and body["approval_id"] and "/approvals/" in body["approve_url"]
    # Asking again with the same arguments does not fill the inbox twice.
    assert call(owner_api, server, "echo", {"text": "hello"}).json()["approval_id"] == body["approval_id"]
    item = owner_api.get(f"/api/v1/approvals/{body['approval_id']}").json()
    assert item["status"] == "pending" and item["arguments"] == {"text": "hello"} and item["tool"] == "echo"
    assert owner_api.get("/api/v1/approvals", {"status": "pending"}).json()["count"] == 1

    decided = owner_api.post(f"/api/v1/approvals/{body['approval_id']}/decide", {"decision": "once"}, format="json")
    assert decided.status_code == 200 and decided.json()["status"] == "approved"
    before = len(peer.server.calls)
    res = call(owner_api, server, "echo", {"text": "hello"}, approval_id=body["approval_id"])
    assert res.status_code == 200, res.content
    assert res.json()["result"]["content"][0]["text"] == "hello" and res.json()["request_id"]
    assert len(peer.server.calls) == before + 1
    assert owner_api.get(f"/api/v1/approvals/{body['approval_id']}").json()["status"] == "consumed"
    # Used up: the next identical call asks again.
    assert call(owner_api, server, "echo", {"text": "hello"}).status_code == 202


def test_once_approval_is_bound_to_the_arguments(owner, owner_api, server):
    pending = call(owner_api, server, "echo", {"text": "a"}).json()
    owner_api.post(f"/api/v1/approvals/{pending['approval_id']}/decide", {"decision": "once"}, format="json")
    assert call(owner_api, server, "echo", {"text": "b"}).status_code == 202
    assert call(owner_api, server, "echo", {"text": "a"}).status_code == 200


def test_always_never_and_deny(owner, owner_api, server):
    allow(owner, server, "add")
    res = call(owner_api, server, "add", {"a": 1, "b": 2})
    assert res.status_code == 200 and res.json()["result"]["structuredContent"] == {"total": 3}
    allow(owner, server, "delete_everything", "never")
    res = call(owner_api, server, "delete_everything", {"confirm": True})
    assert res.status_code == 403 and res.json()["code"] == "approval_denied"
    pending = call(owner_api, server, "mood").json()
    owner_api.post(f"/api/v1/approvals/{pending['approval_id']}/decide", {"decision": "deny"}, format="json")
    res = call(owner_api, server, "mood", approval_id=pending["approval_id"])
    assert res.status_code == 403 and res.json()["code"] == "approval_denied"


def test_always_for_an_hour_expires(owner, owner_api, server):
    res = owner_api.patch(
        f"/api/v1/settings/mcps/{server.pk}/tools/add", {"approval": "always", "expires_in": "1h"}, format="json"
    )
    assert res.status_code == 200 and res.json()["approval"] == "always" and res.json()["approval_expires_at"]
    assert call(owner_api, server, "add", {"a": 1, "b": 1}).status_code == 200
    ToolApproval.objects.filter(tool_name="add").update(expires_at=timezone.now() - timedelta(seconds=1))
    assert call(owner_api, server, "add", {"a": 1, "b": 1}).status_code == 202
    tools = {t["name"]: t for t in owner_api.get("/api/v1/tools").json()["tools"]}
    assert tools["add"]["approval"] == "ask"


def test_decide_always_for_one_hour_from_the_inbox(owner, owner_api, server):
    pending = call(owner_api, server, "add", {"a": 2, "b": 2}).json()
    res = owner_api.post(
        f"/api/v1/approvals/{pending['approval_id']}/decide", {"decision": "always", "expires_in": "1h"}, format="json"
    )
    assert res.status_code == 200
    record = ToolApproval.objects.get(tool_name="add", approval_type="always")
    assert timedelta(minutes=59) < record.expires_at - timezone.now() <= timedelta(hours=1)
    assert call(owner_api, server, "add", {"a": 5, "b": 5}).status_code == 200


def test_read_only_tools_auto_allowed_when_the_server_says_so(owner, owner_api, server):
    McpServer.objects.filter(pk=server.pk).update(auto_allow_read_only=True)
    assert call(owner_api, server, "echo", {"text": "x"}).status_code == 200
    assert call(owner_api, server, "delete_everything", {"confirm": False}).status_code == 202


def test_two_permission_layers(org, owner, teammate, org_server):
    owner_api, mate_api = key_client(owner), key_client(teammate)
    allow(teammate, org_server, "echo")
    allow(teammate, org_server, "add")
    # The org admin turns echo off for the whole org.
    res = owner_api.patch(f"/api/v1/settings/mcps/{org_server.pk}/tools/echo", {"is_enabled": False}, format="json")
    assert res.status_code == 200 and res.json()["is_enabled"] is False and res.json()["org_enabled"] is False
    names = {t["name"] for t in mate_api.get("/api/v1/tools").json()["tools"]}
    assert "echo" not in names and "add" in names
    res = call(mate_api, org_server, "echo", {"text": "x"})
    assert res.status_code == 403 and res.json()["code"] == "tool_disabled"
    # The teammate cannot turn it back on for themselves.
    res = mate_api.patch(f"/api/v1/settings/mcps/{org_server.pk}/tools/echo", {"is_enabled": True}, format="json")
    assert res.status_code == 403
    # The teammate switches add off just for themselves; the owner still has it.
    res = mate_api.patch(f"/api/v1/settings/mcps/{org_server.pk}/tools/add", {"is_enabled": False}, format="json")
    assert res.status_code == 200 and res.json()["user_enabled"] is False
    assert "add" not in {t["name"] for t in mate_api.get("/api/v1/tools").json()["tools"]}
    assert "add" in {t["name"] for t in owner_api.get("/api/v1/tools").json()["tools"]}
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"tool_permission.org", "tool_permission.user"} <= actions


def test_new_tools_follow_the_server_default(owner, owner_api, peer):
    server = make_server(owner, name="Blocked", endpoint_url=peer.url, new_tools_enabled=False)
    discovery.discover(server)
    assert owner_api.get("/api/v1/tools").json()["count"] == 0
    owner_api.patch(f"/api/v1/settings/mcps/{server.pk}/tools/echo", {"is_enabled": True}, format="json")
    assert [t["name"] for t in owner_api.get("/api/v1/tools").json()["tools"]] == ["echo"]


def test_inactive_server_unknown_server_and_unknown_tool(owner, owner_api, outsider_api, server):
    McpServer.objects.filter(pk=server.pk).update(is_active=False)
    res = call(owner_api, server, "echo", {"text": "x"})
    assert res.status_code == 403 and res.json()["code"] == "server_inactive"
    McpServer.objects.filter(pk=server.pk).update(is_active=True)
    assert call(owner_api, server, "no_such_tool").status_code == 404
    assert call(outsider_api, server, "echo", {"text": "x"}).status_code == 404
    res = owner_api.post(CALL, {"server": "Peer", "tool": "mood"}, format="json")
    assert res.status_code == 202  # by name, too
    assert owner_api.post(CALL, {"tool": "mood"}, format="json").status_code == 400


def test_tool_errors_and_upstream_failures(owner, owner_api, server, settings):
    allow(owner, server, "fail")
    res = call(owner_api, server, "fail", {})
    assert res.status_code == 200 and res.json()["result"]["isError"] is True
    assert RequestLog.objects.latest("id").status == "tool_error"
    with FaultServer() as faults:
        broken = make_server(owner, name="Broken", endpoint_url=faults.url("500"))
        from mcpsettings.models import McpTool

        McpTool.objects.create(server=broken, name="x", digest="0" * 64, last_seen=timezone.now())
        allow(owner, broken, "x")
        res = call(owner_api, broken, "x")
        assert res.status_code == 502 and res.json()["code"] == "upstream_error"
        faults.slow_seconds = 2
        slow = make_server(owner, name="Slow", endpoint_url=faults.url("slow"))
        McpTool.objects.create(server=slow, name="x", digest="0" * 64, last_seen=timezone.now())
        allow(owner, slow, "x")
        settings.MCP_HTTP_TIMEOUT = 0.5
        res = call(owner_api, slow, "x")
        assert res.status_code == 504 and res.json()["code"] == "upstream_timeout"
    statuses = list(RequestLog.objects.order_by("id").values_list("status", "status_code"))
    assert ("upstream_error", 502) in statuses and ("upstream_timeout", 504) in statuses


def test_every_call_is_logged_with_usage_in_the_same_transaction(owner, owner_api, server):
    allow(owner, server, "add")
    for _ in range(3):
        call(owner_api, server, "add", {"a": 1, "b": 2})
    allow(owner, server, "delete_everything", "never")
    call(owner_api, server, "delete_everything", {"confirm": True})
    logs = list(RequestLog.objects.filter(user=owner).order_by("id"))
    assert [entry.status_code for entry in logs] == [200, 200, 200, 403]
    assert all(entry.duration_ms >= 0 and entry.server_name == "Peer" for entry in logs)
    usage = UsageDaily.objects.get(user=owner, server=server, date=timezone.localdate())
    assert (usage.request_count, usage.successful, usage.failed) == (4, 3, 1)
    body = owner_api.get("/api/v1/usage", {"days": 7}).json()
    assert body["usage"][0]["request_count"] == 4 and body["usage"][0]["server"] == "Peer"
    page = owner_api.get("/api/v1/logs", {"page_size": 2}).json()
    assert len(page["results"]) == 2 and page["next"] and page["results"][0]["status"] == "approval_denied"
    rest = owner_api.get(page["next"]).json()
    assert len(rest["results"]) == 2


def test_redaction_of_secrets_in_arguments_headers_and_answers(owner, server):
    _, raw_key = make_api_key(owner, name="agent")
    client = key_client(owner)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}", HTTP_USER_AGENT="agent/1.0")
    allow(owner, server, "echo")
    args = {"text": f"my key is {CANARY} and {raw_key}", "api_key": "canary-arg-key-1", "nested": {"password": "pw1x"}}
    res = call(client, server, "echo", {"text": args["text"]})
    assert res.status_code == 200
    entry = RequestLog.objects.latest("id")
    stored = str(entry.request_body) + str(entry.response_body) + entry.error_message
    assert CANARY not in stored and raw_key not in stored and "[REDACTED]" in stored
    assert entry.user_agent == "agent/1.0"
    # Keys named like secrets are redacted too, and so is the inbox copy of the arguments.
    res = call(
        client,
        server,
        "mood",
        {"api_key": "canary-arg-key-1", "nested": {"password": "pw1x"}, "note": f"Bearer {CANARY}"},
    )
    assert res.status_code == 202
    item = ApprovalRequest.objects.latest("created_at")
    assert item.arguments["api_key"] == "[REDACTED]" and item.arguments["nested"]["password"] == "[REDACTED]"
    assert CANARY not in str(item.arguments)


def test_long_bodies_are_truncated_with_a_marker(owner, owner_api, server):
    allow(owner, server, "echo")
    res = call(owner_api, server, "echo", {"text": "z" * 50_000})
    assert res.status_code == 200
    entry = RequestLog.objects.latest("id")
    assert "TRUNCATED" in str(entry.request_body) or entry.request_body.get("_truncated")


def test_outsiders_get_404_on_approvals_and_see_no_logs_or_usage(owner, owner_api, outsider_api, server):
    pending = call(owner_api, server, "mood").json()
    assert outsider_api.get(f"/api/v1/approvals/{pending['approval_id']}").status_code == 404
    res = outsider_api.post(f"/api/v1/approvals/{pending['approval_id']}/decide", {"decision": "once"}, format="json")
    assert res.status_code == 404
    assert outsider_api.get("/api/v1/approvals").json()["count"] == 0
    assert outsider_api.get("/api/v1/logs").json()["results"] == []
    assert outsider_api.get("/api/v1/usage").json()["count"] == 0
    assert (
        outsider_api.patch(
            f"/api/v1/settings/mcps/{server.pk}/tools/echo", {"is_enabled": False}, format="json"
        ).status_code
        == 404
    )
    assert outsider_api.get(f"/api/v1/settings/mcps/{server.pk}/tools").status_code == 404
    assert ApprovalRequest.objects.get(pk=pending["approval_id"]).status == "pending"


def test_scopes_call_and_manage(owner, server):
    reader = key_client(owner, scopes=("read",))
    assert reader.get("/api/v1/tools").status_code == 200
    assert call(reader, server, "echo", {"text": "x"}).status_code == 403
    agent = key_client(owner, scopes=("read", "call"))
    pending = call(agent, server, "mood").json()
    # An agent's key cannot approve its own call.
    res = agent.post(f"/api/v1/approvals/{pending['approval_id']}/decide", {"decision": "once"}, format="json")
    assert res.status_code == 403


def test_pending_requests_expire_and_stay_as_history(owner, owner_api, server):
    pending = call(owner_api, server, "mood").json()
    ApprovalRequest.objects.filter(pk=pending["approval_id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert owner_api.get(f"/api/v1/approvals/{pending['approval_id']}").json()["status"] == "expired"
    res = owner_api.post(f"/api/v1/approvals/{pending['approval_id']}/decide", {"decision": "once"}, format="json")
    assert res.status_code == 400
    assert owner_api.get("/api/v1/approvals", {"status": "expired"}).json()["count"] == 1
    assert owner_api.get("/api/v1/approvals", {"status": "bogus"}).status_code == 400


@pytest.mark.parametrize("servers_n, tools_n", [(1, 1), (25, 40)])
def test_tools_endpoint_runs_a_constant_number_of_queries(owner, servers_n, tools_n, django_assert_max_num_queries):
    from mcpsettings.models import McpTool

    now = timezone.now()
    for i in range(servers_n):
        s = make_server(owner, name=f"s{i}", endpoint_url="https://93.184.216.34/mcp")
        McpTool.objects.bulk_create(
            [McpTool(server=s, name=f"t{j}", digest="0" * 64, last_seen=now) for j in range(tools_n)]
        )
        allow(owner, s, "t0")
    client = key_client(owner)
    # A cold worker: epoch, key (+ its last-used stamp), servers, slugs (2), tool rows, permissions, approvals.
    with django_assert_max_num_queries(9):
        res = client.get("/api/v1/tools")
    assert res.json()["count"] == servers_n * tools_n
    with django_assert_max_num_queries(1):  # a warm one reads only the epoch
        again = client.get("/api/v1/tools")
    assert again.content == res.content


def test_a_governed_call_runs_a_fixed_number_of_queries(owner, owner_api, server, django_assert_max_num_queries):
    """A worker that has seen the key and the tool: the epoch read, the row opened, the row completed with
    its usage (one statement on PostgreSQL; on SQLite a transaction: savepoint, update, upsert, release).
    A cold worker reads the key, server, credentials, permissions, approval and tool first."""
    allow(owner, server, "echo")
    warm = 3 if connection.vendor == "postgresql" else 6
    epoch.MEMO.clear()
    with django_assert_max_num_queries(13):
        assert call(owner_api, server, "echo", {"text": "cold"}).status_code == 200
    with django_assert_max_num_queries(warm):
        assert call(owner_api, server, "echo", {"text": "hi"}).status_code == 200
    mcp_call(owner_api, "peer__echo", {"text": "x"})  # the slug map, once
    with django_assert_max_num_queries(warm):
        res = mcp_call(owner_api, "peer__echo", {"text": "x"})
    assert res.json()["result"]["isError"] is False
