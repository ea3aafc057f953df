"""A warm worker (keys, policy, credentials, slugs and sessions remembered: accounts.epoch) obeys a change on
the very next call after its commit — whether the change came through a service, a queryset `.update()`,
`bulk_create`/`bulk_update` or a plain `.delete()`, none of which Django signals would all see."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from accounts import epoch
from accounts import services as account_services
from accounts.models import ApiKey, Membership, User
from governance.models import ToolApproval, ToolPermission
from mcpsettings import discovery
from mcpsettings.models import Credential, McpServer, McpTool
from tests.factories import make_api_key, make_server
from tests.governance.helpers import allow, call, mcp_call
from tests.peers.recorder import HostileServer

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("allow_private")]
WARM = 3 if connection.vendor == "postgresql" else 6  # see test_a_governed_call_runs_a_fixed_number_of_queries


def agent(user):
    from rest_framework.test import APIClient

    key, raw = make_api_key(user, scopes=("read", "call"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return key, client


def warm(client, server, tool, django_assert_max_num_queries):
    """Two calls: the second is served from the worker's memo (only the epoch read and the record)."""
    assert call(client, server, tool, {"text": "a"}).status_code == 200
    with django_assert_max_num_queries(WARM):
        assert call(client, server, tool, {"text": "b"}).status_code == 200


