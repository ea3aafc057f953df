"""Writes for gateways: agent-facing endpoints bundling chosen servers."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts.errors import Conflict, NotVisible
from accounts.models import User
from accounts.services import audit_record
from mcpsettings.models import (
    Gateway,
    McpServer,
)
from mcpsettings.services.servers import clean_name


def _gatewayname_taken(owner: User, name: str, exclude: Gateway | None = None) -> bool:
    qs = Gateway.objects.live().filter(owner=owner, name__iexact=name)
    if exclude is not None:
        qs = qs.exclude(pk=exclude.pk)
    return qs.exists()


def _free_endpoints() -> list[str] | None:
    """Pool endpoints no gateway holds (trashed gateways keep theirs); None when there is no pool."""
    pool = [u.strip().rstrip("/") for u in settings.MCP_GATEWAY_URL_POOLS if u.strip()]
    if not pool:
        return None
    taken = set(Gateway.objects.filter(endpoint__in=pool).values_list("endpoint", flat=True))
    return [u for u in pool if u not in taken]


def _visible_sources(actor: User, source_ids: Iterable[Any]) -> list[McpServer]:
    ids = list(dict.fromkeys(str(s) for s in source_ids))
    if not ids:
        return []
    try:
        found = list(McpServer.objects.visible_to(actor).live().filter(pk__in=ids))
    except ValidationError:
        found = []
    if len(found) != len(ids):
        raise ValidationError({"source_ids": "Every source must be a server you can see."})
    return found


@transaction.atomic
def gateway_create(*, actor: User, name: str, source_ids: Iterable[Any] = (), ip: str | None = None) -> Gateway:
    name = clean_name(name)
    if _gatewayname_taken(actor, name):
        raise ValidationError({"name": "You already have a gateway with this name."})
    sources = _visible_sources(actor, source_ids)
    slug = f"{slugify(name)[:60] or 'gateway'}-{secrets.token_hex(3)}"
    candidates = _free_endpoints()
    if candidates is None:
        candidates = [f"/mcp/{slug}"]
    elif not candidates:
        raise Conflict("Every gateway endpoint in the pool is taken. Delete a gateway for good to free one.")
    gateway = None
    for endpoint in candidates:
        # Two creates may pick the same free endpoint: the unique constraint lets one win, the other moves on.
        try:
            with transaction.atomic():
                gateway = Gateway.objects.create(owner=actor, name=name, slug=slug, endpoint=endpoint)
            break
        except IntegrityError:
            if _gatewayname_taken(actor, name):
                raise ValidationError({"name": "You already have a gateway with this name."}) from None
            continue
    if gateway is None:
        raise Conflict("Every gateway endpoint in the pool is taken. Delete a gateway for good to free one.")
    if sources:
        gateway.sources.set(sources)
    audit_record(
        actor=actor,
        action="gateway.create",
        target=gateway,
        changes={
            "name": [None, name],
            "endpoint": [None, gateway.endpoint],
            "sources": [None, sorted(str(s.pk) for s in sources)],
        },
        ip=ip,
    )
    return gateway


@transaction.atomic
def gateway_update(*, actor: User, gateway: Gateway, data: dict[str, Any], ip: str | None = None) -> Gateway:
    gateway = Gateway.objects.select_for_update().get(pk=gateway.pk)
    changes: dict[str, Any] = {}
    if "name" in data:
        name = clean_name(data["name"])
        if name != gateway.name:
            if _gatewayname_taken(gateway.owner, name, exclude=gateway):
                raise ValidationError({"name": "You already have a gateway with this name."})
            changes["name"] = [gateway.name, name]
            gateway.name = name
    if "source_ids" in data:
        sources = _visible_sources(actor, data["source_ids"] or [])
        before = sorted(str(pk) for pk in gateway.sources.values_list("pk", flat=True))
        after = sorted(str(s.pk) for s in sources)
        if before != after:
            gateway.sources.set(sources)
            changes["sources"] = [before, after]
    gateway.save()
    if changes:
        audit_record(actor=actor, action="gateway.update", target=gateway, changes=changes, ip=ip)
    return gateway


@transaction.atomic
def gateway_add_source(*, actor: User, gateway: Gateway, server_id: Any, ip: str | None = None) -> Gateway:
    (server,) = _visible_sources(actor, [server_id])
    if not gateway.sources.filter(pk=server.pk).exists():
        gateway.sources.add(server)
        audit_record(
            actor=actor, action="gateway.add_source", target=gateway, changes={"sources": [None, str(server.pk)]}, ip=ip
        )
    return gateway


@transaction.atomic
def gateway_remove_source(*, actor: User, gateway: Gateway, server_id: Any, ip: str | None = None) -> Gateway:
    try:
        server = gateway.sources.filter(pk=server_id).first()
    except ValidationError:
        server = None
    if server is None:
        raise NotVisible("This server is not a source of the gateway.")
    gateway.sources.remove(server)
    audit_record(
        actor=actor, action="gateway.remove_source", target=gateway, changes={"sources": [str(server.pk), None]}, ip=ip
    )
    return gateway


@transaction.atomic
def gateway_soft_delete(*, actor: User, gateway: Gateway, ip: str | None = None) -> Gateway:
    gateway = Gateway.objects.select_for_update().get(pk=gateway.pk)
    if gateway.deleted_at is None:
        gateway.deleted_at = timezone.now()
        gateway.save(update_fields=["deleted_at", "updated_at"])
        audit_record(
            actor=actor,
            action="gateway.delete",
            target=gateway,
            changes={"deleted_at": [None, gateway.deleted_at]},
            ip=ip,
        )
    return gateway


@transaction.atomic
def gateway_restore(*, actor: User, gateway: Gateway, ip: str | None = None) -> Gateway:
    gateway = Gateway.objects.select_for_update().get(pk=gateway.pk)
    if gateway.deleted_at is None:
        return gateway
    if _gatewayname_taken(gateway.owner, gateway.name, exclude=gateway):
        raise Conflict(f"A live gateway is already called “{gateway.name}”. Rename it, then restore this one.")
    old, gateway.deleted_at = gateway.deleted_at, None
    gateway.save(update_fields=["deleted_at", "updated_at"])
    audit_record(actor=actor, action="gateway.restore", target=gateway, changes={"deleted_at": [old, None]}, ip=ip)
    return gateway


@transaction.atomic
def gateway_hard_delete(*, actor: User, gateway: Gateway, ip: str | None = None) -> None:
    audit_record(
        actor=actor,
        action="gateway.hard_delete",
        target=gateway,
        changes={"name": [gateway.name, None], "endpoint": [gateway.endpoint, None]},
        ip=ip,
    )
    gateway.delete()
