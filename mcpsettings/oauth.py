"""OAuth 2.1 for upstream MCP servers (MCP authorization spec 2025-06-18 / 2025-11-25).

Discovery (RFC 9728 protected-resource metadata, then RFC 8414 / OpenID authorization-server
metadata), client registration (manual, Client ID Metadata Document, or RFC 7591 dynamic
registration), authorization code with PKCE S256 + `state` + `resource` (RFC 8707), token
exchange, single-flight refresh with rotation, step-up on insufficient_scope, and revocation.

Every URL fetched goes through the SSRF-pinned session and must be https (loopback http is
accepted only under MCP_ALLOW_PRIVATE_NETWORKS, for development and tests). No token ever
appears in a log line, exception message or audit row.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests
from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from governance.services import SECRET_MARK, audit_record
from mcpsettings import safehttp, ssrf
from mcpsettings.models import Credential, McpServer, OAuthClient, RegistrationMode, TokenStatus

log = logging.getLogger(__name__)

STATE_TTL = timedelta(minutes=10)
REFRESH_MARGIN = timedelta(seconds=60)
MAX_METADATA_BYTES = 512 * 1024
SESSION_KEY = "gatehouse_oauth_states"


class OAuthError(Exception):
    """Anything that stops an OAuth step. The message is for the person at the keyboard."""

    def __init__(self, message: str, *, code: str = "oauth_error") -> None:
        super().__init__(message)
        self.code = code


class ReconnectNeeded(OAuthError):
    """The refresh token no longer works: the user must connect again."""

    def __init__(self, message: str = "The connection to this server expired. Reconnect your account.") -> None:
        super().__init__(message, code="reconnect_needed")


@dataclass
class AuthServer:
    resource: str
    issuer: str
    metadata: dict[str, Any]
    scopes: list[str] = field(default_factory=list)
    scopes_supported: list[str] = field(default_factory=list)
    resource_metadata_url: str = ""


# --- HTTP helpers ------------------------------------------------------------------------------


def _require_secure(url: str) -> None:
    target = ssrf.parse_url(url)
    if target.scheme == "https":
        return
    literal = ssrf.parse_ip_literal(target.host)
    loopback = (literal is not None and literal.is_loopback) or target.host == "localhost"
    if not (loopback and ssrf.private_networks_allowed()):
        raise OAuthError(f"OAuth endpoints must use https: {target.host} does not.")


def _http() -> requests.Session:
    return safehttp.session()


def _timeout() -> tuple[float, float]:
    t = float(settings.MCP_HTTP_TIMEOUT)
    return (t, t)


def _get_json(url: str, *, optional: bool = False) -> dict | None:
    """GET a JSON document (metadata). `optional`: a 404/400 answers None instead of failing."""
    _require_secure(url)
    try:
        ssrf.validate_url(url)
        with _http() as http:
            res = http.get(
                url, headers={"Accept": "application/json"}, timeout=_timeout(), allow_redirects=False, stream=True
            )
            body = res.raw.read(MAX_METADATA_BYTES + 1, decode_content=True)
    except ssrf.SSRFError as exc:
        raise OAuthError(f"Refusing to fetch OAuth metadata: {exc}") from None
    except requests.RequestException as exc:
        reason = safehttp.ssrf_reason(exc)
        raise OAuthError(reason or f"Could not reach {urlsplit(url).netloc} for OAuth metadata.") from None
    if res.status_code >= 300:
        if optional and res.status_code in (400, 401, 403, 404, 405, 406):
            return None
        raise OAuthError(f"{urlsplit(url).netloc} answered HTTP {res.status_code} for {urlsplit(url).path}.")
    if len(body) > MAX_METADATA_BYTES:
        raise OAuthError("The OAuth metadata document is too large.")
    try:
        data = json.loads(body)
    except ValueError:
        if optional:
            return None
        raise OAuthError(f"{urlsplit(url).path} on {urlsplit(url).netloc} is not JSON.") from None
    if not isinstance(data, dict):
        raise OAuthError("The OAuth metadata document is not a JSON object.")
    return data


def _post_form(url: str, data: dict[str, str], *, auth: tuple[str, str] | None = None) -> tuple[int, dict]:
    _require_secure(url)
    try:
        with _http() as http:
            res = http.post(
                url,
                data=data,
                auth=auth,
                headers={"Accept": "application/json"},
                timeout=_timeout(),
                allow_redirects=False,
            )
    except requests.RequestException as exc:
        reason = safehttp.ssrf_reason(exc)
        raise OAuthError(reason or f"Could not reach {urlsplit(url).netloc}.") from None
    try:
        payload = res.json() if res.content else {}
    except ValueError:
        payload = {}
    return res.status_code, payload if isinstance(payload, dict) else {}


# --- discovery ---------------------------------------------------------------------------------


_PARAM_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def parse_www_authenticate(header: str) -> dict[str, str]:
    """The parameters of a Bearer challenge (resource_metadata, scope, error…)."""
    if not header:
        return {}
    _, _, rest = header.strip().partition(" ") if header.lower().startswith("bearer") else ("", "", "")
    return {
        m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)) for m in _PARAM_RE.finditer(rest)
    }


def _probe(server: McpServer) -> dict[str, str]:
    """An unauthenticated request to the MCP endpoint; the 401 challenge tells where the metadata is."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "gatehouse", "version": "1.0"},
        },
    }
    try:
        with _http() as http:
            res = http.post(
                server.endpoint_url,
                json=body,
                timeout=_timeout(),
                allow_redirects=False,
                headers={"Accept": "application/json, text/event-stream"},
            )
            res.close()
    except requests.RequestException as exc:
        reason = safehttp.ssrf_reason(exc)
        raise OAuthError(reason or "The server cannot be reached to start sign-in.") from None
    if res.status_code == 401:
        return parse_www_authenticate(res.headers.get("WWW-Authenticate", ""))
    return {}