CHANGES = {
    "key revoked (service)": lambda c: account_services.api_key_revoke(actor=c["user"], api_key=c["key"]),
    "key revoked (.update)": lambda c: ApiKey.objects.filter(pk=c["key"].pk).update(revoked_at=timezone.now()),
    "key expired (.update)": lambda c: ApiKey.objects.filter(pk=c["key"].pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    ),
    "user deactivated (.update)": lambda c: User.objects.filter(pk=c["user"].pk).update(is_active=False),
    "tool disabled (bulk_create)": lambda c: ToolPermission.objects.bulk_create(
        [ToolPermission(user=c["user"], server=c["server"], tool_name="echo", is_enabled=False)]
    ),
    "never (.update)": lambda c: ToolApproval.objects.filter(user=c["user"], tool_name="echo").update(
        approval_type="never"
    ),
    "approval withdrawn (.delete)": lambda c: ToolApproval.objects.filter(user=c["user"], tool_name="echo").delete(),
    "server deleted (.update)": lambda c: McpServer.objects.filter(pk=c["server"].pk).update(deleted_at=timezone.now()),
    "server switched off (bulk_update)": lambda c: McpServer.objects.bulk_update(
        [McpServer(pk=c["server"].pk, is_active=False)], ["is_active"]
    ),
    "tool removed (.update)": lambda c: McpTool.objects.filter(server=c["server"], name="echo").update(
        removed_at=timezone.now()
    ),
}
EXPECTED = {
    "key revoked (service)": (401, "revoked"),
    "key revoked (.update)": (401, "revoked"),
    "key expired (.update)": (401, "expired"),
    "user deactivated (.update)": (401, "inactive"),
    "tool disabled (bulk_create)": (403, "tool_disabled"),
    "never (.update)": (403, "approval_denied"),
    "approval withdrawn (.delete)": (202, "pending"),
    "server deleted (.update)": (404, "not_found"),
    "server switched off (bulk_update)": (403, "server_inactive"),
    "tool removed (.update)": (404, "not_found"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_the_next_call_after_a_change_obeys_it(owner, server, change, django_assert_max_num_queries):
    key, client = agent(owner)
    allow(owner, server, "echo")
    warm(client, server, "echo", django_assert_max_num_queries)
    CHANGES[change]({"user": owner, "key": key, "server": server})
    res = call(client, server, "echo", {"text": "c"})
    status, words = EXPECTED[change]
    assert res.status_code == status, res.content
    assert words in res.content.decode()


def test_a_removed_member_loses_the_org_server_on_the_next_call(teammate, org_server, django_assert_max_num_queries):
    _, client = agent(teammate)
    allow(teammate, org_server, "echo")
    ToolPermission.objects.create(organization=org_server.organization, server=org_server, tool_name="echo")
    warm(client, org_server, "echo", django_assert_max_num_queries)
    Membership.objects.filter(user=teammate).delete()
    res = call(client, org_server, "echo", {"text": "c"})
    assert res.status_code == 404


def test_an_org_layer_switched_off_with_update_holds_on_the_next_call(
    teammate, org_server, django_assert_max_num_queries
):
    _, client = agent(teammate)
    allow(teammate, org_server, "echo")
    perm = ToolPermission.objects.create(organization=org_server.organization, server=org_server, tool_name="echo")
    warm(client, org_server, "echo", django_assert_max_num_queries)
    ToolPermission.objects.filter(pk=perm.pk).update(is_enabled=False)
    assert call(client, org_server, "echo", {"text": "c"}).json()["code"] == "tool_disabled"


def test_a_standing_approval_that_runs_out_needs_a_person_again(owner, server, django_assert_max_num_queries):
    """No write at all: the approval simply expires, and the remembered policy knows when."""
    _, client = agent(owner)
    allow(owner, server, "echo", expires_at=timezone.now() + timedelta(seconds=1.5))
    warm(client, server, "echo", django_assert_max_num_queries)
    time.sleep(1.6)
    assert call(client, server, "echo", {"text": "c"}).status_code == 202


def test_a_rotated_credential_is_the_one_sent_next(owner, django_assert_max_num_queries):
    with HostileServer() as upstream:
        server = make_server(owner, name="Echo", endpoint_url=upstream.url("/echo"), auth_type="bearer", token="old-1")
        assert discovery.discover(server).ok
        _, client = agent(owner)
        allow(owner, server, "leak")
        assert call(client, server, "leak").status_code == 200
        with django_assert_max_num_queries(WARM):
            assert call(client, server, "leak").status_code == 200
        Credential.objects.filter(server=server, user__isnull=True).update(access_token="new-2")
        assert call(client, server, "leak").status_code == 200
        sent = [h.get("Authorization") for _, method, h in upstream.requests if method == "tools/call"]
    assert sent[-3:] == ["Bearer old-1", "Bearer old-1", "Bearer new-2"]


def test_mcp_obeys_a_revoked_key_and_a_never_on_the_next_call(owner, server):
    key, client = agent(owner)
    allow(owner, server, "echo")

    def mcp():
        return mcp_call(client, "peer__echo", {"text": "x"})

    assert mcp().json()["result"]["isError"] is False
    assert mcp().json()["result"]["isError"] is False
    ToolApproval.objects.filter(user=owner).update(approval_type="never")
    refused = mcp().json()["result"]
    assert refused["isError"] is True and "never allowed" in refused["content"][0]["text"]
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
    assert mcp().status_code == 401


def test_every_watched_table_has_its_triggers():
    """Installed after every migrate (SQLite drops a table's triggers when a migration rebuilds it)."""
    assert epoch.installed_triggers() >= epoch.expected_triggers()
    assert len(epoch.expected_triggers()) >= 30


def test_writes_that_decide_nothing_leave_the_memo_alone(owner, server):
    """A key's last-used stamp, a session's last-seen time and a once-approval used up on the call path are
    written all the time; they must not empty every worker's memo."""
    key, _ = agent(owner)
    before = epoch.read_epoch()
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
    ToolApproval.objects.create(user=owner, server=server, tool_name="echo", approval_type="once", arguments_digest="d")
    ToolApproval.objects.filter(approval_type="once").update(consumed_at=timezone.now())
    assert epoch.read_epoch() == before
    ToolApproval.objects.create(user=owner, server=server, tool_name="echo", approval_type="always")
    assert epoch.read_epoch() != before


def test_each_call_of_an_mcp_batch_obeys_what_was_committed_before_it(monkeypatch, owner, server):
    """A batch is one request, but a change committed while its first call ran holds for the second."""
    from governance import calls

    _, client = agent(owner)
    allow(owner, server, "echo")
    real = calls.upstream.with_client

    def then_never(*args, **kwargs):
        answer = real(*args, **kwargs)
        ToolApproval.objects.filter(user=owner, tool_name="echo").update(approval_type="never")
        return answer

    monkeypatch.setattr(calls.upstream, "with_client", then_never)
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    item = {
        "jsonrpc": "2.0",
        "method": "tools/call",
        "params": {"name": "peer__echo", "arguments": {"text": "x"}, "_meta": meta},
    }
    batch = [{**item, "id": 1}, {**item, "id": 2}]
    headers = {"HTTP_MCP_PROTOCOL_VERSION": "2026-07-28", "HTTP_MCP_METHOD": "tools/call"}
    answers = client.post("/mcp", batch, format="json", HTTP_MCP_NAME="peer__echo", **headers).json()
    first, second = sorted(answers, key=lambda a: a["id"])
    assert first["result"]["isError"] is False
    assert second["result"]["isError"] is True and "never allowed" in second["result"]["content"][0]["text"]


def test_caller_supplied_names_never_grow_the_memo(owner, server):
    from governance.selectors import callable_server

    with epoch.cached_reads():
        assert callable_server(owner, "x" * 40_000) is None
        assert callable_server(owner, "no such server") is None
    assert not [k for k in epoch.MEMO.entries if k[0] == "callable_server"]


def test_a_warm_worker_still_lets_drf_negotiate(owner, server, django_assert_max_num_queries):
    """The DRF-free answer is only for what DRF would answer with JSON unasked: else DRF's 406/415."""
    from governance.models import RequestLog

    _, client = agent(owner)
    allow(owner, server, "echo")
    warm(client, server, "echo", django_assert_max_num_queries)
    before = RequestLog.objects.count()
    body = {"server": str(server.pk), "tool": "echo", "arguments": {"text": "x"}}
    assert client.post("/api/v1/tools/call", body, format="json", HTTP_ACCEPT="text/html").status_code == 406
    assert RequestLog.objects.count() == before


def test_the_counter_starts_somewhere_new_when_its_row_is_gone(owner):
    from accounts.models import CacheEpoch
    from tests.factories import OrganizationFactory

    CacheEpoch.objects.all().delete()
    OrganizationFactory(name="Initech", slug="initech")  # any watched write recreates it
    assert epoch.read_epoch() is not None and epoch.read_epoch() > 1000


def test_a_prune_that_deletes_no_session_leaves_the_memo_alone(owner):
    from mcpsettings.models import McpSession

    before = epoch.read_epoch()
    McpSession.objects.filter(pk="nothing-here").delete()
    assert epoch.read_epoch() == before


def test_the_agent_lane_keeps_host_checks_headers_and_the_https_redirect(settings, owner, server):
    """Agents' calls skip the browser middleware (config.middleware.AgentLaneMiddleware), not security."""
    _, client = agent(owner)
    allow(owner, server, "echo")
    res = call(client, server, "echo", {"text": "x"})
    assert res.status_code == 200
    assert res["X-Frame-Options"] == "DENY" and "default-src 'self'" in res["Content-Security-Policy"]
    body = {"server": str(server.pk), "tool": "echo", "arguments": {"text": "x"}}
    settings.ALLOWED_HOSTS = ["testserver"]
    assert client.post("/api/v1/tools/call", body, format="json", HTTP_HOST="evil.example").status_code == 400
    assert client.post("/api/v1/tools/call?x=%00", body, format="json").status_code == 400  # the NUL check
    settings.SECURE_SSL_REDIRECT = True
    _, fresh = agent(owner)  # middleware reads its settings when a handler is built
    assert call(fresh, server, "echo", {"text": "x"}).status_code == 301
