"""Gatehouse benchmarks: what a governed tool call adds, against a protocol-matched direct baseline, a plain
WSGI proxy floor and ContextForge; CPU and memory per call; read paths at scale.

    .venv/bin/python bench/run.py            # the full run (make bench): adds a dated section to bench/RESULTS.md
    .venv/bin/python bench/run.py --smoke    # the same code with tiny counts (make bench-smoke, CI)
    .venv/bin/python bench/run.py --seconds 3 --c1-seconds 2 --no-contextforge   # a short look (not recorded)

Gatehouse runs the way the README tells production users to run it: gunicorn (gthread), PostgreSQL, Redis,
DEBUG off. Everything listens on 127.0.0.1 and shares the machine's cores with the load generator.

Paths, all driven by the same load generator (bench/loadgen.py) with pre-built requests:
  direct       the upstream itself, sent exactly the request Gatehouse sends it (captured at run time)
  plain proxy  bench/plain_proxy.py under gunicorn with Gatehouse's worker/thread settings: the floor
  REST         POST /api/v1/tools/call
  /mcp         tools/call in the stateless 2026-07-28 form (one POST, no session)
  /mcp session tools/call in the 2025-11-25 session form (initialize once per connection)
  ContextForge its /servers/<id>/mcp, a 2025-11-25 session per connection (optional: skipped if it cannot start)

Measures, in two catalog phases (1 server with the upstream's 2 tools; then 25 servers × 100 realistic tools,
~110 KB of manifest each, the call still going to the upstream's server):
  - latency at c=1 (p50, p99) and added latency = the path's minus direct's from the same phase;
  - calls/s at c=16 and c=64 (closed loop), for `echo` and for `slow` (awaits 50 ms upstream, so the gateway's
    thread limits show rather than its CPU);
  - CPU ms per call of each process group over each window (utime+stime from /proc/<pid>/stat, before/after):
    the gateway's process group, PostgreSQL, Redis, the upstream, the load generator, and what the rest of the
    (shared) machine used meanwhile;
  - resident memory per gunicorn worker after each phase;
  - how the c connections were spread over the gateway's processes (keep-alive connections stay in a worker).
Within a measure the paths take turns in `--rounds` rounds so outside load falls on all alike. Then the load
check (16 agents through REST, one RequestLog row per call) and the read paths at scale (+ request logs).
Data is seeded by `manage.py bench_seed` (governance), never by Python passed to `manage.py shell`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import loadgen  # bench/loadgen.py (this script's directory is on sys.path)
import requests
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PY = sys.executable
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"
DB_NAME = "gatehouse_bench"
BENCH_DB = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
BENCH_EMAIL = "bench@example.com"
BENCH_PASSWORD = "bench-password-123"
RESULTS_MD = BENCH / "RESULTS.md"
RUNS_MARKER = "<!-- runs: newest first; bench/run.py inserts each full run below this line -->"
HANDSHAKE_VERSION = "2025-11-25"
STATELESS_VERSION = "2026-07-28"
META = "io.modelcontextprotocol/"
CLIENT_INFO = {"name": "gatehouse-bench", "version": "1"}
ARGS = {"text": "hello"}
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Targets from issue 15: reported against every full run, never asserted.
TARGET_ADDED_P50, TARGET_ADDED_P99 = 2.0, 8.0
TARGET_VS_DIRECT, TARGET_VS_PLAIN = 0.45, 0.80
TARGET_VS_CF_RPS, TARGET_VS_CF_ADDED = 5.0, 0.2
TARGET_CPU_MS, TARGET_TOOLS_P95, TARGET_RSS_MB = 1.5, 50.0, 150.0


# --- processes -------------------------------------------------------------------------------------


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


class Procs:
    """Child processes, each in its own process group (its pid is the group id), stopped by group."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], env: dict, log: Path, cwd: Path = ROOT) -> subprocess.Popen:
        proc = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
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


def gunicorn_args(app: str, port: int, workers: int, threads: int) -> list[str]:
    """The same gunicorn settings for Gatehouse and the plain proxy."""
    return [
        str(Path(PY).parent / "gunicorn"),
        app,
        "-b",
        f"127.0.0.1:{port}",
        "-w",
        str(workers),
        "-k",
        "gthread",
        "--threads",
        str(threads),
        "--access-logfile",
        "/dev/null",
    ]


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
    out = subprocess.run([PY, "manage.py", *args], env=env, cwd=ROOT, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return out.stdout


def bench_seed(env: dict, *args: str) -> dict:
    """governance's `bench_seed` command for the bench user; returns the JSON it prints last."""
    return json.loads(manage(env, "bench_seed", "--email", BENCH_EMAIL, *args).strip().splitlines()[-1])


def reset_db() -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")


# --- CPU and memory --------------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(command name, process group, utime+stime in clock ticks) from /proc/<pid>/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return comm, int(fields[2]), int(fields[11]) + int(fields[12])


def _machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


class CpuMeter:
    """CPU time per process group over a window: sum of utime+stime of every process in the group,
    before and after (a process born in the window counts from zero; one that died in it is lost).

    Groups: the gateway under test (a process group: gunicorn master + workers, or ContextForge's), the
    upstream, PostgreSQL (every `postgres` process except backends of other databases: other work may share
    the server), Redis (every redis-server process)."""

    def __init__(self) -> None:
        import psycopg

        self.pg = psycopg.connect(PG_ADMIN, autocommit=True)  # one backend for the whole run, on `postgres`
        self.groups: dict[str, Callable[[int, str, int], bool]] = {}
        self.leaders: dict[str, int] = {}

    def close(self) -> None:
        self.pg.close()

    def add_group(self, name: str, pgrp: int) -> None:
        self.groups[name] = lambda pid, comm, group: group == pgrp
        self.leaders[name] = pgrp

    def _foreign_backends(self) -> set[int]:
        rows = self.pg.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname IS NOT NULL AND datname <> %s", (DB_NAME,)
        ).fetchall()
        return {pid for (pid,) in rows}

    def snapshot(self) -> dict:
        procs = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                stat = _proc_stat(int(entry.name))
                if stat:
                    procs[int(entry.name)] = stat
        return {"t": time.monotonic(), "procs": procs, "machine": _machine_busy()}

    def delta(self, before: dict, after: dict, gateway: str | None) -> dict:
        """CPU ms per group between two snapshots; `gateway` names the group of the path under test."""
        foreign = self._foreign_backends()
        sums: dict[str, int] = {}
        names = {"gateway": gateway, "upstream": "upstream"}
        for pid, (comm, group, ticks) in after["procs"].items():
            prior = before["procs"].get(pid)
            used = ticks - (prior[2] if prior and prior[0] == comm else 0)
            if comm == "postgres" and pid not in foreign:
                sums["postgres"] = sums.get("postgres", 0) + used
            elif comm.startswith("redis-server"):
                sums["redis"] = sums.get("redis", 0) + used
            for label, name in names.items():
                if name and name in self.groups and self.groups[name](pid, comm, group):
                    sums[label] = sums.get(label, 0) + used
        busy = after["machine"][0] - before["machine"][0]
        total = after["machine"][1] - before["machine"][1]
        out = {k: v * 1000 / CLK_TCK for k, v in sums.items()}
        out["seconds"] = after["t"] - before["t"]
        out["machine_busy_pct"] = 100 * busy / total if total else float("nan")
        out["machine_busy_ms"] = busy * 1000 / CLK_TCK
        out["machine_ms"] = total * 1000 / CLK_TCK
        return out


