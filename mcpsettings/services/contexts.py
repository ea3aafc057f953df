"""Writes for org context: what an org tells its agents about a server."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.errors import NotVisible
from accounts.models import Organization, User
from accounts.services import audit_record
from mcpsettings.models import (
    McpServer,
    OrgServerContext,
)
from mcpsettings.services.servers import require_org_admin


@transaction.atomic
def org_context_set(
    *, actor: User, organization: Organization, server: McpServer, context: str, ip: str | None = None
) -> OrgServerContext | None:
    """Set (or, with empty text, remove) an org's context for a server its members can see."""
    require_org_admin(actor, organization)
    if not McpServer.objects.for_org(organization).filter(pk=server.pk).exists():
        raise NotVisible("This server is not available to that organization.")
    context = (context or "").strip()
    if len(context) > 20000:
        raise ValidationError({"context": "Keep the context under 20,000 characters."})
    current = OrgServerContext.objects.select_for_update().filter(organization=organization, server=server).first()
    old = current.context if current else None
    if not context:
        if current is not None:
            current.delete()
            audit_record(
                actor=actor,
                action="org_context.delete",
                target=server,
                organization=organization,
                changes={"context": [old, None]},
                ip=ip,
            )
        return None
    if current is None:
        current = OrgServerContext(organization=organization, server=server, created_by=actor)
    current.context = context
    current.updated_by = actor
    current.save()
    if old != context:
        audit_record(
            actor=actor,
            action="org_context.set",
            target=server,
            organization=organization,
            changes={"context": [old, context]},
            ip=ip,
        )
    return current
