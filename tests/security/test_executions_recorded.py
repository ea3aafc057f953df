"""No upstream execution without a durable record: executions == RequestLog rows of calls that ran.

Hypothesis drives hostile arguments (NUL, unpaired surrogates, out-of-range numbers, deep nesting) and
hostile upstream answers against a peer that counts what it executes; a second set breaks the database
at each step of the call. On PostgreSQL (CI's second run) NUL and `1e400` are what used to escape.
"""

from __future__ import annotations

import json

import pytest
from django.db import OperationalError
from django.utils import timezone
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from governance import calls, services
from governance.models import RequestLog, ToolApproval, UsageDaily
from governance.services import logs as log_services
from mcpsettings.models import McpTool
from tests.conftest import key_client
from tests.factories import make_server

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("allow_private")]
RAN = ("ok", "tool_error", "upstream_error", "upstream_timeout", "running", "unfinished")
SPECIAL = st.sampled_from(["\x00", "a\x00b", "\ud800", "x\udfffy", "é", "💥", "\u202e", "DROP TABLE"])
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | SPECIAL
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | SPECIAL, inner, max_size=4),
    max_leaves=25,
)
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture
def target(owner, upstream):
    server = make_server(owner, name="Counted", endpoint_url=upstream.url("run"))
    McpTool.objects.create(server=server, name="t", digest="0" * 64, last_seen=timezone.now())
    ToolApproval.objects.create(user=owner, server=server, tool_name="t", approval_type="always")
    server.executions_before = upstream.executions  # the peer is shared by the module; count from here
    return server


def deep(n: int) -> str:
    return "[" * n + "]" * n if n else "0"


def raw_call(client, server, arguments_json: str):
    body = '{"server": "' + str(server.pk) + '", "tool": "t", "arguments": ' + arguments_json + "}"
    return client.post(
        "/api/v1/tools/call", data=body.encode("utf-8", "surrogatepass"), content_type="application/json"
    )


def ran_rows(server) -> int:
    return RequestLog.objects.filter(server=server, status__in=RAN).count()


def assert_invariant(upstream, server) -> None:
    """Every execution the peer saw since this server was set up has exactly one row of a call that ran."""
    executed = upstream.executions - server.executions_before
    assert executed == ran_rows(server), (executed, list(RequestLog.objects.values_list("status", flat=True)))


@FUZZ
@given(arguments=VALUES)
@example(arguments={"q": "\x00"})
@example(arguments={"\x00": 1})
@example(arguments={"n": float("inf")})
@example(arguments={"s": "\ud800"})
def test_hostile_arguments_never_run_unrecorded(owner, upstream, target, arguments):
    client = key_client(owner)
    before_rows = RequestLog.objects.filter(server=target).count()
    text = json.dumps({"a": arguments}, allow_nan=True)[5:-1]  # Infinity/NaN literals stay as a client sent them
    res = raw_call(client, target, text)
    assert res.status_code in (200, 400), res.content
    assert_invariant(upstream, target)
    if res.status_code == 400:
        body = res.json()
        assert "arguments" in body or "detail" in body  # a field error or a parse error, never a 5xx
    else:
        assert RequestLog.objects.filter(server=target).count() == before_rows + 1


@pytest.mark.parametrize("literal", ["1e400", "-1e400", "NaN", "Infinity", deep(5000), deep(100)])
def test_out_of_range_and_deep_arguments_are_refused_before_the_upstream(owner, upstream, target, literal):
    before = upstream.executions
    res = raw_call(key_client(owner), target, '{"v": ' + literal + "}")
    assert res.status_code == 400 and "JSON parse error" in res.json()["detail"]
    assert upstream.executions == before


def test_nul_in_arguments_is_a_field_error_and_logged_as_refused(owner, upstream, target):
    before = upstream.executions
    res = raw_call(key_client(owner), target, '{"query": "a\\u0000b"}')
    assert res.status_code == 400
    assert "arguments.query contains a NUL" in res.json()["arguments"][0]
    assert upstream.executions == before
    entry = RequestLog.objects.get(server=target)
    assert entry.status == "invalid_arguments" and entry.status_code == 400
    assert entry.request_body["arguments"]["query"] == "a\ufffdb" and entry.request_body["_altered"]


