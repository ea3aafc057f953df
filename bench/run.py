"""Gatehouse benchmarks: gateway overhead (direct vs REST vs /mcp vs ContextForge) and read paths at scale.

    .venv/bin/python bench/run.py            # the full run (make bench): writes bench/RESULTS.md
    .venv/bin/python bench/run.py --smoke    # a few seconds of the same code (make bench-smoke, CI)

Gatehouse runs the way the README tells production users to run it: gunicorn, PostgreSQL, DEBUG off.
Everything listens on 127.0.0.1; the load generator is threads with keep-alive sessions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import requests
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"
DB_NAME = "gatehouse_bench"
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


class Procs:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], env: dict, log: Path) -> subprocess.Popen:
        proc = subprocess.Popen(
            args, env=env, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def gatehouse_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO")}
    env.update(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        FIELD_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        MCP_ALLOW_PRIVATE_NETWORKS="true",
        CONN_MAX_AGE="60",
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
        LOG_LEVEL="WARNING",
        CACHE_URL="redis://127.0.0.1:6379/14",
        SECURE_SSL_REDIRECT="false",  # plain http on loopback; production sits behind TLS
    )
    return env


def manage(env: dict, *args: str) -> str:
    out = subprocess.run([PY, "manage.py", *args], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout


def reset_db() -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")


# --- load ------------------------------------------------------------------------------------------


def run_sequential(call, n: int) -> list[float]:
    for _ in range(max(3, n // 20)):  # warm-up
        call()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def run_concurrent(make_call, workers: int, seconds: float) -> tuple[float, list[float], int]:
    """Throughput (calls/s), latencies (ms) and errors with `workers` threads for `seconds`."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    barrier = threading.Barrier(workers)

    def worker() -> None:
        call = make_call()
        call()
        barrier.wait()
        mine = []
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            try:
                call()
            except Exception:
                with lock:
                    errors[0] += 1
                continue
            mine.append((time.perf_counter() - t0) * 1000)
        with lock:
            latencies.extend(mine)

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    return len(latencies) / max(elapsed, 1e-9), latencies, errors[0]


def mcp_caller(url: str, headers: dict, tool: str, *, handshake: bool = True):
    """A per-thread MCP client: one session (initialize once), then tools/call each time."""

    def make():
        s = requests.Session()
        s.headers.update({**ACCEPT, **headers})
        ids = iter(range(1, 10**9))
        if handshake:
            r = s.post(
                url,
                json={
                    "jsonrpc": "2.0",
                    "id": next(ids),
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-06-18",
                        "capabilities": {},
                        "clientInfo": {"name": "bench", "version": "1"},
                    },
                },
                timeout=30,
            )
            r.raise_for_status()
            sid = r.headers.get("Mcp-Session-Id")
            if sid:
                s.headers["Mcp-Session-Id"] = sid
            s.headers["MCP-Protocol-Version"] = "2025-06-18"
            s.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, timeout=30)

        def call():
            r = s.post(
                url,
                json={
                    "jsonrpc": "2.0",
                    "id": next(ids),
                    "method": "tools/call",
                    "params": {"name": tool, "arguments": {"text": "hello"}},
                },
                timeout=30,
            )
            if r.status_code != 200 or '"isError":true' in r.text.replace(" ", "") or "hello" not in r.text:
                raise RuntimeError(f"bad answer {r.status_code}: {r.text[:200]}")

        return call

    return make


def rest_caller(base: str, key: str, server_id: str):
    def make():
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {key}"

        def call():
            r = s.post(
                f"{base}/api/v1/tools/call",
                json={"server": server_id, "tool": "echo", "arguments": {"text": "hello"}},
                timeout=30,
            )
            if r.status_code != 200:
                raise RuntimeError(f"bad answer {r.status_code}: {r.text[:200]}")

        return call

    return make


