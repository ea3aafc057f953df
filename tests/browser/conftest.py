"""Playwright (Python) driving Debian's Chromium against pytest-django's live server.

Never a downloaded browser: `/usr/bin/chromium` (apt package `chromium`). axe-core comes from npm
(`tests/browser/.npm`, installed by `make test` / `.ci/run`). Screenshots go to `tests/artifacts/`.
Outside CI the browser tests skip when Chromium or axe-core is missing; in CI they fail instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make are fine.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
AXE = Path(__file__).parent / ".npm" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


def _missing(what: str):
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing in CI; .ci/run installs it.")
    pytest.skip(f"{what} is not installed")


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        _missing("Debian's chromium (/usr/bin/chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, settings):
    settings.ALLOWED_HOSTS = ["*"]
    # bypass_csp: only so axe-core (a test tool) can be injected; the pages themselves run under the CSP.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    context.set_default_timeout(15000)
    pg = context.new_page()
    yield pg
    context.close()


def check_page(page, name: str) -> None:
    """Screenshot the page, then run axe-core on it: no serious or critical violations."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    if not AXE.exists():
        _missing("axe-core (npm)")
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    bad = [
        f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v.get("impact") in ("serious", "critical")
    ]
    assert not bad, f"axe on {name}: " + "; ".join(bad)


def sign_in(page, base: str, email: str, password: str | None = None) -> None:
    """Gatehouse's log-in page, filled and sent (the caller waits for where it leads)."""
    from tests.factories import PASSWORD

    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password or PASSWORD)
    page.get_by_role("button", name="Log in").click()
