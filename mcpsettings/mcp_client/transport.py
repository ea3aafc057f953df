"""HTTP/1.1 for McpClient: kept-alive, SSRF-pinned connections read by http.client's response reader.

Chosen by measurement (bench/client_choice.py, 2,000 kept-alive tools/call POSTs): client CPU per call was
~680 µs with requests, ~320 µs with urllib3's pool, ~670 µs with httpx, ~190 µs with http.client's own
HTTPConnection, and ~125 µs here (http.client's status line and body reader, with the request written in
one send and the response headers parsed without `email.parser`). Standard library only. It keeps every
rule the requests-based client had:

- Every new connection resolves the host once, checks every address and connects to a checked one
  (safehttp.connect_pinned): a DNS answer that changes between check and connect cannot slip through.
- TLS verifies the certificate and the host name (certifi's CA bundle, as requests used).
- No proxy from the environment; a 3xx is returned as it is (McpClient._post follows 307/308 hop by hop
  under its own rules). Answers are read piece by piece, so mcp_client.wire can cap their size and
  enforce a deadline while reading.
- Failures are McpError with the sentences McpClient always used.

Connections are kept alive per client and origin, so a call costs one round trip and no handshake. An idle
connection is polled before it is reused: one the server has closed (its FIN or RST arrived) is dropped and
the request goes out on a new one, so a stale connection is never an error. A request is sent a second time
only when not one byte of it left (see Transport.request). A client may be used by several threads at once
(upstream.POOL hands the same client to concurrent calls): each request holds a connection of its own, and
only the list of idle connections is shared, under a lock.
"""

from __future__ import annotations

import http.client
import json
import re
import select
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Iterator
from functools import lru_cache
from urllib.parse import quote, urlsplit

from mcpsettings import safehttp, ssrf
from mcpsettings.mcp_client.errors import McpError

USER_AGENT = "Gatehouse/1.0 (+MCP gateway)"
ACCEPT_ENCODING = "gzip, deflate"  # what requests offered; decoded below, under the same size cap
CHUNK = 16 * 1024
MAX_IDLE = 16  # idle connections kept per origin and client (requests' pool_maxsize)
MAX_ORIGINS = 4  # origins per client with idle connections (its own, and where it redirects)
IDLE_SECONDS = 55.0  # a connection idle longer is not reused (less when the server says so)
MAX_LINE, MAX_HEADERS = 65536, 100  # http.client's limits
FRAMING = {"host", "content-length", "transfer-encoding", "connection"}  # set here, never by the caller
_BAD_NAME = re.compile(r"[\s:\x00]")
_BAD_VALUE = re.compile(r"^\s|[\r\n\x00]")
_SAFE_IN_TARGET = "!#$%&'()*+,/:;=?@[]~"  # requests' requote_uri: everything else is percent-encoded
Origin = tuple[str, str, int]


class _NothingSent(Exception):
    """The socket accepted not one byte of the request."""


class Headers(dict):
    """Response headers, looked up case-insensitively; repeated headers joined with ", " (as requests did)."""

    def get(self, name: str, default=None):
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name) -> bool:
        return dict.__contains__(self, name.lower()) if isinstance(name, str) else False


class _Reader(http.client.HTTPResponse):
    """http.client's response reader (status line, chunked decoding, read1) with a lighter header parser:
    `email.parser`, which http.client uses, costs ~25 µs a response on the hot path."""

    def begin(self) -> None:
        while True:
            version, status, reason = self._read_status()
            if status != http.client.CONTINUE:
                break
            _read_headers(self.fp)
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        self.headers = self.msg = _read_headers(self.fp)
        self.chunked = (self.headers.get("transfer-encoding") or "").lower() == "chunked"
        self.chunk_left = None
        self.will_close = self._check_close()
        self.length = None
        length = self.headers.get("content-length")
        if length and not self.chunked:
            try:
                self.length = int(length) if int(length) >= 0 else None
            except ValueError:
                self.length = None
        if status in (http.client.NO_CONTENT, http.client.NOT_MODIFIED) or status < 200 or self._method == "HEAD":
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True  # the body ends when the connection does


def _read_headers(fp) -> Headers:
    headers = Headers()
    last = None
    for _ in range(MAX_HEADERS + 1):
        line = fp.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise http.client.LineTooLong("header line")
        if line in (b"\r\n", b"\n", b""):
            return headers
        text = line.decode("iso-8859-1")
        if text[0] in " \t" and last:  # obsolete line folding
            headers[last] = f"{dict.__getitem__(headers, last)} {text.strip()}"
            continue
        name, colon, value = text.partition(":")
        if not colon:
            continue
        last, value = name.strip().lower(), value.strip()
        old = dict.get(headers, last)
        headers[last] = value if old is None else f"{old}, {value}"
    raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")


