import pytest
from django.db import connection

from accounts.models import AuditEvent, Membership, Role, User
from mcpsettings.models import Credential, McpServer, ServerStatus
from tests.conftest import key_client
from tests.factories import MembershipFactory, make_server
from tests.mcpsettings.ssrf_helpers import bad_urls

URL = "/api/v1/settings/mcps"
CANARY = "canary-tok-4b1e0c9a77"
CONTRACT_FIELDS = {
    "id",
    "name",
    "endpoint_url",
    "is_active",
    "status",
    "status_detail",
    "auth_type",
    "has_credentials",
    "token_status",
    "tools_count",
    "protocol_version",
    "org",
    "created_at",
    "updated_at",
    "deleted_at",
}
pytestmark = pytest.mark.django_db


def create(client, **payload):
    body = {"name": "Notion", "endpoint_url": "https://mcp.example.com/mcp", **payload}
    return client.post(URL, body, format="json")


def test_create_personal_server_with_a_token(owner, owner_api):
    res = create(owner_api, auth_type="bearer", token=CANARY)
    assert res.status_code == 201, res.content
    body = res.json()
    assert CONTRACT_FIELDS <= set(body)
    assert body["status"] == "pending_setup" and body["has_credentials"] is True and body["token_status"] == "valid"
    assert body["org"] is None and body["tools_count"] == 0 and body["kind"] == "personal"
    assert CANARY not in res.content.decode()
    server = McpServer.objects.get(pk=body["id"])
    assert server.owner == owner
    with connection.cursor() as cursor:
        cursor.execute("SELECT access_token FROM mcpsettings_credential")
        (raw,) = cursor.fetchone()
    assert CANARY not in raw and raw.startswith("gAAAA")
    assert Credential.objects.get(server=server).access_token == CANARY
    event = AuditEvent.objects.get(action="mcp_server.create", target_id=str(server.pk))
    assert event.changes["token"] == [None, "(changed)"] and CANARY not in str(event.changes)


def test_header_auth_needs_a_valid_header_name(owner_api):
    res = create(owner_api, auth_type="header", token=CANARY)
    assert res.status_code == 400 and "header_name" in res.json()
    res = create(owner_api, auth_type="header", token=CANARY, header_name="Bad Header")
    assert res.status_code == 400 and "header_name" in res.json()
    res = create(owner_api, auth_type="header", token=CANARY, header_name="Mcp-Session-Id")
    assert res.status_code == 400 and "header_name" in res.json()
    res = create(owner_api, auth_type="header", token=CANARY, header_name="X-API-Key")
    assert res.status_code == 201 and res.json()["header_name"] == "X-API-Key"
    assert Credential.objects.get().header_value == CANARY


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"endpoint_url": ""}, "endpoint_url"),
        ({"endpoint_url": "ftp://mcp.example.com/"}, "endpoint_url"),
        ({"endpoint_url": "https://mcp.example.com/" + "a" * 2040}, "endpoint_url"),
        ({"auth_type": "basic"}, "auth_type"),
        ({"auth_type": "bearer"}, "token"),
        ({"auth_type": "bearer", "token": "a\nb"}, "token"),
        ({"org": "no-such-org"}, "org"),
    ],
)
def test_bad_input_is_400_with_the_field(owner_api, payload, field):
    res = create(owner_api, **payload)
    assert res.status_code == 400, res.content
    assert field in res.json()
    assert not McpServer.objects.exists()


@pytest.mark.parametrize("url, why", bad_urls())
def test_every_ssrf_vector_is_400_on_endpoint_url(owner_api, url, why):
    res = create(owner_api, endpoint_url=url)
    assert res.status_code == 400, (url, res.content)
    assert "endpoint_url" in res.json()


def test_name_is_trimmed_and_unique_per_owner_case_insensitively(owner, owner_api, outsider_api):
    assert create(owner_api, name="  My Notion  ").json()["name"] == "My Notion"
    res = create(owner_api, name="my notion")
    assert res.status_code == 400 and "name" in res.json()
    assert create(outsider_api, name="My Notion").status_code == 201  # another owner may use it


def test_per_user_cap_answers_409(settings, owner_api):
    settings.MCP_MAX_SERVERS_PER_USER = 3
    for i in range(3):
        assert create(owner_api, name=f"s{i}").status_code == 201
    res = create(owner_api, name="one too many")
    assert res.status_code == 409 and "3" in res.json()["detail"]
    # Trash frees a slot; restoring past the cap is refused.
    first = McpServer.objects.get(name="s0")
    assert owner_api.delete(f"{URL}/{first.pk}").status_code == 204
    assert create(owner_api, name="replacement").status_code == 201
    assert owner_api.post(f"{URL}/{first.pk}/restore").status_code == 409


