"""Helpers for the governance tests (fixtures are in conftest.py)."""

from __future__ import annotations

from governance.models import ToolApproval

CALL = "/api/v1/tools/call"
CANARY = "canary-cred-7d1f0a22b9"


def call(client, server, tool, arguments=None, **extra):
    return client.post(
        CALL, {"server": str(server.pk), "tool": tool, "arguments": arguments or {}, **extra}, format="json"
    )


def allow(user, server, tool, kind="always", **kw):
    ToolApproval.objects.create(user=user, server=server, tool_name=tool, approval_type=kind, **kw)
