"""Gatehouse benchmarks: gateway overhead (direct vs REST vs /mcp vs ContextForge) and read paths at scale.

    .venv/bin/python bench/run.py            # the full run (make bench): writes bench/RESULTS.md
    .venv/bin/python bench/run.py --smoke    # a few seconds of the same code (make bench-smoke, CI)

Gatehouse runs the way the README tells production users to run it: gunicorn, PostgreSQL, DEBUG off.
Everything listens on 127.0.0.1. The load generator is threads: MCP paths (direct, /mcp, ContextForge) use the
official MCP SDK client (bench/sdk_client.py), one session and event loop per thread; REST uses requests.
Data is seeded by `manage.py bench_seed` (governance), never by Python passed to `manage.py shell`.
"""

from __future__ import annotations

import argparse
import asyncio
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
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import requests
import sdk_client  # bench/sdk_client.py (this script's directory is on sys.path)
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"
DB_NAME = "gatehouse_bench"
BENCH_DB = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
BENCH_EMAIL = "bench@example.com"
BENCH_PASSWORD = "bench-password-123"


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
        DATABASE_URL=BENCH_DB,
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


def bench_seed(env: dict, *args: str) -> dict:
    """governance's `bench_seed` command for the bench user; returns the JSON it prints last."""
    return json.loads(manage(env, "bench_seed", "--email", BENCH_EMAIL, *args).strip().splitlines()[-1])


def reset_db() -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")


# --- load ------------------------------------------------------------------------------------------
#
# A path measures itself in two ways: `sequential(n)` (c=1 latencies after a warm-up) and `worker(ready)`
# (one of the c=16 workers: set up its own session and make one call, then `ready()` waits for the others and
# returns when to stop). Workers are threads; an MCP worker runs its own event loop in its thread.

Window = tuple[list[float], int, float]  # latencies (ms), errors, when its last call ended (monotonic)


def warmups(n: int) -> int:
    return max(3, n // 20)


def timed_sequential(call: Callable[[], None], n: int) -> list[float]:
    for _ in range(warmups(n)):
        call()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def timed_until(call: Callable[[], None], stop: float) -> Window:
    latencies, errors = [], 0
    while time.monotonic() < stop:
        t0 = time.perf_counter()
        try:
            call()
        except Exception:
            errors += 1
            continue
        latencies.append((time.perf_counter() - t0) * 1000)
    return latencies, errors, time.monotonic()


async def timed_sequential_async(call: Callable[[], Awaitable[None]], n: int) -> list[float]:
    for _ in range(warmups(n)):
        await call()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def timed_until_async(call: Callable[[], Awaitable[None]], stop: float) -> Window:
    latencies, errors = [], 0
    while time.monotonic() < stop:
        t0 = time.perf_counter()
        try:
            await call()
        except Exception:
            errors += 1
            continue
        latencies.append((time.perf_counter() - t0) * 1000)
    return latencies, errors, time.monotonic()


def run_concurrent(path, workers: int, seconds: float) -> tuple[float, list[float], int]:
    """Throughput (calls/s), latencies (ms) and errors of `workers` workers calling for `seconds`.

    The window opens when every worker has its session and closes with the last call to finish, so
    session setup and teardown (which differ between clients and servers) are not counted.
    """
    window: dict[str, float] = {}

    def open_window() -> None:
        window["start"] = time.monotonic()
        window["stop"] = window["start"] + seconds

    barrier = threading.Barrier(workers, action=open_window)

    def ready() -> float:
        barrier.wait()
        return window["stop"]

    done: list[Window] = []
    failed: list[BaseException] = []

    def worker() -> None:
        try:
            done.append(path.worker(ready))
        except BaseException as exc:  # a worker that cannot start must not leave the others at the barrier
            failed.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        raise RuntimeError(f"{len(failed)} of {workers} workers failed") from failed[0]
    latencies = [ms for mine, _, _ in done for ms in mine]
    elapsed = max(end for _, _, end in done) - window["start"]
    return len(latencies) / max(elapsed, 1e-9), latencies, sum(errors for _, errors, _ in done)


class McpPath:
    """Tool calls through the official MCP SDK client: one session per worker, initialized once."""

    def __init__(self, url: str, headers: dict[str, str], tool: str) -> None:
        self.url, self.headers, self.tool = url, headers, tool
        self.protocol_versions: set[str] = set()  # as negotiated by each session

    @asynccontextmanager
    async def _caller(self) -> AsyncIterator[Callable[[], Awaitable[None]]]:
        async with sdk_client.session(self.url, self.headers) as client:
            self.protocol_versions.add(client.protocol_version)
            yield await sdk_client.echo_caller(client, self.tool)

    def sequential(self, n: int) -> list[float]:
        async def run() -> list[float]:
            async with self._caller() as call:
                return await timed_sequential_async(call, n)

        return asyncio.run(run())

    def worker(self, ready: Callable[[], float]) -> Window:
        async def run() -> Window:
            async with self._caller() as call:
                await call()
                stop = await asyncio.to_thread(ready)  # off the loop: the session's own tasks keep running
                return await timed_until_async(call, stop)

        return asyncio.run(run())


class RestPath:
    """Governed calls through the REST API: plain HTTP with a keep-alive session (REST is not MCP)."""

    def __init__(self, base: str, key: str, server_id: str) -> None:
        self.base, self.key, self.server_id = base, key, server_id

    def _caller(self) -> Callable[[], None]:
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {self.key}"

        def call() -> None:
            r = s.post(
                f"{self.base}/api/v1/tools/call",
                json={"server": self.server_id, "tool": "echo", "arguments": {"text": "hello"}},
                timeout=30,
            )
            if r.status_code != 200:
                raise RuntimeError(f"bad answer {r.status_code}: {r.text[:200]}")

        return call

    def sequential(self, n: int) -> list[float]:
        return timed_sequential(self._caller(), n)

    def worker(self, ready: Callable[[], float]) -> Window:
        call = self._caller()
        call()
        return timed_until(call, ready())


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
        key = bench_seed(env, "--password", BENCH_PASSWORD, "--key", "bench")["api_key"]

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
            "a_direct": McpPath(upstream, {}, "echo"),
            "b_rest": RestPath(base, key, server_id),
            "c_mcp": McpPath(f"{base}/mcp", auth, "upstream__echo"),
        }
        cf = None
        if not (smoke or args.no_contextforge):
            try:
                import contextforge  # bench/contextforge.py, next to this script

                contextforge.ensure_installed()
                cf = contextforge.ContextForge(port=free_port()).__enter__()
                cf_url = cf.register_upstream("upstream", upstream)
                paths["d_contextforge"] = McpPath(cf_url, cf.headers, cf.tool_name("echo"))
            except Exception as exc:  # the peer is optional; the table says why it is missing
                results["contextforge_error"] = f"{type(exc).__name__}: {exc}"[:500]
        try:
            for name, path in paths.items():
                seq = path.sequential(n_seq)
                rps, lat16, errors = run_concurrent(path, 16, conc_seconds)
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
        results["mcp_client"] = f"mcp {sdk_client.SDK_VERSION}"
        results["protocols"] = {
            name: sorted(path.protocol_versions) for name, path in paths.items() if isinstance(path, McpPath)
        }
        if results["protocols"]["a_direct"] != results["protocols"]["c_mcp"]:
            raise SystemExit(f"direct and /mcp negotiated different protocol versions: {results['protocols']}")

        results["load"] = load_check(env, base, key, server_id, workers=16, seconds=3 if smoke else 30)
        print("load", results["load"], flush=True)
        results["reads"] = read_paths(env, base, key, server_id, log_rows, 20 if smoke else 200)
        results["rss_mb"] = worker_rss_mb(gunicorn.pid)
    finally:
        procs.stop()
    results["machine"] = machine()
    if not smoke:
        (ROOT / "bench" / "RESULTS.md").write_text(render(results))
    print(json.dumps(results, default=str, indent=1)[:4000])


