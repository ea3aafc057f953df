"""The authorization-code flow, from the Connect button to the provider's redirect back.

Owns: `begin` (discovery, the client, PKCE S256, a single-use `state` kept in the user's session
with everything the callback needs, the RFC 8707 `resource`, scopes and step-up) and `complete`
(state checks, the code exchanged for tokens with no transaction open, then stored by tokens.py).
The redirect URI itself lives in registration.py: the registration and the CIMD document carry it too.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from mcpsettings.models import Credential, McpServer, OAuthClient
from mcpsettings.oauth.metadata import AuthServer, OAuthError, discover_auth_server, post_form
from mcpsettings.oauth.registration import client_auth, client_for, redirect_uri
from mcpsettings.oauth.tokens import credential_store_tokens

STATE_TTL = timedelta(minutes=10)
SESSION_KEY = "gatehouse_oauth_states"


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def begin(request, server: McpServer, *, organization=None, step_up: str | None = None) -> str:
    """Start sign-in: returns the provider URL to send the browser to. State lives in the user's session.

    `step_up`: the scope a 403 insufficient_scope asked for ("" when it named none: ask for every
    scope the server supports).
    """
    auth = discover_auth_server(server)
    client = client_for(server, auth, request)
    verifier, challenge = _pkce()
    state = secrets.token_urlsafe(32)
    extra: list[str] = []
    if step_up is not None:
        extra = step_up.split() or auth.scopes_supported
    scopes = list(dict.fromkeys([*auth.scopes, *extra]))
    states = {k: v for k, v in request.session.get(SESSION_KEY, {}).items() if v.get("exp", 0) > time.time()}
    states[state] = {
        "server": str(server.pk),
        "org": str(organization.pk) if organization else "",
        "verifier": verifier,
        "issuer": auth.issuer,
        "client": str(client.pk),
        "resource": auth.resource,
        "scopes": scopes,
        "token_endpoint": auth.metadata["token_endpoint"],
        "auth_methods": auth.metadata.get("token_endpoint_auth_methods_supported"),
        "exp": time.time() + STATE_TTL.total_seconds(),
    }
    request.session[SESSION_KEY] = states
    return _authorization_url(request, server, auth, client, state=state, challenge=challenge, scopes=scopes)


def _authorization_url(
    request, server: McpServer, auth: AuthServer, client: OAuthClient, *, state: str, challenge: str, scopes: list[str]
) -> str:
    params = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": redirect_uri(request),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": state,
        "resource": auth.resource,
    }
    if scopes:
        params["scope"] = " ".join(scopes)
    for key, value in (server.extra_auth_params or {}).items():
        if key not in params:
            params[str(key)] = str(value)
    endpoint = auth.metadata["authorization_endpoint"]
    return endpoint + ("&" if "?" in endpoint else "?") + urlencode(params)


def complete(request, params: dict[str, str]) -> tuple[McpServer, Credential]:
    """The provider sent the browser back. Single-use state, then the code for tokens, stored encrypted."""
    pending, server = _take_state(request, params)
    if params.get("error"):
        code = params["error"]
        text = {"access_denied": "You declined the request at the provider; nothing was changed."}.get(
            code, f"The provider refused: {code}."
        )
        raise OAuthError(text, code=code)
    code = params.get("code")
    if not code:
        raise OAuthError("The provider sent no authorization code.", code="invalid_request")
    client = OAuthClient.objects.filter(pk=pending["client"], server=server).first()
    if client is None:
        raise OAuthError("The OAuth client for this server changed meanwhile. Start again.")
    payload = _exchange_code(request, pending, client, code)
    credential = credential_store_tokens(
        actor=request.user,
        server=server,
        org_id=pending.get("org") or None,
        payload=payload,
        pending=pending,
        client=client,
    )
    return server, credential


def _take_state(request, params: dict[str, str]) -> tuple[dict[str, Any], McpServer]:
    """The pending sign-in this callback's `state` names, removed from the session, and its server."""
    state = params.get("state", "")
    states = request.session.get(SESSION_KEY, {})
    pending = states.pop(state, None) if state else None
    request.session[SESSION_KEY] = states  # consumed even when what follows fails: no replay
    if pending is None:
        raise OAuthError(
            "This sign-in link was already used or is not from this browser session. Start again.", code="invalid_state"
        )
    if pending["exp"] < time.time():
        raise OAuthError("This sign-in took longer than 10 minutes. Start again.", code="expired_state")
    server = McpServer.objects.visible_to(request.user).live().filter(pk=pending["server"]).first()
    if server is None:
        raise OAuthError("This server is no longer available.", code="invalid_state")
    return pending, server


def _exchange_code(request, pending: dict[str, Any], client: OAuthClient, code: str) -> dict[str, Any]:
    """The authorization code (with the PKCE verifier and resource) for tokens at the token endpoint."""
    auth_meta = {"token_endpoint_auth_methods_supported": pending.get("auth_methods")}
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri(request),
        "code_verifier": pending["verifier"],
        "resource": pending["resource"],
    }
    basic = client_auth(client, auth_meta, form)
    status, payload = post_form(pending["token_endpoint"], form, auth=basic)
    if status != 200 or not payload.get("access_token"):
        error = str(payload.get("error") or f"HTTP {status}")
        raise OAuthError(f"The provider would not issue tokens ({error}). Start again.", code="token_error")
    return payload