class _Connection:
    __slots__ = ("idle_limit", "idle_since", "origin", "reused", "sock")

    def __init__(self, sock: socket.socket, origin: Origin) -> None:
        self.sock = sock
        self.origin = origin
        self.reused = False
        self.idle_since = 0.0
        self.idle_limit = IDLE_SECONDS

    def usable(self, now: float) -> bool:
        """Idle and still open: the server has not closed it (EOF or RST would make it readable)."""
        if now - self.idle_since >= self.idle_limit:
            return False
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return False  # bytes nobody asked for
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        try:
            return not poller.poll(0)
        except OSError:
            return False

    def send(self, data: bytes) -> None:
        view, sent = memoryview(data), 0
        while sent < len(view):
            try:
                sent += self.sock.send(view[sent:])
            except OSError as exc:
                if sent == 0:
                    raise _NothingSent() from exc
                raise

    def stop(self) -> None:
        """From another thread: a read or write blocked on this connection returns at once (and fails)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Response:
    """One answer: status, headers, and the body piece by piece (iter_content). Close it when done: a body
    read to its end gives the connection back for the next call, anything else closes it."""

    def __init__(self, transport: Transport, conn: _Connection, reader: _Reader) -> None:
        self.status_code = reader.status
        self.reason = reader.reason
        self.headers: Headers = reader.headers
        self._transport, self._conn, self._reader = transport, conn, reader
        self._done = reader.length == 0 and not reader.chunked

    def iter_content(self, chunk_size: int = CHUNK) -> Iterator[bytes]:
        encoding = (self.headers.get("content-encoding") or "").strip().lower()
        if encoding in ("gzip", "x-gzip", "deflate"):
            return _decoded(self._raw_chunks(chunk_size), chunk_size)
        return self._raw_chunks(chunk_size)

    def _raw_chunks(self, chunk_size: int) -> Iterator[bytes]:
        reader = self._reader
        try:
            while not self._done:
                chunk = reader.read1(chunk_size)
                if chunk:
                    yield chunk
                elif reader.length:
                    raise http.client.IncompleteRead(b"", reader.length)  # closed before Content-Length
                else:
                    self._done = True  # length reached, last chunk read, or the connection ended the body
                if reader.length == 0:
                    self._done = True
        except TimeoutError:
            raise McpError("timeout", "The server stopped sending before the answer was complete.") from None
        except (OSError, http.client.HTTPException):
            raise McpError("unreachable", "The connection to the server broke while it was answering.") from None

    def set_timeout(self, seconds: float | None) -> None:
        """How long a read may wait (None: as long as it takes; a long-lived event stream)."""
        if self._conn is not None:
            self._conn.sock.settimeout(seconds)

    def abort(self) -> None:
        """Stop reading from another thread: a read blocked on the socket returns at once (and fails)."""
        conn = self._conn
        if conn is not None:
            conn.stop()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        self._reader.close()  # its file object only; the socket belongs to the connection
        if self._done and not self._reader.will_close:
            self._transport.release(conn, self.headers.get("keep-alive"))
        else:
            conn.close()


def _decoded(chunks: Iterator[bytes], chunk_size: int) -> Iterator[bytes]:
    """Inflate gzip/deflate a piece at a time, so that the size cap counts what the server really sends."""
    decoder = zlib.decompressobj(32 + zlib.MAX_WBITS)  # gzip or zlib header, detected
    try:
        for data in chunks:
            while True:
                out = decoder.decompress(data, chunk_size)
                if out:
                    yield out
                data = decoder.unconsumed_tail
                if not data and len(out) < chunk_size:
                    break
    except zlib.error:
        raise McpError("protocol", "The server's compressed answer is corrupt.") from None


class Transport:
    """Kept-alive connections for one McpClient, shared safely by threads."""

    def __init__(self) -> None:
        self._idle: dict[Origin, list[_Connection]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def request(
        self, method: str, url: str, headers: dict[str, str], body: bytes, *, timeout: float, on_socket=None
    ) -> Response:
        """One request. `on_socket(stop)` is told, before anything is sent, how to stop it from another thread."""
        try:
            origin, target, host = _route(url)
        except ssrf.SSRFError as exc:
            raise McpError("blocked", str(exc)) from None
        data = _head(method, target, host, headers, len(body)) + body
        conn = self._checkout(origin, timeout)
        try:
            return self._exchange(conn, method, data, timeout, on_socket)
        except _NothingSent as exc:
            if not conn.reused:
                raise _unreachable(exc.__cause__, timeout) from None
        # Sending again is safe, and happens at most once: the kernel accepted not one byte of the request on
        # that kept-alive connection (the server had closed it), so the server received nothing and cannot
        # have run the tool. tools/call is not idempotent: once a byte has left, a broken connection is an
        # error, never a retry (it may have run).
        conn = self._connect(origin, timeout)
        try:
            return self._exchange(conn, method, data, timeout, on_socket)
        except _NothingSent as exc:
            raise _unreachable(exc.__cause__, timeout) from None

    def _exchange(self, conn: _Connection, method: str, data: bytes, timeout: float, on_socket=None) -> Response:
        reader = None
        if on_socket is not None:
            on_socket(conn.stop)
        try:
            conn.sock.settimeout(timeout)
            conn.send(data)
            reader = _Reader(conn.sock, method=method)
            reader.begin()
            return Response(self, conn, reader)
        except BaseException as exc:
            if reader is not None:
                reader.close()
            conn.close()
            if isinstance(exc, _NothingSent):
                raise
            if isinstance(exc, TimeoutError):
                raise McpError("timeout", f"The server did not answer within {timeout:g} s.") from None
            if isinstance(exc, (OSError, http.client.HTTPException)):
                raise _unreachable(exc, timeout) from None
            raise

    def _checkout(self, origin: Origin, timeout: float) -> _Connection:
        stale = []
        conn = None
        now = time.monotonic()
        with self._lock:
            idle = self._idle.get(origin)
            while idle:
                candidate = idle.pop()  # the most recently used first
                if candidate.usable(now):
                    conn = candidate
                    break
                stale.append(candidate)
        for old in stale:
            old.close()
        return conn or self._connect(origin, timeout)

    def _connect(self, origin: Origin, timeout: float) -> _Connection:
        scheme, host, port = origin
        try:
            sock = safehttp.connect_pinned(scheme, host, port, timeout)
        except ssrf.SSRFError as exc:
            raise McpError("blocked", str(exc)) from None
        except TimeoutError:
            raise McpError("timeout", f"Connecting to the server timed out after {timeout:g} s.") from None
        except OSError as exc:
            raise _unreachable(exc, timeout) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if scheme == "https":
            try:
                sock = safehttp.tls_context().wrap_socket(sock, server_hostname=host)
            except BaseException as exc:
                sock.close()
                if isinstance(exc, TimeoutError):
                    raise McpError("timeout", f"Connecting to the server timed out after {timeout:g} s.") from None
                if isinstance(exc, ssl.SSLError):  # includes a certificate that does not name the host
                    raise McpError("unreachable", "The server's TLS certificate could not be verified.") from None
                if isinstance(exc, OSError):
                    raise _unreachable(exc, timeout) from None
                raise
        return _Connection(sock, origin)

    def release(self, conn: _Connection, keep_alive: str | None) -> None:
        """Keep a connection whose answer was read to its end for the next request (when there is room)."""
        conn.reused = True
        conn.idle_since = time.monotonic()
        conn.idle_limit = _idle_limit(keep_alive)
        with self._lock:
            idle = self._idle.get(conn.origin)
            if idle is None and len(self._idle) < MAX_ORIGINS and not self._closed:
                idle = self._idle[conn.origin] = []
            if idle is not None and len(idle) < MAX_IDLE and not self._closed:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Close the idle connections; one still in use closes when its answer is done."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()


def _unreachable(exc: BaseException | None, timeout: float) -> McpError:
    if isinstance(exc, TimeoutError):
        return McpError("timeout", f"The server did not answer within {timeout:g} s.")
    return McpError("unreachable", "The server cannot be reached (connection refused or reset).")


def _idle_limit(keep_alive: str | None) -> float:
    """How long to keep a connection idle: a second less than the server's `Keep-Alive: timeout=N`, if any."""
    if keep_alive:
        for part in keep_alive.split(","):
            name, _, value = part.strip().partition("=")
            if name.strip().lower() == "timeout":
                try:
                    return max(0.0, min(IDLE_SECONDS, float(value) - 1))
                except ValueError:
                    break
    return IDLE_SECONDS


