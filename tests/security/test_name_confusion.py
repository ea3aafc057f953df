"""Qualified tool names (`<server-slug>__<tool>`) are unambiguous and stable: a user's own server never loses
its name to another tenant's, slugs cannot contain the separator, and the REST listing's `qualified_name` is
accepted by the REST call."""

from __future__ import annotations

import pytest
from django.utils import timezone

from governance import selectors
from governance.models import ApprovalRequest, ToolApproval
from mcpsettings.models import McpServer, McpTool
from tests.conftest import key_client
from tests.factories import make_server

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("allow_private")]
META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}


def with_tool(server, name="t"):
    McpTool.objects.create(server=server, name=name, digest="0" * 64, last_seen=timezone.now())
    return server


def mcp(client, method, params):
    return client.post(
        "/mcp",
        {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": META}},
        format="json",
        HTTP_MCP_PROTOCOL_VERSION="2026-07-28",
        HTTP_MCP_METHOD=method,
        **({"HTTP_MCP_NAME": params["name"]} if "name" in params else {}),
    ).json()


def test_slugs_never_contain_the_separator():
    class S:
        def __init__(self, name, i):
            import uuid

            self.name, self.pk = name, uuid.UUID(int=i)
            self.owner_id, self.organization_id, self.created_at = None, None, timezone.now()

    servers = [S(n, i) for i, n in enumerate(["a__b", "a_b", "A  B", "__", "a--b", "x" * 80, "ünï", "a_b"])]
    slugs = selectors.server_slugs(servers)
    assert len(set(slugs.values())) == len(servers)
    assert all("_" not in slug and slug for slug in slugs.values())


def test_own_server_keeps_its_name_against_an_older_org_server(owner, org, upstream):
    theirs = with_tool(make_server(owner, name="GitHub", endpoint_url=upstream.url("run"), organization=org))
    McpServer.objects.filter(pk=theirs.pk).update(created_at=timezone.now() - timezone.timedelta(days=30))
    from accounts.models import Membership
    from tests.factories import UserFactory

    me = UserFactory(email="me@example.com")
    Membership.objects.create(user=me, organization=org, role="developer")
    mine = with_tool(make_server(me, name="GitHub", endpoint_url=upstream.url("run")))
    client = key_client(me)
    names = {t["qualified_name"]: t["server_id"] for t in client.get("/api/v1/tools").json()["tools"]}
    assert names["github__t"] == str(mine.pk)
    listed = {t["name"] for t in mcp(client, "tools/list", {})["result"]["tools"]}
    assert "github__t" in listed and any(n.startswith("github-") and n.endswith("__t") for n in listed)
    before = upstream.executions
    mcp(client, "tools/call", {"name": "github__t", "arguments": {}})
    # The call went to my own server (it needs my approval there), never to the org's.
    request = ApprovalRequest.objects.get()
    assert request.server_id == mine.pk and request.user == me
    assert upstream.executions == before


def test_a_server_named_with_the_separator_cannot_shadow_another(owner, upstream):
    a = with_tool(make_server(owner, name="a", endpoint_url=upstream.url("run")), name="b__t")
    b = with_tool(make_server(owner, name="a__b", endpoint_url=upstream.url("run")))
    ToolApproval.objects.create(user=owner, server=a, tool_name="b__t", approval_type="always")
    ToolApproval.objects.create(user=owner, server=b, tool_name="t", approval_type="always")
    tools = key_client(owner).get("/api/v1/tools").json()["tools"]
    names = [t["qualified_name"] for t in tools]
    assert len(names) == len(set(names)) == 2
    assert {t["qualified_name"]: t["server_id"] for t in tools} == {"a__b__t": str(a.pk), "a-b__t": str(b.pk)}


def test_rest_call_accepts_the_listed_qualified_name(owner, upstream):
    server = with_tool(make_server(owner, name="Peer Tools", endpoint_url=upstream.url("run")))
    ToolApproval.objects.create(user=owner, server=server, tool_name="t", approval_type="always")
    client = key_client(owner)
    qualified = client.get("/api/v1/tools").json()["tools"][0]["qualified_name"]
    assert qualified == "peer-tools__t"
    for body in (
        {"tool": qualified},
        {"server": str(server.pk), "tool": qualified},
        {"server": "Peer Tools", "tool": "t"},
    ):
        res = client.post("/api/v1/tools/call", {**body, "arguments": {}}, format="json")
        assert res.status_code == 200, (body, res.content)
    res = client.post("/api/v1/tools/call", {"tool": "nope__t", "arguments": {}}, format="json")
    assert res.status_code == 404 and res.json()["code"] == "not_found"  # no such server: refused and logged
    res = client.post("/api/v1/tools/call", {"tool": "plain", "arguments": {}}, format="json")
    assert res.status_code == 400 and "tool" in res.json()


def test_a_name_never_moves_to_another_server_when_one_is_switched_off(owner, org, upstream):
    """My own "GitHub" is `github`; switching it off must not hand `github__t` to the org's server."""
    theirs = with_tool(make_server(owner, name="GitHub", endpoint_url=upstream.url("run"), organization=org))
    from accounts.models import Membership
    from tests.factories import UserFactory

    me = UserFactory(email="me2@example.com")
    Membership.objects.create(user=me, organization=org, role="developer")
    mine = with_tool(make_server(me, name="GitHub", endpoint_url=upstream.url("run")))
    ToolApproval.objects.create(user=me, server=theirs, tool_name="t", approval_type="always")
    McpServer.objects.filter(pk=mine.pk).update(is_active=False)
    client = key_client(me)
    names = {t["qualified_name"] for t in client.get("/api/v1/tools").json()["tools"]}
    assert "github__t" not in names and any(n.startswith("github-") for n in names)
    before = upstream.executions
    res = mcp(client, "tools/call", {"name": "github__t", "arguments": {}})
    assert res["result"]["isError"] is True and "switched off" in res["result"]["content"][0]["text"]
    assert upstream.executions == before  # the org's server was never called under my server's name
