"""Writes for MCP servers: registration, changes, credentials, trash."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.errors import Conflict, NotVisible
from accounts.models import ADMIN_ROLES, Membership, Organization, User
from accounts.services import SECRET_MARK, audit_record, diff
from mcpsettings import ssrf
from mcpsettings.models import (
    AuthType,
    Credential,
    McpServer,
    OAuthClient,
    RegistrationMode,
    ServerStatus,
    Transport,
)
from mcpsettings.services.fields import (
    clean_endpoint_url,
    clean_header_name,
    clean_name,
    clean_timeout,
    clean_token,
)

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
    "timeout_seconds",
    "transport",
)


def name_taken(server: McpServer, name: str) -> bool:
    qs = McpServer.objects.live().filter(name__iexact=name).exclude(pk=server.pk)
    if server.owner_id:
        return qs.filter(owner_id=server.owner_id).exists()
    if server.organization_id:
        return qs.filter(organization_id=server.organization_id).exists()
    return qs.filter(owner__isnull=True, organization__isnull=True).exists()


def require_org_admin(actor: User, org: Organization) -> None:
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
    timeout_seconds: int | None = None,
    transport: str = Transport.STREAMABLE_HTTP,
    ip: str | None = None,
) -> McpServer:
    """Register a server. `oauth` may hold oauth_issuer_url, registration_mode, scopes, extra_auth_params,
    oauth_client_id and oauth_client_secret (manual registration)."""
    oauth = dict(oauth or {})
    name, endpoint_url, header_name, token, timeout_seconds = _clean_new(
        name, endpoint_url, auth_type, header_name, token, timeout_seconds
    )
    orgs = list(orgs)
    _check_creation_rights(actor, organization, orgs, is_global)
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
        timeout_seconds=timeout_seconds,
        transport=transport if transport in Transport.values else Transport.STREAMABLE_HTTP,
        status=ServerStatus.PENDING_SETUP,
        status_detail=FIRST_STATUS_DETAIL[auth_type == AuthType.OAUTH],
        created_by=actor,
        updated_by=actor,
    )
    _apply_new_oauth_fields(server, oauth)
    if name_taken(server, name):
        raise ValidationError({"name": "A server with this name already exists here."})
    _save(server)
    if orgs:
        server.orgs.set(orgs)
    changes = _store_new_credentials(server, token, oauth)
    changes |= {f: [None, v] for f, v in _snapshot(server).items() if v not in ("", None, [], {})}
    if orgs:
        changes["orgs"] = [None, sorted(o.slug for o in orgs)]
    _audit_server(actor, "mcp_server.create", server, changes, ip)
    return server


def _apply_new_oauth_fields(server: McpServer, oauth: dict[str, Any]) -> None:
    errors: dict[str, Any] = {}
    _apply_oauth_fields(server, oauth, errors)
    if server.auth_type == AuthType.OAUTH and server.registration_mode == RegistrationMode.MANUAL:
        if not oauth.get("oauth_client_id"):
            errors["oauth_client_id"] = ["Manual registration needs the client ID issued by the provider."]
    if errors:
        raise ValidationError(errors)


FIRST_STATUS_DETAIL = {
    False: "Waiting for the first tool discovery.",
    True: "Connect your account to finish setting up.",
}


def _clean_new(name, endpoint_url, auth_type: str, header_name: str, token, timeout) -> tuple:
    """Every field error of a new server at once (name, URL, auth type, header, token, timeout)."""
    errors: dict[str, Any] = {}
    try:
        timeout = clean_timeout(timeout)
    except ValidationError as exc:
        errors.update(exc.message_dict)
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
            header_name = clean_header_name(auth_type, header_name)
            token = clean_token(token)
            if auth_type in (AuthType.BEARER, AuthType.HEADER) and not token:
                raise ValidationError({"token": "Enter the token this server expects."})
        except ValidationError as exc:
            errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
    return name, endpoint_url, header_name, token, timeout


def _check_creation_rights(actor: User, organization: Organization | None, orgs: list, is_global: bool) -> None:
    if organization is not None:
        require_org_admin(actor, organization)
    if is_global or (orgs and organization is None):
        if not actor.is_superuser:
            raise PermissionDenied("Only superusers can create global servers or servers for orgs they do not own.")
    for extra in orgs:
        require_org_admin(actor, extra)


def _store_new_credentials(server: McpServer, token: str, oauth: dict[str, Any]) -> dict[str, list]:
    """The new server's token or manual OAuth client; returns their audit changes (secrets as marks)."""
    changes: dict[str, list] = {}
    if token:
        _set_credential(server, token)
        changes["token"] = [None, SECRET_MARK]
    if server.auth_type == AuthType.OAUTH and server.registration_mode == RegistrationMode.MANUAL:
        _set_manual_client(server, oauth.get("oauth_client_id", ""), oauth.get("oauth_client_secret", ""))
        changes["oauth_client_id"] = [None, oauth.get("oauth_client_id")]
        if oauth.get("oauth_client_secret"):
            changes["oauth_client_secret"] = [None, SECRET_MARK]
    return changes