@lru_cache(maxsize=512)
def _route(url: str) -> tuple[Origin, str, str]:
    """(origin, request target, Host header) of a URL the SSRF rules accept in shape."""
    parsed = ssrf.parse_url(url)
    parts = urlsplit(parsed.url)
    target = quote(parts.path or "/", safe=_SAFE_IN_TARGET)
    if parts.query:
        target += "?" + quote(parts.query, safe=_SAFE_IN_TARGET)
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    if parsed.port != (443 if parsed.scheme == "https" else 80):
        host = f"{host}:{parsed.port}"
    return (parsed.scheme, parsed.host, parsed.port), target, host


def _head(method: str, target: str, host: str, headers: dict[str, str], length: int) -> bytes:
    """The request line and headers. A value outside Latin-1 raises UnicodeEncodeError (McpClient says the
    credential cannot be sent); CR/LF/NUL, or white space leading a value, is refused as requests refused it."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    given = set()
    for name, value in headers.items():
        key = name.lower()
        if key in FRAMING:
            continue
        if not name or _BAD_NAME.search(name) or not isinstance(value, str) or _BAD_VALUE.search(value):
            raise McpError("unreachable", "The request to the server failed.")
        given.add(key)
        lines.append(f"{name}: {value}")
    if "user-agent" not in given:
        lines.append(f"User-Agent: {USER_AGENT}")
    if "accept-encoding" not in given:
        lines.append(f"Accept-Encoding: {ACCEPT_ENCODING}")
    lines.append(f"Content-Length: {length}\r\n\r\n")
    return "\r\n".join(lines).encode("latin-1")


def dumps(message: dict) -> bytes:
    """A JSON-RPC message as the body of a POST (no NaN or Infinity: JSON has none)."""
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
