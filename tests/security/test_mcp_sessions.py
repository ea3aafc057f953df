"""/mcp batches and sessions: no transport internals in batch answers, no session flood, idle sessions end."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from mcpsettings.models import McpSession
from tests.conftest import key_client

pytestmark = [pytest.mark.django_db]


def init(i=1):
    return {"jsonrpc": "2.0", "id": i, "method": "initialize", "params": {"protocolVersion": "2025-06-18"}}


def test_batch_answers_carry_no_internal_keys_and_cannot_initialize(owner):
    client = key_client(owner)
    batch = [init(i) for i in range(1, 1001)] + [{"jsonrpc": "2.0", "id": "x", "method": "tools/list"}]
    res = client.post("/mcp", batch, format="json")
    assert res.status_code == 200
    answers = res.json()
    assert len(answers) == 1001
    assert all(set(a) <= {"jsonrpc", "id", "result", "error"} for a in answers)
    assert all(a["error"]["message"] == "initialize cannot be part of a batch." for a in answers[:1000])
    assert McpSession.objects.count() == 0


def test_sessions_per_user_are_capped_oldest_first(settings, owner):
    settings.MCP_SESSIONS_PER_USER = 3
    client = key_client(owner)
    ids = [client.post("/mcp", init(), format="json")["Mcp-Session-Id"] for _ in range(5)]
    assert McpSession.objects.filter(user=owner).count() == 3
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    assert client.post("/mcp", ping, format="json", HTTP_MCP_SESSION_ID=ids[0]).status_code == 404
    assert client.post("/mcp", ping, format="json", HTTP_MCP_SESSION_ID=ids[-1]).status_code == 200


def test_idle_sessions_expire_and_are_pruned(settings, owner):
    settings.MCP_SESSION_IDLE_SECONDS = 60
    client = key_client(owner)
    old, fresh = (client.post("/mcp", init(), format="json")["Mcp-Session-Id"] for _ in range(2))
    McpSession.objects.update(last_seen_at=timezone.now() - timezone.timedelta(minutes=5))
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    assert client.post("/mcp", ping, format="json", HTTP_MCP_SESSION_ID=old).status_code == 404
    assert McpSession.objects.count() == 1  # the expired one is gone as soon as it was used
    out = io.StringIO()
    call_command("prune_mcp_sessions", stdout=out)
    assert "Deleted 1" in out.getvalue() and McpSession.objects.count() == 0
    assert client.post("/mcp", ping, format="json", HTTP_MCP_SESSION_ID=fresh).status_code == 404
