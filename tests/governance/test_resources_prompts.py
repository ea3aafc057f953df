"""Resources, resource templates, prompts and completion, governed like tools: discovered, namespaced on
/mcp, switched off per item (org and user layers), every read logged with its method; a tool's
resource_link is readable through Gatehouse. Against a real SDK peer."""

from __future__ import annotations

import pytest

from governance import services
from governance.models import RequestLog
from mcpsettings import discovery
from mcpsettings.models import ItemKind, McpItem, McpServer
from tests.conftest import key_client
from tests.factories import make_server
from tests.governance.helpers import allow, mcp_rpc
from tests.peers.sdk import Peer, build_content_server

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("allow_private")]


@pytest.fixture(scope="module")
def docs_peer():
    with Peer("sse", server=build_content_server()) as running:
        yield running


@pytest.fixture
def docs(owner, docs_peer):
    s = make_server(owner, name="Docs", endpoint_url=docs_peer.url)
    assert discovery.discover(s).ok
    return McpServer.objects.get(pk=s.pk)


def result(res):
    body = res.json()
    assert "result" in body, body
    return body["result"]


def test_discovery_stores_each_kind(docs):
    kinds = {(i.kind, i.key) for i in McpItem.objects.filter(server=docs)}
    assert (ItemKind.RESOURCE, "docs://readme") in kinds
    assert (ItemKind.TEMPLATE, "docs://items/{item_id}") in kinds
    assert (ItemKind.PROMPT, "greet") in kinds


def test_lists_are_namespaced_and_reads_are_governed_and_logged(owner_api, docs, docs_peer):
    resources = result(mcp_rpc(owner_api, "resources/list"))["resources"]
    uris = {r["uri"] for r in resources}
    assert "gatehouse://docs/docs://readme" in uris
    templates = result(mcp_rpc(owner_api, "resources/templates/list"))["resourceTemplates"]
    assert templates[0]["uriTemplate"] == "gatehouse://docs/docs://items/{item_id}"
    prompts = {p["name"]: p for p in result(mcp_rpc(owner_api, "prompts/list"))["prompts"]}
    assert prompts["docs__greet"]["arguments"][0]["name"] == "name"

    read = result(mcp_rpc(owner_api, "resources/read", {"uri": "gatehouse://docs/docs://readme"}))
    assert read["contents"][0]["text"] == "# Hello" and read["contents"][0]["uri"] == "gatehouse://docs/docs://readme"
    item = result(mcp_rpc(owner_api, "resources/read", {"uri": "gatehouse://docs/docs://items/42"}))
    assert '"42"' in item["contents"][0]["text"]
    got = result(mcp_rpc(owner_api, "prompts/get", {"name": "docs__greet", "arguments": {"name": "Ann"}}))
    assert got["messages"][0]["content"]["text"] == "Say hello to Ann in a plain style."
    done = result(
        mcp_rpc(
            owner_api,
            "completion/complete",
            {"ref": {"type": "ref/prompt", "name": "docs__greet"}, "argument": {"name": "style", "value": "p"}},
        )
    )
    assert done["completion"]["values"] == ["plain", "pirate", "poetic"]
    rows = {(r.method, r.tool_name, r.status, r.via) for r in RequestLog.objects.all()}
    assert ("resources/read", "docs://readme", "ok", "mcp") in rows
    assert ("resources/read", "docs://items/42", "ok", "mcp") in rows
    assert ("prompts/get", "greet", "ok", "mcp") in rows
    assert ("completion/complete", "greet", "ok", "mcp") in rows


def test_switched_off_items_are_hidden_and_never_reach_the_server(owner, owner_api, docs, docs_peer):
    plans = McpItem.objects.get(server=docs, key="docs://secret-plans")
    services.item_settings_update(actor=owner, item=plans, is_enabled=False)
    internal = McpItem.objects.get(server=docs, kind=ItemKind.PROMPT, key="internal")
    services.item_settings_update(actor=owner, item=internal, is_enabled=False)
    template = McpItem.objects.get(server=docs, kind=ItemKind.TEMPLATE)
    services.item_settings_update(actor=owner, item=template, is_enabled=False)

    uris = {r["uri"] for r in result(mcp_rpc(owner_api, "resources/list"))["resources"]}
    assert "gatehouse://docs/docs://secret-plans" not in uris and "gatehouse://docs/docs://readme" in uris
    assert "docs__internal" not in {p["name"] for p in result(mcp_rpc(owner_api, "prompts/list"))["prompts"]}
    before = list(docs_peer.server.reads)
    for uri in ("gatehouse://docs/docs://secret-plans", "gatehouse://docs/docs://items/7"):
        body = mcp_rpc(owner_api, "resources/read", {"uri": uri}).json()
        assert body["error"]["code"] == -32602, body
    assert docs_peer.server.reads == before  # nothing reached the server
    assert mcp_rpc(owner_api, "prompts/get", {"name": "docs__internal"}).json()["error"]["code"] == -32602
    complete = {"ref": {"type": "ref/prompt", "name": "docs__internal"}, "argument": {"name": "x", "value": ""}}
    assert mcp_rpc(owner_api, "completion/complete", complete).json()["error"]["code"] == -32602
    assert RequestLog.objects.filter(method="resources/read", status="item_disabled").count() == 2
    refused = set(RequestLog.objects.filter(status="item_disabled").values_list("method", "tool_name"))
    assert {("prompts/get", "internal"), ("completion/complete", "internal")} <= refused  # logged as REST does


