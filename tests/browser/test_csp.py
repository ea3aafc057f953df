"""The API docs and the admin run under the site's strict CSP (no 'unsafe-inline' script) in a real browser."""

from __future__ import annotations

import pytest

from accounts.models import Role, User
from tests.factories import MembershipFactory, OrganizationFactory, make_api_key, make_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

# Runs before any page script, outside the page's CSP: every violation the browser reports is relayed to the test.
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.reportCspViolation(`${location.pathname}: ${e.violatedDirective} blocked ${e.blockedURI || "inline"}`);
});
"""


def assert_no_inline_script_allowed(response, where: str) -> None:
    csp = response.header_value("content-security-policy")  # not .headers: it may leave security headers out
    assert csp and "script-src 'self';" in csp and "'unsafe-inline'" not in csp, (where, csp)


@pytest.fixture
def strict_page(browser, live_server, settings):
    """A page that honours the CSP (no bypass_csp) and collects every violation, from console and events."""
    settings.ALLOWED_HOSTS = ["*"]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15000)
    violations: list[str] = []
    context.expose_binding("reportCspViolation", lambda _source, text: violations.append(text))
    context.add_init_script(REPORT_VIOLATIONS)
    page = context.new_page()
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    yield page, violations
    context.close()


def test_swagger_ui_renders_the_operations_without_a_csp_violation(strict_page, live_server):
    page, violations = strict_page
    res = page.goto(f"{live_server.url}/api/v1/docs/")
    assert_no_inline_script_allowed(res, "docs")
    # Swagger UI ran (its bundle and the bootstrap script from docs/?script=) and fetched /api/v1/schema/.
    call = page.locator(".opblock", has_text="/api/v1/tools/call").first
    call.wait_for()
    assert call.is_visible()
    assert page.locator(".opblock").count() > 10
    # Open an operation and its "Try it out" form: more of Swagger UI's rendering, still under the CSP.
    call.locator(".opblock-summary").click()
    page.get_by_role("button", name="Try it out").first.click()
    page.get_by_role("button", name="Execute").first.wait_for()
    page.get_by_role("button", name="Authorize").first.click()
    page.locator(".modal-ux").wait_for()
    page.wait_for_load_state("networkidle")
    assert not violations, violations


def test_admin_pages_run_without_a_csp_violation(strict_page, live_server):
    page, violations = strict_page
    base = live_server.url
    User.objects.create_superuser("root@example.com", "root-pass-long-1")
    org = OrganizationFactory(name="Acme", slug="acme")
    member = MembershipFactory(organization=org, role=Role.OWNER, user__email="ada@example.com").user
    server = make_server(member, name="Team tools", organization=org)
    key, _ = make_api_key(member, name="laptop")

    res = page.goto(f"{base}/admin/login/")
    assert_no_inline_script_allowed(res, "admin login")
    page.get_by_label("Email").fill("root@example.com")
    page.get_by_label("Password").fill("root-pass-long-1")
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    assert page.get_by_role("link", name="Users").first.is_visible()  # the admin index

    # Change forms with the admin's scripts: related-object widgets, an inline formset, the user form.
    for path, heading in (
        (f"/admin/mcpsettings/mcpserver/{server.pk}/change/", "Team tools"),
        (f"/admin/accounts/organization/{org.pk}/change/", "Acme"),
        (f"/admin/accounts/user/{member.pk}/change/", "ada@example.com"),
        ("/admin/accounts/apikey/", "laptop"),  # a change list with actions and filters
        (f"/admin/accounts/apikey/{key.pk}/change/", "laptop"),
    ):
        res = page.goto(f"{base}{path}")
        assert res.status == 200, path
        assert_no_inline_script_allowed(res, path)
        page.wait_for_load_state("networkidle")
        assert page.locator("#content-main").is_visible() and heading in page.content(), path
    # The admin's own scripts did run (not just load): its theme toggle switches the theme.
    page.goto(f"{base}/admin/")
    before = page.evaluate("document.documentElement.dataset.theme")
    page.locator("button.theme-toggle").first.click()
    assert page.evaluate("document.documentElement.dataset.theme") != before
    assert not violations, violations
