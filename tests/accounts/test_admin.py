import pytest
from django.contrib import admin
from django.urls import reverse

from accounts.models import ApiKey, AuditEvent, Invitation, Membership, Organization, Role, User
from mcpsettings.models import Credential, Gateway, McpServer, OrgServerContext
from tests.factories import MembershipFactory, OrganizationFactory, make_api_key, make_server

CANARY = "canary-admin-tok-55d0e1"

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(db):
    """Org A with a staff owner; org B with its own people, key and audit trail."""
    org_a = OrganizationFactory(name="Alpha Org", slug="alpha")
    org_b = OrganizationFactory(name="Bravo Org", slug="bravo")
    admin_a = MembershipFactory(organization=org_a, role=Role.OWNER, user__email="admin-a@example.com").user
    admin_a.is_staff = True
    admin_a.save()
    member_a = MembershipFactory(organization=org_a, role=Role.DEVELOPER, user__email="member-a@example.com").user
    member_b = MembershipFactory(organization=org_b, role=Role.OWNER, user__email="bravo-only@example.com").user
    key_b, raw_b = make_api_key(member_b, name="bravo-key")
    from accounts import services

    services.membership_change_role(actor=member_b, membership=Membership.objects.get(user=member_b), role=Role.OWNER)
    AuditEvent.objects.create(organization=org_b, target_type="x", action="bravo.secret.action", target_repr="bravo")
    from mcpsettings import services as mcp_services

    server_b = make_server(
        member_b,
        name="bravo-server",
        organization=org_b,
        endpoint_url="https://93.184.216.34/bravo",
        auth_type="bearer",
        token=CANARY,
    )
    mcp_services.org_context_set(actor=member_b, organization=org_b, server=server_b, context="bravo-context")
    mcp_services.gateway_create(actor=member_b, name="bravo-gateway", source_ids=[server_b.pk])
    from django.utils import timezone

    from governance.models import ApprovalRequest, RequestLog, ToolApproval, ToolPermission, UsageDaily
    from mcpsettings.models import McpTool

    McpTool.objects.create(server=server_b, name="bravo_tool", digest="0" * 64, last_seen=timezone.now())
    ToolPermission.objects.create(server=server_b, tool_name="bravo_tool", organization=org_b, is_enabled=False)
    ToolApproval.objects.create(user=member_b, server=server_b, tool_name="bravo_tool", approval_type="always")
    ApprovalRequest.objects.create(
        user=member_b,
        server=server_b,
        tool_name="bravo_tool",
        arguments={"q": "bravo-arg"},
        arguments_digest="1" * 64,
        expires_at=timezone.now(),
    )
    RequestLog.objects.create(
        user=member_b,
        server=server_b,
        organization=org_b,
        server_name="bravo-server",
        tool_name="bravo_tool",
        status="ok",
        status_code=200,
    )
    UsageDaily.objects.create(
        server=server_b, organization=org_b, user=member_b, date=timezone.localdate(), request_count=1
    )
    services.invitation_create(actor=member_b, organization=org_b, email="bravo-invitee@example.com", role="viewer")
    return {
        "a": org_a,
        "b": org_b,
        "admin_a": admin_a,
        "member_a": member_a,
        "member_b": member_b,
        "key_b": key_b,
        "raw_b": raw_b,
    }


def b_objects(world):
    return [
        world["b"],
        Membership.objects.get(user=world["member_b"]),
        world["member_b"],
        world["key_b"],
        AuditEvent.objects.get(action="bravo.secret.action"),
        McpServer.objects.get(name="bravo-server"),
        Credential.objects.get(server__name="bravo-server"),
        OrgServerContext.objects.get(context="bravo-context"),
        Gateway.objects.get(name="bravo-gateway"),
        Invitation.objects.get(organization=world["b"]),
        *[m.objects.get() for m in _governance_models()],
    ]


def _governance_models():
    from governance.models import ApprovalRequest, RequestLog, ToolApproval, ToolPermission, UsageDaily
    from mcpsettings.models import McpTool

    return [McpTool, ToolPermission, ToolApproval, ApprovalRequest, RequestLog, UsageDaily]


