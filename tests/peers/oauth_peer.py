"""An OAuth 2.1-protected MCP peer for the tests, built from the SDK's own authorization-server pieces.

One uvicorn app on 127.0.0.1 serves both roles, so the issuer and the MCP endpoint share an origin:

  /mcp                                        the MCP endpoint (`build_server()` tools); needs a Bearer token
  /.well-known/oauth-protected-resource/mcp   RFC 9728 metadata (the SDK serves only this path-suffixed form)
  /.well-known/oauth-authorization-server     RFC 8414 metadata
  /authorize  /token  /register  /revoke      the SDK handlers, around `PeerProvider`

/authorize approves at once (302 to the redirect_uri with `code` and `state`), so no browser is needed.
Flags the SDK has no option for are applied by small ASGI wrappers that rewrite its responses.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

import uvicorn
from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    AuthorizeError,
    ProviderTokenVerifier,
    RefreshToken,
    TokenError,
    construct_redirect_uri,
)
from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions, RevocationOptions
from mcp.shared.auth import InvalidRedirectUriError, OAuthClientInformationFull, OAuthToken
from pydantic import AnyHttpUrl, AnyUrl, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.peers.sdk import PagedServer, build_server, free_port

CODE_TTL = 300  # seconds an authorization code stays exchangeable
AS_METADATA_PATH = "/.well-known/oauth-authorization-server"


def _same_resource(a: str, b: str) -> bool:
    """RFC 8707 indicators compared as URLs (case, default port), a trailing slash aside."""
    try:
        return str(AnyHttpUrl(a)).removesuffix("/") == str(AnyHttpUrl(b)).removesuffix("/")
    except ValidationError:
        return False


def _params(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Query/form pairs as a dict; a repeated key (e.g. two `resource`s) keeps all its values as a list."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            out[key] = [*out[key], value] if isinstance(out[key], list) else [out[key], value]
        else:
            out[key] = value
    return out


class UrlClient(OAuthClientInformationFull):
    """A client whose client_id is its metadata-document URL (CIMD). The peer fetches nothing, so it
    cannot know the document's redirect_uris: any explicit redirect_uri is accepted."""

    def validate_redirect_uri(self, redirect_uri: AnyUrl | None) -> AnyUrl:
        if redirect_uri is None:
            raise InvalidRedirectUriError("redirect_uri is required for a URL client_id")
        return redirect_uri