# --- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="a few seconds, no ContextForge, small data")
    parser.add_argument("--no-contextforge", action="store_true")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    args = parser.parse_args()
    smoke = args.smoke
    n_seq = 30 if smoke else 1000
    conc_seconds = 2 if smoke else 20
    log_rows = 5_000 if smoke else 1_000_000
    logs = ROOT / "bench" / "results"
    logs.mkdir(parents=True, exist_ok=True)

    procs = Procs()
    results: dict = {"paths": {}, "reads": {}, "smoke": smoke}
    try:
        reset_db()
        env = gatehouse_env()
        manage(env, "migrate", "--noinput")
        manage(env, "collectstatic", "--noinput")
        manage(env, "create_user", "bench@example.com", "--password", "bench-password-123")
        key = manage(env, "create_api_key", "bench@example.com", "--name", "bench").strip().splitlines()[-1]

        up_port = free_port()
        procs.start([PY, "bench/upstream.py", str(up_port)], os.environ.copy(), logs / "upstream.log")
        upstream = f"http://127.0.0.1:{up_port}/mcp"
        gh_port = free_port()
        gunicorn = procs.start(
            [
                str(Path(PY).parent / "gunicorn"),
                "config.wsgi",
                "-b",
                f"127.0.0.1:{gh_port}",
                "-w",
                str(args.workers),
                "-k",
                "gthread",
                "--threads",
                "8",
                "--access-logfile",
                "/dev/null",
            ],
            env,
            logs / "gunicorn.log",
        )
        base = f"http://127.0.0.1:{gh_port}"
        wait_http(f"{base}/healthz")
        wait_http(upstream.replace("/mcp", "/"))
        auth = {"Authorization": f"Bearer {key}"}
        res = requests.post(
            f"{base}/api/v1/settings/mcps",
            json={"name": "upstream", "endpoint_url": upstream},
            headers=auth,
            timeout=60,
        )
        res.raise_for_status()
        server_id = res.json()["id"]
        assert res.json()["tools_count"] == 1, res.json()
        requests.patch(
            f"{base}/api/v1/settings/mcps/{server_id}/tools/echo", json={"approval": "always"}, headers=auth, timeout=30
        ).raise_for_status()

        paths = {
            "a_direct": mcp_caller(upstream, {}, "echo", handshake=False),
            "b_rest": rest_caller(base, key, server_id),
            "c_mcp": mcp_caller(f"{base}/mcp", auth, "upstream__echo"),
        }
        cf = None
        if not (smoke or args.no_contextforge):
            try:
                sys.path.insert(0, str(ROOT / "bench"))
                import contextforge

                contextforge.ensure_installed()
                cf = contextforge.ContextForge(port=free_port()).__enter__()
                cf_url = cf.register_upstream("upstream", upstream)
                paths["d_contextforge"] = mcp_caller(cf_url, cf.headers, cf.tool_name("echo"))
            except Exception as exc:  # the peer is optional; the table says why it is missing
                results["contextforge_error"] = f"{type(exc).__name__}: {exc}"[:500]
        try:
            for name, make in paths.items():
                seq = run_sequential(make(), n_seq)
                rps, lat16, errors = run_concurrent(make, 16, conc_seconds)
                results["paths"][name] = {
                    "p50": pct(seq, 50),
                    "p95": pct(seq, 95),
                    "p99": pct(seq, 99),
                    "rps16": rps,
                    "p99_16": pct(lat16, 99),
                    "errors16": errors,
                    "n": len(seq),
                }
                print(name, json.dumps({k: round(v, 2) for k, v in results["paths"][name].items()}), flush=True)
        finally:
            if cf is not None:
                cf.__exit__(None, None, None)

        results["load"] = load_check(env, base, key, server_id, workers=16, seconds=3 if smoke else 30)
        print("load", results["load"], flush=True)
        results["reads"] = read_paths(env, base, key, log_rows, 20 if smoke else 200)
        results["rss_mb"] = worker_rss_mb(gunicorn.pid)
    finally:
        procs.stop()
    results["machine"] = machine()
    if not smoke:
        (ROOT / "bench" / "RESULTS.md").write_text(render(results))
    print(json.dumps(results, default=str, indent=1)[:4000])


def count_logs(env: dict) -> int:
    code = "from governance.models import RequestLog; print(RequestLog.objects.count())"
    res = subprocess.run(
        [PY, "manage.py", "shell", "-c", code], env=env, cwd=ROOT, check=True, capture_output=True, text=True
    )
    return int(res.stdout.strip().splitlines()[-1])


