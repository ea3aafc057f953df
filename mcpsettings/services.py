"""Writes for MCP servers, credentials, org context and gateways. One transaction each, audited inside it."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts.errors import Conflict, NotVisible
from accounts.models import ADMIN_ROLES, Membership, Organization, User
from accounts.services import SECRET_MARK, audit_record, diff
from mcpsettings import ssrf
from mcpsettings.models import (
    AuthType,
    Credential,
    Gateway,
    McpServer,
    McpSession,
    OAuthClient,
    OrgServerContext,
    RegistrationMode,
    ServerStatus,
)

HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
# Headers Gatehouse sets itself; a credential may not replace them.
RESERVED_HEADERS = {
    "host",
    "content-length",
    "content-type",
    "accept",
    "connection",
    "transfer-encoding",
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "cookie",
}
AUDITED_SERVER_FIELDS = (
    "name",
    "description",
    "endpoint_url",
    "auth_type",
    "header_name",
    "is_active",
    "new_tools_enabled",
    "oauth_issuer_url",
    "registration_mode",
    "scopes",
    "extra_auth_params",
)


# --- helpers -----------------------------------------------------------------------------------


def clean_name(name: Any) -> str:
    name = (name or "").strip() if isinstance(name, str) else ""
    if not name:
        raise ValidationError({"name": "Enter a name."})
    if len(name) > 100:
        raise ValidationError({"name": "Use at most 100 characters."})
    return name


def clean_endpoint_url(url: Any) -> str:
    try:
        return ssrf.validate_url(url if isinstance(url, str) else "").url
    except ssrf.SSRFError as exc:
        raise ValidationError({"endpoint_url": str(exc)}) from None


def _clean_header_name(auth_type: str, header_name: str) -> str:
    header_name = (header_name or "").strip()
    if auth_type != AuthType.HEADER:
        return ""
    if not header_name:
        raise ValidationError({"header_name": "Enter the header name, e.g. X-API-Key."})
    if not HEADER_NAME_RE.match(header_name):
        raise ValidationError({"header_name": "Use letters, digits and dashes only, e.g. X-API-Key."})
    if header_name.lower() in RESERVED_HEADERS:
        raise ValidationError({"header_name": f"{header_name} is set by Gatehouse itself; choose another header."})
    return header_name


def _clean_token(token: Any) -> str:
    if token is None:
        return ""
    if not isinstance(token, str):
        raise ValidationError({"token": "Enter the token as text."})
    token = token.strip()
    if len(token) > 8192:
        raise ValidationError({"token": "The token is longer than 8192 characters."})
    if any(c in token for c in "\r\n\0"):
        raise ValidationError({"token": "The token may not contain line breaks."})
    if not (token.isascii() and token.isprintable()):
        # It travels in an HTTP header, which carries printable ASCII only; refused before anything is saved.
        raise ValidationError(
            {"token": "The token may contain only printable ASCII characters (it is sent in a header)."}
        )
    return token


def name_taken(server: McpServer, name: str) -> bool:
    qs = McpServer.objects.live().filter(name__iexact=name).exclude(pk=server.pk)
    if server.owner_id:
        return qs.filter(owner_id=server.owner_id).exists()
    if server.organization_id:
        return qs.filter(organization_id=server.organization_id).exists()
    return qs.filter(owner__isnull=True, organization__isnull=True).exists()


def _require_org_admin(actor: User, org: Organization) -> None:
    if actor.is_superuser:
        return
    role = Membership.objects.filter(user=actor, organization=org).values_list("role", flat=True).first()
    if role is None:
        raise NotVisible(f"No organization {org.slug}.")
    if role not in ADMIN_ROLES:
        raise PermissionDenied("Only the organization's owners and admins can manage its servers.")


def require_manage(actor: User, server: McpServer) -> None:
    """PermissionDenied unless the actor may change this server (visibility is checked by the caller)."""
    if not McpServer.objects.manageable_by(actor).filter(pk=server.pk).exists():
        raise PermissionDenied("You can see this server but not change it.")


def _lock_cap(owner: User) -> None:
    """Serialize creates per user (row lock), then count: the cap holds under concurrency."""
    User.objects.select_for_update().filter(pk=owner.pk).values_list("pk", flat=True).first()
    cap = settings.MCP_MAX_SERVERS_PER_USER
    if McpServer.objects.live().filter(owner=owner).count() >= cap:
        raise Conflict(f"You already have {cap} servers, the most allowed. Delete one (and empty the trash) first.")


def _save(server: McpServer, **kwargs) -> None:
    try:
        with transaction.atomic():
            server.save(**kwargs)
    except IntegrityError:
        raise ValidationError({"name": "You already have a server with this name."}) from None


def _set_credential(server: McpServer, token: str) -> bool:
    """Store the shared static credential (bearer token or header value). Returns True if it changed."""
    cred = Credential.objects.filter(server=server, user__isnull=True).first()
    if server.auth_type not in (AuthType.BEARER, AuthType.HEADER):
        return False
    if cred is None:
        cred = Credential(server=server, user=None)
    if server.auth_type == AuthType.BEARER:
        cred.access_token, cred.header_value = token, ""
    else:
        cred.header_value, cred.access_token = token, ""
    cred.token_type = "Bearer" if server.auth_type == AuthType.BEARER else "Header"
    cred.token_status = "valid"
    cred.save()
    return True


RESERVED_AUTH_PARAMS = {
    "response_type",
    "client_id",
    "redirect_uri",
    "code_challenge",
    "code_challenge_method",
    "state",
    "resource",
    "scope",
}


def _apply_oauth_fields(server: McpServer, data: dict[str, Any], errors: dict[str, Any]) -> None:
    """OAuth settings of a server: issuer override, registration mode, scopes, extra authorization params."""
    if "oauth_issuer_url" in data:
        url = (data["oauth_issuer_url"] or "").strip()
        if url:
            try:
                url = ssrf.validate_url(url).url
            except ssrf.SSRFError as exc:
                errors["oauth_issuer_url"] = [str(exc)]
        server.oauth_issuer_url = url
    if data.get("registration_mode"):
        if data["registration_mode"] not in RegistrationMode.values:
            errors["registration_mode"] = [f"Choose one of: {', '.join(RegistrationMode.values)}."]
        else:
            server.registration_mode = data["registration_mode"]
    if "scopes" in data:
        scopes = data["scopes"] or []
        if isinstance(scopes, str):
            scopes = scopes.split()
        if not isinstance(scopes, list) or not all(isinstance(x, str) and x and " " not in x for x in scopes):
            errors["scopes"] = ['Give scopes as a list of words, e.g. ["read", "write"].']
        else:
            server.scopes = scopes
    if "extra_auth_params" in data:
        params = data["extra_auth_params"] or {}
        if not isinstance(params, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and k and (k + v).isprintable() for k, v in params.items()
        ):
            errors["extra_auth_params"] = ['Give extra parameters as an object of strings, e.g. {"audience": "x"}.']
        elif RESERVED_AUTH_PARAMS & set(params):
            errors["extra_auth_params"] = [
                f"These are set by Gatehouse: {', '.join(sorted(RESERVED_AUTH_PARAMS & set(params)))}."
            ]
        else:
            server.extra_auth_params = params


def _set_manual_client(server: McpServer, client_id: str, client_secret: str) -> bool:
    """The client an admin registered at the provider by hand. Returns True if anything changed."""
    client = OAuthClient.objects.filter(server=server, registration_mode=RegistrationMode.MANUAL).first()
    if client is None:
        client = OAuthClient(
            server=server, registration_mode=RegistrationMode.MANUAL, issuer=server.oauth_issuer_url or ""
        )
    changed = False
    if client_id and client_id != client.client_id:
        client.client_id, changed = client_id, True
    if client_secret:
        client.client_secret, changed = client_secret, True
    if changed:
        client.save()
    return changed


def _audit_server(actor, action: str, server: McpServer, changes: dict, ip: str | None) -> None:
    audit_record(actor=actor, action=action, target=server, organization=server.organization, changes=changes, ip=ip)


def _snapshot(server: McpServer) -> dict[str, Any]:
    return {f: getattr(server, f) for f in AUDITED_SERVER_FIELDS}


# --- servers -----------------------------------------------------------------------------------


@transaction.atomic
def server_create(
    *,
    actor: User,
    name: str,
    endpoint_url: str,
    auth_type: str = AuthType.NONE,
    token: str | None = None,
    header_name: str = "",
    organization: Organization | None = None,
    orgs: Iterable[Organization] = (),
    is_global: bool = False,
    description: str = "",
    is_active: bool = True,
    new_tools_enabled: bool = True,
    oauth: dict[str, Any] | None = None,
    ip: str | None = None,
) -> McpServer:
    """Register a server. `oauth` may hold oauth_issuer_url, registration_mode, scopes, extra_auth_params,
    oauth_client_id and oauth_client_secret (manual registration)."""
    errors: dict[str, Any] = {}
    oauth = dict(oauth or {})
    try:
        name = clean_name(name)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    try:
        endpoint_url = clean_endpoint_url(endpoint_url)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if auth_type not in AuthType.values:
        errors["auth_type"] = [f"Choose one of: {', '.join(AuthType.values)}."]
    else:
        try:
            header_name = _clean_header_name(auth_type, header_name)
            token = _clean_token(token)
            if auth_type in (AuthType.BEARER, AuthType.HEADER) and not token:
                raise ValidationError({"token": "Enter the token this server expects."})
        except ValidationError as exc:
            errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)

    orgs = list(orgs)
    if organization is not None:
        _require_org_admin(actor, organization)
    if is_global or (orgs and organization is None):
        if not actor.is_superuser:
            raise PermissionDenied("Only superusers can create global servers or servers for orgs they do not own.")
    for extra in orgs:
        _require_org_admin(actor, extra)

    owner = None if (organization is not None or is_global or orgs) else actor
    if owner is not None:
        _lock_cap(owner)
    server = McpServer(
        owner=owner,
        organization=organization,
        name=name,
        description=(description or "").strip(),
        endpoint_url=endpoint_url,
        auth_type=auth_type,
        header_name=header_name,
        is_active=is_active,
        new_tools_enabled=new_tools_enabled,
        status=ServerStatus.PENDING_SETUP,
        status_detail="Waiting for the first tool discovery."
        if auth_type != AuthType.OAUTH
        else "Connect your account to finish setting up.",
        created_by=actor,
        updated_by=actor,
    )
    oauth_errors: dict[str, Any] = {}
    _apply_oauth_fields(server, oauth, oauth_errors)
    if auth_type == AuthType.OAUTH and server.registration_mode == RegistrationMode.MANUAL:
        if not oauth.get("oauth_client_id"):
            oauth_errors["oauth_client_id"] = ["Manual registration needs the client ID issued by the provider."]
    if oauth_errors:
        raise ValidationError(oauth_errors)
    if name_taken(server, name):
        raise ValidationError({"name": "A server with this name already exists here."})
    _save(server)
    if orgs:
        server.orgs.set(orgs)
    changes = {f: [None, v] for f, v in _snapshot(server).items() if v not in ("", None, [], {})}
    if token:
        _set_credential(server, token)
        changes["token"] = [None, SECRET_MARK]
    if auth_type == AuthType.OAUTH and server.registration_mode == RegistrationMode.MANUAL:
        _set_manual_client(server, oauth.get("oauth_client_id", ""), oauth.get("oauth_client_secret", ""))
        changes["oauth_client_id"] = [None, oauth.get("oauth_client_id")]
        if oauth.get("oauth_client_secret"):
            changes["oauth_client_secret"] = [None, SECRET_MARK]
    if orgs:
        changes["orgs"] = [None, sorted(o.slug for o in orgs)]
    _audit_server(actor, "mcp_server.create", server, changes, ip)
    return server


@transaction.atomic
def server_update(*, actor: User, server: McpServer, data: dict[str, Any], ip: str | None = None) -> McpServer:
    """Change a server. `data` keys: the editable fields, `token` (non-empty sets it) and `clear_token`."""
    server = McpServer.objects.select_for_update().get(pk=server.pk)
    require_manage(actor, server)
    before = _snapshot(server)
    errors: dict[str, Any] = {}
    if "name" in data:
        try:
            server.name = clean_name(data["name"])
        except ValidationError as exc:
            errors.update(exc.message_dict)
    if "endpoint_url" in data:
        try:
            server.endpoint_url = clean_endpoint_url(data["endpoint_url"])
        except ValidationError as exc:
            errors.update(exc.message_dict)
    if "auth_type" in data:
        if data["auth_type"] not in AuthType.values:
            errors["auth_type"] = [f"Choose one of: {', '.join(AuthType.values)}."]
        else:
            server.auth_type = data["auth_type"]
    for field in ("description",):
        if field in data:
            server.description = (data[field] or "").strip()
    for field in ("is_active", "new_tools_enabled"):
        if field in data:
            setattr(server, field, bool(data[field]))
    token = ""
    try:
        if server.auth_type in (AuthType.HEADER,) or "header_name" in data:
            server.header_name = _clean_header_name(server.auth_type, data.get("header_name", server.header_name))
        token = _clean_token(data.get("token"))
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if server.auth_type not in (AuthType.HEADER,):
        server.header_name = ""
    _apply_oauth_fields(server, data, errors)
    needs_token = server.auth_type in (AuthType.BEARER, AuthType.HEADER)
    existing = Credential.objects.filter(server=server, user__isnull=True).first()
    type_changed = before["auth_type"] != server.auth_type
    if needs_token and not token and (existing is None or not existing.is_set or type_changed) and not errors:
        errors["token"] = ["Enter the token this server expects."]
    if errors:
        raise ValidationError(errors)
    if server.name.lower() != (before["name"] or "").lower() and name_taken(server, server.name):
        raise ValidationError({"name": "A server with this name already exists here."})

    server.updated_by = actor
    changes = diff(before, _snapshot(server))
    credential_changed = False
    if token:
        credential_changed = _set_credential(server, token)
    elif data.get("clear_token") or (not needs_token and existing is not None):
        # A shared token left behind by another auth type would be lent to everyone: it goes.
        credential_changed = Credential.objects.filter(server=server, user__isnull=True).delete()[0] > 0
    if credential_changed:
        changes["token"] = [SECRET_MARK, SECRET_MARK]
    if type_changed and before["auth_type"] == AuthType.OAUTH:
        # People's OAuth tokens belong to the old way of signing in; the new one needs new credentials.
        removed = Credential.objects.filter(server=server, user__isnull=False).delete()[0]
        if removed:
            changes["oauth_tokens"] = [f"{removed} connected account(s)", "removed"]
    if server.auth_type == AuthType.OAUTH and (data.get("oauth_client_id") or data.get("oauth_client_secret")):
        if _set_manual_client(server, data.get("oauth_client_id") or "", data.get("oauth_client_secret") or ""):
            changes["oauth_client"] = [SECRET_MARK, SECRET_MARK]
    if "endpoint_url" in changes or "auth_type" in changes or credential_changed:
        server.status = ServerStatus.PENDING_SETUP
        server.status_detail = "Settings changed; tools will be discovered again."
    _save(server)
    if changes:
        _audit_server(actor, "mcp_server.update", server, changes, ip)
    return server


@transaction.atomic
def server_soft_delete(*, actor: User, server: McpServer, ip: str | None = None) -> McpServer:
    server = McpServer.objects.select_for_update().get(pk=server.pk)
    require_manage(actor, server)
    if server.deleted_at is None:
        server.deleted_at = timezone.now()
        server.save(update_fields=["deleted_at", "updated_at"])
        _audit_server(actor, "mcp_server.delete", server, {"deleted_at": [None, server.deleted_at]}, ip)
    return server


@transaction.atomic
def server_restore(*, actor: User, server: McpServer, ip: str | None = None) -> McpServer:
    server = McpServer.objects.select_for_update().get(pk=server.pk)
    require_manage(actor, server)
    if server.deleted_at is None:
        return server
    if server.owner_id:
        _lock_cap(server.owner)
    if name_taken(server, server.name):
        raise Conflict(f"A live server is already called “{server.name}”. Rename it, then restore this one.")
    old = server.deleted_at
    server.deleted_at = None
    _save(server, update_fields=["deleted_at", "updated_at"])
    _audit_server(actor, "mcp_server.restore", server, {"deleted_at": [old, None]}, ip)
    return server


@transaction.atomic
def server_hard_delete(*, actor: User, server: McpServer, ip: str | None = None) -> None:
    server = McpServer.objects.select_for_update().get(pk=server.pk)
    require_manage(actor, server)
    _audit_server(actor, "mcp_server.hard_delete", server, {"name": [server.name, None]}, ip)
    server.delete()


# --- org context -------------------------------------------------------------------------------


@transaction.atomic
def org_context_set(
    *, actor: User, organization: Organization, server: McpServer, context: str, ip: str | None = None
) -> OrgServerContext | None:
    """Set (or, with empty text, remove) an org's context for a server its members can see."""
    _require_org_admin(actor, organization)
    if not McpServer.objects.visible_to_org(organization).filter(pk=server.pk).exists():
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


# --- gateways ----------------------------------------------------------------------------------


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


# --- sessions of MCP clients with Gatehouse's own endpoint ---------------------------------------


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
    if session.last_seen_at < _session_idle_cutoff():
        McpSession.objects.filter(pk=session.pk).delete()
        return None
    if now - session.last_seen_at > timedelta(minutes=1):
        McpSession.objects.filter(pk=session.pk, last_seen_at=session.last_seen_at).update(last_seen_at=now)
    return session


def mcp_sessions_prune() -> int:
    """Delete every idle session; safe to run from many workers at once."""
    return McpSession.objects.filter(last_seen_at__lt=_session_idle_cutoff()).delete()[0]