class PeerProvider:
    """In-memory `OAuthAuthorizationServerProvider`; the public lists record what clients sent."""

    def __init__(
        self, *, resource: str, scopes: tuple[str, ...], access_ttl: int, rotate_refresh: bool, cimd: bool
    ) -> None:
        self.resource, self.scopes = resource, list(scopes)
        self.access_ttl, self.rotate_refresh, self.cimd = access_ttl, rotate_refresh, cimd
        # Records for assertions (filled by `RecordRequests` and the methods below).
        self.authorize_requests: list[dict[str, Any]] = []
        self.token_requests: list[dict[str, Any]] = []
        self.refresh_count = 0
        self.revoked: list[str] = []
        self.registered_clients: dict[str, OAuthClientInformationFull] = {}
        self.url_clients: dict[str, UrlClient] = {}
        # Live state.
        self.codes: dict[str, AuthorizationCode] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.refresh_of: dict[str, str] = {}  # access token -> the refresh token issued with it
        # Test hooks: hold each registration until this many have arrived (so concurrent ones overlap);
        # a blocking callable run (off the event loop) when a token is revoked.
        self.hold_registrations = 0
        self._arrived = 0
        self._all_arrived: asyncio.Event | None = None
        self.on_revoke: Callable[[], None] | None = None

    # -- clients --

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        if client_id in self.registered_clients:
            return self.registered_clients[client_id]
        if self.cimd and client_id.startswith(("https://", "http://")):
            if client_id not in self.url_clients:
                self.url_clients[client_id] = UrlClient(
                    client_id=client_id,
                    token_endpoint_auth_method="none",
                    grant_types=["authorization_code", "refresh_token"],
                    scope=" ".join(self.scopes) or None,
                )
            return self.url_clients[client_id]
        return None

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        self.registered_clients[client_info.client_id] = client_info
        if self.hold_registrations:
            if self._all_arrived is None:
                self._all_arrived = asyncio.Event()  # created on the server's event loop
            self._arrived += 1
            if self._arrived >= self.hold_registrations:
                self._all_arrived.set()
            await asyncio.wait_for(self._all_arrived.wait(), timeout=20)

    # -- authorization code grant --

    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        if params.resource is not None and not _same_resource(params.resource, self.resource):
            raise AuthorizeError("invalid_target", f"unknown resource {params.resource}")
        # No scope requested: grant what the client registered for (DCR defaults that to all scopes).
        scopes = params.scopes if params.scopes is not None else (client.scope or "").split()
        code = secrets.token_urlsafe(32)
        self.codes[code] = AuthorizationCode(
            code=code,
            scopes=scopes,
            expires_at=time.time() + CODE_TTL,
            client_id=client.client_id,
            code_challenge=params.code_challenge,
            redirect_uri=params.redirect_uri,
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            resource=params.resource,
        )
        return construct_redirect_uri(str(params.redirect_uri), code=code, state=params.state)

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> AuthorizationCode | None:
        return self.codes.get(authorization_code)

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: AuthorizationCode
    ) -> OAuthToken:
        # Single use: a second exchange of the same code finds nothing.
        if self.codes.pop(authorization_code.code, None) is None:
            raise TokenError("invalid_grant", "authorization code already used")
        return self._issue(client.client_id, authorization_code.scopes, authorization_code.resource)

    # -- refresh grant --

    async def load_refresh_token(self, client: OAuthClientInformationFull, refresh_token: str) -> RefreshToken | None:
        return self.refresh_tokens.get(refresh_token)

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: RefreshToken, scopes: list[str]
    ) -> OAuthToken:
        if refresh_token.token not in self.refresh_tokens:  # revoked between load and exchange
            raise TokenError("invalid_grant", "refresh token revoked")
        keep = None if self.rotate_refresh else refresh_token
        if self.rotate_refresh:
            del self.refresh_tokens[refresh_token.token]
        tokens = self._issue(client.client_id, scopes, refresh_token.resource, keep_refresh=keep)
        self.refresh_count += 1
        return tokens

    def _issue(
        self, client_id: str, scopes: list[str], resource: str | None, keep_refresh: RefreshToken | None = None
    ) -> OAuthToken:
        # Tokens are bound to this MCP endpoint even when the client sent no resource indicator.
        resource = resource or self.resource
        access = secrets.token_urlsafe(32)
        self.access_tokens[access] = AccessToken(
            token=access,
            client_id=client_id,
            scopes=scopes,
            expires_at=int(time.time()) + self.access_ttl,
            resource=resource,
        )
        refresh = keep_refresh or RefreshToken(
            token=secrets.token_urlsafe(32), client_id=client_id, scopes=scopes, resource=resource
        )
        self.refresh_tokens[refresh.token] = refresh
        self.refresh_of[access] = refresh.token
        return OAuthToken(
            access_token=access,
            expires_in=self.access_ttl,
            scope=" ".join(scopes) or None,
            refresh_token=refresh.token,
        )

    # -- access tokens and revocation --

    async def load_access_token(self, token: str) -> AccessToken | None:
        # The SDK's bearer backend refuses tokens whose expires_at has passed.
        return self.access_tokens.get(token)

    async def revoke_token(self, token: AccessToken | RefreshToken) -> None:
        if self.on_revoke is not None:
            await asyncio.to_thread(self.on_revoke)  # it may touch the database: not on the event loop
        self.revoked.append(token.token)
        # Revoke the pair, whichever half was presented.
        if isinstance(token, AccessToken):
            self.access_tokens.pop(token.token, None)
            self.refresh_tokens.pop(self.refresh_of.get(token.token, ""), None)
        else:
            self.refresh_tokens.pop(token.token, None)
            for access in [a for a, r in list(self.refresh_of.items()) if r == token.token]:
                self.access_tokens.pop(access, None)

    # -- test controls (called from the test thread; single dict operations are atomic under the GIL) --

    def expire_access_tokens(self) -> None:
        past = int(time.time()) - 1
        for token in list(self.access_tokens.values()):
            token.expires_at = past

    def revoke_all_refresh_tokens(self) -> None:
        self.refresh_tokens.clear()