def connections_per_process(pgrp: int, port: int) -> list[int]:
    """How many established connections to `port` each process of a group holds (keep-alive connections stay
    with the gunicorn worker that accepted them, so an uneven split caps what the threads can do)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] == "01" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    counts = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        stat = _proc_stat(int(entry.name))
        if not stat or stat[1] != pgrp:
            continue
        try:
            links = [os.readlink(f"/proc/{entry.name}/fd/{fd}") for fd in os.listdir(f"/proc/{entry.name}/fd")]
        except OSError:
            continue
        held = sum(1 for link in links if link.startswith("socket:[") and link[8:-1] in inodes)
        if held:
            counts.append(held)
    return sorted(counts, reverse=True)


def group_memory_mb(pgrp: int) -> float:
    """Resident memory of a whole process group (e.g. ContextForge), in MB."""
    total = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (_proc_stat(int(entry.name)) or ("", -1))[1] == pgrp:
            try:
                text = Path(f"/proc/{entry.name}/status").read_text()
            except OSError:
                continue
            total += next((int(line.split()[1]) for line in text.splitlines() if line.startswith("VmRSS:")), 0)
    return round(total / 1024, 1)


def workers_memory(master_pid: int) -> dict:
    """Resident memory of each worker of a gunicorn master: now (VmRSS) and peak (VmHWM), in MB."""
    now, peak = [], []
    for status in Path("/proc").glob("*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        if f"PPid:\t{master_pid}\n" in text:
            fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
            now.append(int(fields["VmRSS"].split()[0]) / 1024)
            peak.append(int(fields["VmHWM"].split()[0]) / 1024)
    return {"workers": len(now), "rss_mb": round(max(now, default=0), 1), "peak_mb": round(max(peak, default=0), 1)}


# --- requests for each path ------------------------------------------------------------------------


def capture_upstream(upstream_base: str, calls: Callable[[], None]) -> list[dict]:
    """What reaches the upstream while `calls` runs (bench/upstream.py records it)."""
    requests.post(f"{upstream_base}/_capture", timeout=10).raise_for_status()
    calls()
    return requests.get(f"{upstream_base}/_capture", timeout=10).json()


def replay(captured: dict, host: str) -> bytes:
    """The captured request as bytes, header for header and byte for byte, addressed to `host`."""
    headers = [(k, v) for k, v in captured["headers"] if k.lower() not in ("host", "content-length")]
    return loadgen.http_request(captured["method"], captured["path"], host, headers, captured["body"].encode())


def stateless_mcp(url: str, auth: dict[str, str], tool: str) -> bytes:
    """A 2026-07-28 tools/call: version, method and name in headers and the version in params._meta."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": tool,
            "arguments": ARGS,
            "_meta": {
                f"{META}protocolVersion": STATELESS_VERSION,
                f"{META}clientCapabilities": {},
                f"{META}clientInfo": CLIENT_INFO,
            },
        },
    }
    headers = [
        *auth.items(),
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("MCP-Protocol-Version", STATELESS_VERSION),
        ("Mcp-Method", "tools/call"),
        ("Mcp-Name", tool),
    ]
    return _post(url, headers, body)


def _post(url: str, headers: list[tuple[str, str]], body: dict) -> bytes:
    parts = urlsplit(url)
    return loadgen.http_request("POST", parts.path, parts.netloc, headers, json.dumps(body).encode())


def mcp_sessions(url: str, auth: dict[str, str], n: int) -> tuple[list[dict[str, str]], set[str]]:
    """`n` MCP sessions in the handshake form (initialize + notifications/initialized): their headers, and the
    protocol versions the server chose."""
    out, versions = [], set()
    with requests.Session() as http:
        for _ in range(n):
            base = {**auth, "Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
            init = {"protocolVersion": HANDSHAKE_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO}
            r = http.post(url, json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init}, headers=base)
            r.raise_for_status()
            payload = _jsonrpc_payload(r)
            version = payload["result"]["protocolVersion"]
            versions.add(version)
            headers = {**base, "MCP-Protocol-Version": version}
            if r.headers.get("Mcp-Session-Id"):
                headers["Mcp-Session-Id"] = r.headers["Mcp-Session-Id"]
            http.post(
                url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers
            ).raise_for_status()
            out.append(headers)
    return out, versions


def _jsonrpc_payload(r: requests.Response) -> dict:
    if r.headers.get("Content-Type", "").startswith("text/event-stream"):
        data = [line[5:].strip() for line in r.text.splitlines() if line.startswith("data:")]
        return json.loads(data[-1])
    return r.json()


def session_call(url: str, headers: dict[str, str], tool: str) -> bytes:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": ARGS}}
    return _post(url, list(headers.items()), body)


# --- paths and measures ----------------------------------------------------------------------------


@dataclass
class CallPath:
    """One way to make the call: where it goes, and the request bytes for each connection (fast and slow tool)."""

    key: str
    label: str
    host: str
    port: int
    fast: Callable[[int], list[bytes]]  # concurrency -> request bytes (one per connection, or one for all)
    slow: Callable[[int], list[bytes]] | None = None
    group: str | None = None  # the CpuMeter group of the gateway under test
    after: Callable[[], None] | None = None  # after each window (e.g. end the sessions it opened)


@dataclass
class Sizes:
    c1_seconds: float  # per path and c=1 measure, over all rounds
    seconds: float  # per path and c=16/c=64 measure, over all rounds
    rounds: int
    warmup: float
    load_seconds: float
    log_rows: int
    read_n: int


