"""Two-factor sign-in in the browser: enrol an authenticator app (TOTP) after confirming the password, then the
next sign-in asks for a code before anything else; the pages pass axe."""

from __future__ import annotations

import time

import pytest
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value

from tests.browser.conftest import check_page, sign_in
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


def code(secret: str, step: int = 0) -> str:
    return format_hotp_value(hotp_value(secret, int(time.time()) // 30 + step))


def test_enrol_totp_then_sign_in_with_a_code(page, live_server, owner, settings):
    settings.MFA_TOTP_TOLERANCE = 1  # the code used to enrol is spent; the next one signs in
    base = live_server.url
    sign_in(page, base, owner.email)
    page.wait_for_url(f"{base}/")
    page.get_by_role("link", name="Two-factor").click()
    page.goto(f"{base}/auth/2fa/totp/activate/")
    page.get_by_label("Password").fill(PASSWORD)  # allauth asks again before a change of factors
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url(f"{base}/auth/2fa/totp/activate/")
    check_page(page, "two-factor-activate")
    secret = page.locator("#authenticator_secret").input_value()
    page.get_by_label("Authenticator code").fill(code(secret))
    page.get_by_role("button", name="Activate").click()
    page.wait_for_url(f"{base}/auth/2fa/**")
    assert "Recovery" in page.content() or "recovery" in page.content()

    page.get_by_role("button", name="Log out").click()
    sign_in(page, base, owner.email)
    page.wait_for_url(f"{base}/auth/2fa/authenticate/**")
    check_page(page, "two-factor-sign-in")
    page.get_by_label("Code").fill(code(secret, 1))
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(f"{base}/")
    assert "Dashboard" in page.content()
