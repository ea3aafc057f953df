"""Where a server's authorization server is, and what it offers; the HTTP under every OAuth step.

Owns: RFC 9728 protected-resource metadata (from the 401 challenge, else the well-known URL),
RFC 8414 / OpenID authorization-server metadata, the checks on it (same issuer, https endpoints,
PKCE S256, resource match), the scopes to ask for, and the revocation endpoint. Also the raw
fetches the other modules use: every URL goes through the SSRF-pinned session and must be https
(loopback http only under MCP_ALLOW_PRIVATE_NETWORKS). Nothing here touches the database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from django.conf import settings

from accounts import jsonsafe
from mcpsettings import safehttp, ssrf
from mcpsettings.models import McpServer

MAX_METADATA_BYTES = 512 * 1024


class OAuthError(Exception):
    """Anything that stops an OAuth step. The message is for the person at the keyboard."""

    def __init__(self, message: str, *, code: str = "oauth_error") -> None:
        super().__init__(message)
        self.code = code


@dataclass
class AuthServer:
    resource: str
    issuer: str
    metadata: dict[str, Any]
    scopes: list[str] = field(default_factory=list)
    scopes_supported: list[str] = field(default_factory=list)
    resource_metadata_url: str = ""


# --- HTTP --------------------------------------------------------------------------------------


def require_secure(url: str) -> None:
    target = ssrf.parse_url(url)
    if target.scheme == "https":
        return
    literal = ssrf.parse_ip_literal(target.host)
    loopback = (literal is not None and literal.is_loopback) or target.host == "localhost"
    if not (loopback and ssrf.private_networks_allowed()):
        raise OAuthError(f"OAuth endpoints must use https: {target.host} does not.")


def http_session() -> requests.Session:
    return safehttp.session()


def request_timeout() -> tuple[float, float]:
    t = float(settings.MCP_HTTP_TIMEOUT)
    return (t, t)


def get_json(url: str, *, optional: bool = False) -> dict | None:
    """GET a JSON document (metadata). `optional`: a 404/400 answers None instead of failing."""
    require_secure(url)
    try:
        ssrf.validate_url(url)
        with http_session() as http:
            res = http.get(
                url,
                headers={"Accept": "application/json"},
                timeout=request_timeout(),
                allow_redirects=False,
                stream=True,
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
        data = jsonsafe.loads(body)
    except ValueError:  # jsonsafe.UnsafeJSON too (deep, out-of-range): never a RecursionError
        if optional:
            return None
        raise OAuthError(f"{urlsplit(url).path} on {urlsplit(url).netloc} is not JSON.") from None
    if not isinstance(data, dict):
        raise OAuthError("The OAuth metadata document is not a JSON object.")
    return data


def post_form(url: str, data: dict[str, str], *, auth: tuple[str, str] | None = None) -> tuple[int, dict]:
    """POST a form (token, refresh, revocation): the status and the JSON object answered ({} if none)."""
    require_secure(url)
    try:
        with http_session() as http:
            res = http.post(
                url,
                data=data,
                auth=auth,
                headers={"Accept": "application/json"},
                timeout=request_timeout(),
                allow_redirects=False,
            )
    except requests.RequestException as exc:
        reason = safehttp.ssrf_reason(exc)
        raise OAuthError(reason or f"Could not reach {urlsplit(url).netloc}.") from None
    try:
        payload = jsonsafe.loads(res.content) if res.content else {}
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
        with http_session() as http:
            res = http.post(
                server.endpoint_url,
                json=body,
                timeout=request_timeout(),
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


def as_metadata_urls(issuer: str) -> list[str]:
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


def _protected_resource_metadata(server: McpServer, challenge: dict[str, str]) -> tuple[dict | None, str]:
    """RFC 9728 metadata and its URL: the one the challenge names, else the first well-known URL that answers."""
    if challenge.get("resource_metadata"):
        return get_json(challenge["resource_metadata"]), challenge["resource_metadata"]
    for candidate in _well_known_prm(server.endpoint_url):
        prm = get_json(candidate, optional=True)
        if prm is not None:
            return prm, candidate
    return None, ""


def _issuer(server: McpServer, prm: dict | None) -> str:
    issuers: list[str] = []
    if prm:
        issuers = [s for s in prm.get("authorization_servers") or [] if isinstance(s, str)]
    if not issuers and server.oauth_issuer_url:
        issuers = [server.oauth_issuer_url]
    if not issuers:
        raise OAuthError("The server does not say which authorization server to use (no protected-resource metadata).")
    return issuers[0]


def _authorization_server_metadata(issuer: str) -> dict[str, Any]:
    """The issuer's metadata, checked: same issuer, https endpoints, PKCE S256."""
    metadata = None
    for url in as_metadata_urls(issuer):
        metadata = get_json(url, optional=True)
        if metadata is not None:
            break
    if metadata is None:
        raise OAuthError(f"No authorization-server metadata found for {issuer}.")
    if not _same_issuer(str(metadata.get("issuer", "")), issuer):
        raise OAuthError("The authorization server's metadata names a different issuer; refusing to continue.")
    for key in ("authorization_endpoint", "token_endpoint"):
        if not isinstance(metadata.get(key), str):
            raise OAuthError(f"The authorization server's metadata has no {key}.")
        require_secure(metadata[key])
    if "S256" not in (metadata.get("code_challenge_methods_supported") or []):
        raise OAuthError("The authorization server does not support PKCE with S256; Gatehouse will not connect.")
    return metadata


def _resource(server: McpServer, prm: dict | None) -> str:
    resource = canonical_resource(server.endpoint_url)
    if prm and isinstance(prm.get("resource"), str):
        if canonical_resource(prm["resource"]) != resource and not resource.startswith(
            canonical_resource(prm["resource"])
        ):
            raise OAuthError("The protected-resource metadata is for a different server; refusing to continue.")
        resource = prm["resource"]
    return resource


def discover_auth_server(server: McpServer) -> AuthServer:
    """Probe the server, then read its protected-resource and authorization-server metadata."""
    challenge = _probe(server)
    prm, prm_url = _protected_resource_metadata(server, challenge)
    issuer = _issuer(server, prm)
    metadata = _authorization_server_metadata(issuer)
    resource = _resource(server, prm)
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


def revocation_endpoint(issuer: str) -> str | None:
    """The issuer's RFC 7009 revocation endpoint, or None (none advertised, or the metadata is unreachable)."""
    try:
        for url in as_metadata_urls(issuer):
            doc = get_json(url, optional=True)
            if doc:
                endpoint = doc.get("revocation_endpoint")
                return endpoint if isinstance(endpoint, str) else None
    except OAuthError:
        return None
    return None