GROUPS = ("gateway", "upstream", "postgres", "redis")


def window(path: CallPath, tool: str, conc: int, seconds: float, sizes: Sizes, cpu: CpuMeter) -> dict:
    """One window of one path: the generator's result and the CPU each group used in it."""
    build = path.fast if tool == "fast" else path.slow
    target = loadgen.Target(path.host, path.port, build(conc))
    marks: dict = {}

    def opened() -> None:
        marks["before"] = cpu.snapshot()
        if path.group in cpu.leaders and conc > 1:
            marks["conns"] = connections_per_process(cpu.leaders[path.group], path.port)

    try:
        res = loadgen.run(target, conc, seconds, warmup=sizes.warmup, on_window=opened)
    finally:
        if path.after is not None:
            path.after()
    used = cpu.delta(marks["before"], cpu.snapshot(), path.group) if "before" in marks else {}
    return {"res": res, "used": used, "conns": marks.get("conns")}


def summarize(windows: list[dict]) -> dict:
    """The rounds of one measure of one path, pooled: all latencies, calls over summed window time, CPU summed."""
    results = [w["res"] for w in windows]
    calls = sum(x.calls for x in results)
    seconds = sum(x.seconds for x in results)
    latencies = [ms for x in results for ms in x.latencies_ms]
    used = {k: sum(w["used"].get(k, 0) for w in windows) for k in (*GROUPS, "machine_busy_ms", "machine_ms")}
    loadgen_ms = sum(x.cpu_ms for x in results)
    ours = sum(used[k] for k in GROUPS) + loadgen_ms
    per_call = {k: used[k] / calls for k in GROUPS if calls and any(k in w["used"] for w in windows)}
    if calls:
        per_call["loadgen"] = loadgen_ms / calls
    return {
        "calls": calls,
        "errors": sum(x.errors for x in results),
        "first_error": next((x.first_error for x in results if x.errors), ""),
        "reconnects": sum(x.reconnects for x in results),
        "rounds": len(windows),
        "seconds": round(seconds, 3),
        "rps": calls / seconds if seconds > 0 else 0.0,
        "p50": loadgen.percentile(latencies, 50),
        "p90": loadgen.percentile(latencies, 90),
        "p99": loadgen.percentile(latencies, 99),
        "max": max(latencies, default=float("nan")),
        "cpu_ms_per_call": per_call,
        "machine_busy_pct": 100 * used["machine_busy_ms"] / used["machine_ms"] if used["machine_ms"] else float("nan"),
        # CPU the machine spent on anything else: other work on a shared machine. A large share means the
        # window measured a crowded machine, not only the path.
        "others_pct": 100 * max(0.0, used["machine_busy_ms"] - ours) / used["machine_ms"] if used["machine_ms"] else 0,
        "conns_per_worker": [w["conns"] for w in windows if w["conns"]],
    }


def measure_all(
    paths: list[CallPath], plans: dict[str, list[tuple[str, int]]], sizes: Sizes, cpu: CpuMeter
) -> dict[str, dict]:
    """Every (tool, concurrency) of every path's plan, in `sizes.rounds` rounds: within a measure the paths take
    turns (in alternating order), each round a slice of the measure's time, so a burst of other work on the
    machine falls on every path alike instead of on whichever path was running."""
    out: dict[str, dict] = {path.key: {"label": path.label} for path in paths}
    for measure in FULL_PLAN:
        tool, conc = measure
        taking = [p for p in paths if measure in plans[p.key] and (p.fast if tool == "fast" else p.slow)]
        if not taking:
            continue
        seconds = (sizes.c1_seconds if conc == 1 else sizes.seconds) / sizes.rounds
        windows: dict[str, list[dict]] = {p.key: [] for p in taking}
        for rnd in range(sizes.rounds):
            for path in taking if rnd % 2 == 0 else taking[::-1]:
                windows[path.key].append(window(path, tool, conc, seconds, sizes, cpu))
        for path in taking:
            entry = out[path.key][f"{tool}_c{conc}"] = summarize(windows[path.key])
            split = " ".join("+".join(map(str, c)) for c in entry["conns_per_worker"])
            print(
                f"  {path.key:12} {tool} c={conc:<3} {entry['calls']:6} calls {entry['rps']:7.0f}/s  "
                f"p50 {entry['p50']:7.2f}  p99 {entry['p99']:7.2f} ms  errors {entry['errors']}  gateway cpu/call "
                f"{entry['cpu_ms_per_call'].get('gateway', 0):.2f} ms  busy {entry['machine_busy_pct']:.0f} % "
                f"(others {entry['others_pct']:.0f} %)"
                + (f"  connections per process {split}" if split else "")
                + (f"  first error: {entry['first_error'][:200]}" if entry["errors"] else ""),
                flush=True,
            )
            if entry["errors"] and not entry["calls"]:
                raise RuntimeError(f"{path.key}: every call failed: {entry['first_error']}")
    return out


FULL_PLAN = [("fast", 1), ("fast", 16), ("fast", 64), ("slow", 16), ("slow", 64)]


