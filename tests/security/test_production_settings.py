"""Production settings: `check --deploy` is clean with DEBUG off, and the security headers are there."""

from __future__ import annotations

import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from accounts.models import User

ROOT = Path(__file__).resolve().parents[2]


def production_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "SECURE_", "SESSION_", "CSRF_"))}
    env.update(
        DEBUG="false",
        SECRET_KEY="x" * 10 + Fernet.generate_key().decode() + "y" * 20,
        FIELD_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        ALLOWED_HOSTS="gatehouse.example.com",
        DATABASE_URL="sqlite:////tmp/gatehouse-deploy-check.sqlite3",
        **extra,
    )
    return env


def test_check_deploy_is_clean_with_debug_off():
    res = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(),
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "no issues" in res.stdout


@pytest.mark.django_db
def test_security_headers_on_pages_and_api(client):
    for path in ("/accounts/login/", "/api/v1/api-keys", "/healthz"):
        res = client.get(path)
        csp = res["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert res["X-Frame-Options"] == "DENY" and res["X-Content-Type-Options"] == "nosniff", path
        assert res["Referrer-Policy"] == "same-origin", path
    assert "'unsafe-inline'" not in client.get("/accounts/login/")["Content-Security-Policy"]


def directives(csp: str) -> dict[str, list[str]]:
    parts = (part.split() for part in csp.split(";") if part.strip())
    return {name: sources for name, *sources in parts}


class InlineScripts(HTMLParser):
    """Collects <script> elements the browser would run from the page itself (no src, not a JSON data block)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        attrs = dict(attrs)
        if tag == "script" and not attrs.get("src") and attrs.get("type") != "application/json":
            self.found.append(str(attrs))


def assert_no_inline_script(res, path: str) -> None:
    assert res.status_code == 200, path
    csp = directives(res["Content-Security-Policy"])
    assert csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"], (path, csp)
    assert "'unsafe-inline'" not in res["Content-Security-Policy"], path
    # Nothing on the page depends on inline script, so the strict policy breaks nothing.
    parser = InlineScripts()
    parser.feed(res.content.decode())
    assert parser.found == [], (path, parser.found)


@pytest.mark.django_db
def test_admin_and_api_docs_allow_no_inline_script(client):
    root = User.objects.create_superuser("root@example.com", "root-pass-long-1")
    # The admin signs in through Gatehouse's own log-in page (so a second factor is asked for).
    assert client.get("/admin/login/")["Location"].startswith("/accounts/login/")
    for path in ("/accounts/login/", "/api/v1/docs/"):
        assert_no_inline_script(client.get(path), path)
    client.force_login(root)
    for path in ("/admin/", f"/admin/accounts/user/{root.pk}/change/", "/admin/accounts/user/", "/api/v1/docs/"):
        assert_no_inline_script(client.get(path), path)


@pytest.mark.django_db
def test_api_docs_bootstrap_script_is_a_same_origin_request_and_the_schema_stays(client):
    page = client.get("/api/v1/docs/").content.decode()
    assert 'src="/api/v1/docs/?script="' in page
    script = client.get("/api/v1/docs/?script=")
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle(" in script.content.decode() and '"/api/v1/schema/"' in script.content.decode()
    # It carries the CSRF token: other sites must not be able to run it with <script src>.
    assert script["Cross-Origin-Resource-Policy"] == "same-origin"
    assert script["X-Content-Type-Options"] == "nosniff"
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200 and "/api/v1/tools/call" in schema.json()["paths"]


def test_hsts_secure_cookies_and_https_redirect_in_production():
    code = (
        "from django.conf import settings as s;"
        "print(s.SECURE_HSTS_SECONDS, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT,"
        " s.SESSION_COOKIE_NAME, s.SESSION_COOKIE_HTTPONLY)"
    )
    res = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=production_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert res.stdout.strip().splitlines()[-1].split() == [
        "31536000",
        "True",
        "True",
        "True",
        "__Host-sessionid",
        "True",
    ]


@pytest.mark.django_db
def test_hsts_header_sent_behind_tls(client, settings):
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    res = client.get("/healthz", HTTP_X_FORWARDED_PROTO="https")
    assert res["Strict-Transport-Security"].startswith("max-age=31536000")
    assert "Strict-Transport-Security" not in client.get("/healthz")  # never over plain http