async def _read_body(receive: Receive) -> bytes:
    body, more = b"", True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class RecordRequests:
    """ASGI wrapper: record the raw parameters of /authorize and /token (the SDK hands the provider only
    the fields it models, so extras like `audience` and the token request's `resource` are lost there).

    It also smooths two SDK strictnesses that RFC-conforming clients trip over, after recording:
    with HTTP Basic client authentication the SDK still wants client_id (and at /revoke client_secret) in
    the form, and /revoke refuses a public client that sends no client_secret.
    """

    def __init__(self, app: ASGIApp, provider: PeerProvider) -> None:
        self.app, self.provider = app, provider

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope.get("path"), scope.get("method")
        if scope["type"] != "http" or path not in ("/authorize", "/token", "/revoke"):
            await self.app(scope, receive, send)
            return
        if method == "GET":
            if path == "/authorize":
                query = scope.get("query_string", b"").decode("latin-1")
                self.provider.authorize_requests.append(_params(parse_qsl(query, keep_blank_values=True)))
            await self.app(scope, receive, send)
            return
        if method != "POST":
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        if path == "/authorize":
            self.provider.authorize_requests.append(_params(pairs))
        elif path == "/token":
            self.provider.token_requests.append(_params(pairs))
        body = self._normalized(scope, path, pairs, body)
        headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await self.app({**scope, "headers": headers}, _replay(body, receive), send)

    @staticmethod
    def _normalized(scope: Scope, path: str, pairs: list[tuple[str, str]], body: bytes) -> bytes:
        if path == "/authorize":
            return body
        fields = dict(pairs)
        extra: list[tuple[str, str]] = []
        auth = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        if auth[:6].lower() == "basic ":
            try:
                client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                client_id = secret = ""
            if client_id and "client_id" not in fields:
                extra.append(("client_id", unquote(client_id)))
            if secret and "client_secret" not in fields:
                extra.append(("client_secret", unquote(secret)))
        if path == "/revoke" and "client_secret" not in fields and not any(k == "client_secret" for k, _ in extra):
            extra.append(("client_secret", ""))
        if not extra:
            return body
        return body + (b"&" if body else b"") + urlencode(extra).encode()