def _apply_edits(server: McpServer, data: dict[str, Any], errors: dict[str, Any]) -> str:
    """Edited fields onto the server (errors collected); returns the cleaned new token, if any."""
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
    if "description" in data:
        server.description = (data["description"] or "").strip()
    for field in ("is_active", "new_tools_enabled"):
        if field in data:
            setattr(server, field, bool(data[field]))
    if data.get("transport") in Transport.values:
        server.transport = data["transport"]
    if "timeout_seconds" in data:
        try:
            server.timeout_seconds = clean_timeout(data["timeout_seconds"])
        except ValidationError as exc:
            errors.update(exc.message_dict)
    token = ""
    try:
        if server.auth_type == AuthType.HEADER or "header_name" in data:
            server.header_name = clean_header_name(server.auth_type, data.get("header_name", server.header_name))
        token = clean_token(data.get("token"))
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if server.auth_type != AuthType.HEADER:
        server.header_name = ""
    _apply_oauth_fields(server, data, errors)
    return token


def _update_credentials(server: McpServer, data: dict[str, Any], token: str, old_type: str) -> dict[str, list]:
    """Credentials after an edit; returns their audit changes. Credentials of an auth type the server no
    longer uses are removed: a leftover would be lent to people who never connected."""
    changes: dict[str, list] = {}
    needs_token = server.auth_type in (AuthType.BEARER, AuthType.HEADER)
    shared = Credential.objects.filter(server=server, user__isnull=True)
    changed = False
    if not needs_token or data.get("clear_token"):
        # A shared token left behind by another auth type would be lent to everyone: it goes, whatever
        # else the request carried.
        changed = shared.delete()[0] > 0
    if token and needs_token:
        changed = _set_credential(server, token) or changed
    if changed:
        changes["token"] = [SECRET_MARK, SECRET_MARK]
    if old_type != server.auth_type and old_type == AuthType.OAUTH:
        removed = Credential.objects.filter(server=server, user__isnull=False).delete()[0]
        if removed:
            changes["oauth_tokens"] = [f"{removed} connected account(s)", "removed"]
    if server.auth_type == AuthType.OAUTH and (data.get("oauth_client_id") or data.get("oauth_client_secret")):
        if _set_manual_client(server, data.get("oauth_client_id") or "", data.get("oauth_client_secret") or ""):
            changes["oauth_client"] = [SECRET_MARK, SECRET_MARK]
    return changes


@transaction.atomic
def server_update(*, actor: User, server: McpServer, data: dict[str, Any], ip: str | None = None) -> McpServer:
    """Change a server. `data` keys: the editable fields, `token` (non-empty sets it) and `clear_token`."""
    server = McpServer.objects.select_for_update().get(pk=server.pk)
    require_manage(actor, server)
    before = _snapshot(server)
    errors: dict[str, Any] = {}
    token = _apply_edits(server, data, errors)
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
    credential_changes = _update_credentials(server, data, token, before["auth_type"])
    changes |= credential_changes
    if "endpoint_url" in changes or "auth_type" in changes or "token" in credential_changes:
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
