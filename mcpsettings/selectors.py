"""Reads that decide who sees what, shaped for the pages and the API (constant query counts)."""

from __future__ import annotations

from django.db.models import Prefetch, Q, QuerySet

from accounts.models import Organization
from mcpsettings.models import Credential, Gateway, McpServer, OrgServerContext


def servers_for(user, *, deleted: bool = False) -> list[McpServer]:
    """Servers the user sees (or, with `deleted`, the trashed ones they may restore), decorated for display."""
    if deleted:
        qs = McpServer.objects.manageable_by(user).trashed()
    else:
        qs = McpServer.objects.visible_to(user).live()
    return decorate(list(qs.select_related("organization").prefetch_related("orgs")), user)


def decorate(servers: list[McpServer], user) -> list[McpServer]:
    """Attach, in two queries whatever the count: the user's credential view and whether they may manage."""
    ids = [s.pk for s in servers]
    if not ids:
        return servers
    creds: dict = {}
    for cred in Credential.objects.filter(server_id__in=ids).filter(Q(user__isnull=True) | Q(user=user)):
        # The user's own credential wins over the shared one.
        current = creds.get(cred.server_id)
        if current is None or (current.user_id is None and cred.user_id is not None):
            creds[cred.server_id] = cred
    manageable = set(McpServer.objects.manageable_by(user).filter(pk__in=ids).values_list("pk", flat=True))
    for server in servers:
        server.credential = creds.get(server.pk)
        server.can_manage = server.pk in manageable
    return servers


def server_for(user, pk, *, include_deleted: bool = False) -> McpServer:
    """One visible server, decorated; McpServer.DoesNotExist for anything else (views answer 404)."""
    qs = (
        McpServer.objects.visible_to(user)
        if not include_deleted
        else (McpServer.objects.visible_to(user).live() | McpServer.objects.manageable_by(user))
    )
    if not include_deleted:
        qs = qs.live()
    server = qs.select_related("organization").prefetch_related("orgs").get(pk=pk)
    return decorate([server], user)[0]


def contexts_for(user) -> list[OrgServerContext]:
    return list(OrgServerContext.objects.visible_to(user).select_related("organization", "server"))


def instructions_for(user) -> list[McpServer]:
    return list(
        McpServer.objects.visible_to(user)
        .live()
        .filter(is_active=True)
        .exclude(instructions="")
        .only("id", "name", "instructions")
    )


def administered_orgs_seeing(user, server: McpServer) -> list[Organization]:
    """Orgs the user administers whose members can see this server: where they may set org context."""
    orgs = Organization.objects.manageable_by(user)
    return [o for o in orgs if McpServer.objects.for_org(o).filter(pk=server.pk).exists()]


def gateways_for(user, *, deleted: bool = False) -> QuerySet[Gateway]:
    qs = Gateway.objects.visible_to(user)
    qs = qs.trashed() if deleted else qs.live()
    return qs.prefetch_related(Prefetch("sources", queryset=McpServer.objects.only("id", "name")))


def gateway_for(user, pk, *, include_deleted: bool = False) -> Gateway:
    """One of the user's gateways (live, or also trashed); Gateway.DoesNotExist otherwise (views answer 404)."""
    qs = Gateway.objects.visible_to(user)
    if not include_deleted:
        qs = qs.live()
    return qs.prefetch_related("sources").get(pk=pk)


def org_servers(organization: Organization) -> list[McpServer]:
    """An org's live servers, each with the org's context for it (`org_context`), for the org page."""
    servers = list(McpServer.objects.for_org(organization).live().order_by("name"))
    contexts = dict(OrgServerContext.objects.filter(organization=organization).values_list("server_id", "context"))
    for server in servers:
        server.org_context = contexts.get(server.pk, "")
    return servers