@FUZZ
@given(value=VALUES, depth=st.integers(min_value=0, max_value=3000))
@example(value="\x00", depth=0)
@example(value=float("inf"), depth=0)
@example(value=None, depth=2500)
def test_hostile_upstream_answers_are_always_recorded(owner, upstream, target, value, depth):
    structured = json.dumps({"v": value, "d": json.loads(deep(min(depth, 50)))}, allow_nan=True)
    if depth > 50:
        structured = '{"d": ' + deep(depth) + "}"
    text = json.dumps(str(value)[:200], allow_nan=True)
    answer = '{"content":[{"type":"text","text":' + text + '}],"structuredContent":' + structured + ',"isError":false}'
    upstream.answer_result = answer.encode("utf-8", "surrogatepass")
    before_exec = upstream.executions
    res = raw_call(key_client(owner), target, "{}")
    assert res.status_code in (200, 502), res.content
    assert upstream.executions == before_exec + 1
    assert_invariant(upstream, target)
    entry = RequestLog.objects.filter(server=target).order_by("-id").first()
    assert entry.status in ("ok", "upstream_error")
    if res.status_code == 502:
        assert res.json()["code"] == "upstream_error"


def _break(monkeypatch, target_obj, name):
    def broken(*args, **kwargs):
        raise OperationalError("the database went away")

    monkeypatch.setattr(target_obj, name, broken)


@pytest.mark.parametrize(
    "step",
    ["open_row", "use_once_approval", "complete_row", "count_usage_update", "count_usage_create"],
)
def test_database_failing_at_each_step_keeps_executions_equal_to_rows(monkeypatch, owner, upstream, target, step):
    upstream.answer_result = b'{"content":[{"type":"text","text":"done"}],"isError":false}'
    if step == "use_once_approval":
        ToolApproval.objects.filter(server=target).delete()
        ToolApproval.objects.create(
            user=owner,
            server=target,
            tool_name="t",
            approval_type="once",
            arguments_digest=calls.arguments_digest(target, "t", {}),
        )
    if step == "count_usage_update":  # a row for today exists, so the UPDATE path runs
        key_client(owner).post(
            "/api/v1/tools/call", {"server": str(target.pk), "tool": "t", "arguments": {}}, format="json"
        )
    before_exec = upstream.executions
    breakers = {
        "open_row": lambda: _break(monkeypatch, log_services, "_insert_row"),
        "use_once_approval": lambda: _break(monkeypatch, log_services, "once_approval_use"),
        "complete_row": lambda: _break(monkeypatch, services, "request_log_complete"),
        # The usage upsert is part of the completing statement (PostgreSQL) or transaction (SQLite).
        "count_usage_update": lambda: _break(monkeypatch, log_services, "_usage_sql"),
        "count_usage_create": lambda: _break(monkeypatch, log_services, "_usage_sql"),
    }
    breakers[step]()
    res = key_client(owner).post(
        "/api/v1/tools/call", {"server": str(target.pk), "tool": "t", "arguments": {}}, format="json"
    )
    monkeypatch.undo()
    assert_invariant(upstream, target)
    if upstream.executions == before_exec:
        assert res.status_code == 503 and res.json()["code"] == "database_unavailable"
    else:
        assert res.status_code == 200 and "Do not retry" in res.json()["warning"]
        services.request_logs_settle(older_than=timezone.timedelta(0))
        assert not RequestLog.objects.filter(server=target, status="running").exists()
    total = UsageDaily.objects.filter(server=target).values_list("request_count", flat=True)
    assert sum(total) == RequestLog.objects.filter(server=target).exclude(status="running").count()