# --- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="tiny counts, no ContextForge, nothing recorded")
    parser.add_argument("--no-contextforge", action="store_true")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (Gatehouse and plain proxy)")
    parser.add_argument("--threads", type=int, default=8, help="gunicorn threads per worker")
    parser.add_argument("--seconds", type=float, help="time per path for each c=16/c=64 measure (default 10)")
    parser.add_argument("--c1-seconds", type=float, help="time per path for each c=1 measure (default 10)")
    parser.add_argument("--rounds", type=int, help="rounds the paths take turns in, per measure (default 2)")
    parser.add_argument("--log-rows", type=int, help="request log rows for the read paths (default 1,000,000)")
    parser.add_argument("--write", action="store_true", help="record in RESULTS.md even with custom sizes")
    args = parser.parse_args()
    smoke = args.smoke
    sizes = (
        Sizes(c1_seconds=0.3, seconds=0.3, rounds=1, warmup=0.05, load_seconds=2, log_rows=5_000, read_n=10)
        if smoke
        else Sizes(c1_seconds=10, seconds=10, rounds=2, warmup=1.0, load_seconds=30, log_rows=1_000_000, read_n=200)
    )
    custom = any(v is not None for v in (args.seconds, args.c1_seconds, args.log_rows, args.rounds))
    for name in ("seconds", "c1_seconds", "log_rows", "rounds"):
        if getattr(args, name) is not None:
            setattr(sizes, name, getattr(args, name))
    record = not smoke and (args.write or not custom)
    logs = BENCH / "results"
    logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    procs = Procs()
    cpu: CpuMeter | None = None
    cf = None
    r: dict = {
        "smoke": smoke,
        "sizes": sizes.__dict__,
        "gunicorn": {"workers": args.workers, "threads": args.threads},
        "generator": loadgen.GENERATOR,
        "machine": machine(),
        "paths": {},
        "big": {},
    }
    try:
        reset_db()
        env = gatehouse_env()
        manage(env, "migrate", "--noinput")
        manage(env, "collectstatic", "--noinput")
        key = bench_seed(env, "--password", BENCH_PASSWORD, "--key", "bench")["api_key"]
        auth = {"Authorization": f"Bearer {key}"}
        cpu = CpuMeter()

        up_port, gh_port, pp_port = free_port(), free_port(), free_port()
        upstream_proc = procs.start([PY, "bench/upstream.py", str(up_port)], os.environ.copy(), logs / "upstream.log")
        up_base = f"http://127.0.0.1:{up_port}"
        upstream = f"{up_base}/mcp"
        gunicorn = procs.start(
            gunicorn_args("config.wsgi", gh_port, args.workers, args.threads), env, logs / "gunicorn.log"
        )
        plain = procs.start(
            [*gunicorn_args("plain_proxy:app", pp_port, args.workers, args.threads), "--chdir", str(BENCH)],
            {**os.environ, "PLAIN_PROXY_UPSTREAM": upstream},
            logs / "plain_proxy.log",
        )
        cpu.add_group("upstream", upstream_proc.pid)
        cpu.add_group("gatehouse", gunicorn.pid)
        cpu.add_group("plain", plain.pid)
        base = f"http://127.0.0.1:{gh_port}"
        for url in (f"{base}/healthz", f"{up_base}/", f"http://127.0.0.1:{pp_port}/"):
            wait_http(url)

        # Register the upstream as one server (discovery runs now), and let both tools run without approval.
        res = requests.post(
            f"{base}/api/v1/settings/mcps",
            json={"name": "upstream", "endpoint_url": upstream},
            headers=auth,
            timeout=60,
        )
        res.raise_for_status()
        server = res.json()
        server_id = server["id"]
        assert server["tools_count"] == 2, server
        r["stored_protocol_version"] = server.get("protocol_version")
        for tool in ("echo", "slow"):
            requests.patch(
                f"{base}/api/v1/settings/mcps/{server_id}/tools/{tool}", json={"approval": "always"}, headers=auth
            ).raise_for_status()
        api = requests.Session()
        api.headers.update(auth)

        def rest_call(tool: str) -> None:
            answer = api.post(
                f"{base}/api/v1/tools/call", json={"server": server_id, "tool": tool, "arguments": ARGS}, timeout=30
            )
            assert answer.status_code == 200 and not answer.json()["result"]["isError"], answer.text[:500]

        for _ in range(4 * args.workers):  # every worker's client pool warm before looking
            rest_call("echo")
            rest_call("slow")
        seen = capture_upstream(up_base, lambda: [rest_call("echo"), rest_call("echo"), rest_call("slow")])
        r["upstream_requests"] = describe_capture(seen, calls=3)
        print("Gatehouse sends upstream:", json.dumps(r["upstream_requests"]), flush=True)
        echo_req, slow_req = seen[0], seen[-1]

        def rest_body(tool: str) -> bytes:
            headers = [*auth.items(), ("Content-Type", "application/json")]
            return _post(f"{base}/api/v1/tools/call", headers, {"server": server_id, "tool": tool, "arguments": ARGS})

        sessions = Sessions(f"{base}/mcp", auth, {"fast": "upstream__echo"})
        paths = [
            CallPath(
                "direct",
                "direct to the upstream (Gatehouse's request, replayed)",
                "127.0.0.1",
                up_port,
                lambda c: [replay(echo_req, f"127.0.0.1:{up_port}")],
                lambda c: [replay(slow_req, f"127.0.0.1:{up_port}")],
            ),
            CallPath(
                "plain",
                "plain proxy (gunicorn + http.client, no governance)",
                "127.0.0.1",
                pp_port,
                lambda c: [replay(echo_req, f"127.0.0.1:{pp_port}")],
                lambda c: [replay(slow_req, f"127.0.0.1:{pp_port}")],
                group="plain",
            ),
            CallPath(
                "rest",
                "Gatehouse REST /api/v1/tools/call",
                "127.0.0.1",
                gh_port,
                lambda c: [rest_body("echo")],
                lambda c: [rest_body("slow")],
                group="gatehouse",
            ),
            CallPath(
                "mcp",
                "Gatehouse /mcp tools/call (2026-07-28, stateless)",
                "127.0.0.1",
                gh_port,
                lambda c: [stateless_mcp(f"{base}/mcp", auth, "upstream__echo")],
                lambda c: [stateless_mcp(f"{base}/mcp", auth, "upstream__slow")],
                group="gatehouse",
            ),
            CallPath(
                "mcp_session",
                "Gatehouse /mcp tools/call (2025-11-25 session)",
                "127.0.0.1",
                gh_port,
                sessions.builder("fast"),
                group="gatehouse",
                after=sessions.close,
            ),
        ]
        plans = {p.key: FULL_PLAN for p in paths}
        plans["mcp_session"] = [("fast", 1), ("fast", 16)]
        if smoke:  # every code path once, the slowest windows (a gateway at c=64, slow tool) left out
            plans.update(rest=FULL_PLAN[:4], mcp=FULL_PLAN[:4])
        if smoke or args.no_contextforge:
            r["contextforge_error"] = "not run (--smoke or --no-contextforge)"
        else:
            cf, found = start_contextforge(upstream, cpu)
            if isinstance(found, str):
                r["contextforge_error"] = found
            else:
                paths.append(found)
                plans["cf"] = FULL_PLAN
        print(f"== calls, catalog 1 server × 2 tools ({time.monotonic() - started:.0f} s)", flush=True)
        try:
            r["paths"] = measure_all(paths, plans, sizes, cpu)
        finally:
            if cf is not None:
                r["memory_cf_mb"] = group_memory_mb(cf.process.pid)
                r["cf_log"] = str(logs / "contextforge.log")
                (logs / "contextforge.log").write_text(cf.log_tail(20000))
                cf.__exit__(None, None, None)
                r["paths"].get("cf", {}).update(versions=sorted(cf.bench_versions), package=cf.bench_package)
        r["mcp_session_versions"] = sorted(sessions.versions)

        r["load"] = load_check(base, key, server_id, workers=16, seconds=sizes.load_seconds)
        print("load", r["load"], flush=True)
        r["memory_small"] = {"gatehouse": workers_memory(gunicorn.pid), "plain": workers_memory(plain.pid)}

        # The large catalog: 24 more servers, and 100 realistic tools on each of the 25 (the upstream's too).
        seeded = bench_seed(env, "--servers", "24", "--tools", "100", "--manifest", "realistic")
        r["big_catalog"] = {
            "servers": 1 + len(seeded["server_ids"]),
            "tools_created": seeded["tools_created"],
            "manifest_kb_per_server": round(seeded["manifest_bytes_per_tool"] * 100 / 1000),
        }
        print(f"== calls, catalog 25 servers × 100 tools ({time.monotonic() - started:.0f} s)", flush=True)
        big_paths = [p for p in paths if p.key in ("direct", "rest", "mcp")]
        big_plans = {"direct": [("fast", 1)], "rest": FULL_PLAN, "mcp": FULL_PLAN}
        if smoke:  # the same code, less of it
            big_plans.update(rest=[("fast", 1)], mcp=[("fast", 1)])
        r["big"] = measure_all(big_paths, big_plans, sizes, cpu)
        r["memory_big"] = {"gatehouse": workers_memory(gunicorn.pid), "plain": workers_memory(plain.pid)}

        print(f"== read paths ({time.monotonic() - started:.0f} s)", flush=True)
        bench_seed(env, "--log-rows", str(sizes.log_rows), "--log-server", server_id)
        r["reads"] = read_paths(env, gh_port, key, sizes.log_rows, sizes.read_n, lambda: workers_memory(gunicorn.pid))
        r["memory"] = {"gatehouse": workers_memory(gunicorn.pid), "plain": workers_memory(plain.pid)}
    finally:
        procs.stop()
        if cpu is not None:
            cpu.close()
    r["elapsed_s"] = round(time.monotonic() - started)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    (logs / f"run-{stamp}{'-smoke' if smoke else ''}.json").write_text(json.dumps(r, indent=1, default=str))
    section = render_run(r)
    print(section)
    if record:
        write_results(r, section)
        print(f"Recorded in {RESULTS_MD.relative_to(ROOT)}.")
    else:
        print("(not recorded in RESULTS.md: smoke or custom sizes; --write records a custom run)")