def test_org_admin_of_a_sees_nothing_of_b_on_any_admin_page(client, world):
    client.force_login(world["admin_a"])
    assert client.get("/admin/").status_code == 200
    seen = 0
    for model, model_admin in admin.site._registry.items():
        meta = model._meta
        url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        res = client.get(url)
        if not model_admin.has_module_permission(type("R", (), {"user": world["admin_a"]})()):
            continue
        assert res.status_code == 200, url
        html = res.content.decode()
        for needle in [
            "Bravo Org",
            "bravo-only@example.com",
            "bravo-key",
            "bravo.secret.action",
            "bravo-server",
            "bravo-context",
            "bravo-gateway",
            "bravo-invitee@example.com",
            "93.184.216.34",
            CANARY,
        ]:
            assert needle not in html, (url, needle)
        seen += 1
    assert seen >= 4
    for obj in b_objects(world):
        meta = obj._meta
        for view in ["change", "history", "delete"]:
            url = reverse(f"admin:{meta.app_label}_{meta.model_name}_{view}", args=[obj.pk])
            assert client.get(url).status_code in (403, 404), url
        change = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
        if meta.model_name in (
            "organization",
            "membership",
            "user",
            "auditevent",
            "mcpserver",
            "orgservercontext",
            "invitation",
        ):
            assert client.get(change).status_code == 404, change


def test_org_admin_sees_and_edits_own_org(client, world):
    client.force_login(world["admin_a"])
    html = client.get(reverse("admin:accounts_organization_changelist")).content.decode()
    assert "Alpha Org" in html
    res = client.post(
        reverse("admin:accounts_organization_change", args=[world["a"].pk]),
        {
            "name": "Alpha Renamed",
            "contact_email": "x@example.com",
            "settings": "{}",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        },
    )
    assert res.status_code == 302, res.content.decode()[:2000]
    world["a"].refresh_from_db()
    assert world["a"].name == "Alpha Renamed"
    assert world["a"].slug == "alpha"  # slug is read-only for org admins
    users_html = client.get(reverse("admin:accounts_user_changelist")).content.decode()
    assert "member-a@example.com" in users_html


def test_org_admin_cannot_add_a_membership_through_the_admin(client, world):
    """Joining takes the invitee's consent: org admins invite; only superusers add memberships directly."""
    client.force_login(world["admin_a"])
    loner = User.objects.create_user("loner@example.com", "pw-long-enough-1")
    add = reverse("admin:accounts_membership_add")
    assert client.get(add).status_code == 403
    for org in (world["a"], world["b"]):
        res = client.post(add, {"organization": org.pk, "user": loner.pk, "role": "developer"})
        assert res.status_code == 403
    assert not Membership.objects.filter(user=loner).exists()
    changelist = client.get(reverse("admin:accounts_membership_changelist")).content.decode()
    assert add not in changelist  # no "Add" button either
    # The change and remove rights stay.
    m = Membership.objects.get(user=world["member_a"])
    res = client.post(reverse("admin:accounts_membership_change", args=[m.pk]), {"role": "viewer"})
    assert res.status_code == 302
    m.refresh_from_db()
    assert m.role == Role.VIEWER


def test_superuser_adds_a_membership_through_the_admin(client, world):
    root = User.objects.create_superuser("root@example.com", "root-pass-long-1")
    loner = User.objects.create_user("loner@example.com", "pw-long-enough-1")
    client.force_login(root)
    res = client.post(
        reverse("admin:accounts_membership_add"),
        {"organization": world["a"].pk, "user": loner.pk, "role": "developer"},
    )
    assert res.status_code == 302
    assert Membership.objects.filter(user=loner, organization=world["a"]).exists()
    assert AuditEvent.objects.filter(action="membership.add", organization=world["a"], actor=root).exists()


def test_invitations_in_the_admin_are_tenant_scoped_read_only_and_never_show_the_digest(client, world):
    from accounts import services

    mine, raw_a = services.invitation_create(
        actor=world["admin_a"], organization=world["a"], email="alpha-invitee@example.com", role="viewer"
    )
    theirs = Invitation.objects.get(organization=world["b"])
    client.force_login(world["admin_a"])
    changelist = reverse("admin:accounts_invitation_changelist")
    html = client.get(changelist).content.decode()
    assert "alpha-invitee@example.com" in html and "bravo-invitee@example.com" not in html
    change = client.get(reverse("admin:accounts_invitation_change", args=[mine.pk]))
    assert change.status_code == 200
    for page in (html, change.content.decode()):
        assert mine.token_digest not in page and raw_a not in page
    assert client.get(reverse("admin:accounts_invitation_change", args=[theirs.pk])).status_code == 404
    assert client.get(reverse("admin:accounts_invitation_add")).status_code == 403
    # The revoke action, on their own org's invitation only (the other is outside their queryset).
    res = client.post(changelist, {"action": "revoke", "_selected_action": [str(mine.pk), str(theirs.pk)]})
    assert res.status_code == 302
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.state == "revoked" and theirs.is_open
    root = User.objects.create_superuser("root@example.com", "root-pass-long-1")
    client.force_login(root)
    page = client.get(reverse("admin:accounts_invitation_change", args=[theirs.pk])).content.decode()
    assert "bravo-invitee@example.com" in page and theirs.token_digest not in page


