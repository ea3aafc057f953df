"""A populated world for the security suite: two orgs, five kinds of user, every secret filled with a canary."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import AuditEvent, Role, User
from governance.models import ApprovalRequest, RequestLog, ToolApproval
from mcpsettings import services
from mcpsettings.items import key_digest
from mcpsettings.models import Credential, McpItem, McpTool, OAuthClient
from tests.factories import MembershipFactory, OrganizationFactory, make_api_key, make_server
from tests.peers.recorder import RecordingServer

CANARIES = {
    "bearer": "canary-bearer-9f2c1a7e5b",
    "header": "canary-header-3d8e6f0a4c",
    "oauth_access": "canary-access-7b1d9c3e2f",
    "oauth_refresh": "canary-refresh-5e4a2b8d1c",
    "client_secret": "canary-clientsecret-2c9f7a1e",
}
PUBLIC_IP = "https://93.184.216.34/mcp"  # never contacted: the test network guard refuses it


@pytest.fixture
def world(db):
    org_a = OrganizationFactory(name="Alpha", slug="alpha")
    org_b = OrganizationFactory(name="Bravo", slug="bravo")
    owner = MembershipFactory(organization=org_a, role=Role.OWNER, user__email="owner@alpha.test").user
    owner.is_staff = True
    owner.save()
    viewer = MembershipFactory(organization=org_a, role=Role.VIEWER, user__email="viewer@alpha.test").user
    teammate = MembershipFactory(organization=org_a, role=Role.DEVELOPER, user__email="dev@alpha.test").user
    outsider = MembershipFactory(organization=org_b, role=Role.OWNER, user__email="owner@bravo.test").user
    outsider.is_staff = True  # an org admin of another org, with admin access
    outsider.save()
    root = User.objects.create_superuser("root@gatehouse.test", "root-pass-long-1")

    personal = make_server(owner, name="Personal", endpoint_url=PUBLIC_IP, auth_type="bearer", token=CANARIES["bearer"])
    header = make_server(
        owner, name="Header", endpoint_url=PUBLIC_IP, auth_type="header", header_name="X-Key", token=CANARIES["header"]
    )
    org_server = make_server(owner, name="Team", endpoint_url=PUBLIC_IP, organization=org_a)
    oauth_server = make_server(
        owner,
        name="OAuth",
        endpoint_url=PUBLIC_IP,
        auth_type="oauth",
        oauth={
            "registration_mode": "manual",
            "oauth_client_id": "client-1",
            "oauth_client_secret": CANARIES["client_secret"],
        },
    )
    client = OAuthClient.objects.get(server=oauth_server)
    Credential.objects.create(
        server=oauth_server,
        user=owner,
        access_token=CANARIES["oauth_access"],
        refresh_token=CANARIES["oauth_refresh"],
        expires_at=timezone.now() + timedelta(hours=1),
        metadata={"client": str(client.pk)},
    )
    now = timezone.now()
    for server in (personal, header, org_server, oauth_server):
        McpTool.objects.create(
            server=server, name="echo", digest="0" * 64, last_seen=now, input_schema={"type": "object"}
        )
    ToolApproval.objects.create(user=owner, server=personal, tool_name="echo", approval_type="always")
    gateway = services.gateway_create(actor=owner, name="GW", source_ids=[personal.pk, org_server.pk])
    key, raw_key = make_api_key(owner, name="agent")
    approval = ApprovalRequest.objects.create(
        user=owner,
        server=org_server,
        tool_name="echo",
        arguments={"q": 1},
        arguments_digest="1" * 64,
        expires_at=now + timedelta(hours=1),
    )
    services.org_context_set(actor=owner, organization=org_a, server=org_server, context="Alpha context")
    membership = owner.memberships.get()
    canaries = {**CANARIES, "api_key": raw_key}
    return {
        "org_a": org_a,
        "org_b": org_b,
        "owner": owner,
        "viewer": viewer,
        "teammate": teammate,
        "outsider": outsider,
        "root": root,
        "personal": personal,
        "header": header,
        "org_server": org_server,
        "oauth_server": oauth_server,
        "gateway": gateway,
        "key": key,
        "raw_key": raw_key,
        "approval": approval,
        "membership": membership,
        "canaries": canaries,
        "params": route_params(personal, gateway, key, approval, org_a, membership),
        "models": [RequestLog, AuditEvent],
    }


def _oauth_connection(user):
    """An MCP client the user connected with OAuth (accounts.oauth_tokens), as the consent flow leaves it."""
    from oauth2_provider.models import get_application_model

    from accounts.models import ApiKey, api_key_digest

    app, _ = get_application_model().objects.get_or_create(
        name="Matrix client",
        defaults={
            "client_type": "public",
            "authorization_grant_type": "authorization-code",
            "redirect_uris": "http://127.0.0.1:5555/callback",
        },
    )
    connection, _ = ApiKey.objects.get_or_create(
        user=user,
        oauth_application=app,
        audience="/mcp",
        defaults={
            "name": app.name,
            "prefix": "oauth",
            "digest": api_key_digest(f"matrix-{user.pk}"),
            "scopes": ["read"],
        },
    )
    return connection


def route_params(server, gateway, key, approval, org, membership) -> dict:
    """How to fill each parametrized route of the project."""
    srv = {"pk": server.pk}
    gw = {"pk": gateway.pk}
    item, _ = McpItem.objects.get_or_create(
        server=server,
        kind="resource",
        key_digest=key_digest("docs://matrix"),
        defaults={
            "key": "docs://matrix",
            "digest": "d",
            "last_seen": timezone.now(),
            "definition": {"uri": "docs://matrix"},
        },
    )
    connection = _oauth_connection(key.user)
    return {
        "accounts:connected_app_disconnect": {"key_id": connection.pk},
        "oauth2_provider:dcr-register-management": {"client_id": connection.oauth_application.client_id},
        "mcp-items": srv,
        "governance:item_settings": {**srv, "item_id": item.pk},
        "mcp-item-detail": {**srv, "item_id": item.pk},
        "api-key-detail": {"key_id": key.pk},
        "accounts:api_key_revoke": {"key_id": key.pk},
        "accounts:org_detail": {"slug": org.slug},
        "accounts:org_member": {"slug": org.slug, "membership_id": membership.pk},
        **{n: srv for n in ("mcp-detail", "mcp-restore", "mcp-discover", "mcp-tools")},
        "mcp-tool-detail": {**srv, "tool": "echo"},
        **{
            f"mcpsettings:server_{n}": srv
            for n in ("detail", "edit", "delete", "restore", "context", "discover", "connect", "disconnect")
        },
        "governance:tool_settings": {**srv, "tool": "echo"},
        **{n: gw for n in ("gateway-detail", "gateway-restore", "gateway-sources")},
        "gateway-source-detail": {**gw, "server_id": server.pk},
        **{f"mcpsettings:gateway_{n}": gw for n in ("detail", "delete", "restore")},
        "approval-detail": {"pk": approval.pk},
        "approval-decide": {"pk": approval.pk},
        "governance:approval_decide": {"pk": approval.pk},
        "governance:approval_detail": {"pk": approval.pk},
        "mcp_gateway": {"slug": gateway.slug},
        "oauth_resource_metadata_gateway": {"slug": gateway.slug},
    }


@pytest.fixture(scope="module")
def upstream():
    """An upstream that counts the tool calls it executes (one per test module)."""
    with RecordingServer() as server:
        yield server