class Sessions:
    """Paths in the session form: `builder(tool)(concurrency)` opens one session per connection (outside any
    timing) and returns each connection's tools/call request; `close()` ends them (DELETE) after the window."""

    def __init__(self, url: str, headers: dict[str, str], tools: dict[str, str]) -> None:
        self.url, self.headers, self.tools = url, headers, tools
        self.versions: set[str] = set()
        self.open: list[dict[str, str]] = []

    def builder(self, tool: str) -> Callable[[int], list[bytes]]:
        def build(conc: int) -> list[bytes]:
            made, chosen = mcp_sessions(self.url, self.headers, conc)
            self.versions.update(chosen)
            self.open += made
            return [session_call(self.url, h, self.tools[tool]) for h in made]

        return build

    def close(self) -> None:
        with requests.Session() as http:
            for headers in self.open:
                if "Mcp-Session-Id" in headers:
                    try:
                        http.delete(self.url, headers=headers, timeout=10)
                    except requests.RequestException:
                        pass  # ending a session is a courtesy
        self.open = []


def start_contextforge(upstream: str, cpu: CpuMeter):
    """(the running ContextForge, its CallPath) in front of the same upstream, or (None, why it is missing).
    It runs through the small-catalog measures so it can take turns with the other paths (idle, it used
    ~1-2 ms of CPU per second here)."""
    try:
        import contextforge  # bench/contextforge.py, next to this script

        contextforge.ensure_installed()
        cf = contextforge.ContextForge(port=free_port(), extra_env={"LOG_LEVEL": "ERROR"})
        print("== ContextForge: starting", flush=True)
        cf.__enter__()
    except Exception as exc:  # the peer is optional; the results say why it is missing
        return None, f"ContextForge did not start: {type(exc).__name__}: {exc}"[:600]
    try:
        endpoint = cf.register_upstream("upstream", upstream)
        names = {tool: cf.tool_name(name) for tool, name in (("fast", "echo"), ("slow", "slow"))}
        cpu.add_group("contextforge", cf.process.pid)
        sessions = Sessions(endpoint, cf.headers, names)
        cf.bench_versions, cf.bench_package = sessions.versions, f"{contextforge.PACKAGE} {contextforge.VERSION}"
        parts = urlsplit(endpoint)
        label = "ContextForge /servers/<id>/mcp (2025-11-25 session)"
        print(f"== ContextForge up after {cf.startup_seconds:.0f} s", flush=True)
        fast, slow = sessions.builder("fast"), sessions.builder("slow")
        path = CallPath("cf", label, parts.hostname, parts.port, fast, slow, "contextforge", sessions.close)
        return cf, path
    except Exception as exc:
        traceback.print_exc()
        cf.__exit__(None, None, None)
        return None, f"ContextForge failed to set up: {type(exc).__name__}: {exc}"[:600]


def describe_capture(seen: list[dict], calls: int) -> dict:
    """What Gatehouse sent upstream for `calls` tool calls: how many requests, the protocol version, the
    headers (names in the order received, values of the MCP ones) and the body's shape."""
    if len(seen) != calls:
        raise SystemExit(f"expected one upstream request per call ({calls}), saw {len(seen)}: {seen}")
    first = seen[0]
    headers = dict(first["headers"])
    body = json.loads(first["body"])
    shown = ("mcp-protocol-version", "mcp-method", "mcp-name", "content-type", "accept", "connection")
    return {
        "requests_per_call": len(seen) / calls,
        "protocol_version": headers.get("mcp-protocol-version"),
        "header_names": [k for k, _ in first["headers"]],
        "headers": {k: headers[k] for k in shown if k in headers},
        "session_id": "mcp-session-id" in headers,
        "body_keys": sorted(body),
        "params_keys": sorted(body.get("params", {})),
        "meta": body.get("params", {}).get("_meta"),
        "body_bytes": len(first["body"].encode()),
        "http_version": first.get("http_version"),
    }


def count_logs() -> int:
    import psycopg

    with psycopg.connect(BENCH_DB) as conn:
        return conn.execute("SELECT count(*) FROM governance_requestlog").fetchone()[0]


