"""Local stand-ins for identity providers the tests cannot reach: GitHub (its OAuth web flow and the REST API
paths allauth calls, in GitHub Enterprise's layout) and a generic OpenID Connect provider (discovery,
authorize, token, userinfo). Each serves on 127.0.0.1 in a thread; the person "signs in" by pressing a
button on the provider's page. They check what a real provider checks (client credentials, exact redirect
URI, single-use codes, PKCE S256) and record every request, so a test sees what Gatehouse sent."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.peers.sdk import free_port


class FakeProvider:
    """`kind` "github" or "oidc"; `users`: login → {"id", "name", "email"}."""

    def __init__(self, kind: str, users: dict[str, dict], client_id: str = "idp-client", secret: str = "idp-secret"):
        self.kind, self.users, self.client_id, self.secret = kind, users, client_id, secret
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.codes: dict[str, dict] = {}
        self.tokens: dict[str, str] = {}
        self.requests: list[dict] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())

    def __enter__(self) -> FakeProvider:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- what the provider answers ---------------------------------------------------------------

    def discovery(self) -> dict:
        return {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "userinfo_endpoint": f"{self.url}/userinfo",
            "jwks_uri": f"{self.url}/jwks",
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "scopes_supported": ["openid", "email", "profile"],
        }

    def page(self, query: dict) -> str:
        buttons = "".join(
            f'<form method="post"><input type="hidden" name="user" value="{html.escape(login)}">'
            f'<button type="submit">Sign in as {html.escape(login)}</button></form>'
            for login in self.users
        )
        return f"<!doctype html><title>{self.kind} sign-in</title><h1>Fake {self.kind}</h1>{buttons}"

    def grant(self, query: dict, login: str) -> str:
        """The redirect back to the client after the person chose `login` (the request checked first)."""
        if query.get("client_id") != self.client_id or login not in self.users:
            raise ValueError("unknown client or user")
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"query": query, "user": login}
        back = {"code": code, "state": query.get("state", "")}
        return query["redirect_uri"] + ("&" if "?" in query["redirect_uri"] else "?") + urlencode(back)

    def exchange(self, form: dict, basic: tuple[str, str] | None) -> dict | None:
        client_id, secret = basic or (form.get("client_id"), form.get("client_secret"))
        found = self.codes.pop(form.get("code", ""), None)  # single use
        if found is None or client_id != self.client_id or secret != self.secret:
            return None
        asked = found["query"]
        if form.get("redirect_uri") != asked.get("redirect_uri"):
            return None
        if asked.get("code_challenge"):
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != asked["code_challenge"]:
                return None
        token = secrets.token_urlsafe(24)
        self.tokens[token] = found["user"]
        return {"access_token": token, "token_type": "bearer", "scope": asked.get("scope", ""), "expires_in": 3600}

    def profile(self, path: str, token: str):
        login = self.tokens.get(token)
        if login is None:
            return None
        user = self.users[login]
        if path.endswith("/user/emails"):
            return [{"email": user["email"], "primary": True, "verified": user.get("verified", True)}]
        if self.kind == "github":
            return {"id": user["id"], "login": login, "name": user.get("name", login), "email": user["email"]}
        verified = user.get("verified", True)
        return {"sub": str(user["id"]), "email": user["email"], "email_verified": verified, "name": user.get("name")}

    # --- HTTP ------------------------------------------------------------------------------------

    def _handler(self):
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _send(self, status: int, body, ctype: str = "application/json", headers: dict | None = None):
                data = (json.dumps(body) if ctype == "application/json" else body).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _query(self) -> dict:
                return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}

            def do_GET(self):
                path, query = urlsplit(self.path).path, self._query()
                provider.requests.append({"method": "GET", "path": path, "query": query})
                if path == "/.well-known/openid-configuration":
                    return self._send(200, provider.discovery())
                if path in ("/login/oauth/authorize", "/authorize"):
                    return self._send(200, provider.page(query), "text/html")
                auth = self.headers.get("Authorization", "")
                answer = provider.profile(path, auth.split(" ", 1)[-1]) if " " in auth else None
                return self._send(200, answer) if answer is not None else self._send(401, {"message": "Bad token"})

            def do_POST(self):
                path, query = urlsplit(self.path).path, self._query()
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                provider.requests.append({"method": "POST", "path": path, "query": query, "form": form})
                if path in ("/login/oauth/authorize", "/authorize"):
                    try:
                        return self._send(302, {}, headers={"Location": provider.grant(query, form.get("user", ""))})
                    except ValueError:
                        return self._send(400, {"error": "invalid_request"})
                basic = None
                if self.headers.get("Authorization", "").startswith("Basic "):
                    pair = base64.b64decode(self.headers["Authorization"][6:]).decode()
                    basic = tuple(pair.split(":", 1))
                answer = provider.exchange(form, basic)
                return self._send(200, answer) if answer else self._send(400, {"error": "invalid_grant"})

        return Handler
