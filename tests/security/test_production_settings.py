"""Production settings: `check --deploy` is clean with DEBUG off, and the security headers are there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

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
