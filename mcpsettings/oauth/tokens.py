"""A user's OAuth tokens for one server: store, keep fresh, step up, revoke.

Owns: storing a token response on the user's Credential (encrypted columns), refreshing ahead of
expiry and on a 401 — exactly once under concurrency, with rotation — marking a credential that
met `insufficient_scope`, and disconnecting (revocation at the provider, then deletion).

Locks: `disconnect` talks to the provider with no transaction open and locks the row only to delete
it. `refresh` is the one deliberate exception: it holds the credential's row lock across the token
request, because that lock is what makes it single-flight (see `_refresh_locked`).
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from accounts.services import SECRET_MARK, audit_record
from mcpsettings.models import Credential, McpServer, OAuthClient, TokenStatus
from mcpsettings.oauth.metadata import OAuthError, parse_www_authenticate, post_form, revocation_endpoint
from mcpsettings.oauth.registration import client_auth

REFRESH_MARGIN = timedelta(seconds=60)
# A refresh may rotate the tokens while disconnect revokes the old ones: revoke again, this many rounds at most.
DISCONNECT_ROUNDS = 3


class ReconnectNeeded(OAuthError):
    """The refresh token no longer works: the user must connect again."""

    def __init__(self, message: str = "The connection to this server expired. Reconnect your account.") -> None:
        super().__init__(message, code="reconnect_needed")


# --- store -------------------------------------------------------------------------------------


@transaction.atomic
def credential_store_tokens(
    *, actor, server: McpServer, org_id, payload: dict, pending: dict, client: OAuthClient
) -> Credential:
    """The token endpoint's answer to an authorization code, stored on the user's credential (and audited)."""
    cred = Credential.objects.select_for_update().filter(server=server, user=actor, organization_id=org_id).first()
    if cred is None:
        cred = Credential(server=server, user=actor, organization_id=org_id)
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
    audit_record(
        actor=actor,
        action="credential.oauth_connect",
        target=server,
        organization=server.organization,
        changes={"access_token": [None, SECRET_MARK], "scopes": [None, cred.scopes]},
    )
    return cred


def _apply_token_response(cred: Credential, payload: dict, *, default_scopes: list[str]) -> None:
    cred.access_token = str(payload["access_token"])
    if payload.get("refresh_token"):
        cred.refresh_token = str(payload["refresh_token"])  # rotated when the provider rotates
    cred.token_type = str(payload.get("token_type") or "Bearer")[:20]
    expires_in = payload.get("expires_in")
    try:
        cred.expires_at = timezone.now() + timedelta(seconds=int(expires_in)) if expires_in is not None else None
    except (TypeError, ValueError, OverflowError):  # a hostile provider's 1e14 must not become a 500
        cred.expires_at = None
    scope = payload.get("scope")
    cred.scopes = scope.split() if isinstance(scope, str) and scope else list(default_scopes)
    cred.token_status = TokenStatus.VALID


# --- refresh, step-up --------------------------------------------------------------------------


def needs_refresh(cred: Credential) -> bool:
    return bool(cred.expires_at and cred.expires_at - timezone.now() <= REFRESH_MARGIN)


def refresh(cred: Credential, *, force: bool = False) -> Credential:
    """Refresh once, even under concurrency: lock the row, then look again — another caller may have done it.

    `force`: refresh even though the token has not expired yet (the server answered 401), unless
    another caller already replaced the token the caller holds.
    """
    locked, error = _refresh_locked(cred, force=force)
    if error is not None:
        raise error  # after the commit: a failure's status and audit row are kept
    return locked


@transaction.atomic
def _refresh_locked(cred: Credential, *, force: bool) -> tuple[Credential, OAuthError | None]:
    """The refresh, under the credential's row lock; returns the credential, or the error to raise.

    The lock is held across the token request on purpose — the exception to "network before locks".
    Providers rotate refresh tokens (OAuth 2.1): a second request with the same refresh token gets
    invalid_grant, and reuse detection may revoke the whole grant. So exactly one caller may send it;
    the others wait here for its result, then find a fresh token and return it without a request.
    A claim column would need a lease and polling for the same outcome. The wait is bounded by
    MCP_HTTP_TIMEOUT and covers one user's credential for one server only.
    """
    locked = Credential.objects.select_for_update().get(pk=cred.pk)
    if not force and not needs_refresh(locked) and locked.token_status == TokenStatus.VALID:
        return locked, None
    if force and locked.access_token != cred.access_token:
        return locked, None  # someone refreshed since the caller read it
    if locked.token_status == TokenStatus.REFRESH_FAILED:
        return locked, ReconnectNeeded()
    if not locked.refresh_token:
        locked.token_status = TokenStatus.EXPIRED
        locked.save(update_fields=["token_status", "updated_at"])
        return locked, ReconnectNeeded("The access token expired and this provider gave no refresh token. Reconnect.")
    meta = locked.metadata or {}
    client = OAuthClient.objects.filter(pk=meta.get("client")).first()
    if client is None or not meta.get("token_endpoint"):
        return locked, ReconnectNeeded()
    form = {"grant_type": "refresh_token", "refresh_token": locked.refresh_token}
    if meta.get("resource"):
        form["resource"] = meta["resource"]
    basic = client_auth(client, {"token_endpoint_auth_methods_supported": meta.get("auth_methods")}, form)
    status, payload = post_form(meta["token_endpoint"], form, auth=basic)
    if status == 200 and payload.get("access_token"):
        _apply_token_response(locked, payload, default_scopes=locked.scopes)
        locked.save()
        return locked, None
    error = str(payload.get("error") or "")
    if error in ("invalid_grant", "invalid_client", "unauthorized_client") or status in (400, 401):
        locked.token_status = TokenStatus.REFRESH_FAILED
        locked.save(update_fields=["token_status", "updated_at"])
        audit_record(
            actor=cred.user,
            action="credential.refresh_failed",
            target=cred.server,
            organization=cred.server.organization,
            changes={"token_status": ["valid", "refresh_failed"]},
        )
        return locked, ReconnectNeeded()
    return locked, OAuthError(f"Refreshing the token failed (HTTP {status}); try again shortly.", code="refresh_error")


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
    """Remember the scope a 403 insufficient_scope asked for: the next connect asks for it too."""
    scope = parse_www_authenticate(challenge).get("scope", "")
    cred.metadata = {**(cred.metadata or {}), "insufficient_scope": scope}
    cred.save(update_fields=["metadata", "updated_at"])


# --- disconnect --------------------------------------------------------------------------------


def disconnect(*, actor, server: McpServer, organization=None, ip: str | None = None) -> bool:
    """Revoke at the provider when it can, then forget the tokens. True if there was something to forget.

    The provider is called with no transaction open; the row is locked only to delete it. If a
    refresh rotated the tokens in between, the new ones are revoked too before the row goes.
    """
    forgotten: bool | None = None
    rounds = 0
    while forgotten is None:
        rounds += 1
        cred = Credential.objects.filter(server=server, user=actor, organization=organization).first()
        if cred is None:
            return False
        revoked = _revoke_at_provider(cred)
        forgotten = _credential_forget(
            actor=actor,
            server=server,
            organization=organization,
            seen=cred,
            revoked=revoked,
            ip=ip,
            final=rounds >= DISCONNECT_ROUNDS,
        )
    return forgotten


def _revoke_at_provider(cred: Credential) -> bool:
    """RFC 7009 revocation of the refresh and access tokens; True if the provider accepted one."""
    meta = cred.metadata or {}
    client = OAuthClient.objects.filter(pk=meta.get("client")).first()
    if client is None or not meta.get("issuer"):
        return False
    endpoint = revocation_endpoint(meta["issuer"])
    if endpoint is None:
        return False
    revoked = False
    for token, hint in ((cred.refresh_token, "refresh_token"), (cred.access_token, "access_token")):
        if not token:
            continue
        form = {"token": token, "token_type_hint": hint}
        basic = client_auth(client, {}, form)
        try:
            status, _ = post_form(endpoint, form, auth=basic)
            revoked = revoked or status == 200
        except OAuthError:
            pass  # the tokens are deleted here whatever the provider says
    return revoked


@transaction.atomic
def _credential_forget(
    *, actor, server: McpServer, organization, seen: Credential, revoked: bool, ip: str | None, final: bool
) -> bool | None:
    """Delete the credential revoked from `seen` and audit it; None: its tokens changed meanwhile, revoke again.

    `final`: delete whatever the row holds now (the tokens expire at the provider on their own).
    """
    locked = Credential.objects.select_for_update().filter(server=server, user=actor, organization=organization).first()
    if locked is None:
        return False  # a concurrent disconnect forgot it first
    same = (locked.pk, locked.access_token, locked.refresh_token) == (seen.pk, seen.access_token, seen.refresh_token)
    if not same and not final:
        return None
    locked.delete()
    audit_record(
        actor=actor,
        action="credential.oauth_disconnect",
        target=server,
        organization=server.organization,
        changes={"access_token": [SECRET_MARK, None], "revoked_at_provider": [None, revoked and same]},
        ip=ip,
    )
    return True
