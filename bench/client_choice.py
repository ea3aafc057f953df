"""Which HTTP client for the upstream hot path: client CPU and wall time per call, measured.

    .venv/bin/python bench/client_choice.py                 # N=2000 calls x 3 rounds per candidate
    .venv/bin/python bench/client_choice.py -n 500 --rounds 1 --upstream sdk

Each candidate sends the POST Gatehouse sends for a pooled tools/call (same headers, same JSON-RPC body)
N times in a row over one kept-alive connection to an upstream on 127.0.0.1, reads the answer in 16 KiB
pieces (as mcp_client.wire does) and parses it. Every candidate connects through the SSRF-pinned connect
(mcpsettings.safehttp), so the connection setup is the production one; with keep-alive it happens once.

The upstream runs in another process, so the client's CPU is `time.thread_time()` of the calling thread
(and `time.process_time()` of this process, which also holds nothing else). `--upstream plain` (default) is a
minimal threaded HTTP/1.1 server (keep-alive, a fixed JSON-RPC result) so that wall time is mostly the
client; `--upstream sdk` is bench/upstream.py (the official SDK's MCPServer under uvicorn).

Candidates: requests.Session through the pinned adapter (what McpClient used), urllib3's pool with the
pinned connection class, http.client.HTTPConnection kept alive, httpx.Client and httpx2.Client with a pinned
network backend (when importable), and Gatehouse's own transport (mcpsettings.mcp_client.transport), built on
http.client's response parser. The machine is shared: rounds alternate the candidates and the table gives
the median of the round means.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STATELESS = "2026-07-28"
CHUNK = 16 * 1024
RESULT = b'"result":{"content":[{"type":"text","text":"hello"}],"isError":false}}'


# --- the upstream -----------------------------------------------------------------------------------


class _Plain(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        found = re.search(rb'"id":\s*(\d+)', body)
        answer = b'{"jsonrpc":"2.0","id":' + (found.group(1) if found else b"null") + b"," + RESULT
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(answer)}\r\n\r\n"
        self.wfile.write(head.encode() + answer)  # one segment: no Nagle / delayed-ACK stall


def serve_plain(port: int) -> None:
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", port), _Plain).serve_forever()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_upstream(kind: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    if kind == "sdk":
        args = [sys.executable, str(ROOT / "bench" / "upstream.py"), str(port)]
    else:
        args = [sys.executable, __file__, "--serve", str(port)]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return proc, f"http://127.0.0.1:{port}/mcp"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the upstream did not come up")


# --- what Gatehouse sends ------------------------------------------------------------------------------


def headers() -> dict[str, str]:
    return {
        "User-Agent": "Gatehouse/1.0 (+MCP gateway)",
        "Accept": "application/json, text/event-stream",
        "Authorization": "Bearer bench-token-0123456789abcdef",
        "MCP-Protocol-Version": STATELESS,
        "Content-Type": "application/json",
        "Mcp-Method": "tools/call",
        "Mcp-Name": "echo",
    }


def body(request_id: int) -> bytes:
    meta = {
        "io.modelcontextprotocol/protocolVersion": STATELESS,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "gatehouse", "title": "Gatehouse MCP gateway", "version": "1.0"},
    }
    params = {"name": "echo", "arguments": {"text": "hello"}, "_meta": meta}
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}).encode()


def check(data: bytes, request_id: int) -> None:
    answer = json.loads(data)
    if answer.get("id") != request_id or "result" not in answer:
        raise RuntimeError(f"unexpected answer: {data[:200]!r}")


# --- the candidates: each returns (call(request_id), close()) -------------------------------------------

Candidate = tuple[Callable[[int], None], Callable[[], None]]


def with_requests(url: str) -> Candidate:
    from mcpsettings import safehttp  # after django.setup(): ssrf reads settings

    session = safehttp.session()
    sent = headers()

    def call(i: int) -> None:
        res = session.post(url, data=body(i), headers=sent, timeout=(30, 30), stream=True, allow_redirects=False)
        data = b"".join(res.iter_content(chunk_size=CHUNK))
        res.close()
        check(data, i)

    return call, session.close


def with_urllib3(url: str) -> Candidate:
    import urllib3  # only this candidate needs it directly

    from mcpsettings import safehttp

    pool = safehttp.PinnedHTTPConnectionPool(
        "127.0.0.1", int(url.split(":")[2].split("/")[0]), maxsize=16, retries=False, timeout=urllib3.Timeout(30, 30)
    )
    sent = headers()

    def call(i: int) -> None:
        res = pool.urlopen(
            "POST", "/mcp", body=body(i), headers=sent, preload_content=False, redirect=False, retries=False
        )
        data = b"".join(res.stream(CHUNK))
        res.release_conn()
        check(data, i)

    return call, pool.close


def with_http_client(url: str) -> Candidate:
    from mcpsettings import safehttp

    class Pinned(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = safehttp.connect_pinned("http", self.host, self.port, self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    port = int(url.split(":")[2].split("/")[0])
    conn = Pinned("127.0.0.1", port, timeout=30)
    sent = headers()

    def call(i: int) -> None:
        conn.request("POST", "/mcp", body=body(i), headers=sent)
        res = conn.getresponse()
        parts = []
        while chunk := res.read1(CHUNK):
            parts.append(chunk)
        res.close()  # read1 leaves a response read to its length open
        check(b"".join(parts), i)

    return call, conn.close


def _with_httpx(url: str, httpx, httpcore) -> Candidate:
    from mcpsettings import safehttp

    class PinnedBackend(httpcore.SyncBackend):
        def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
            sock = safehttp.connect_pinned("http", host, port, timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return httpcore._backends.sync.SyncStream(sock)

    transport = httpx.HTTPTransport(retries=0)
    transport._pool._network_backend = PinnedBackend()  # the pool has no public switch for it
    client = httpx.Client(transport=transport, follow_redirects=False, trust_env=False, timeout=30)
    sent = headers()

    def call(i: int) -> None:
        with client.stream("POST", url, content=body(i), headers=sent) as res:
            data = b"".join(res.iter_raw(CHUNK))
        check(data, i)

    return call, client.close


def with_httpx(url: str) -> Candidate:
    import httpcore  # optional: not a Gatehouse dependency
    import httpx

    return _with_httpx(url, httpx, httpcore)


def with_httpx2(url: str) -> Candidate:
    import httpcore2  # optional: the MCP SDK's fork of httpx (a test dependency here)
    import httpx2

    return _with_httpx(url, httpx2, httpcore2)


def with_gatehouse(url: str) -> Candidate:
    from mcpsettings.mcp_client import transport  # the chosen one, as McpClient uses it

    pool = transport.Transport()
    sent = headers()

    def call(i: int) -> None:
        res = pool.request("POST", url, sent, body(i), timeout=30)
        try:
            data = b"".join(res.iter_content(CHUNK))
        finally:
            res.close()
        check(data, i)

    return call, pool.close


def with_mcp_client(url: str) -> Candidate:
    from mcpsettings.mcp_client import McpClient  # the whole client, not just the transport

    client = McpClient(url, headers={"Authorization": "Bearer bench-token-0123456789abcdef"}, timeout=30)
    client.assume_stateless()

    def call(i: int) -> None:
        client.call_tool("echo", {"text": "hello"})

    return call, client.close


CANDIDATES: dict[str, Callable[[str], Candidate]] = {
    "requests.Session (pinned adapter)": with_requests,
    "urllib3 pool (pinned connection)": with_urllib3,
    "http.client kept alive (pinned)": with_http_client,
    "httpx.Client (pinned backend)": with_httpx,
    "httpx2.Client (pinned backend)": with_httpx2,
    "gatehouse transport (http.client)": with_gatehouse,
    "McpClient.call_tool (whole client)": with_mcp_client,
}


# --- measuring ----------------------------------------------------------------------------------------


def measure(make: Callable[[str], Candidate], url: str, n: int) -> dict[str, float]:
    call, close = make(url)
    try:
        for i in range(1, 101):  # warm up: connection, imports, caches
            call(i)
        walls = []
        cpu0, proc0, wall0 = time.thread_time(), time.process_time(), time.perf_counter()
        for i in range(101, 101 + n):
            start = time.perf_counter()
            call(i)
            walls.append(time.perf_counter() - start)
        cpu, proc, wall = time.thread_time() - cpu0, time.process_time() - proc0, time.perf_counter() - wall0
    finally:
        close()
    walls.sort()
    return {
        "cpu_us": cpu / n * 1e6,
        "proc_us": proc / n * 1e6,
        "wall_us": wall / n * 1e6,
        "p50_us": walls[len(walls) // 2] * 1e6,
        "p99_us": walls[int(len(walls) * 0.99)] * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="calls per candidate and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--upstream", choices=["plain", "sdk"], default="plain")
    parser.add_argument("--only", nargs="*", help="substrings of candidate names to run")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_plain(args.serve)
        return

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-not-used-for-anything-0123456789")
    os.environ.setdefault("FIELD_ENCRYPTION_KEY", Fernet.generate_key().decode())
    os.environ["MCP_ALLOW_PRIVATE_NETWORKS"] = "true"  # the upstream is on 127.0.0.1
    import django  # after the environment above

    django.setup()
    for name in ("httpx", "httpx2", "httpcore", "httpcore2"):  # per-request INFO logs are not the client's cost
        logging.getLogger(name).setLevel(logging.WARNING)

    usable = {name: make for name, make in CANDIDATES.items() if not args.only or any(p in name for p in args.only)}
    proc, url = start_upstream(args.upstream)
    results: dict[str, list[dict[str, float]]] = {}
    try:
        for round_no in range(args.rounds):
            order = list(usable) if round_no % 2 == 0 else list(reversed(usable))
            for name in order:
                try:
                    results.setdefault(name, []).append(measure(usable[name], url, args.n))
                except ImportError as exc:
                    print(f"skipped {name}: {exc}", file=sys.stderr)
                    results.pop(name, None)
                    usable.pop(name)
    finally:
        proc.terminate()
        proc.wait(10)
    report(results, args)


def report(results: dict[str, list[dict[str, float]]], args) -> None:
    python = sys.version.split()[0]
    print(f"\nupstream={args.upstream}, N={args.n} x {args.rounds} rounds (median of round means), Python {python}\n")
    print("| client | client CPU µs/call (thread) | process CPU µs/call | wall µs/call | wall p50 µs | wall p99 µs |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rows in results.items():
        med = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
        print(
            f"| {name} | {med['cpu_us']:.0f} | {med['proc_us']:.0f} | {med['wall_us']:.0f} "
            f"| {med['p50_us']:.0f} | {med['p99_us']:.0f} |"
        )


if __name__ == "__main__":
    main()
