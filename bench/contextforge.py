"""IBM ContextForge (mcp-contextforge-gateway) as a local benchmark peer.

It lives in its own virtualenv (bench/.venv-contextforge, git-ignored) because its dependency tree is large and
must stay out of Gatehouse's requirements. This module imports only the stdlib, `requests` and the official MCP
SDK client (bench/sdk_client.py, from the project's dev dependencies), so the benchmark runner can import it from
the project's venv and drive ContextForge as a subprocess.

    with ContextForge() as cf:
        endpoint = cf.register_upstream("upstream", "http://127.0.0.1:8001/mcp")
        tool = cf.tool_name("echo")  # "upstream-echo"
        # an MCP client session on `endpoint` with `cf.headers` (sdk_client.session)

Sessions (checked with 1.0.7.post20260921): its streamable HTTP endpoint answers JSON (JSON_RESPONSE_ENABLED=true)
and by default is stateless (USE_STATEFUL_SESSIONS=false): no Mcp-Session-Id, every POST stands alone, and each
tools/call makes it initialize the upstream anew (initialize, notifications/initialized, tools/list, tools/call).
With stateful=True (this module's default) it issues an Mcp-Session-Id that stays valid for many calls and keeps
its upstream session too (one upstream request per call, about 3x faster), which is what a client reusing one
session per worker gets at its best.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
import sdk_client  # bench/sdk_client.py: bench/ is on sys.path when bench/run.py runs

CF_DIR = Path(__file__).parent / ".cf"  # runtime dir (sqlite db, logs)
VENV = Path(__file__).parent / ".venv-contextforge"
PACKAGE = "mcp-contextforge-gateway"
VERSION = "1.0.7.post20260921"  # the version whose API paths and env settings this module was checked against
ADMIN_EMAIL = "admin@example.com"


def _venv_python() -> Path:
    return VENV / "bin" / "python"


def _installed_version(python: Path) -> str | None:
    if not python.exists():
        return None
    probe = f"import importlib.metadata as m; print(m.version({PACKAGE!r}))"
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def ensure_installed() -> Path:
    """Create VENV and pip install the pinned ContextForge if missing; return the path of its python."""
    python = _venv_python()
    if _installed_version(python) == VERSION:
        return python
    if not python.exists():
        # sys.executable may itself be a venv's python; `venv` then builds on the same base interpreter.
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"{PACKAGE}=={VERSION}"],
        check=True,
    )
    return python


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class ContextForge:
    """A ContextForge gateway on 127.0.0.1:`port`, with a fresh SQLite db and fresh secrets. Use as a context manager.

    `stateful` sets USE_STATEFUL_SESSIONS (see the module's docstring); `extra_env` overrides or adds other
    ContextForge settings (e.g. {"LOG_LEVEL": "ERROR"}).
    """

    def __init__(
        self,
        port: int = 14444,
        *,
        stateful: bool = True,
        extra_env: dict[str, str] | None = None,
        timeout: float = 180,
    ) -> None:
        self.port = port
        self.stateful = stateful
        self.base_url = f"http://127.0.0.1:{port}"
        self.headers: dict[str, str] = {}
        self.extra_env = dict(extra_env or {})
        self.timeout = timeout
        self.startup_seconds = 0.0
        self.log_path = CF_DIR / "contextforge.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}
        self.endpoint: str | None = None  # the virtual server from the last register_upstream
        self.original_names: dict[str, str] = {}  # upstream tool name -> exposed name, from the admin API

    # -- lifecycle ------------------------------------------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        # A minimal base: its settings read any environment variable named like a field (HOST, PORT, LOG_LEVEL,
        # DATABASE_URL, ...), so the runner's own environment must not leak in.
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")}
        env.update(
            {
                # It refuses to start with placeholder or low-entropy secrets; fresh ones each run.
                "JWT_SECRET_KEY": secrets.token_urlsafe(48),
                "AUTH_ENCRYPTION_SECRET": secrets.token_urlsafe(48),
                "PLATFORM_ADMIN_EMAIL": ADMIN_EMAIL,
                "PLATFORM_ADMIN_PASSWORD": "Aa1!" + secrets.token_urlsafe(24),
                "BASIC_AUTH_PASSWORD": "Aa1!" + secrets.token_urlsafe(24),
                "DATABASE_URL": f"sqlite:///{CF_DIR / 'cf.db'}",
                "MCPGATEWAY_UI_ENABLED": "false",
                "MCPGATEWAY_ADMIN_API_ENABLED": "true",
                # Upstreams in the benchmark are on loopback, which the SSRF guard blocks by default.
                "SSRF_ALLOW_LOCALHOST": "true",
                "SSRF_ALLOW_PRIVATE_NETWORKS": "true",
                # On by default at 100 requests/minute for MCP, which would turn a benchmark into 429s.
                "RATE_LIMITING_ENABLED": "false",
                "USE_STATEFUL_SESSIONS": "true" if self.stateful else "false",
            }
        )
        env.update(self.extra_env)
        return env

    def __enter__(self) -> ContextForge:
        python = ensure_installed()
        if _port_in_use(self.port):
            raise RuntimeError(f"Port {self.port} is already in use; ContextForge cannot start there.")
        CF_DIR.mkdir(parents=True, exist_ok=True)
        (CF_DIR / ".gitignore").write_text("*\n")  # keep runtime files out of git without touching the repo's ignore
        for leftover in CF_DIR.glob("cf.db*"):
            leftover.unlink()  # fresh secrets cannot decrypt an old db, and old gateways would be health-checked
        self.env = self._environment()
        started = time.monotonic()
        with self.log_path.open("wb") as log:
            # cwd=CF_DIR: its settings also read `.env` from the working directory, and /work/main/.env is Gatehouse's.
            self.process = subprocess.Popen(
                [str(VENV / "bin" / "mcpgateway"), "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=CF_DIR,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group, so __exit__ can stop it and any workers
            )
        try:
            self._wait_healthy(started)
            self.headers = {"Authorization": f"Bearer {self._mint_token(python)}"}
        except BaseException:
            self._stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def _wait_healthy(self, started: float) -> None:
        assert self.process is not None
        while time.monotonic() - started < self.timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"ContextForge exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                response = requests.get(f"{self.base_url}/health", timeout=2)
                if response.ok and response.json().get("status") == "healthy":
                    return
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"ContextForge was not healthy within {self.timeout:.0f} s:\n{self.log_tail()}")

    def _mint_token(self, python: Path) -> str:
        # Its own CLI, with the same env, so the claims (iss, aud, env) and signing key match the server's.
        command = [str(python), "-m", "mcpgateway.utils.create_jwt_token", "--username", ADMIN_EMAIL]
        done = subprocess.run(
            [*command, "--exp", "1440", "--admin", "--full-name", "Bench Admin"],
            cwd=CF_DIR,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        lines = [line.strip() for line in done.stdout.splitlines() if line.strip()]
        if not lines or lines[-1].count(".") != 2:
            raise RuntimeError(f"No JWT in create_jwt_token output: {done.stdout!r} {done.stderr[-2000:]!r}")
        return lines[-1]

    def _stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # -- admin API ------------------------------------------------------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the admin REST API (under /v1; its unprefixed twins are deprecated "legacy" routes)."""
        response = requests.request(method, f"{self.base_url}{path}", headers=self.headers, timeout=60, **kwargs)
        if not response.ok:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text[:2000]}")
        return response.json() if response.content else None

    def register_upstream(self, name: str, url: str) -> str:
        """Register an upstream MCP server (streamable HTTP) and a virtual server exposing its tools.

        Returns the virtual server's MCP endpoint, {base_url}/servers/<id>/mcp.
        """
        # transport defaults to SSE; the gateway connects at once and caches the upstream's tools.
        gateway = self.api("POST", "/v1/gateways", json={"name": name, "url": url, "transport": "STREAMABLEHTTP"})
        tools: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while not tools:
            tools = self.api("GET", "/v1/tools", params={"gateway_id": gateway["id"], "limit": 0})
            if isinstance(tools, dict):  # the paginated form, should it be returned
                tools = tools.get("items") or tools.get("data") or []
            if not tools:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ContextForge found no tools on {url}: {gateway}")
                time.sleep(0.5)
        self.original_names.update({tool["originalName"]: tool["name"] for tool in tools})
        server = self.api(
            "POST",
            "/v1/servers",
            json={"server": {"name": f"{name}-server", "associated_tools": [tool["id"] for tool in tools]}},
        )
        # Not /v1/...: the legacy-route deprecation headers name /v1/servers/<id>/mcp as successor, but it is a 404.
        self.endpoint = f"{self.base_url}/servers/{server['id']}/mcp"
        return self.endpoint

    def tool_name(self, upstream_tool: str) -> str:
        """The name under which the last registered virtual server exposes `upstream_tool` (from its tools/list).

        ContextForge prefixes the gateway's slug: "<slug>-<tool>" (GATEWAY_TOOL_NAME_SEPARATOR, default "-").
        """
        if self.endpoint is None:
            raise RuntimeError("register_upstream() first")
        names = asyncio.run(sdk_client.tool_names(self.endpoint, self.headers))
        expected = self.original_names.get(upstream_tool)
        if expected in names:
            return expected
        matches = [n for n in names if n == upstream_tool or n.endswith(("-" + upstream_tool, "_" + upstream_tool))]
        if len(matches) != 1:
            raise LookupError(f"No single exposed name for {upstream_tool!r} among {names}")
        return matches[0]
