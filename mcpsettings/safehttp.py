"""Outbound HTTP that connects only to the address the SSRF check approved.

Every new connection resolves the host once, checks every address (mcpsettings.ssrf), and opens
the socket to a checked address (`connect_pinned`) — so a DNS answer that changes between check and
connect (rebinding) cannot slip through. TLS still verifies the certificate against the host name.
Proxies from the environment are ignored: the check must apply to the real destination.

Two clients use it: McpClient's own transport (mcp_client.transport, the hot path) calls `connect_pinned`
and `tls_context`; the requests Session below (OAuth discovery, registration, tokens) mounts urllib3
connection classes that call `connect_pinned` too.

The session never follows a redirect by itself, whatever `allow_redirects` says: requests would
resend custom credential headers and the body (a client secret, a token to revoke) to the new
host. A 3xx comes back to the caller; McpClient._post follows 307/308 hop by hop under its own rules.
"""

from __future__ import annotations

import socket
import ssl
from functools import cache

import certifi
import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError
from urllib3.util import connection as u3conn

from mcpsettings import ssrf


def checked_addresses(scheme: str, host: str, port: int) -> tuple[str, ...]:
    """Resolve the host once and check every address (raises ssrf.SSRFError): the only ones to connect to."""
    return ssrf.validate_url(f"{scheme}://{_bracket(host)}:{port}/", require_resolution=True).addresses


def connect_pinned(scheme: str, host: str, port: int, timeout, connect=socket.create_connection, **kwargs):
    """A socket to an address the SSRF check approved for this host, resolved once for this connection.

    Never resolves again after the check (that is how DNS rebinding works). Raises ssrf.SSRFError, TimeoutError
    (the first address that times out ends it) or the last OSError when no address accepts.
    """
    last: OSError | None = None
    for address in checked_addresses(scheme, host, port):
        try:
            return connect((address, port), timeout, **kwargs)
        except TimeoutError:
            raise
        except OSError as exc:
            last = exc
    raise last or OSError("no address to connect to")


class _PinnedMixin:
    scheme = "http"

    def _new_conn(self) -> socket.socket:
        try:
            return connect_pinned(
                self.scheme,
                self.host,
                self.port,
                self.timeout,
                u3conn.create_connection,
                source_address=self.source_address,
                socket_options=self.socket_options,
            )
        except ssrf.SSRFError as exc:
            raise NewConnectionError(self, str(exc)) from exc
        except TimeoutError:
            raise
        except OSError as exc:
            raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from None


@cache
def tls_context() -> ssl.SSLContext:
    """Verifies the certificate chain (certifi's CA bundle, as requests uses) and the host name."""
    context = ssl.create_default_context(cafile=certifi.where())
    context.set_alpn_protocols(["http/1.1"])
    return context


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