def canonical_resource(url: str) -> str:
    """The server's canonical URI for RFC 8707 `resource`: scheme and host lower-case, no fragment."""
    parts = urlsplit(url)
    path = parts.path if parts.path not in ("", "/") else ""
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, parts.query, ""))


def _well_known_prm(url: str) -> list[str]:
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    urls = [f"{origin}/.well-known/oauth-protected-resource{path}"] if path else []
    return [*urls, f"{origin}/.well-known/oauth-protected-resource"]


def _as_metadata_urls(issuer: str) -> list[str]:
    """RFC 8414 then OpenID Connect discovery, path-aware forms first (the MCP spec's order)."""
    parts = urlsplit(issuer)
    origin = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    if path:
        return [
            f"{origin}/.well-known/oauth-authorization-server{path}",
            f"{origin}/.well-known/openid-configuration{path}",
            f"{origin}{path}/.well-known/openid-configuration",
        ]
    return [f"{origin}/.well-known/oauth-authorization-server", f"{origin}/.well-known/openid-configuration"]


def _same_issuer(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def discover_auth_server(server: McpServer) -> AuthServer:
    challenge = _probe(server)
    prm, prm_url = None, ""
    if challenge.get("resource_metadata"):
        prm_url = challenge["resource_metadata"]
        prm = _get_json(prm_url)
    else:
        for candidate in _well_known_prm(server.endpoint_url):
            prm = _get_json(candidate, optional=True)
            if prm is not None:
                prm_url = candidate
                break
    issuers: list[str] = []
    if prm:
        issuers = [s for s in prm.get("authorization_servers") or [] if isinstance(s, str)]
    if not issuers and server.oauth_issuer_url:
        issuers = [server.oauth_issuer_url]
    if not issuers:
        raise OAuthError("The server does not say which authorization server to use (no protected-resource metadata).")
    issuer = issuers[0]
    metadata = None
    for url in _as_metadata_urls(issuer):
        metadata = _get_json(url, optional=True)
        if metadata is not None:
            break
    if metadata is None:
        raise OAuthError(f"No authorization-server metadata found for {issuer}.")
    if not _same_issuer(str(metadata.get("issuer", "")), issuer):
        raise OAuthError("The authorization server's metadata names a different issuer; refusing to continue.")
    for key in ("authorization_endpoint", "token_endpoint"):
        if not isinstance(metadata.get(key), str):
            raise OAuthError(f"The authorization server's metadata has no {key}.")
        _require_secure(metadata[key])
    if "S256" not in (metadata.get("code_challenge_methods_supported") or []):
        raise OAuthError("The authorization server does not support PKCE with S256; Gatehouse will not connect.")
    resource = canonical_resource(server.endpoint_url)
    if prm and isinstance(prm.get("resource"), str):
        if canonical_resource(prm["resource"]) != resource and not resource.startswith(
            canonical_resource(prm["resource"])
        ):
            raise OAuthError("The protected-resource metadata is for a different server; refusing to continue.")
        resource = prm["resource"]
    if challenge.get("scope"):
        scopes = challenge["scope"].split()
    elif server.scopes:
        scopes = [str(s) for s in server.scopes]
    else:
        scopes = [str(s) for s in (prm or {}).get("scopes_supported") or []]
    supported = [str(s) for s in (prm or {}).get("scopes_supported") or metadata.get("scopes_supported") or []]
    return AuthServer(
        resource=resource,
        issuer=issuer,
        metadata=metadata,
        scopes=scopes,
        scopes_supported=supported,
        resource_metadata_url=prm_url,
    )


# --- clients -----------------------------------------------------------------------------------


def public_base_url(request=None) -> str:
    base = getattr(settings, "GATEHOUSE_PUBLIC_URL", "") or ""
    if base:
        return base.rstrip("/")
    if request is None:
        raise OAuthError("Set GATEHOUSE_PUBLIC_URL so Gatehouse knows its own address.")
    return request.build_absolute_uri("/").rstrip("/")


def redirect_uri(request=None) -> str:
    return public_base_url(request) + reverse("oauth_callback")


def client_metadata_document(request=None) -> dict[str, Any]:
    base = public_base_url(request)
    return {
        "client_id": base + reverse("oauth_client_metadata"),
        "client_name": "Gatehouse",
        "client_uri": base + "/",
        "redirect_uris": [redirect_uri(request)],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }


@transaction.atomic
def client_for(server: McpServer, auth: AuthServer, request=None) -> OAuthClient:
    """This server's client at this issuer: manual, CIMD or dynamic (registered again if the issuer moved)."""
    existing = OAuthClient.objects.select_for_update().filter(server=server, issuer=auth.issuer).first()
    if server.registration_mode == RegistrationMode.MANUAL:
        manual = (
            existing
            or OAuthClient.objects.select_for_update()
            .filter(server=server, registration_mode=RegistrationMode.MANUAL)
            .first()
        )
        if manual is None:
            raise OAuthError("This server needs an OAuth client ID typed in by an admin (manual registration).")
        if manual.issuer != auth.issuer:
            manual.issuer = auth.issuer
            manual.save(update_fields=["issuer", "updated_at"])
        return manual
    if existing is not None:
        return existing
    base_https = public_base_url(request).startswith("https://")
    if auth.metadata.get("client_id_metadata_document_supported") and (base_https or ssrf.private_networks_allowed()):
        doc = client_metadata_document(request)
        return OAuthClient.objects.create(
            server=server,
            issuer=auth.issuer,
            registration_mode=RegistrationMode.CIMD,
            client_id=doc["client_id"],
            metadata=doc,
        )
    endpoint = auth.metadata.get("registration_endpoint")
    if not isinstance(endpoint, str):
        raise OAuthError(
            "The authorization server offers neither dynamic registration nor client ID metadata documents; "
            "ask an admin to register Gatehouse there and enter the client ID (manual registration)."
        )
    _require_secure(endpoint)
    body = {
        "client_name": "Gatehouse",
        "redirect_uris": [redirect_uri(request)],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }
    # Register for every scope the server supports, so a later step-up needs no new registration.
    registered = list(dict.fromkeys([*auth.scopes, *auth.scopes_supported]))
    if registered:
        body["scope"] = " ".join(registered)
    try:
        with _http() as http:
            res = http.post(endpoint, json=body, timeout=_timeout(), allow_redirects=False)
        data = res.json() if res.content else {}
    except (requests.RequestException, ValueError):
        raise OAuthError("Dynamic client registration failed: the authorization server did not answer.") from None
    if res.status_code not in (200, 201) or not isinstance(data, dict) or not data.get("client_id"):
        raise OAuthError(f"Dynamic client registration was refused (HTTP {res.status_code}).")
    OAuthClient.objects.filter(server=server, registration_mode=RegistrationMode.DCR).exclude(
        issuer=auth.issuer
    ).delete()
    return OAuthClient.objects.create(
        server=server,
        issuer=auth.issuer,
        registration_mode=RegistrationMode.DCR,
        client_id=str(data["client_id"]),
        client_secret=str(data.get("client_secret") or ""),
        metadata={k: v for k, v in data.items() if k not in ("client_secret", "registration_access_token")},
    )


def _client_auth(client: OAuthClient, metadata: dict, form: dict[str, str]) -> tuple[str, str] | None:
    """Public clients send client_id in the form; confidential ones use Basic (or post if only that is offered)."""
    form["client_id"] = client.client_id
    if not client.client_secret:
        return None
    methods = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    if "client_secret_basic" not in methods and "client_secret_post" in methods:
        form["client_secret"] = client.client_secret
        return None
    return (client.client_id, client.client_secret)


# --- authorization -----------------------------------------------------------------------------


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
    auth_meta = {"token_endpoint_auth_methods_supported": pending.get("auth_methods")}
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri(request),
        "code_verifier": pending["verifier"],
        "resource": pending["resource"],
    }
    basic = _client_auth(client, auth_meta, form)
    status, payload = _post_form(pending["token_endpoint"], form, auth=basic)
    if status != 200 or not payload.get("access_token"):
        error = str(payload.get("error") or f"HTTP {status}")
        raise OAuthError(f"The provider would not issue tokens ({error}). Start again.", code="token_error")
    org_id = pending.get("org") or None
    credential = _store_tokens(server, request.user, org_id, payload, pending, client)
    audit_record(
        actor=request.user,
        action="credential.oauth_connect",
        target=server,
        organization=server.organization,
        changes={"access_token": [None, SECRET_MARK], "scopes": [None, credential.scopes]},
    )
    return server, credential


