"""Upstream and database faults during governed calls: a clear error each time, and no data lost or half-written."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from governance import services
from governance.models import RequestLog, ToolApproval, UsageDaily
from mcpsettings.models import McpTool
from tests.conftest import key_client
from tests.factories import make_server
from tests.peers.faults import FaultServer

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("allow_private")]


@pytest.fixture(scope="module")
def faults():
    with FaultServer() as server:
        yield server


@contextmanager
def failing_statements(fragment: str):
    """The database refuses every statement that mentions `fragment` (a fault below any Python code)."""

    def refuse(execute, sql, params, many, context):
        if fragment in sql:
            raise OperationalError("connection to server was lost")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(refuse):
        yield


def faulty_server(owner, url):
    server = make_server(owner, name=url.rsplit("/", 1)[-1], endpoint_url=url)
    McpTool.objects.create(server=server, name="t", digest="0" * 64, last_seen=timezone.now())
    ToolApproval.objects.create(user=owner, server=server, tool_name="t", approval_type="always")
    return server


@pytest.mark.parametrize(
    "path, status, code, words",
    [
        ("slow", 504, "upstream_timeout", "did not answer"),
        ("reset", 502, "upstream_error", "cannot be reached"),
        ("garbage", 502, "upstream_error", "not valid JSON"),
        ("endless-stream", 502, "upstream_error", "larger than"),
        ("trickle", 504, "upstream_timeout", "too long"),
        ("500", 502, "upstream_error", "HTTP 500"),
    ],
)
def test_upstream_faults_give_a_clear_error_and_a_log_row(settings, faults, owner, path, status, code, words):
    settings.MCP_HTTP_TIMEOUT = 0.5
    settings.MCP_MAX_RESPONSE_BYTES = 50_000
    faults.slow_seconds = 1.5
    server = faulty_server(owner, faults.url(path))
    res = key_client(owner).post(
        "/api/v1/tools/call", {"server": str(server.pk), "tool": "t", "arguments": {}}, format="json"
    )
    assert res.status_code == status, res.content
    assert res.json()["code"] == code and words in res.json()["detail"]
    entry = RequestLog.objects.get(server=server)
    assert entry.status == code and entry.status_code == status and words in entry.error_message
    usage = UsageDaily.objects.get(server=server)
    assert (usage.request_count, usage.failed) == (1, 1)


def test_database_down_before_the_call_runs_nothing(monkeypatch, faults, owner):
    """The row is opened before the upstream call: when that fails, nothing runs and "try again" is honest."""
    server = faulty_server(owner, faults.url("500"))
    client = key_client(owner)
    before = len(faults.requests)

    with failing_statements("INSERT INTO governance_requestlog"):
        res = client.post("/api/v1/tools/call", {"server": str(server.pk), "tool": "t", "arguments": {}}, format="json")
    assert res.status_code == 503 and res.json()["code"] == "database_unavailable"
    assert "did not run" in res.json()["detail"]
    assert len(faults.requests) == before  # the upstream never heard of it
    assert not RequestLog.objects.filter(server=server).exists()
    assert not UsageDaily.objects.filter(server=server).exists()
    res = client.post("/api/v1/tools/call", {"server": str(server.pk), "tool": "t", "arguments": {}}, format="json")
    assert res.status_code == 502
    assert RequestLog.objects.filter(server=server).count() == 1
    assert UsageDaily.objects.get(server=server).request_count == 1


def test_database_down_after_the_call_keeps_its_row_and_says_do_not_retry(monkeypatch, faults, owner):
    """The upstream ran, then completing the record failed: the agent gets the real answer (never "try
    again"), the opened row stays, and settle_calls later marks it and counts it."""
    server = faulty_server(owner, faults.url("500"))

    with failing_statements("governance_usagedaily"):
        res = key_client(owner).post(
            "/api/v1/tools/call", {"server": str(server.pk), "tool": "t", "arguments": {}}, format="json"
        )
    assert res.status_code == 502 and res.json()["code"] == "upstream_error"
    assert "Do not retry" in res.json()["warning"]
    entry = RequestLog.objects.get(server=server)
    assert entry.status == "running"  # the completion rolled back as a whole; the opened row stands
    assert services.request_logs_settle(older_than=timedelta(0)) == 1
    entry.refresh_from_db()
    assert entry.status == "unfinished" and "never recorded" in entry.error_message
    usage = UsageDaily.objects.get(server=server)
    assert (usage.request_count, usage.failed) == (1, 1)
    assert services.request_logs_settle(older_than=timedelta(0)) == 0  # idempotent


def test_settle_calls_command_only_touches_old_running_rows(owner, faults):
    import io

    from django.core.management import call_command

    server = faulty_server(owner, faults.url("500"))
    old = RequestLog.objects.create(user=owner, server=server, tool_name="t", status="running", status_code=0)
    RequestLog.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=1))
    fresh = RequestLog.objects.create(user=owner, server=server, tool_name="t", status="running", status_code=0)
    out = io.StringIO()
    call_command("settle_calls", stdout=out)
    assert "Settled 1" in out.getvalue()
    old.refresh_from_db()
    fresh.refresh_from_db()
    assert (old.status, fresh.status) == ("unfinished", "running")
    assert UsageDaily.objects.get(server=server).failed == 1


def test_settling_calls_of_a_deleted_user_adds_to_one_usage_row(owner, faults):
    server = faulty_server(owner, faults.url("500"))
    facts = services.CallFacts(
        user=owner, api_key=None, server=server, tool="t", arguments={}, secrets=[], ip=None, user_agent="", via="api"
    )
    services.request_log_open(facts)
    services.request_log_open(facts)
    RequestLog.objects.filter(server=server).update(user=None)
    assert services.request_logs_settle(older_than=timedelta(0)) == 2
    rows = UsageDaily.objects.filter(server=server, user__isnull=True)
    assert [(r.request_count, r.failed, sum(r.latency_histogram)) for r in rows] == [(2, 2, 2)]
