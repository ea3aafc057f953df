"""Gatehouse's client at an authorization server: who it is, and how it gets a client ID.

Owns: the public base URL, the redirect URI and the Client ID Metadata Document (CIMD) that describe
Gatehouse to providers; `client_for`, which picks this server's OAuthClient at an issuer — manual
(typed in by an admin), CIMD (the document's URL is the client ID) or RFC 7591 dynamic registration;
and how a client authenticates at the token endpoint.

Network before locks: dynamic registration is sent with no transaction open; only then is the server
row locked to store the result. If a concurrent first connect stored a client meanwhile, that one is
kept and ours is dropped, so every caller ends with the same single client per (server, issuer).
"""

from __future__ import annotations

import logging
from typing import Any

import requests
from django.conf import settings
from django.db import transaction
from django.urls import reverse

from accounts import jsonsafe
from accounts.web import public_url
from mcpsettings import ssrf
from mcpsettings.models import McpServer, OAuthClient, RegistrationMode
from mcpsettings.oauth.metadata import AuthServer, OAuthError, http_session, request_timeout, require_secure

log = logging.getLogger(__name__)


def public_base_url(request=None) -> str:
    if request is None and not settings.GATEHOUSE_PUBLIC_URL:
        raise OAuthError("Set GATEHOUSE_PUBLIC_URL so Gatehouse knows its own address.")
    return public_url(request, "/").rstrip("/")


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


def client_for(server: McpServer, auth: AuthServer, request=None) -> OAuthClient:
    """This server's client at this issuer: manual, CIMD or dynamic (registered again if the issuer moved)."""
    if server.registration_mode == RegistrationMode.MANUAL:
        return _manual_client(server, auth.issuer)
    existing = OAuthClient.objects.filter(server=server, issuer=auth.issuer).first()
    if existing is not None:
        return existing
    base_https = public_base_url(request).startswith("https://")
    if auth.metadata.get("client_id_metadata_document_supported") and (base_https or ssrf.private_networks_allowed()):
        doc = client_metadata_document(request)
        return _store_client(server, auth.issuer, RegistrationMode.CIMD, client_id=doc["client_id"], metadata=doc)
    data = _register(auth, request)  # no transaction is open: the provider may take its time
    return _store_client(
        server,
        auth.issuer,
        RegistrationMode.DCR,
        client_id=str(data["client_id"]),
        client_secret=str(data.get("client_secret") or ""),
        metadata={k: v for k, v in data.items() if k not in ("client_secret", "registration_access_token")},
    )


@transaction.atomic
def _manual_client(server: McpServer, issuer: str) -> OAuthClient:
    """The client an admin typed in (or one already stored for this issuer), moved to this issuer."""
    existing = OAuthClient.objects.select_for_update().filter(server=server, issuer=issuer).first()
    manual = (
        existing
        or OAuthClient.objects.select_for_update()
        .filter(server=server, registration_mode=RegistrationMode.MANUAL)
        .first()
    )
    if manual is None:
        raise OAuthError("This server needs an OAuth client ID typed in by an admin (manual registration).")
    if manual.issuer != issuer:
        manual.issuer = issuer
        manual.save(update_fields=["issuer", "updated_at"])
    return manual


def _register(auth: AuthServer, request=None) -> dict[str, Any]:
    """RFC 7591 dynamic registration at the issuer; the provider's answer (client_id at least)."""
    endpoint = auth.metadata.get("registration_endpoint")
    if not isinstance(endpoint, str):
        raise OAuthError(
            "The authorization server offers neither dynamic registration nor client ID metadata documents; "
            "ask an admin to register Gatehouse there and enter the client ID (manual registration)."
        )
    require_secure(endpoint)
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
        with http_session() as http:
            res = http.post(endpoint, json=body, timeout=request_timeout(), allow_redirects=False)
        data = jsonsafe.loads(res.content) if res.content else {}
    except (requests.RequestException, ValueError):
        raise OAuthError("Dynamic client registration failed: the authorization server did not answer.") from None
    if res.status_code not in (200, 201) or not isinstance(data, dict) or not data.get("client_id"):
        raise OAuthError(f"Dynamic client registration was refused (HTTP {res.status_code}).")
    return data


@transaction.atomic
def _store_client(
    server: McpServer,
    issuer: str,
    mode: str,
    *,
    client_id: str,
    client_secret: str = "",
    metadata: dict[str, Any],
) -> OAuthClient:
    """Store a new client for (server, issuer) unless a concurrent connect stored one first: then that one wins."""
    # The server row serializes client writes for this server (an empty select_for_update locks nothing).
    McpServer.objects.select_for_update().filter(pk=server.pk).values_list("pk", flat=True).first()
    stored = OAuthClient.objects.filter(server=server, issuer=issuer).first()
    if stored is not None:
        # Ours is dropped unused; the provider keeps an idle registration, which holds no secret of ours.
        log.info("oauth: kept the client another request stored for server %s", server.pk)
        return stored
    if mode == RegistrationMode.DCR:
        # Registered again because the issuer moved: the old issuer's dynamic client is of no more use.
        OAuthClient.objects.filter(server=server, registration_mode=RegistrationMode.DCR).exclude(
            issuer=issuer
        ).delete()
    return OAuthClient.objects.create(
        server=server,
        issuer=issuer,
        registration_mode=mode,
        client_id=client_id,
        client_secret=client_secret,
        metadata=metadata,
    )


def client_auth(client: OAuthClient, metadata: dict, form: dict[str, str]) -> tuple[str, str] | None:
    """Public clients send client_id in the form; confidential ones use Basic (or post if only that is offered)."""
    form["client_id"] = client.client_id
    if not client.client_secret:
        return None
    methods = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    if "client_secret_basic" not in methods and "client_secret_post" in methods:
        form["client_secret"] = client.client_secret
        return None
    return (client.client_id, client.client_secret)
