"""The audit trail: every app records its changes here, inside the transaction of the change."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.db import models

from accounts.models import AuditEvent

SECRET_MARK = "(changed)"


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, models.Model):
        return str(value.pk)
    return str(value)


def diff(
    before: Mapping[str, Any], after: Mapping[str, Any], *, secret_fields: Iterable[str] = ()
) -> dict[str, list[Any]]:
    """{field: [old, new]} for fields that changed; secrets only as "(changed)"."""
    secrets = set(secret_fields)
    changes: dict[str, list[Any]] = {}
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if name in secrets:
            changes[name] = [SECRET_MARK, SECRET_MARK]
        else:
            changes[name] = [_jsonable(old), _jsonable(new)]
    return changes


def audit_record(
    *,
    actor,
    action: str,
    target: models.Model | None = None,
    target_type: str = "",
    target_id: str = "",
    organization=None,
    changes: Mapping[str, Any] | None = None,
    ip: str | None = None,
) -> AuditEvent:
    """Append one audit event. Call inside the transaction of the change it records."""
    if target is not None:
        target_type = target_type or target._meta.label_lower
        target_id = target_id or str(target.pk)
    return AuditEvent.objects.create(
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        organization=organization,
        target_type=target_type,
        target_id=target_id,
        target_repr=str(target)[:200] if target is not None else "",
        action=action,
        changes=_jsonable(dict(changes or {})),
        ip=ip,
    )
