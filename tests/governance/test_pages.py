"""Governance pages: the approvals inbox, the server page's tool controls, activity, audit."""

from __future__ import annotations

import re

import pytest

from governance.models import RequestLog, UsageDaily
from tests.governance.helpers import allow, call

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("allow_private")]


def test_approvals_page_decide_and_activity_page(client, owner, owner_api, server):
    pending = call(owner_api, server, "delete_everything", {"confirm": True}).json()
    client.force_login(owner)
    html = client.get("/approvals/").content.decode()
    assert "delete_everything" in html and "destructive" in html and "&quot;confirm&quot;: true" in html
    assert 'aria-label="1 pending"' in html
    res = client.post(f"/approvals/{pending['approval_id']}/decide/", {"decision": "once"}, follow=True)
    assert "Allow once" in res.content.decode()
    assert call(owner_api, server, "delete_everything", {"confirm": True}).status_code == 200
    html = client.get("/approvals/").content.decode()
    assert "Nothing is waiting" in html and "Used" in html
    activity = client.get("/activity/").content.decode()
    assert "<svg" in activity and "delete_everything" in activity and "Calls per day" in activity
    filtered = client.get("/activity/", {"status": "ok", "server": str(server.pk)}).content.decode()
    assert "delete_everything" in filtered


def test_tool_switch_and_approval_selector_on_the_server_page(client, owner, owner_api, server):
    client.force_login(owner)
    page = client.get(f"/settings/mcps/{server.pk}/").content.decode()
    assert "switch off echo" in page and 'id="approval-echo"' in page
    client.post(f"/settings/mcps/{server.pk}/tools/echo/", {"is_enabled": "0"})
    assert "echo" not in {t["name"] for t in owner_api.get("/api/v1/tools").json()["tools"]}
    client.post(f"/settings/mcps/{server.pk}/tools/add/", {"approval": "always_1h"})
    tools = {t["name"]: t for t in owner_api.get("/api/v1/tools").json()["tools"]}
    assert tools["add"]["approval"] == "always" and tools["add"]["approval_expires_at"]


def test_audit_page_for_org_admins_only(client, org, owner, teammate, org_server):
    client.force_login(owner)
    html = client.get("/audit/").content.decode()
    assert "mcp_server.create" in html
    client.force_login(teammate)
    assert client.get("/audit/").status_code == 403


def test_outsider_pages(client, owner, owner_api, outsider, server):
    pending = call(owner_api, server, "mood").json()
    client.force_login(outsider)
    assert client.post(f"/approvals/{pending['approval_id']}/decide/", {"decision": "once"}).status_code == 404
    assert client.post(f"/settings/mcps/{server.pk}/tools/echo/", {"is_enabled": "0"}).status_code == 404
    assert "mood" not in client.get("/approvals/").content.decode()
    assert "Peer" not in client.get("/activity/").content.decode()


def test_latency_histogram_and_activity_paging(client, owner, owner_api, server):
    from governance.models import histogram_median
    from governance.views import daily_series

    allow(owner, server, "add")
    for _ in range(3):
        call(owner_api, server, "add", {"a": 1, "b": 1})
    usage = UsageDaily.objects.get(user=owner, server=server)
    assert sum(usage.latency_histogram) == 3 and len(usage.latency_histogram) == 14
    assert histogram_median([0, 0, 3, 1] + [0] * 10) == 5  # the bucket holding the middle call
    today = daily_series(owner)[-1]
    assert today["requests"] == 3 and today["median"] > 0
    RequestLog.objects.bulk_create(
        [
            RequestLog(
                user=owner, server=server, server_name="Peer", tool_name=f"bulk{i}", status="ok", status_code=200
            )
            for i in range(60)
        ]
    )
    client.force_login(owner)
    first = client.get("/activity/").content.decode()
    assert "bulk59" in first and "bulk0<" not in first and "Older" in first
    older = re.search(r'href="\?before=(\d+)', first).group(1)
    second = client.get(f"/activity/?before={older}").content.decode()
    assert "bulk0<" in second and "bulk59" not in second and "Newest" in second