def load_check(base: str, key: str, server_id: str, *, workers: int, seconds: float) -> dict:
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


def read_paths(env: dict, port: int, key: str, log_rows: int, n: int, memory: Callable[[], dict]) -> dict:
    """Time the read paths (sequentially, with the same load generator), count their queries, and note the
    workers' peak memory after each."""
    base = f"http://127.0.0.1:{port}"
    web = requests.Session()
    page = web.get(f"{base}/accounts/login/", timeout=30)
    assert page.status_code == 200
    web.post(
        f"{base}/accounts/login/",
        data={"username": BENCH_EMAIL, "password": BENCH_PASSWORD, "csrfmiddlewaretoken": web.cookies["csrftoken"]},
        headers={"Referer": f"{base}/accounts/login/"},
        timeout=30,
    )
    cookie = "; ".join(f"{c.name}={c.value}" for c in web.cookies)
    api_headers = [("Authorization", f"Bearer {key}"), ("Accept", "application/json")]
    web_headers = [("Cookie", cookie), ("Accept", "text/html")]
    targets = {
        "GET /api/v1/tools (25×100)": (api_headers, "/api/v1/tools"),
        "GET /api/v1/settings/mcps": (api_headers, "/api/v1/settings/mcps"),
        f"GET /api/v1/logs ({log_rows:,} rows)": (api_headers, "/api/v1/logs"),
        f"/activity/ ({log_rows:,} rows)": (web_headers, "/activity/"),
    }
    counts = query_counts(env, [path for _, path in targets.values()])
    out = {}
    for (label, (headers, path)), queries in zip(targets.items(), counts, strict=True):
        request = "\r\n".join([f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", *(f"{k}: {v}" for k, v in headers)])
        target = loadgen.Target("127.0.0.1", port, [(request + "\r\n\r\n").encode()], check=lambda s, b: s == 200)
        res = loadgen.run(target, 1, warmup=0, count=n)
        if res.errors:
            raise RuntimeError(f"{path}: {res.first_error}")
        out[label] = {"p50": res.pct(50), "p95": res.pct(95), "queries": queries, "peak_mb": memory()["peak_mb"]}
        print(
            f"  {label}: p50 {out[label]['p50']:.1f} ms, p95 {out[label]['p95']:.1f} ms, {queries} queries", flush=True
        )
    return out


def query_counts(env: dict, paths: list[str]) -> list[int]:
    args = [PY, "bench/query_counts.py", BENCH_EMAIL, *paths]
    out = subprocess.run(args, env=env, cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _run(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> dict:
    import django
    import gunicorn
    import psycopg

    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        with psycopg.connect(PG_ADMIN) as conn:
            pg = conn.execute("SHOW server_version").fetchone()[0]
    except psycopg.Error:
        pg = "?"
    dirty = bool(_run("git", "status", "--porcelain", "--untracked-files=no"))
    busy0 = _machine_busy()
    time.sleep(2)
    busy1 = _machine_busy()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": (_run("git", "rev-parse", "--short", "HEAD") or "?") + (" + uncommitted changes" if dirty else ""),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "django": django.get_version(),
        "gunicorn": gunicorn.__version__,
        "postgres": pg,
        "loadavg_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "busy_at_start_pct": round(100 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])),
    }


# --- report ----------------------------------------------------------------------------------------


def _f(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "—"
    return f"{value:,.{digits}f}"


def added(r: dict, catalog: str, key: str) -> tuple[float | None, float | None]:
    """Added p50/p99 at c=1: the path minus direct (measured in the same catalog phase)."""
    table = r["paths"] if catalog == "small" else r["big"]
    direct, path = table.get("direct", {}).get("fast_c1"), table.get(key, {}).get("fast_c1")
    if not direct or not path:
        return None, None
    return path["p50"] - direct["p50"], path["p99"] - direct["p99"]


def rps(r: dict, catalog: str, key: str, measure_: str = "fast_c16") -> float | None:
    table = r["paths"] if catalog == "small" else r["big"]
    entry = table.get(key, {}).get(measure_)
    return entry["rps"] if entry else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def targets(r: dict) -> list[tuple[str, str, bool | None]]:
    """(target, what the run measured, holds?) for each of issue 15's targets."""
    rows = []
    names = {"rest": "REST", "mcp": "/mcp"}

    def both(fn: Callable[[str, str], float | None], fmt: Callable[[float | None], str]) -> tuple[str, list]:
        values, parts = [], []
        for key, name in names.items():
            for catalog, cname in (("small", "1×2"), ("big", "25×100")):
                v = fn(key, catalog)
                values.append(v)
                parts.append(f"{name} {cname}: {fmt(v)}")
        return "; ".join(parts), values

    def holds(values: list, ok: Callable[[float], bool]) -> bool | None:
        known = [v for v in values if v is not None]
        return None if not known else all(ok(v) for v in known)

    ms = lambda v: f"{_f(v)} ms"  # noqa: E731
    pc = lambda v: "—" if v is None else f"{100 * v:.0f} %"  # noqa: E731
    text, values = both(lambda k, c: added(r, c, k)[0], ms)
    rows.append((f"added p50 ≤ {TARGET_ADDED_P50:g} ms (c=1)", text, holds(values, lambda v: v <= TARGET_ADDED_P50)))
    text, values = both(lambda k, c: added(r, c, k)[1], ms)
    rows.append((f"added p99 ≤ {TARGET_ADDED_P99:g} ms (c=1)", text, holds(values, lambda v: v <= TARGET_ADDED_P99)))
    text, values = both(lambda k, c: ratio(rps(r, c, k), rps(r, "small", "direct")), pc)
    rows.append(
        (f"calls/s (c=16) ≥ {TARGET_VS_DIRECT:.0%} of direct", text, holds(values, lambda v: v >= TARGET_VS_DIRECT))
    )
    text, values = both(lambda k, c: ratio(rps(r, c, k), rps(r, "small", "plain")), pc)
    rows.append(
        (
            f"calls/s (c=16) ≥ {TARGET_VS_PLAIN:.0%} of the plain proxy",
            text,
            holds(values, lambda v: v >= TARGET_VS_PLAIN),
        )
    )
    if "cf" in r["paths"]:
        cf_added = added(r, "small", "cf")[0]
        parts, values = [], []
        for key, name in names.items():
            v = ratio(rps(r, "small", key), rps(r, "small", "cf"))
            values.append(v)
            parts.append(f"{name}: {_f(v, 1)}×")
        rows.append(
            (
                f"calls/s (c=16) ≥ {TARGET_VS_CF_RPS:g}× ContextForge's",
                "; ".join(parts),
                holds(values, lambda v: v >= TARGET_VS_CF_RPS),
            )
        )
        parts, values = [], []
        for key, name in names.items():
            v = ratio(added(r, "small", key)[0], cf_added) if cf_added and cf_added > 0 else None
            values.append(v)
            parts.append(f"{name}: {_f(v)}")
        rows.append(
            (
                f"added p50 ≤ {TARGET_VS_CF_ADDED:g} × ContextForge's (c=1)",
                "; ".join(parts) + f" (ContextForge adds {_f(cf_added)} ms)",
                holds(values, lambda v: v <= TARGET_VS_CF_ADDED),
            )
        )
    else:
        reason = r.get("contextforge_error", "not measured")
        rows.append((f"≥ {TARGET_VS_CF_RPS:g}× ContextForge's calls/s, ≤ 1/5 of its added latency", reason, None))
    text, values = both(
        lambda k, c: (
            (r["paths"] if c == "small" else r["big"]).get(k, {}).get("fast_c16", {}).get("cpu_ms_per_call") or {}
        ).get("gateway"),
        ms,
    )
    rows.append(
        (f"gunicorn CPU per call ≤ {TARGET_CPU_MS:g} ms (c=16)", text, holds(values, lambda v: v <= TARGET_CPU_MS))
    )
    tools = next((v for k, v in r.get("reads", {}).items() if k.startswith("GET /api/v1/tools")), None)
    rows.append(
        (
            f"GET /api/v1/tools (2,500 tools) p95 ≤ {TARGET_TOOLS_P95:g} ms",
            f"{_f(tools['p95'], 1)} ms" if tools else "—",
            None if not tools else tools["p95"] <= TARGET_TOOLS_P95,
        )
    )
    mem = (r.get("memory") or {}).get("gatehouse")
    rows.append(
        (
            f"RSS per gunicorn worker ≤ {TARGET_RSS_MB:g} MB",
            f"{_f(mem['rss_mb'], 0)} MB now, {_f(mem['peak_mb'], 0)} MB peak (after the read paths)" if mem else "—",
            None if not mem else mem["peak_mb"] <= TARGET_RSS_MB,
        )
    )
    return rows


def render_targets(r: dict) -> str:
    m = r["machine"]
    lines = [
        f"## Targets (latest full run: {m['date']}, commit {m['commit']})",
        "",
        "Issue 15's targets, reported and never asserted. Catalogs: 1×2 = the upstream alone (echo and slow); "
        "25×100 = 25 servers with 100 realistic tools each, the call going to one of them.",
        "",
        "| target | latest run | holds? |",
        "|---|---|---|",
    ]
    for target, text, ok in targets(r):
        lines.append(f"| {target} | {text} | {'—' if ok is None else ('yes' if ok else '**no**')} |")
    return "\n".join(lines)


def render_run(r: dict) -> str:
    m = r["machine"]
    up = r.get("upstream_requests", {})
    g = r["gunicorn"]
    lines = [
        f"## Run {m['date']} · commit {m['commit']}{' (smoke)' if r['smoke'] else ''}",
        "",
        f"Machine: {m['cpus']} CPUs ({m['cpu']}), load average at start {m['loadavg_at_start']}, "
        f"CPU busy with other work in the 2 s before the start {m.get('busy_at_start_pct', '?')} % · Python "
        f"{m['python']} · Django {m['django']} · gunicorn {m['gunicorn']} · PostgreSQL {m['postgres']} · "
        f"run took {r.get('elapsed_s', '?')} s.",
        "",
        f"Setup: Gatehouse and the plain proxy under gunicorn, {g['workers']} gthread workers × {g['threads']} "
        "threads each; PostgreSQL, Redis cache, DEBUG off. Upstream: bench/upstream.py (the MCP SDK's MCPServer, "
        "JSON, stateless, one uvicorn process) with `echo` and `slow` (awaits 50 ms). Load generator: "
        f"{r['generator']}; its own CPU per call is in the CPU table. Each measure gives every path "
        f"{r['sizes']['c1_seconds']} s (c=1) or {r['sizes']['seconds']} s (c=16, c=64) in {r['sizes']['rounds']} "
        "round(s) in which the paths take turns; a window opens after "
        f"{r['sizes']['warmup']} s of warm-up and once every connection has had an answer (no session set-up or "
        "first call is timed), and closes with the last answer to a call sent in it. Everything shares the "
        "machine's cores, so absolute numbers are pessimistic for every path alike.",
        "",
        f"What Gatehouse sends upstream for one tools/call (captured at the upstream during the run): "
        f"{_f(up.get('requests_per_call'), 0)} POST per call, HTTP/{up.get('http_version')}, protocol "
        f"**{up.get('protocol_version')}** (stored for the server after discovery: "
        f"{r.get('stored_protocol_version')}), "
        f"headers in order `{', '.join(up.get('header_names', []))}` with "
        + ", ".join(f"`{k}: {v}`" for k, v in up.get("headers", {}).items())
        + f"; {'a' if up.get('session_id') else 'no'} session id; body {up.get('body_bytes')} bytes with params "
        f"`{', '.join(up.get('params_keys', []))}` and `_meta` {json.dumps(up.get('meta'))}. The direct path sends "
        "that very request (headers and body byte for byte) on keep-alive connections; the plain proxy is sent it too, "
        "and forwards its body and MCP headers with http.client.",
        "",
    ]
    lines += call_table(r, "small", "Tool calls, catalog 1 server × 2 tools")
    big = r.get("big_catalog", {})
    lines += call_table(
        r,
        "big",
        f"Tool calls, catalog {big.get('servers')} servers × 100 tools (realistic manifests, "
        f"~{big.get('manifest_kb_per_server')} KB each; the call goes to one of them)",
    )
    if r.get("contextforge_error"):
        lines += [f"ContextForge: {r['contextforge_error']}", ""]
    elif "cf" in r["paths"]:
        cf = r["paths"]["cf"]
        lines += [
            f"ContextForge: {cf.get('package')}, SQLite, stateful sessions, one session per connection "
            f"(negotiated {', '.join(cf.get('versions', []))}); running (idle when not measured) through the "
            "1×2 phase, so it takes turns with the other paths.",
            "",
        ]
    lines += cpu_table(r)
    lines += [
        "### Read paths at scale (PostgreSQL, c=1, same load generator)",
        "",
        "| request | p50 ms | p95 ms | SQL queries | largest worker's peak RSS after it |",
        "|---|---|---|---|---|",
    ]
    for label, v in r.get("reads", {}).items():
        lines.append(
            f"| {label} | {_f(v['p50'], 1)} | {_f(v['p95'], 1)} | {v['queries']} | {_f(v.get('peak_mb'), 0)} MB |"
        )
    load = r.get("load") or {}
    mem = r.get("memory") or {}
    small = r.get("memory_small") or {}
    lines += [
        "",
        "### Load check and memory",
        "",
        f"{load.get('agents')} concurrent agents for {load.get('seconds')} s through the REST API (`requests` "
        f"threads): {load.get('calls')} calls, statuses {load.get('statuses')}, {load.get('server_errors')} server "
        f"errors, {load.get('logged')} RequestLog rows written (one per call).",
        "",
        "Resident memory (RSS) of the largest worker, and its peak so far (VmHWM), in MB:",
        "",
        "| process | after the small-catalog calls | after the 25×100 calls | at the end (after the read paths) |",
        "|---|---|---|---|",
    ]
    big = r.get("memory_big") or {}
    for key, label in (("gatehouse", "Gatehouse gunicorn worker"), ("plain", "plain proxy gunicorn worker")):
        if key in mem:
            cells = [
                f"{_f(m.get(key, {}).get('rss_mb'), 0)} (peak {_f(m.get(key, {}).get('peak_mb'), 0)})"
                for m in (small, big, mem)
            ]
            lines.append(f"| {label} | {' | '.join(cells)} |")
    if r.get("memory_cf_mb"):
        lines.append(f"| ContextForge (all its processes together) | {_f(r['memory_cf_mb'], 0)} | — | — |")
    lines.append("")
    return "\n".join(lines)


def call_table(r: dict, catalog: str, title: str) -> list[str]:
    table = r["paths"] if catalog == "small" else r["big"]
    if not table:
        return []
    lines = [
        f"### {title}",
        "",
        "Added = the path's latency minus direct's, both at c=1 in this catalog phase. Slow = the tool that "
        "awaits 50 ms upstream.",
        "",
        "| path | p50 ms (c=1) | p99 ms (c=1) | added p50 | added p99 | calls/s c=16 | p50 / p99 ms c=16 | "
        "calls/s c=64 | slow calls/s c=16 | slow calls/s c=64 | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, v in table.items():
        c1, c16, c64 = v.get("fast_c1"), v.get("fast_c16"), v.get("fast_c64")
        s16, s64 = v.get("slow_c16"), v.get("slow_c64")
        a50, a99 = added(r, catalog, key) if key != "direct" else (None, None)
        errors = sum(e["errors"] for e in (c1, c16, c64, s16, s64) if e)
        lines.append(
            f"| {v['label']} | {_f(c1 and c1['p50'])} | {_f(c1 and c1['p99'])} | {_f(a50)} | {_f(a99)} | "
            f"{_f(c16 and c16['rps'], 0)} | {_f(c16 and c16['p50'], 1)} / {_f(c16 and c16['p99'], 1)} | "
            f"{_f(c64 and c64['rps'], 0)} | {_f(s16 and s16['rps'], 0)} | {_f(s64 and s64['rps'], 0)} | {errors} |"
        )
    splits = []
    for v in table.values():
        measures = (("fast_c16", "c=16"), ("fast_c64", "c=64"), ("slow_c16", "slow c=16"), ("slow_c64", "slow c=64"))
        seen = [
            f"{name} {', '.join('+'.join(map(str, split)) for split in v[m]['conns_per_worker'])}"
            for m, name in measures
            if v.get(m, {}).get("conns_per_worker")
        ]
        if seen:
            splits.append(f"{v['label']}: {', '.join(seen)}")
    if splits:
        lines += [
            "",
            "Connections held by each gateway process as each round's window opened (gunicorn keeps a keep-alive "
            "connection in the worker that accepted it, so an uneven split leaves one worker's threads short): "
            + "; ".join(splits)
            + ".",
        ]
    lines.append("")
    return lines


def cpu_table(r: dict) -> list[str]:
    lines = [
        "### CPU per call (echo, c=16)",
        "",
        "CPU time (user + system, from /proc/<pid>/stat) used during the c=16 window, divided by the calls "
        "answered in it. Gateway = the gateway's whole process group (gunicorn master + workers, or "
        "ContextForge's); PostgreSQL = every postgres process except backends of other databases; Redis = "
        "redis-server; load generator = its thread's CPU time. Busy = the whole machine's CPU use in the window "
        f"(100 % = all {r['machine']['cpus']} cores); other work = the part of it none of these account for "
        "(other processes on a shared machine): a large share means that window measured a crowded machine.",
        "",
        "| path | catalog | gateway ms | PostgreSQL ms | upstream ms | Redis ms | load generator ms | machine busy | "
        "of which other work |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for table, cname in ((r["paths"], "1×2"), (r["big"], "25×100")):
        for v in table.values():
            e = v.get("fast_c16")
            if not e:
                continue
            c = e["cpu_ms_per_call"]
            lines.append(
                f"| {v['label']} | {cname} | {_f(c.get('gateway'))} | {_f(c.get('postgres'))} | "
                f"{_f(c.get('upstream'))} | {_f(c.get('redis'))} | {_f(c.get('loadgen'), 3)} | "
                f"{_f(e['machine_busy_pct'], 0)} % | {_f(e.get('others_pct'), 0)} % |"
            )
    lines.append("")
    return lines


def write_results(r: dict, section: str) -> None:
    """RESULTS.md: title, the targets table for this run, then every run's section, newest first."""
    old = RESULTS_MD.read_text() if RESULTS_MD.exists() else ""
    if RUNS_MARKER in old:
        history = old.split(RUNS_MARKER, 1)[1].strip()
    else:  # a file from before the marker: keep it whole, one heading level down
        history = re.sub(r"^(#+) ", r"#\1 ", old.strip(), flags=re.M)
    head = [
        "# Benchmark results",
        "",
        "`make bench` (bench/run.py) runs every measure on this machine and adds a dated section below; older "
        "runs stay below it. Method: the docstrings of bench/run.py and bench/loadgen.py.",
        "",
        render_targets(r),
        "",
        RUNS_MARKER,
        "",
        section.strip(),
        "",
    ]
    RESULTS_MD.write_text("\n".join(head) + ("\n" + history + "\n" if history else ""))


if __name__ == "__main__":
    main()