def test_org_admin_cannot_remove_the_last_owner_in_admin(client, world):
    client.force_login(world["admin_a"])
    m = Membership.objects.get(user=world["admin_a"])
    res = client.post(reverse("admin:accounts_membership_change", args=[m.pk]), {"role": "viewer"})
    assert res.status_code == 200 and "at least one owner" in res.content.decode()
    m.refresh_from_db()
    assert m.role == Role.OWNER


def test_non_admin_staff_and_plain_members_get_no_admin(client, world):
    member = world["member_a"]
    member.is_staff = True
    member.save()
    client.force_login(member)  # staff, but only a developer in org A
    assert client.get(reverse("admin:accounts_organization_changelist")).status_code == 403
    client.force_login(world["member_b"])  # not staff
    assert client.get("/admin/").status_code == 302


def test_superuser_sees_everything_but_never_a_digest_or_secret(client, world):
    root = User.objects.create_superuser("root@example.com", "root-pass-long-1")
    client.force_login(root)
    for model in admin.site._registry:
        meta = model._meta
        html = client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")).content.decode()
        assert world["raw_b"] not in html and world["key_b"].digest not in html
    for obj in b_objects(world):
        meta = obj._meta
        html = client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])).content.decode()
        assert CANARY not in html and world["raw_b"] not in html, meta.model_name
    html = client.get(reverse("admin:accounts_apikey_change", args=[world["key_b"].pk])).content.decode()
    assert "bravo-key" in html
    assert world["key_b"].digest not in html and world["raw_b"] not in html
    assert "Bravo Org" in client.get(reverse("admin:accounts_organization_changelist")).content.decode()


def test_audit_events_are_read_only_in_admin(client, world):
    root = User.objects.create_superuser("root@example.com", "root-pass-long-1")
    client.force_login(root)
    event = AuditEvent.objects.first()
    assert client.get(reverse("admin:accounts_auditevent_add")).status_code == 403
    res = client.post(reverse("admin:accounts_auditevent_delete", args=[event.pk]), {"post": "yes"})
    assert res.status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_superuser_revokes_keys_with_an_action(client, world):
    root = User.objects.create_superuser("root@example.com", "root-pass-long-1")
    client.force_login(root)
    res = client.post(
        reverse("admin:accounts_apikey_changelist"),
        {"action": "revoke", "_selected_action": [str(world["key_b"].pk)]},
    )
    assert res.status_code == 302
    assert ApiKey.objects.get(pk=world["key_b"].pk).revoked_at is not None


def test_org_scoping_queryset_methods(world):
    admin_a = world["admin_a"]
    assert list(Organization.objects.manageable_by(admin_a)) == [world["a"]]
    assert world["member_b"] not in User.objects.manageable_by(admin_a)
    assert set(User.objects.manageable_by(admin_a)) == {admin_a, world["member_a"]}


def test_org_admin_adds_an_org_server_in_admin_with_a_write_only_token(client, world):
    client.force_login(world["admin_a"])
    add = reverse("admin:mcpsettings_mcpserver_add")
    assert client.get(add).status_code == 200
    base = {
        "name": "alpha-admin-server",
        "endpoint_url": "https://93.184.216.34/a",
        "auth_type": "bearer",
        "header_name": "",
        "registration_mode": "dcr",
        "scopes": "[]",
        "extra_auth_params": "{}",
        "is_active": "on",
        "new_tools_enabled": "on",
        "token": CANARY,
    }
    res = client.post(add, {**base, "organization": world["b"].pk})
    assert res.status_code == 200 and not McpServer.objects.filter(name="alpha-admin-server").exists()
    res = client.post(add, {**base, "organization": world["a"].pk, "endpoint_url": "http://127.0.0.1/"})
    assert res.status_code == 200 and "loopback" in res.content.decode()
    assert CANARY not in res.content.decode()
    res = client.post(add, {**base, "organization": world["a"].pk})
    assert res.status_code == 302, res.content.decode()[:3000]
    server = McpServer.objects.get(name="alpha-admin-server")
    assert server.organization == world["a"] and Credential.objects.get(server=server).access_token == CANARY
    change = client.get(reverse("admin:mcpsettings_mcpserver_change", args=[server.pk])).content.decode()
    assert CANARY not in change
    assert AuditEvent.objects.filter(action="mcp_server.create", target_id=str(server.pk)).exists()