def test_org_layer_switches_off_for_every_member(org, owner, teammate, docs_peer):
    server = make_server(owner, name="Team Docs", endpoint_url=docs_peer.url, organization=org)
    assert discovery.discover(server).ok
    readme = McpItem.objects.get(server=server, key="docs://readme")
    services.item_settings_update(actor=owner, item=readme, is_enabled=False, layer="org")
    mate = key_client(teammate)
    uris = {r["uri"] for r in result(mcp_rpc(mate, "resources/list"))["resources"]}
    assert not any(u.endswith("docs://readme") for u in uris) and uris
    # A member cannot switch back on what the org switched off.
    with pytest.raises(Exception, match="organization disabled"):
        services.item_settings_update(actor=teammate, item=readme, is_enabled=True)


def test_a_tools_resource_link_is_readable_through_gatehouse(owner, owner_api, docs):
    allow(owner, docs, "find")
    body = result(mcp_rpc(owner_api, "tools/call", {"name": "docs__find", "arguments": {"q": "9"}}, name="docs__find"))
    link = body["content"][0]
    assert link["type"] == "resource_link" and link["uri"] == "gatehouse://docs/docs://items/9"
    read = result(mcp_rpc(owner_api, "resources/read", {"uri": link["uri"]}))
    assert '"9"' in read["contents"][0]["text"]


def test_reads_need_the_call_scope_and_other_tenants_see_nothing(owner, outsider, docs):
    reader = key_client(owner, scopes=("read",))
    assert result(mcp_rpc(reader, "resources/list"))["resources"]
    assert mcp_rpc(reader, "resources/read", {"uri": "gatehouse://docs/docs://readme"}).status_code == 403
    stranger = key_client(outsider)
    assert result(mcp_rpc(stranger, "resources/list"))["resources"] == []
    body = mcp_rpc(stranger, "resources/read", {"uri": "gatehouse://docs/docs://readme"}).json()
    assert body["error"]["code"] == -32602


def test_capabilities_advertise_resources_prompts_and_completion(owner_api, docs):
    caps = result(mcp_rpc(owner_api, "server/discover"))["capabilities"]
    assert {"tools", "resources", "prompts", "completions"} <= set(caps)


def test_rest_lists_reads_and_settings(owner, owner_api, outsider_api, docs, docs_peer):
    listed = owner_api.get("/api/v1/resources").json()
    assert {"docs://readme", "docs://secret-plans"} <= {r["uri"] for r in listed["resources"]}
    assert listed["resource_templates"][0]["uriTemplate"] == "docs://items/{item_id}"
    prompts = {p["name"]: p for p in owner_api.get("/api/v1/prompts").json()["prompts"]}
    assert prompts["greet"]["qualified_name"] == "docs__greet" and prompts["greet"]["server"] == "Docs"

    res = owner_api.post("/api/v1/resources/read", {"server": "Docs", "uri": "docs://readme"}, format="json")
    assert res.status_code == 200 and res.json()["result"]["contents"][0]["text"] == "# Hello"
    assert RequestLog.objects.get(pk=res.json()["request_id"]).method == "resources/read"
    res = owner_api.post(
        "/api/v1/prompts/get", {"server": str(docs.pk), "prompt": "greet", "arguments": {"name": "Bo"}}, format="json"
    )
    assert res.status_code == 200 and "Bo" in res.json()["result"]["messages"][0]["content"]["text"]
    res = owner_api.post("/api/v1/prompts/get", {"server": "Docs", "prompt": "nope"}, format="json")
    assert res.status_code == 404 and res.json()["code"] == "not_found"
    body = {"server": "Docs", "ref": {"type": "ref/resource", "uri": "docs://items/{item_id}"}}
    res = owner_api.post(
        "/api/v1/completion/complete", {**body, "argument": {"name": "item_id", "value": "a"}}, format="json"
    )
    assert res.status_code == 200 and res.json()["result"]["completion"]["values"] == ["a1", "a2"]

    items = owner_api.get(f"/api/v1/settings/mcps/{docs.pk}/items").json()["items"]
    plans = next(i for i in items if i["key"] == "docs://secret-plans")
    assert plans["is_enabled"] is True and plans["kind"] == "resource"
    res = owner_api.patch(f"/api/v1/settings/mcps/{docs.pk}/items/{plans['id']}", {"is_enabled": False}, format="json")
    assert res.status_code == 200 and res.json()["is_enabled"] is False and res.json()["user_enabled"] is False
    res = owner_api.post("/api/v1/resources/read", {"server": "Docs", "uri": "docs://secret-plans"}, format="json")
    assert res.status_code == 403 and res.json()["code"] == "item_disabled"
    assert "docs://secret-plans" not in {r["uri"] for r in owner_api.get("/api/v1/resources").json()["resources"]}

    # Another tenant: nothing listed, the server's settings and reads are 404.
    assert outsider_api.get("/api/v1/resources").json()["resources"] == []
    assert outsider_api.get(f"/api/v1/settings/mcps/{docs.pk}/items").status_code == 404
    res = outsider_api.patch(
        f"/api/v1/settings/mcps/{docs.pk}/items/{plans['id']}", {"is_enabled": True}, format="json"
    )
    assert res.status_code == 404
    res = outsider_api.post("/api/v1/resources/read", {"server": str(docs.pk), "uri": "docs://readme"}, format="json")
    assert res.status_code == 404