def count_logs() -> int:
    import psycopg

    with psycopg.connect(BENCH_DB) as conn:
        return conn.execute("SELECT count(*) FROM governance_requestlog").fetchone()[0]


def load_check(env: dict, base: str, key: str, server_id: str, *, workers: int, seconds: float) -> dict:
    """N agents make governed calls for a fixed time: no 5xx, and one RequestLog row per call made."""
    before = count_logs()
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
    logged = count_logs() - before
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


def read_paths(env: dict, base: str, key: str, server_id: str, log_rows: int, n: int) -> dict:
    """Seed 24 more servers, 100 tools on each of the 25 and `log_rows` request logs, then time the read paths
    and count their queries."""
    bench_seed(env, "--servers", "24", "--tools", "100", "--log-rows", str(log_rows), "--log-server", server_id)
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {key}"
    web = requests.Session()
    page = web.get(f"{base}/accounts/login/", timeout=30)
    web.post(
        f"{base}/accounts/login/",
        data={
            "username": BENCH_EMAIL,
            "password": BENCH_PASSWORD,
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
    args = [PY, "bench/query_counts.py", BENCH_EMAIL, *paths]
    out = subprocess.run(args, env=env, cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


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


def client_text(r: dict) -> str:
    """Which MCP client and protocol versions the MCP paths used, for the results' header."""
    protocols = r.get("protocols") or {}
    versions = " / ".join(f"{name[2:]} {', '.join(v)}" for name, v in protocols.items())
    return (
        f"the official MCP Python SDK client ({r.get('mcp_client')}, streamable HTTP, its own event loop in each "
        f"worker thread), one session per worker: initialize once, then tools/call (protocol versions negotiated: "
        f"{versions})"
    )


def render(r: dict) -> str:
    p = r["paths"]
    direct = p.get("a_direct", {})
    lines = [
        "# Benchmark results",
        "",
        f"Run: {r['machine']['date']} · {r['machine']['cpus']} CPUs ({r['machine']['cpu']}) · Python "
        f"{r['machine']['python']} · Django {r['machine']['django']} · {r['machine']['postgres']}.",
        "Gatehouse: gunicorn (2 gthread workers × 8 threads), PostgreSQL, DEBUG off, Redis cache. Upstream: the SDK's "
        "MCPServer (JSON, stateless) under uvicorn. Load generator on the same machine (it competes for the 2 cores, "
        "so absolute numbers are pessimistic for every path alike): one thread per worker; MCP paths use "
        f"{client_text(r)}; REST uses `requests` with keep-alive.",
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
        "(c) and (d) use the same MCP client as (a), so their difference is the gateway's. (b) uses `requests`, "
        "a lighter client than the SDK's, so its added latency is understated by the SDK client's own per-call "
        "cost (about 0.3–1.5 ms at c=1 on this machine).",
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
