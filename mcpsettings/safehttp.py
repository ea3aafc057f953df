"""Outbound HTTP that connects only to the address the SSRF check approved.

Every new connection resolves the host once, checks every address (mcpsettings.ssrf), and opens
the socket to a checked address — so a DNS answer that changes between check and connect
(rebinding) cannot slip through. TLS still verifies the certificate against the host name.
Proxies from the environment are ignored: the check must apply to the real destination.

The session never follows a redirect by itself, whatever `allow_redirects` says: requests would
resend custom credential headers and the body (a client secret, a token to revoke) to the new
host. A 3xx comes back to the caller; McpClient._post follows 307/308 hop by hop under its own rules.
"""

from __future__ import annotations

import socket

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError
from urllib3.util import connection as u3conn

from mcpsettings import ssrf


class _PinnedMixin:
    scheme = "http"

    def _new_conn(self) -> socket.socket:
        try:
            target = ssrf.validate_url(f"{self.scheme}://{_bracket(self.host)}:{self.port}/", require_resolution=True)
        except ssrf.SSRFError as exc:
            raise NewConnectionError(self, str(exc)) from exc
        last: OSError | None = None
        for address in target.addresses:
            try:
                return u3conn.create_connection(
                    (address, self.port),
                    self.timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except TimeoutError:
                raise
            except OSError as exc:
                last = exc
        raise NewConnectionError(self, f"Failed to establish a new connection: {last}")


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class PinnedHTTPConnection(_PinnedMixin, HTTPConnection):
    scheme = "http"


class PinnedHTTPSConnection(_PinnedMixin, HTTPSConnection):
    scheme = "https"


class PinnedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = PinnedHTTPConnection


class PinnedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = PinnedHTTPSConnection


class PinnedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": PinnedHTTPConnectionPool, "https": PinnedHTTPSConnectionPool}

    def proxy_manager_for(self, *args, **kwargs):  # pragma: no cover - proxies are never used
        raise requests.exceptions.InvalidURL("Proxies are not used for upstream connections.")


class NoRedirectSession(requests.Session):
    def get_redirect_target(self, resp: requests.Response) -> None:
        return None  # a 3xx is the answer; see the module docstring


def session() -> requests.Session:
    """A requests Session whose every connection is SSRF-checked and pinned, and that never follows redirects."""
    s = NoRedirectSession()
    s.trust_env = False  # no proxies, no .netrc credentials
    adapter = PinnedAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    s.headers["User-Agent"] = "Gatehouse/1.0 (+MCP gateway)"
    return s


def ssrf_reason(exc: BaseException) -> str | None:
    """The SSRF message buried in a requests/urllib3 connection error, if that is what it was."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ssrf.SSRFError):
            return str(exc)
        for arg in getattr(exc, "args", ()):
            if isinstance(arg, BaseException) and id(arg) not in seen:
                inner = ssrf_reason(arg)
                if inner:
                    return inner
        exc = exc.__cause__ or exc.__context__ or getattr(exc, "reason", None)
    return None