@transaction.atomic
def _store_tokens(server, user, org_id, payload, pending, client) -> Credential:
    cred = Credential.objects.select_for_update().filter(server=server, user=user, organization_id=org_id).first()
    if cred is None:
        cred = Credential(server=server, user=user, organization_id=org_id)
    _apply_token_response(cred, payload, default_scopes=pending.get("scopes") or [])
    cred.metadata = {
        **(cred.metadata or {}),
        "issuer": pending["issuer"],
        "client": str(client.pk),
        "token_endpoint": pending["token_endpoint"],
        "resource": pending["resource"],
        "auth_methods": pending.get("auth_methods"),
    }
    cred.metadata.pop("insufficient_scope", None)
    cred.save()
    return cred


def _apply_token_response(cred: Credential, payload: dict, *, default_scopes: list[str]) -> None:
    cred.access_token = str(payload["access_token"])
    if payload.get("refresh_token"):
        cred.refresh_token = str(payload["refresh_token"])  # rotated when the provider rotates
    cred.token_type = str(payload.get("token_type") or "Bearer")[:20]
    expires_in = payload.get("expires_in")
    try:
        cred.expires_at = timezone.now() + timedelta(seconds=int(expires_in)) if expires_in is not None else None
    except (TypeError, ValueError):
        cred.expires_at = None
    scope = payload.get("scope")
    cred.scopes = scope.split() if isinstance(scope, str) and scope else list(default_scopes)
    cred.token_status = TokenStatus.VALID