def test_get_patch_delete_restore_and_hard_delete(owner, owner_api):
    server = make_server(owner, name="Linear", auth_type="bearer", token=CANARY)
    res = owner_api.get(f"{URL}/{server.pk}")
    assert res.status_code == 200 and res.json()["name"] == "Linear"
    res = owner_api.patch(f"{URL}/{server.pk}", {"name": "Linear 2", "is_active": False}, format="json")
    assert res.status_code == 200 and res.json()["name"] == "Linear 2" and res.json()["is_active"] is False
    res = owner_api.patch(f"{URL}/{server.pk}", {"endpoint_url": "http://169.254.169.254/"}, format="json")
    assert res.status_code == 400 and "endpoint_url" in res.json()
    assert owner_api.delete(f"{URL}/{server.pk}").status_code == 204
    assert owner_api.get(f"{URL}/{server.pk}").status_code == 404
    assert owner_api.get(URL).json()["count"] == 0
    trash = owner_api.get(URL, {"deleted": "true"}).json()
    assert trash["count"] == 1 and trash["mcps"][0]["deleted_at"] is not None
    res = owner_api.post(f"{URL}/{server.pk}/restore")
    assert res.status_code == 200 and res.json()["deleted_at"] is None
    assert owner_api.delete(f"{URL}/{server.pk}?hard=true").status_code == 204
    assert not McpServer.objects.filter(pk=server.pk).exists()
    assert not Credential.objects.exists()
    actions = set(AuditEvent.objects.filter(target_id=str(server.pk)).values_list("action", flat=True))
    assert {
        "mcp_server.create",
        "mcp_server.update",
        "mcp_server.delete",
        "mcp_server.restore",
        "mcp_server.hard_delete",
    } <= actions


def test_restore_is_refused_when_a_live_server_took_the_name(owner, owner_api):
    old = make_server(owner, name="Jira")
    owner_api.delete(f"{URL}/{old.pk}")
    assert create(owner_api, name="jira").status_code == 201
    res = owner_api.post(f"{URL}/{old.pk}/restore")
    assert res.status_code == 409 and "Jira" in res.json()["detail"]


def test_token_change_and_clear(owner, owner_api):
    server = make_server(owner, auth_type="bearer", token="first-token")
    res = owner_api.patch(f"{URL}/{server.pk}", {"token": CANARY}, format="json")
    assert res.status_code == 200 and CANARY not in res.content.decode()
    assert Credential.objects.get(server=server).access_token == CANARY
    event = AuditEvent.objects.filter(action="mcp_server.update").latest("created_at")
    assert event.changes["token"] == ["(changed)", "(changed)"]
    res = owner_api.patch(f"{URL}/{server.pk}", {"auth_type": "none"}, format="json")
    assert res.status_code == 200 and res.json()["has_credentials"] is False
    assert not Credential.objects.filter(server=server).exists()


def test_outsider_gets_404_everywhere(owner, outsider_api):
    server = make_server(owner)
    assert outsider_api.get(f"{URL}/{server.pk}").status_code == 404
    assert outsider_api.patch(f"{URL}/{server.pk}", {"name": "x"}, format="json").status_code == 404
    assert outsider_api.delete(f"{URL}/{server.pk}").status_code == 404
    assert outsider_api.delete(f"{URL}/{server.pk}?hard=true").status_code == 404
    assert outsider_api.post(f"{URL}/{server.pk}/restore").status_code == 404
    assert outsider_api.get(URL).json()["count"] == 0
    server.refresh_from_db()
    assert server.name != "x" and server.deleted_at is None


def test_org_servers_members_see_viewers_and_developers_cannot_write(org, owner, teammate, viewer, owner_api):
    res = create(owner_api, name="Team GitHub", org=org.slug, auth_type="bearer", token=CANARY)
    assert res.status_code == 201 and res.json()["org"] == org.slug and res.json()["kind"] == "organization"
    server_id = res.json()["id"]
    for member in (teammate, viewer):
        client = key_client(member)
        listing = client.get(URL).json()
        assert [m["id"] for m in listing["mcps"]] == [server_id]
        assert listing["mcps"][0]["has_credentials"] is True and CANARY not in str(listing)
        assert listing["mcps"][0]["can_manage"] is False
        assert client.patch(f"{URL}/{server_id}", {"name": "hijack"}, format="json").status_code == 403
        assert client.delete(f"{URL}/{server_id}").status_code == 403
    assert McpServer.objects.get(pk=server_id).name == "Team GitHub"
    # Developers cannot create org servers either.
    res = create(key_client(teammate), name="Dev's", org=org.slug)
    assert res.status_code == 403