def test_the_server_page_switches_items(client, owner, docs):
    client.force_login(owner)
    page = client.get(f"/settings/mcps/{docs.pk}/").content.decode()
    assert "Resources and prompts" in page and "docs://secret-plans" in page
    plans = McpItem.objects.get(server=docs, key="docs://secret-plans")
    res = client.post(f"/settings/mcps/{docs.pk}/items/{plans.pk}/", {"is_enabled": "0"})
    assert res.status_code == 302
    page = client.get(f"/settings/mcps/{docs.pk}/").content.decode()
    assert "switch on docs://secret-plans" in page and "Off for you" in page


def test_unlisted_uris_are_read_only_when_a_tool_linked_to_them(owner, owner_api, docs, docs_peer):
    from governance.item_selectors import remember_links

    plans = McpItem.objects.get(server=docs, key="docs://secret-plans")
    services.item_settings_update(actor=owner, item=plans, is_enabled=False)
    before = list(docs_peer.server.reads)
    # Another spelling of a switched-off resource is not a way around its switch.
    for uri in ("docs://secret-plans#again", "docs://secret-plans?x=1"):
        res = owner_api.post("/api/v1/resources/read", {"server": "Docs", "uri": uri}, format="json")
        assert res.status_code == 403 and res.json()["code"] == "item_disabled", res.content
    assert docs_peer.server.reads == before
    # A URI a tool's result linked to is read through Gatehouse (here the server itself then says it has none).
    remember_links(owner, docs, {"content": [{"type": "resource_link", "uri": "docs://unlisted", "name": "u"}]})
    res = owner_api.post("/api/v1/resources/read", {"server": "Docs", "uri": "docs://unlisted"}, format="json")
    assert res.status_code == 502 and "Unknown resource" in res.json()["detail"]


def test_template_matching_is_linear_and_switched_off_wins():
    import time

    from governance.item_selectors import template_matches

    assert template_matches("docs://items/{item_id}", "docs://items/42")
    assert not template_matches("docs://items/{item_id}", "docs://other/42")
    assert template_matches("file:///x{.ext}", "file:///x.tar.gz")
    start = time.monotonic()
    assert not template_matches("x:{.a}z", "x:" + "." * 2000 + "!")
    assert not template_matches("q://h/p{?a}{&b}z", "q://h/p" + "&" * 2000)
    assert time.monotonic() - start < 0.5  # a regex per expression took minutes on these


def test_a_switched_off_resource_is_not_read_through_an_enabled_template(owner, owner_api, docs, docs_peer):
    readme = McpItem.objects.get(server=docs, key="docs://readme")
    services.item_settings_update(actor=owner, item=readme, is_enabled=False)
    McpItem.objects.create(
        server=docs,
        kind=ItemKind.TEMPLATE,
        key="docs://{name}",
        key_digest="t" * 64,
        digest="d",
        last_seen=readme.last_seen,
        definition={"uriTemplate": "docs://{name}", "name": "any"},
    )
    before = list(docs_peer.server.reads)
    for uri in ("docs://readme", "docs://read%6De", "docs://readme?v=2"):
        res = owner_api.post("/api/v1/resources/read", {"server": "Docs", "uri": uri}, format="json")
        assert res.status_code == 403 and res.json()["code"] == "item_disabled", (uri, res.content)
    assert docs_peer.server.reads == before


def test_a_secret_in_a_uri_is_not_named_in_the_log(owner, docs_peer):
    from tests.governance.helpers import CANARY

    server = make_server(owner, name="Docs", endpoint_url=docs_peer.url, auth_type="bearer", token=CANARY)
    assert discovery.discover(server).ok
    read = mcp_rpc(key_client(owner), "resources/read", {"uri": f"gatehouse://docs/docs://items/{CANARY}"})
    assert CANARY not in read.content.decode()  # the server echoes the id; Gatehouse cuts its own token
    row = RequestLog.objects.get(method="resources/read")
    assert row.status == "ok" and CANARY not in row.tool_name and row.tool_name.startswith("docs://items/")
