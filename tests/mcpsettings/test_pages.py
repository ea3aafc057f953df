import pytest

from accounts.models import User
from mcpsettings.models import Credential, Gateway, McpServer, OrgServerContext
from tests.factories import make_server

CANARY = "canary-page-tok-91ac33"
pytestmark = pytest.mark.django_db


def form(**overrides):
    data = {
        "name": "Notion",
        "endpoint_url": "https://mcp.example.com/mcp",
        "description": "",
        "auth_type": "none",
        "token": "",
        "header_name": "",
        "owner": "personal",
        "is_active": "on",
        "new_tools_enabled": "on",
    }
    data.update(overrides)
    return data


def test_pages_need_login(client, owner):
    server = make_server(owner)
    for url in ["/settings/mcps/", "/settings/mcps/new/", f"/settings/mcps/{server.pk}/", "/gateways/"]:
        assert client.get(url).status_code == 302


def test_empty_list_says_what_to_do(client, owner):
    client.force_login(owner)
    html = client.get("/settings/mcps/").content.decode()
    assert "No servers yet" in html and "Add your first server" in html


def test_create_then_list_shows_status_and_tools(client, owner):
    client.force_login(owner)
    res = client.post("/settings/mcps/new/", form(auth_type="bearer", token=CANARY))
    assert res.status_code == 302
    server = McpServer.objects.get(name="Notion")
    assert res["Location"] == f"/settings/mcps/{server.pk}/"
    html = client.get("/settings/mcps/").content.decode()
    assert "Notion" in html and "Pending setup" in html and CANARY not in html
    detail = client.get(f"/settings/mcps/{server.pk}/").content.decode()
    assert "Bearer token set, last changed" in detail and CANARY not in detail


def test_bad_input_keeps_what_was_typed_and_errors_sit_by_the_field(client, owner):
    client.force_login(owner)
    res = client.post(
        "/settings/mcps/new/",
        form(name="Typed Name", endpoint_url="http://169.254.169.254/latest", auth_type="bearer", token=CANARY),
    )
    assert res.status_code == 400
    html = res.content.decode()
    assert 'value="Typed Name"' in html and 'value="http://169.254.169.254/latest"' in html
    assert "link-local" in html
    assert CANARY not in html  # a typed secret is not echoed back either
    assert not McpServer.objects.exists()


def test_edit_keeps_the_token_when_left_empty(client, owner):
    server = make_server(owner, auth_type="bearer", token=CANARY)
    client.force_login(owner)
    page = client.get(f"/settings/mcps/{server.pk}/edit/").content.decode()
    assert "A token is set" in page and CANARY not in page
    res = client.post(f"/settings/mcps/{server.pk}/edit/", form(name="Renamed", auth_type="bearer"))
    assert res.status_code == 302
    server.refresh_from_db()
    assert server.name == "Renamed" and Credential.objects.get(server=server).access_token == CANARY


def test_delete_confirm_trash_restore_and_hard_delete(client, owner):
    server = make_server(owner, name="Doomed")
    client.force_login(owner)
    assert "Move to trash" in client.get(f"/settings/mcps/{server.pk}/delete/").content.decode()
    res = client.post(f"/settings/mcps/{server.pk}/delete/", follow=True)
    assert "moved to the trash" in res.content.decode()
    assert "Doomed" not in client.get("/settings/mcps/").content.decode()
    assert "Doomed" in client.get("/settings/mcps/trash/").content.decode()
    assert client.post(f"/settings/mcps/{server.pk}/restore/").status_code == 302
    assert McpServer.objects.get(pk=server.pk).deleted_at is None
    client.post(f"/settings/mcps/{server.pk}/delete/")
    assert "for good" in client.get(f"/settings/mcps/{server.pk}/delete/?hard=1").content.decode()
    assert client.post(f"/settings/mcps/{server.pk}/delete/", {"hard": "1"}).status_code == 302
    assert not McpServer.objects.filter(pk=server.pk).exists()


