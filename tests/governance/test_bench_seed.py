"""`manage.py bench_seed`: the benchmark's data, created by a command (bench/run.py reads its JSON last line)."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from accounts.models import ApiKey, User
from governance.models import RequestLog, ToolApproval
from mcpsettings.models import McpServer, McpTool

pytestmark = pytest.mark.django_db


def seed(*args: str) -> dict:
    out = io.StringIO()
    call_command("bench_seed", *args, stdout=out, stderr=io.StringIO())
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_seed_creates_user_key_servers_tools_approvals_and_logs():
    data = seed(
        "--email", "bench@example.com", "--password", "bench-password-123", "--key", "bench",
        "--servers", "2", "--tools", "3", "--log-rows", "12",
    )  # fmt: skip

    user = User.objects.get(email="bench@example.com")
    assert user.check_password("bench-password-123")
    assert data["user_id"] == str(user.pk) and data["email"] == "bench@example.com"
    assert ApiKey.objects.filter(user=user, name="bench").count() == 1

    servers = McpServer.objects.filter(owner=user).order_by("name")
    assert [s.name for s in servers] == ["scale-0", "scale-1"]
    assert sorted(data["server_ids"]) == sorted(str(s.pk) for s in servers)
    assert {s.status for s in servers} == {"active"}
    assert sorted(McpTool.objects.filter(server__owner=user).values_list("server__name", "name")) == [
        (server, tool) for server in ("scale-0", "scale-1") for tool in ("t0", "t1", "t2")
    ]
    assert data["tools_created"] == 6 and data["approvals_set"] == 2
    assert sorted(ToolApproval.objects.filter(user=user).values_list("server__name", "tool_name", "approval_type")) == [
        ("scale-0", "t0", "always"),
        ("scale-1", "t0", "always"),
    ]

    logs = RequestLog.objects.filter(user=user)
    assert data["log_rows"] == 12 and logs.count() == 12
    assert logs.filter(status="upstream_error", status_code=502).count() == 1  # one in ten failed
    assert {(log.server_id, log.server_name, log.tool_name) for log in logs} == {(servers[0].pk, "scale-0", "t0")}
    stamps = sorted(logs.values_list("created_at", flat=True))
    # A history one second apart, not a dozen rows stamped with the same instant.
    assert len(set(stamps)) == 12 and (stamps[-1] - stamps[0]).total_seconds() == 11

    # The printed key is a working key for the seeded user.
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {data['api_key']}")
    listed = api.get("/api/v1/tools")
    assert listed.status_code == 200
    tools = {t["qualified_name"]: t["approval"] for t in listed.json()["tools"]}
    assert len(tools) == 6 and tools["scale-1__t0"] == "always" and tools["scale-1__t1"] == "ask"


def test_seed_again_reuses_the_user_and_fills_existing_servers():
    first = seed("--email", "bench@example.com", "--password", "bench-password-123", "--key", "bench", "--servers", "1")
    assert first["tools_created"] == 0 and first["log_rows"] == 0
    existing = McpServer.objects.get(pk=first["server_ids"][0])

    again = seed("--email", "BENCH@example.com", "--servers", "1", "--tools", "2", "--log-rows", "3",
                 "--log-server", str(existing.pk))  # fmt: skip
    assert User.objects.filter(email__iexact="bench@example.com").count() == 1
    assert again["api_key"] is None and ApiKey.objects.count() == 1
    new = McpServer.objects.get(pk=again["server_ids"][0])
    assert new.name == "scale-1"  # the next free name
    # Tools go to every server of the user, the one from the first run included.
    assert McpTool.objects.filter(server=existing).count() == 2 and McpTool.objects.filter(server=new).count() == 2
    assert again["tools_created"] == 4
    assert set(RequestLog.objects.values_list("server_id", flat=True)) == {existing.pk}

    third = seed("--email", "bench@example.com", "--tools", "3")
    assert third["tools_created"] == 2 and McpTool.objects.count() == 6  # t0, t1 were there already
    assert ToolApproval.objects.filter(tool_name="t0").count() == 2  # set again, not duplicated


def test_seed_refuses_what_it_cannot_do():
    with pytest.raises(CommandError, match="give --password"):
        seed("--email", "nobody@example.com")
    seed("--email", "bench@example.com", "--password", "bench-password-123")
    with pytest.raises(CommandError, match="need a server"):
        seed("--email", "bench@example.com", "--log-rows", "5")
    assert RequestLog.objects.count() == 0