class RewriteResponses:
    """ASGI wrapper: adjust the SDK's responses where it has no option for a test flag."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metadata: Callable[[dict[str, Any]], None],
        resource_metadata_in_challenge: bool,
        mcp_path: str,
    ) -> None:
        self.app, self.metadata = app, metadata
        self.strip_challenge, self.mcp_path = not resource_metadata_in_challenge, mcp_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == AS_METADATA_PATH and scope["method"] == "GET":
            await self.app(scope, receive, self._buffered(send, self._rewrite_metadata))
        elif scope["path"] == self.mcp_path and self.strip_challenge:
            await self.app(scope, receive, self._strip_resource_metadata(send))
        else:
            await self.app(scope, receive, send)

    def _rewrite_metadata(self, body: bytes) -> bytes:
        document = json.loads(body)
        self.metadata(document)
        return json.dumps(document).encode()

    @staticmethod
    def _buffered(send: Send, rewrite: Callable[[bytes], bytes]) -> Callable[[Message], Awaitable[None]]:
        """Hold the response until its body is complete, rewrite it (2xx only), fix content-length."""
        start: Message | None = None
        chunks: list[bytes] = []

        async def buffered(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            if 200 <= start["status"] < 300:
                body = rewrite(body)
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        return buffered

    @staticmethod
    def _strip_resource_metadata(send: Send) -> Callable[[Message], Awaitable[None]]:
        async def stripped(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (401, 403):
                headers = []
                for key, value in message["headers"]:
                    if key.lower() == b"www-authenticate":
                        value = re.sub(rb',?\s*resource_metadata="[^"]*"', b"", value)
                    headers.append((key, value))
                message = {**message, "headers": headers}
            await send(message)

        return stripped


class OAuthPeer:
    """A running OAuth-protected SDK server. Use as a context manager.

    Flags (all off the SDK's defaults only where noted):
      s256=False          metadata advertises code_challenge_methods_supported ["plain"] (the SDK still
                          accepts only S256 at /authorize)
      wrong_issuer=True   metadata "issuer" is http://evil.example
      cimd=True           metadata says client_id_metadata_document_supported; URL client_ids are accepted
      dcr=False           no /register route and no registration_endpoint (the SDK's own option)
      access_ttl          lifetime of access tokens in seconds (expires_in)
      rotate_refresh      each refresh grant replaces the refresh token
      scopes              scopes_supported (AS and PRM); tokens must carry all of them to reach /mcp
      resource_metadata_in_challenge=False
                          401s carry no resource_metadata, so clients must use the well-known URL
      hold_registrations  each dynamic registration is answered only once this many have arrived
    """

    def __init__(
        self,
        *,
        s256: bool = True,
        wrong_issuer: bool = False,
        cimd: bool = False,
        dcr: bool = True,
        access_ttl: int = 3600,
        rotate_refresh: bool = True,
        scopes: tuple[str, ...] = ("mcp.read", "mcp.write"),
        resource_metadata_in_challenge: bool = True,
        stateless: bool = False,
        server: PagedServer | None = None,
        hold_registrations: int = 0,
    ) -> None:
        self.s256, self.wrong_issuer, self.cimd, self.dcr = s256, wrong_issuer, cimd, dcr
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"  # the SDK allows http for loopback issuers
        self.url = f"{self.issuer}/mcp"
        self.provider = PeerProvider(
            resource=self.url, scopes=scopes, access_ttl=access_ttl, rotate_refresh=rotate_refresh, cimd=cimd
        )
        self.provider.hold_registrations = hold_registrations
        self.server = server or build_server()
        auth = AuthSettings.model_validate(
            {
                # Strings, not AnyHttpUrl(...): only when AuthSettings parses the string itself does a
                # path-less issuer keep its form without a trailing slash (RFC 8414 compares it exactly).
                "issuer_url": self.issuer,
                "resource_server_url": self.url,
                # Refuse tokens bound to another resource (the provider binds every token to self.url).
                "validate_token_resource": True,
                "required_scopes": list(scopes) or None,  # also what PRM lists as scopes_supported
                "client_registration_options": ClientRegistrationOptions(
                    enabled=dcr, valid_scopes=list(scopes) or None, default_scopes=list(scopes) or None
                ),
                "revocation_options": RevocationOptions(enabled=True),
            }
        )
        # build_server() makes an MCPServer without auth; its low-level server takes the auth pieces directly.
        app = self.server._lowlevel_server.streamable_http_app(
            json_response=True,
            stateless_http=stateless,
            auth=auth,
            token_verifier=ProviderTokenVerifier(self.provider),
            auth_server_provider=self.provider,
        )
        app = RewriteResponses(
            app,
            metadata=self._rewrite_metadata,
            resource_metadata_in_challenge=resource_metadata_in_challenge,
            mcp_path="/mcp",
        )
        self.app = RecordRequests(app, self.provider)
        self.uvicorn = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                lifespan="on",
                timeout_graceful_shutdown=2,
            )
        )
        self.thread = threading.Thread(target=self.uvicorn.run, daemon=True)

    @property
    def resource_metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/oauth-protected-resource/mcp"

    def _rewrite_metadata(self, document: dict[str, Any]) -> None:
        # The SDK registers and serves public ("none") clients but does not advertise the method.
        for key in ("token_endpoint_auth_methods_supported", "revocation_endpoint_auth_methods_supported"):
            if key in document and "none" not in document[key]:
                document[key].append("none")
        if not self.s256:
            document["code_challenge_methods_supported"] = ["plain"]
        if self.wrong_issuer:
            document["issuer"] = "http://evil.example"
        if self.cimd:
            document["client_id_metadata_document_supported"] = True

    def register_manual_client(self, client_id: str, client_secret: str, redirect_uris: list[str]) -> None:
        """A pre-registered confidential client; it may authenticate with client_secret_post or _basic."""
        self.provider.registered_clients[client_id] = OAuthClientInformationFull(
            client_id=client_id,
            client_secret=client_secret,
            redirect_uris=[AnyUrl(u) for u in redirect_uris],
            # The SDK enforces exactly the registered method; RecordRequests copies Basic credentials into
            # the form, so client_secret_basic works too.
            token_endpoint_auth_method="client_secret_post",
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            scope=" ".join(self.provider.scopes) or None,
            client_id_issued_at=int(time.time()),
        )

    def expire_access_tokens(self) -> None:
        self.provider.expire_access_tokens()

    def revoke_all_refresh_tokens(self) -> None:
        self.provider.revoke_all_refresh_tokens()

    def __enter__(self) -> OAuthPeer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.uvicorn.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("The OAuth MCP peer did not start.")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.uvicorn.should_exit = True
        self.thread.join(5)
        if self.thread.is_alive():
            self.uvicorn.force_exit = True
            self.thread.join(5)