def test_outsider_gets_404_on_every_server_page(client, owner, outsider):
    server = make_server(owner)
    client.force_login(outsider)
    for url in ["", "edit/", "delete/", "connect/"]:
        assert client.get(f"/settings/mcps/{server.pk}/{url}").status_code == 404, url
    for url in ["delete/", "restore/", "context/", "edit/"]:
        assert client.post(f"/settings/mcps/{server.pk}/{url}", {"hard": "1"}).status_code == 404, url
    assert McpServer.objects.filter(pk=server.pk, deleted_at__isnull=True).exists()


def test_viewer_sees_org_server_but_cannot_change_it(client, org, owner, viewer):
    server = make_server(owner, name="Team", organization=org)
    client.force_login(viewer)
    html = client.get(f"/settings/mcps/{server.pk}/").content.decode()
    assert "Team" in html and "Edit" not in html
    assert client.get(f"/settings/mcps/{server.pk}/edit/").status_code == 403
    assert client.post(f"/settings/mcps/{server.pk}/delete/").status_code == 403
    assert client.post(f"/settings/mcps/{server.pk}/context/", {"org": org.slug}).status_code == 404


def test_org_admin_creates_org_server_and_edits_its_context(client, org, owner, teammate):
    client.force_login(owner)
    res = client.post("/settings/mcps/new/", form(name="Team Jira", owner=org.slug))
    assert res.status_code == 302
    server = McpServer.objects.get(name="Team Jira")
    assert server.organization == org and server.owner is None
    page = client.get(f"/settings/mcps/{server.pk}/").content.decode()
    assert f"Context for {org.name}" in page
    res = client.post(
        f"/settings/mcps/{server.pk}/context/", {"org": org.slug, f"ctx-{org.slug}-context": "Use board ENG."}
    )
    assert res.status_code == 302
    assert OrgServerContext.objects.get(organization=org, server=server).context == "Use board ENG."
    client.force_login(teammate)
    assert f"Save context for {org.name}" not in client.get(f"/settings/mcps/{server.pk}/").content.decode()


def test_connect_page_has_a_place_for_oauth(client, owner):
    server = make_server(owner, auth_type="oauth")
    client.force_login(owner)
    detail = client.get(f"/settings/mcps/{server.pk}/").content.decode()
    assert f"/settings/mcps/{server.pk}/connect/" in detail and "Connect" in detail
    assert client.get(f"/settings/mcps/{server.pk}/connect/").status_code == 200


def test_gateway_pages(client, owner, outsider):
    server = make_server(owner, name="Src")
    client.force_login(owner)
    assert "No gateways yet" in client.get("/gateways/").content.decode()
    res = client.post("/gateways/", {"name": "Work"})
    gateway = Gateway.objects.get(name="Work")
    assert res["Location"] == f"/gateways/{gateway.pk}/"
    client.post(f"/gateways/{gateway.pk}/", {"server_id": str(server.pk)})
    assert list(gateway.sources.all()) == [server]
    page = client.get(f"/gateways/{gateway.pk}/").content.decode()
    assert f"/mcp/{gateway.slug}" in page and "Src" in page
    assert "&quot;mcpServers&quot;" in page and f"http://testserver/mcp/{gateway.slug}" in page
    assert "Bearer &lt;your Gatehouse API key&gt;" in page
    client.post(f"/gateways/{gateway.pk}/", {"server_id": str(server.pk), "remove": "1"})
    assert gateway.sources.count() == 0
    assert client.post("/gateways/", {"name": ""}).status_code == 400
    client.force_login(outsider)
    assert client.get(f"/gateways/{gateway.pk}/").status_code == 404
    assert client.post(f"/gateways/{gateway.pk}/delete/").status_code == 404
    assert client.post(f"/gateways/{gateway.pk}/restore/").status_code == 404
    client.force_login(owner)
    client.post(f"/gateways/{gateway.pk}/delete/")
    assert "Restore" in client.get("/gateways/").content.decode()
    client.post(f"/gateways/{gateway.pk}/restore/")
    client.post(f"/gateways/{gateway.pk}/delete/", {"hard": "1"})
    assert not Gateway.objects.exists()


def test_superuser_may_create_a_global_server_from_the_page(client):
    root = User.objects.create_superuser("root@example.com", "root-pass-long-1")
    client.force_login(root)
    assert client.post("/settings/mcps/new/", form(name="For all", owner="global")).status_code == 302
    server = McpServer.objects.get(name="For all")
    assert server.owner is None and server.organization is None