def load_check(env: dict, base: str, key: str, server_id: str, *, workers: int, seconds: float) -> dict:
    """N agents make governed calls for a fixed time: no 5xx, and one RequestLog row per call made."""
    before = count_logs(env)
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def agent() -> None:
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {key}"
        while time.monotonic() < stop:
            r = s.post(
                f"{base}/api/v1/tools/call",
                json={"server": server_id, "tool": "echo", "arguments": {"text": "load"}},
                timeout=60,
            )
            with lock:
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

    threads = [threading.Thread(target=agent) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    calls = sum(statuses.values())
    logged = count_logs(env) - before
    out = {
        "agents": workers,
        "seconds": seconds,
        "calls": calls,
        "statuses": statuses,
        "logged": logged,
        "server_errors": sum(n for code, n in statuses.items() if code >= 500),
    }
    if out["server_errors"] or logged != calls:
        raise SystemExit(f"load check failed: {out}")
    return out


def read_paths(env: dict, base: str, key: str, log_rows: int, n: int) -> dict:
    """Seed 25 servers × 100 tools and `log_rows` request logs, then time the read paths and count queries."""
    seed = f"""
import uuid
from django.db import connection
from django.utils import timezone
from accounts.models import User
from mcpsettings.models import McpServer, McpTool
from governance.models import ToolApproval
user = User.objects.get(email="bench@example.com")
now = timezone.now()
servers = []
for i in range(24):
    servers.append(McpServer.objects.create(owner=user, name=f"scale-{{i}}", endpoint_url="https://93.184.216.34/mcp",
                                            status="active", created_by=user))
for s in McpServer.objects.filter(owner=user):
    McpTool.objects.bulk_create([McpTool(server=s, name=f"t{{j}}", description="A tool.", digest="0"*64,
                                          input_schema={{"type": "object"}}, last_seen=now) for j in range(100)],
                                ignore_conflicts=True)
    ToolApproval.objects.get_or_create(user=user, server=s, tool_name="t0", approval_type="always")
server_id = McpServer.objects.filter(owner=user).first().pk
with connection.cursor() as c:
    c.execute(
        "INSERT INTO governance_requestlog (user_id, server_id, server_name, tool_name, method, via, request_body,"
        " response_body, status, status_code, duration_ms, user_agent, error_message, created_at)"
        " SELECT %s, %s, 'upstream', 'echo', 'tools/call', 'api', '{{}}'::jsonb, '{{}}'::jsonb,"
        " CASE WHEN g %% 10 = 0 THEN 'upstream_error' ELSE 'ok' END, CASE WHEN g %% 10 = 0 THEN 502 ELSE 200 END,"
        " (g %% 200), 'bench', '', now() - (g || ' seconds')::interval FROM generate_series(1, %s) g",
        [user.pk, server_id, {log_rows}],
    )
    c.execute("ANALYZE governance_requestlog")
print("seeded")
"""
    subprocess.run([PY, "manage.py", "shell", "-c", seed], env=env, cwd=ROOT, check=True, capture_output=True)
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {key}"
    web = requests.Session()
    page = web.get(f"{base}/accounts/login/", timeout=30)
    web.post(
        f"{base}/accounts/login/",
        data={
            "username": "bench@example.com",
            "password": "bench-password-123",
            "csrfmiddlewaretoken": web.cookies["csrftoken"],
        },
        headers={"Referer": f"{base}/accounts/login/"},
        timeout=30,
    )
    assert page.status_code == 200
    targets = {
        "GET /api/v1/tools (25×100)": (api, "/api/v1/tools"),
        "GET /api/v1/settings/mcps": (api, "/api/v1/settings/mcps"),
        f"GET /api/v1/logs ({log_rows:,} rows)": (api, "/api/v1/logs"),
        f"/activity/ ({log_rows:,} rows)": (web, "/activity/"),
    }
    counts = query_counts(env, ["/api/v1/tools", "/api/v1/settings/mcps", "/api/v1/logs", "/activity/"])
    out = {}
    for (label, (session, path)), queries in zip(targets.items(), counts, strict=True):
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            r = session.get(f"{base}{path}", timeout=60)
            times.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 200:
                raise RuntimeError(f"{path}: {r.status_code}")
        out[label] = {"p50": pct(times, 50), "p95": pct(times, 95), "queries": queries}
        print(label, out[label], flush=True)
    return out


def query_counts(env: dict, paths: list[str]) -> list[int]:
    code = f"""
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from accounts.models import User
c = Client(HTTP_HOST="127.0.0.1")
c.force_login(User.objects.get(email="bench@example.com"))
out = []
for path in {paths!r}:
    c.get(path)
    with CaptureQueriesContext(connection) as ctx:
        r = c.get(path)
    out.append(len(ctx.captured_queries))
print(out)
"""
    res = subprocess.run(
        [PY, "manage.py", "shell", "-c", code], env=env, cwd=ROOT, check=True, capture_output=True, text=True
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def worker_rss_mb(master_pid: int) -> float:
    peak = 0
    for status in Path("/proc").glob("*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        if f"PPid:\t{master_pid}\n" in text:
            for line in text.splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
    return round(peak / 1024, 1)


def machine() -> dict:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import django

    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "django": django.get_version(),
        "postgres": shutil.which("psql")
        and subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.strip(),
    }


def render(r: dict) -> str:
    p = r["paths"]
    direct = p.get("a_direct", {})
    lines = [
        "# Benchmark results",
        "",
        f"Run: {r['machine']['date']} · {r['machine']['cpus']} CPUs ({r['machine']['cpu']}) · Python "
        f"{r['machine']['python']} · Django {r['machine']['django']} · {r['machine']['postgres']}.",
        "Gatehouse: gunicorn (2 gthread workers × 8 threads), PostgreSQL, DEBUG off, Redis cache. Upstream: the SDK's "
        "MCPServer (JSON, stateless) under uvicorn. Load generator: Python threads with keep-alive on the same machine "
        "(it competes for the 2 cores, so absolute numbers are pessimistic for every path alike).",
        "",
        "## Tool call latency and throughput",
        "",
        "| path | p50 ms (c=1) | p95 ms | p99 ms | calls/s (c=16) | p99 ms (c=16) | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    names = {
        "a_direct": "(a) direct to upstream",
        "b_rest": "(b) Gatehouse REST /api/v1/tools/call",
        "c_mcp": "(c) Gatehouse /mcp tools/call",
        "d_contextforge": "(d) ContextForge /servers/<id>/mcp",
    }
    for key, label in names.items():
        if key in p:
            v = p[key]
            lines.append(
                f"| {label} | {v['p50']:.2f} | {v['p95']:.2f} | {v['p99']:.2f} | {v['rps16']:.0f} | "
                f"{v['p99_16']:.2f} | {v['errors16']} |"
            )
    if "contextforge_error" in r:
        lines.append(f"\nContextForge could not be measured: {r['contextforge_error']}")
    lines += [
        "",
        "## Added latency over the direct call (c=1)",
        "",
        "| path | added p50 ms | added p99 ms | throughput vs direct (c=16) |",
        "|---|---|---|---|",
    ]
    for key in ("b_rest", "c_mcp", "d_contextforge"):
        if key in p and direct:
            v = p[key]
            lines.append(
                f"| {names[key]} | {v['p50'] - direct['p50']:.2f} | {v['p99'] - direct['p99']:.2f} | "
                f"{100 * v['rps16'] / direct['rps16']:.0f} % |"
            )
    if "d_contextforge" in p and direct:
        cf = p["d_contextforge"]["p50"] - direct["p50"]
        for key in ("b_rest", "c_mcp"):
            ratio = (p[key]["p50"] - direct["p50"]) / cf if cf > 0 else float("nan")
            lines.append(f"\nGatehouse {names[key]} added p50 / ContextForge added p50 = **{ratio:.2f}**")
    lines += [
        "",
        "## Read paths at scale (PostgreSQL)",
        "",
        "| request | p50 ms | p95 ms | SQL queries |",
        "|---|---|---|---|",
    ]
    for label, v in r["reads"].items():
        lines.append(f"| {label} | {v['p50']:.1f} | {v['p95']:.1f} | {v['queries']} |")
    load = r.get("load") or {}
    lines += [
        "",
        "## Load",
        "",
        f"{load.get('agents')} concurrent agents for {load.get('seconds')} s through the REST "
        f"API: {load.get('calls')} calls, statuses {load.get('statuses')}, {load.get('server_errors')} server "
        f"errors, {load.get('logged')} RequestLog rows written (one per call).",
        "",
    ]
    lines += ["", f"Peak RSS of one gunicorn worker: **{r.get('rss_mb')} MB**.", ""]
    notes = ROOT / "bench" / "notes.md"
    if notes.exists():  # targets and the before/after history, kept by hand
        lines += ["", notes.read_text()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
