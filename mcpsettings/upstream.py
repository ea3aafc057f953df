"""The upstream call: which credential a user's call uses, the headers that carry it, and a pool of
long-lived clients — the one place every call to an MCP server (a governed call, a discovery) goes through.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.db.models import Q

from mcpsettings import oauth
from mcpsettings.mcp_client import STATELESS_VERSION, McpClient, McpError
from mcpsettings.mcp_client.legacy import LegacySseClient
from mcpsettings.models import AuthType, Credential, McpServer, OAuthClient, Transport

T = TypeVar("T")


def choose_credential(server: McpServer, user, credentials: list[Credential]) -> Credential | None:
    """The one rule for which credential a user's call uses, over the server's credentials in hand.

    OAuth servers: only the user's own token (a shared row left from another auth type is never used);
    bearer/header servers: only the shared token; servers without auth: none.
    """
    if server.auth_type == AuthType.OAUTH:
        user_id = getattr(user, "pk", None)
        return next((c for c in credentials if user_id is not None and c.user_id == user_id), None)
    if server.auth_type in (AuthType.BEARER, AuthType.HEADER):
        return next((c for c in credentials if c.user_id is None), None)
    return None


def credential_for(server: McpServer, user=None) -> Credential | None:
    """The credential a user's call to this server uses (see choose_credential)."""
    who = Q(user__isnull=True)
    if user is not None and getattr(user, "pk", None):
        who |= Q(user=user)
    return choose_credential(server, user, list(Credential.objects.filter(server=server).filter(who)))


def server_secrets(server: McpServer, credentials: list[Credential] | None = None) -> list[str]:
    """Every secret Gatehouse holds for this server (all users' tokens, the shared token, OAuth client
    secrets): none of them may appear in anything stored or shown."""
    if credentials is None:
        credentials = list(Credential.objects.filter(server=server))
    values = [v for c in credentials for v in (c.access_token, c.refresh_token, c.header_value) if v]
    if server.auth_type == AuthType.OAUTH:
        values += [s for s in OAuthClient.objects.filter(server=server).values_list("client_secret", flat=True) if s]
    return values


def client_class(server: McpServer) -> type[McpClient]:
    """The protocol client for the server's transport."""
    return LegacySseClient if server.transport == Transport.SSE else McpClient


def server_timeout(server: McpServer) -> float:
    """One timeout per request to this server: its own setting, else MCP_HTTP_TIMEOUT."""
    return float(server.timeout_seconds or settings.MCP_HTTP_TIMEOUT)


def auth_headers(server: McpServer, credential: Credential | None) -> dict[str, str]:
    """The headers that carry the secret — only ever sent to this server."""
    if credential is None:
        return {}
    if server.auth_type in (AuthType.BEARER, AuthType.OAUTH) and credential.access_token:
        return {"Authorization": f"Bearer {credential.access_token}"}
    if server.auth_type == AuthType.HEADER and credential.header_value and server.header_name:
        return {server.header_name: credential.header_value}
    return {}


class _ClientPool:
    """Long-lived clients per (server, credential) in this process, for tool calls on the hot path.

    They keep their HTTP connections (keep-alive) and, for handshake protocol versions, their MCP
    session, so a call costs one upstream round trip instead of three. Every new connection is still
    SSRF-checked and pinned (mcp_client.transport). Bounded; the oldest client is closed when it is full.
    The same client may serve several threads at once: its transport gives each request a connection
    of its own.
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self.clients: dict[tuple, McpClient] = {}
        self.lock = threading.Lock()

    def get(self, server: McpServer, headers: dict[str, str]) -> McpClient:
        secret = hashlib.sha256(json.dumps(headers, sort_keys=True).encode()).hexdigest()
        key = (server.pk, server.endpoint_url, secret, server.timeout_seconds, server.transport)
        with self.lock:
            client = self.clients.pop(key, None)
            if client is None:
                client = client_class(server)(server.endpoint_url, headers=headers, timeout=server_timeout(server))
                if server.protocol_version == STATELESS_VERSION:
                    client.assume_stateless()
            self.clients[key] = client  # most recently used last
            evicted = []
            while len(self.clients) > self.size:
                evicted.append(self.clients.pop(next(iter(self.clients))))
        for old in evicted:
            old.close()
        return client

    def drop(self, client: McpClient) -> None:
        with self.lock:
            for key, value in list(self.clients.items()):
                if value is client:
                    del self.clients[key]
        client.close()


POOL = _ClientPool()


_LOOK_IT_UP = object()


def _hold(held: list[str] | None, cred) -> None:
    """The credential about to be sent joins the caller's secrets (a refreshed token is new to it)."""
    if held is not None and cred is not None:
        held.extend(v for v in (cred.access_token, cred.refresh_token) if v and v not in held)


def with_client(
    server: McpServer,
    user,
    work: Callable[[McpClient], T],
    *,
    pooled: bool = False,
    credential=_LOOK_IT_UP,
    held: list[str] | None = None,
    **client_kwargs,
) -> T:
    """Run `work` with a client holding the user's credential for this server.

    OAuth tokens are refreshed first when they expire within a minute, and once more on a 401
    (the provider may have revoked the access token early). OAuth failures become McpError.
    `pooled`: reuse a long-lived client (tool calls); discovery always talks afresh. `held`: the caller's
    list of secrets to cut from what the server answers; a token refreshed here is added to it.
    """

    def run(cred):
        headers = auth_headers(server, cred)
        if not pooled:
            client_kwargs.setdefault("timeout", server_timeout(server))
            with client_class(server)(server.endpoint_url, headers=headers, **client_kwargs) as client:
                return work(client)
        client = POOL.get(server, headers)
        try:
            return work(client)
        except McpError as exc:
            if exc.kind in ("unreachable", "timeout", "protocol", "not_mcp", "http"):
                POOL.drop(client)  # start clean next time
            raise

    try:
        # The caller may pass the credential it already read (None: the server has none).
        cred = credential_for(server, user) if credential is _LOOK_IT_UP else credential
        if server.auth_type == AuthType.OAUTH and cred is None:
            raise McpError("reconnect_needed", "Connect your account to this server first (it uses OAuth).")
        if server.auth_type in (AuthType.BEARER, AuthType.HEADER) and (cred is None or not cred.is_set):
            raise McpError("auth_required", "This server has no token set; enter it in the server's settings.")
        if server.auth_type == AuthType.OAUTH:
            cred = oauth.fresh(cred)
            _hold(held, cred)
        try:
            return run(cred)
        except McpError as exc:
            if cred is not None and cred.user_id is not None and server.auth_type == AuthType.OAUTH:
                if exc.kind == "auth_required" and cred.refresh_token:
                    cred = oauth.refresh(cred, force=True)
                    _hold(held, cred)
                    return run(cred)
                if exc.kind == "forbidden" and "insufficient_scope" in (exc.www_authenticate or ""):
                    oauth.mark_insufficient_scope(cred, exc.www_authenticate or "")
            raise
    except oauth.ReconnectNeeded as exc:
        raise McpError("reconnect_needed", str(exc)) from None
    except oauth.OAuthError as exc:
        raise McpError("auth_required", str(exc)) from None
