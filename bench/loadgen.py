"""The benchmark's load generator: one thread, non-blocking keep-alive sockets, pre-built requests.

Every path (direct, plain proxy, REST, /mcp, ContextForge) is driven by the same code: `c` connections, each
sending its pre-built HTTP/1.1 request bytes, waiting for the whole answer, checking it, and sending again at
once (a closed loop, like wrk). No HTTP library on the hot path: the answer's status line and Content-Length (or
chunked framing) are parsed by hand, so a call costs the generator a few tens of microseconds of CPU, which
`Result.cpu_ms` reports.

    result = run(Target("127.0.0.1", 8000, [request_bytes]), concurrency=16, seconds=10, warmup=1)
"""

from __future__ import annotations

import re
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

GENERATOR = (
    "bench/loadgen.py: one Python thread, epoll over c keep-alive TCP connections, pre-built HTTP/1.1 requests, "
    "closed loop (each connection sends its next call as soon as the answer is complete), hand-parsed answers"
)


def http_request(method: str, path: str, host: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    """Request bytes: the given headers in order, then Host and Content-Length unless already there."""
    names = {name.lower() for name, _ in headers}
    lines = [f"{method} {path} HTTP/1.1"]
    if "host" not in names:
        lines.append(f"Host: {host}")
    lines += [f"{name}: {value}" for name, value in headers if name.lower() != "content-length"]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


_IS_ERROR = re.compile(rb'"isError"\s*:\s*true')


def tool_answer_ok(status: int, body: bytes) -> bool:
    """The check applied to every path's answer: HTTP 200, a `result`, the echoed text, and no tool error."""
    return status == 200 and b'"result"' in body and b"hello" in body and not _IS_ERROR.search(body)


@dataclass
class Target:
    host: str
    port: int
    requests: list[bytes]  # connection i sends requests[i % len(requests)] (per-connection sessions)
    check: Callable[[int, bytes], bool] = tool_answer_ok


@dataclass
class Result:
    concurrency: int
    calls: int = 0  # answered and checked, sent inside the window
    errors: int = 0  # wrong status or body, or a dropped connection
    seconds: float = 0.0  # from the window's start to the last answer of a call sent inside it
    latencies_ms: list[float] = field(default_factory=list)
    cpu_ms: float = 0.0  # the generator's own CPU time over the window
    reconnects: int = 0
    first_error: str = ""

    @property
    def rps(self) -> float:
        return self.calls / self.seconds if self.seconds > 0 else 0.0

    def pct(self, p: float) -> float:
        return percentile(self.latencies_ms, p)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


class _Conn:
    __slots__ = (
        "buf",
        "chunked",
        "close",
        "head_end",
        "length",
        "measured",
        "request",
        "sent",
        "sock",
        "status",
        "t0",
        "writing",
    )

    def __init__(self, request: bytes) -> None:
        self.sock: socket.socket | None = None
        self.request = request
        self.writing = False
        self.reset()

    def reset(self) -> None:
        self.sent = 0
        self.buf = bytearray()
        self.t0 = 0.0
        self.measured = False
        self.head_end = -1
        self.status = 0
        self.length = -1
        self.chunked = False
        self.close = False


def _connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock


def _complete(conn: _Conn) -> bytes | None:
    """The body once the whole answer is in `conn.buf`, else None (parses the head on first sight)."""
    buf = conn.buf
    if conn.head_end < 0:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        conn.head_end = end + 4
        head = bytes(buf[:end]).lower()
        conn.status = int(head[9:12])
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip(), value.strip()
            if name == b"content-length":
                conn.length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value:
                conn.chunked = True
            elif name == b"connection" and value == b"close":
                conn.close = True
        if not conn.chunked and conn.length < 0:
            conn.length = 0 if conn.status in (204, 304) or 100 <= conn.status < 200 else -1
            if conn.length < 0:
                conn.close = True  # read until the server closes
                return None
    start = conn.head_end
    if not conn.chunked:
        if conn.length >= 0 and len(buf) - start >= conn.length:
            return bytes(buf[start : start + conn.length])
        return None
    body, pos = bytearray(), start
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
        if size == 0:
            return bytes(body) if buf.find(b"\r\n\r\n", eol) >= 0 else None
        if len(buf) < eol + 2 + size + 2:
            return None
        body += buf[eol + 2 : eol + 2 + size]
        pos = eol + 2 + size + 2


def run(
    target: Target,
    concurrency: int,
    seconds: float = 0.0,
    *,
    warmup: float = 1.0,
    count: int = 0,
    on_window: Callable[[], object] | None = None,
    warmup_cap: float = 60.0,
    stall: float = 60.0,
) -> Result:
    """`concurrency` connections calling in a closed loop, then a window of `seconds` (or, with `count`, until
    that many calls were sent) in which calls are recorded.

    The window opens once `warmup` seconds have passed *and* every connection has had an answer (so no
    connection's first call, which may set up a session or an upstream client, is ever recorded), or after
    `warmup_cap` more seconds whatever happened. Calls sent in the window are recorded until their answer; the
    window's length runs to the last such answer. `on_window` is called as the window opens (e.g. to read CPU
    counters). If no answer at all comes for `stall` seconds, the calls in flight count as errors and it ends."""
    sel = selectors.DefaultSelector()
    conns = [_Conn(target.requests[i % len(target.requests)]) for i in range(concurrency)]
    result = Result(concurrency=concurrency)
    now = time.perf_counter
    inf = float("inf")
    warm_until = now() + warmup
    start = stop = inf
    answered: set[int] = set()  # connections that had an answer (warm)
    sent_in_window = 0
    outstanding = 0  # calls sent in the window and not yet answered
    last_answer = 0.0
    last_progress = now()
    cpu0 = 0.0

    def send(conn: _Conn) -> None:
        nonlocal sent_in_window, outstanding
        conn.reset()
        conn.t0 = now()
        if conn.t0 >= start:
            conn.measured = True
            sent_in_window += 1
            outstanding += 1
        _flush(conn)

    def _flush(conn: _Conn) -> None:
        try:
            n = conn.sock.send(memoryview(conn.request)[conn.sent :])
        except BlockingIOError:
            n = 0
        conn.sent += n
        writing = conn.sent < len(conn.request)
        if writing != conn.writing:  # ask for write readiness only while a request is partly sent
            conn.writing = writing
            sel.modify(conn.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if writing else 0), conn)

    def may_send() -> bool:
        if count:
            return start == inf or sent_in_window < count
        return now() < stop

    def note_error(why: str) -> None:
        result.first_error = result.first_error or why

    def fail(conn: _Conn, why: str) -> None:
        nonlocal outstanding
        if conn.measured:
            result.errors += 1
            outstanding -= 1
        note_error(why)
        conn.measured = False

    def reopen(conn: _Conn) -> None:
        try:
            sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        conn.sock = _connect(target.host, target.port)
        sel.register(conn.sock, selectors.EVENT_READ, conn)
        conn.writing = False
        result.reconnects += 1

    for conn in conns:
        conn.sock = _connect(target.host, target.port)
        sel.register(conn.sock, selectors.EVENT_READ, conn)
    for conn in conns:
        send(conn)
    try:
        while True:
            if start == inf:
                t = now()
                if t >= warm_until and (len(answered) == concurrency or t >= warm_until + warmup_cap):
                    if on_window is not None:
                        on_window()
                    cpu0 = time.thread_time()
                    start = last_answer = now()
                    stop = start + seconds if not count else inf
            elif outstanding == 0 and not may_send():
                break
            if now() - last_progress > stall:
                result.errors += outstanding
                note_error(f"no answer for {stall:g} s")
                break
            for key, events in sel.select(timeout=0.05 if start == inf else 0.5):
                conn: _Conn = key.data
                if events & selectors.EVENT_WRITE and conn.sent < len(conn.request):
                    _flush(conn)
                if not events & selectors.EVENT_READ:
                    continue
                try:
                    data = conn.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    data, err = b"", str(exc)
                else:
                    err = "the server closed the connection"
                if not data:
                    body = bytes(conn.buf[conn.head_end :]) if conn.close and conn.head_end >= 0 else None
                    if body is None:
                        fail(conn, err)
                        reopen(conn)
                        conn.t0 = 0.0
                        if may_send():
                            send(conn)
                        continue
                else:
                    conn.buf += data
                    body = _complete(conn)
                    if body is None:
                        continue
                t1 = last_progress = now()
                ok = target.check(conn.status, body)
                if not ok:
                    note_error(f"HTTP {conn.status}: {body[:300]!r}")
                if conn.measured:
                    outstanding -= 1
                    if ok:
                        result.calls += 1
                        result.latencies_ms.append((t1 - conn.t0) * 1000)
                        last_answer = max(last_answer, t1)
                    else:
                        result.errors += 1
                elif ok:
                    answered.add(id(conn))
                conn.t0 = 0.0
                conn.measured = False
                if conn.close:
                    reopen(conn)
                if may_send():
                    send(conn)
    finally:
        for conn in conns:
            if conn.sock is not None:
                conn.sock.close()
        sel.close()
    result.cpu_ms = (time.thread_time() - cpu0) * 1000
    result.seconds = max(last_answer - start, 1e-9)
    return result
