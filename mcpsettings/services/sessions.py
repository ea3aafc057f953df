"""Writes for sessions of MCP clients with Gatehouse's own endpoint."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from mcpsettings.models import (
    McpSession,
)


def _session_idle_cutoff():
    return timezone.now() - timedelta(seconds=settings.MCP_SESSION_IDLE_SECONDS)


@transaction.atomic
def mcp_session_open(*, user: User, digest: str, **fields: Any) -> McpSession:
    """A new session; the user's oldest ones beyond MCP_SESSIONS_PER_USER are ended (a client that
    initializes in a loop cannot fill the table)."""
    User.objects.select_for_update().filter(pk=user.pk).first()  # serializes one user's session opens
    session = McpSession.objects.create(pk=digest, user=user, **fields)
    keep = McpSession.objects.filter(user=user).order_by("-last_seen_at", "-created_at")
    stale = list(keep.values_list("pk", flat=True)[settings.MCP_SESSIONS_PER_USER :])
    if stale:
        McpSession.objects.filter(pk__in=stale).delete()
    return session


def mcp_session_live(session: McpSession | None) -> McpSession | None:
    """The session if it is still live, touched at most once a minute (one conditional UPDATE); None once
    it has been idle too long (then it is deleted)."""
    if session is None:
        return None
    now = timezone.now()
    cutoff = _session_idle_cutoff()
    # The instance may be a worker's remembered copy (accounts.epoch): the database decides idleness.
    if session.last_seen_at < cutoff and McpSession.objects.filter(pk=session.pk, last_seen_at__lt=cutoff).delete()[0]:
        return None
    if now - session.last_seen_at > timedelta(minutes=1):
        McpSession.objects.filter(pk=session.pk, last_seen_at__lt=now - timedelta(minutes=1)).update(last_seen_at=now)
        session.last_seen_at = now
    return session


def mcp_sessions_prune() -> int:
    """Delete every idle session; safe to run from many workers at once."""
    return McpSession.objects.filter(last_seen_at__lt=_session_idle_cutoff()).delete()[0]