def test_mcp_endpoint_keeps_the_invariant_for_hostile_arguments(owner, upstream, target):
    client = key_client(owner)
    headers = {"HTTP_MCP_PROTOCOL_VERSION": "2026-07-28", "HTTP_MCP_METHOD": "tools/call"}
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    listing = client.post(
        "/mcp",
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta}},
        format="json",
        **{**headers, "HTTP_MCP_METHOD": "tools/list"},
    ).json()
    name = next(t["name"] for t in listing["result"]["tools"] if t["name"].endswith("__t"))
    before = upstream.executions
    for args in ('{"q": "\\u0000"}', '{"n": 1e400}', '{"d": ' + deep(3000) + "}", '{"ok": 1}'):
        params = '{"name":"' + name + '","arguments":' + args + ',"_meta":' + json.dumps(meta) + "}"
        body = '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":' + params + "}"
        res = client.post("/mcp", data=body, content_type="application/json", HTTP_MCP_NAME=name, **headers)
        assert res.status_code in (200, 400), res.content
    assert upstream.executions == before + 1  # only the valid call ran
    assert_invariant(upstream, target)


@pytest.mark.parametrize("forwarded", ["not-an-ip", "1.2.3.4.5, 10.0.0.1", "::ffff:zz", "x" * 500, ", ,"])
def test_malformed_forwarded_for_behind_a_proxy_still_records_the_call(settings, owner, upstream, target, forwarded):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    before = upstream.executions
    res = key_client(owner).post(
        "/api/v1/tools/call",
        {"server": str(target.pk), "tool": "t", "arguments": {}},
        format="json",
        HTTP_X_FORWARDED_FOR=forwarded,
    )
    assert res.status_code == 200, res.content
    assert upstream.executions == before + 1
    assert_invariant(upstream, target)
    entry = RequestLog.objects.get(server=target)
    assert entry.status == "ok" and entry.ip in (None, "127.0.0.1", "10.0.0.1")  # never the forged text


def test_a_call_slower_than_the_settle_cutoff_is_counted_once(owner, target):
    """request_logs_settle marks a row that is still running; when the slow call then completes, the row
    gets its real outcome and usage is not counted twice."""
    facts = services.CallFacts(
        user=owner, api_key=None, server=target, tool="t", arguments={}, secrets=[], ip=None, user_agent="", via="api"
    )
    entry = services.request_log_open(facts)
    assert services.request_logs_settle(older_than=timezone.timedelta(0)) == 1
    services.request_log_complete(entry, facts, response={"content": []}, status="ok", status_code=200, error="")
    assert RequestLog.objects.get(pk=entry.pk).status == "ok"
    assert sum(UsageDaily.objects.filter(server=target).values_list("request_count", flat=True)) == 1


def test_an_unexpected_failure_inside_gatehouse_completes_the_row(monkeypatch, owner, upstream, target):
    """Not an McpError (a bug, a hostile OAuth answer): the opened row is completed, never left running."""

    def boom(*args, **kwargs):
        raise OverflowError("int too large")

    monkeypatch.setattr(calls.upstream, "with_client", boom)
    res = key_client(owner).post(
        "/api/v1/tools/call", {"server": str(target.pk), "tool": "t", "arguments": {}}, format="json"
    )
    assert res.status_code == 502 and res.json()["code"] == "upstream_error"
    entry = RequestLog.objects.get(server=target)
    assert entry.status == "upstream_error" and "may not have reached" in entry.error_message


def test_mcp_answers_carry_the_do_not_retry_warning(monkeypatch, owner, upstream, target):
    client = key_client(owner)
    headers = {"HTTP_MCP_PROTOCOL_VERSION": "2026-07-28"}
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    listing = client.post(
        "/mcp",
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta}},
        format="json",
        HTTP_MCP_METHOD="tools/list",
        **headers,
    ).json()
    name = next(t["name"] for t in listing["result"]["tools"] if t["name"].endswith("__t"))
    _break(monkeypatch, services, "request_log_complete")
    res = client.post(
        "/mcp",
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": name, "arguments": {}, "_meta": meta}},
        format="json",
        HTTP_MCP_METHOD="tools/call",
        HTTP_MCP_NAME=name,
        **headers,
    ).json()
    assert "Do not retry" in res["result"]["_meta"]["io.gatehouse/warning"]