# --- refresh, step-up, disconnect ---------------------------------------------------------------


def needs_refresh(cred: Credential) -> bool:
    return bool(cred.expires_at and cred.expires_at - timezone.now() <= REFRESH_MARGIN)


def refresh(cred: Credential, *, force: bool = False) -> Credential:
    """Refresh once, even under concurrency: lock the row, then look again — another caller may have done it."""
    with transaction.atomic():
        locked = Credential.objects.select_for_update().get(pk=cred.pk)
        if not force and not needs_refresh(locked) and locked.token_status == TokenStatus.VALID:
            return locked
        if force and locked.access_token != cred.access_token:
            return locked  # someone refreshed since the caller read it
        if locked.token_status == TokenStatus.REFRESH_FAILED:
            raise ReconnectNeeded()
        if not locked.refresh_token:
            locked.token_status = TokenStatus.EXPIRED
            locked.save(update_fields=["token_status", "updated_at"])
            raise ReconnectNeeded("The access token expired and this provider gave no refresh token. Reconnect.")
        meta = locked.metadata or {}
        client = OAuthClient.objects.filter(pk=meta.get("client")).first()
        if client is None or not meta.get("token_endpoint"):
            raise ReconnectNeeded()
        form = {"grant_type": "refresh_token", "refresh_token": locked.refresh_token}
        if meta.get("resource"):
            form["resource"] = meta["resource"]
        basic = _client_auth(client, {"token_endpoint_auth_methods_supported": meta.get("auth_methods")}, form)
        status, payload = _post_form(meta["token_endpoint"], form, auth=basic)
        if status == 200 and payload.get("access_token"):
            _apply_token_response(locked, payload, default_scopes=locked.scopes)
            locked.save()
            return locked
        error = str(payload.get("error") or "")
        if error in ("invalid_grant", "invalid_client", "unauthorized_client") or status in (400, 401):
            locked.token_status = TokenStatus.REFRESH_FAILED
            locked.save(update_fields=["token_status", "updated_at"])
            failed = True
        else:
            failed = False
    if failed:
        audit_record(
            actor=cred.user,
            action="credential.refresh_failed",
            target=cred.server,
            organization=cred.server.organization,
            changes={"token_status": ["valid", "refresh_failed"]},
        )
        raise ReconnectNeeded()
    raise OAuthError(f"Refreshing the token failed (HTTP {status}); try again shortly.", code="refresh_error")