def test_org_admin_of_a_cannot_touch_org_b(org, other_org, owner, outsider, owner_api, outsider_api):
    b_server = make_server(outsider, name="B server", organization=other_org)
    assert owner_api.get(f"{URL}/{b_server.pk}").status_code == 404
    assert owner_api.patch(f"{URL}/{b_server.pk}", {"name": "x"}, format="json").status_code == 404
    assert owner_api.delete(f"{URL}/{b_server.pk}").status_code == 404
    res = create(owner_api, name="Sneaky", org=other_org.slug)
    assert res.status_code == 400 and "org" in res.json()
    res = create(owner_api, name="Sneaky", org=str(other_org.pk))
    assert res.status_code == 400


def test_global_and_shared_servers(org, other_org, owner, outsider, owner_api):
    assert create(owner_api, name="Global", is_global=True).status_code == 403
    root = User.objects.create_superuser("root@example.com", "root-pass-long-1")
    root_api = key_client(root)
    res = create(root_api, name="Everyone's", is_global=True)
    assert res.status_code == 201 and res.json()["is_global"] is True
    res = create(root_api, name="Only Globex", orgs=[other_org.slug])
    assert res.status_code == 201 and res.json()["orgs"] == [other_org.slug]
    owner_names = {m["name"] for m in owner_api.get(URL).json()["mcps"]}
    outsider_names = {m["name"] for m in key_client(outsider).get(URL).json()["mcps"]}
    assert owner_names == {"Everyone's"}
    assert outsider_names == {"Everyone's", "Only Globex"}
    # Members can see a global server but not change it.
    gid = McpServer.objects.get(name="Everyone's").pk
    assert owner_api.patch(f"{URL}/{gid}", {"name": "mine"}, format="json").status_code == 403


def test_read_scope_cannot_write(owner):
    client = key_client(owner, scopes=("read",))
    assert client.get(URL).status_code == 200
    assert create(client).status_code == 403


@pytest.mark.parametrize("n", [1, 25])
def test_list_and_detail_run_a_constant_number_of_queries(n, org, owner, django_assert_max_num_queries):
    for i in range(n):
        make_server(owner, name=f"p{i}", auth_type="bearer", token=f"t{i}")
        make_server(owner, name=f"o{i}", organization=org)
    client = key_client(owner)
    with django_assert_max_num_queries(6):
        res = client.get(URL)
    assert res.json()["count"] == 2 * n
    server = McpServer.objects.filter(owner=owner).first()
    with django_assert_max_num_queries(6):
        assert client.get(f"{URL}/{server.pk}").status_code == 200


def test_context_endpoint(org, other_org, owner, teammate, outsider):
    from mcpsettings import services

    server = make_server(owner, name="Team Jira", organization=org)
    services.org_context_set(actor=owner, organization=org, server=server, context="Use project KEY-1.")
    McpServer.objects.filter(pk=server.pk).update(instructions="Search before creating issues.")
    body = key_client(teammate).get("/api/v1/context").json()
    assert body["contexts"] == [
        {"server": "Team Jira", "server_id": str(server.pk), "org": org.slug, "context": "Use project KEY-1."}
    ]
    assert body["instructions"] == [
        {"server": "Team Jira", "server_id": str(server.pk), "text": "Search before creating issues."}
    ]
    assert key_client(outsider).get("/api/v1/context").json() == {"contexts": [], "instructions": []}


def test_org_context_only_by_org_admins(org, owner, teammate):
    from django.core.exceptions import PermissionDenied

    from mcpsettings import services

    server = make_server(owner, name="Team Jira", organization=org)
    with pytest.raises(PermissionDenied):
        services.org_context_set(actor=teammate, organization=org, server=server, context="x")
    personal = make_server(owner, name="Mine")
    with pytest.raises(services.NotVisible):
        services.org_context_set(actor=owner, organization=org, server=personal, context="x")


def test_a_member_added_later_sees_org_servers(org, owner):
    make_server(owner, name="Team Jira", organization=org)
    late = MembershipFactory(organization=org, role=Role.VIEWER).user
    assert key_client(late).get(URL).json()["count"] == 1
    Membership.objects.filter(user=late).delete()
    assert key_client(late).get(URL).json()["count"] == 0


def test_pending_setup_is_the_initial_status(owner):
    assert make_server(owner).status == ServerStatus.PENDING_SETUP


def test_is_visible_to_agrees_with_the_queryset(org, other_org, owner, teammate, outsider):
    root = User.objects.create_superuser("root@example.com", "root-pass-long-1")
    servers = [
        make_server(owner, name="personal"),
        make_server(owner, name="org", organization=org),
        make_server(root, name="global", is_global=True),
        make_server(root, name="scoped", orgs=[other_org]),
    ]
    for user in (owner, teammate, outsider, root):
        visible = set(McpServer.objects.visible_to(user).values_list("pk", flat=True))
        assert {s.pk for s in servers if s.is_visible_to(user)} == visible & {s.pk for s in servers}