def fresh(cred: Credential | None) -> Credential | None:
    """The credential, refreshed first when its access token expires within a minute."""
    if cred is None or cred.user_id is None or (not cred.refresh_token and not cred.expires_at):
        return cred
    if cred.token_status == TokenStatus.REFRESH_FAILED:
        raise ReconnectNeeded()
    if needs_refresh(cred):
        return refresh(cred)
    return cred


def mark_insufficient_scope(cred: Credential, challenge: str) -> None:
    scope = parse_www_authenticate(challenge).get("scope", "")
    cred.metadata = {**(cred.metadata or {}), "insufficient_scope": scope}
    cred.save(update_fields=["metadata", "updated_at"])


@transaction.atomic
def disconnect(*, actor, server: McpServer, organization=None, ip: str | None = None) -> bool:
    """Revoke at the provider when it can, then forget the tokens. True if there was something to forget."""
    cred = Credential.objects.select_for_update().filter(server=server, user=actor, organization=organization).first()
    if cred is None:
        return False
    meta = cred.metadata or {}
    client = OAuthClient.objects.filter(pk=meta.get("client")).first()
    revocation = None
    if client is not None and meta.get("issuer"):
        try:
            for url in _as_metadata_urls(meta["issuer"]):
                doc = _get_json(url, optional=True)
                if doc:
                    revocation = doc.get("revocation_endpoint")
                    break
        except OAuthError:
            revocation = None
    revoked = False
    if isinstance(revocation, str) and client is not None:
        for token, hint in ((cred.refresh_token, "refresh_token"), (cred.access_token, "access_token")):
            if not token:
                continue
            form = {"token": token, "token_type_hint": hint}
            basic = _client_auth(client, {}, form)
            try:
                status, _ = _post_form(revocation, form, auth=basic)
                revoked = revoked or status == 200
            except OAuthError:
                pass  # the tokens are deleted here whatever the provider says
    cred.delete()
    audit_record(
        actor=actor,
        action="credential.oauth_disconnect",
        target=server,
        organization=server.organization,
        changes={"access_token": [SECRET_MARK, None], "revoked_at_provider": [None, revoked]},
        ip=ip,
    )
    return True
