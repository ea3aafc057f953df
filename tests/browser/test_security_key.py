"""A security key (WebAuthn) as the second factor, in Chromium with a virtual authenticator (the DevTools
WebAuthn domain stands in for the hardware; the browser's WebAuthn API and allauth's checks are real)."""

from __future__ import annotations

import pytest
from allauth.mfa.models import Authenticator

from tests.browser.conftest import check_page, sign_in
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


def test_add_a_security_key_then_sign_in_with_it(page, live_server, owner, settings):
    settings.MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = True  # the live server is http://localhost
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    options = {"protocol": "ctap2", "transport": "usb", "hasResidentKey": True, "hasUserVerification": True}
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {**options, "isUserVerified": True}})
    base = live_server.url
    sign_in(page, base, owner.email)
    page.wait_for_url(f"{base}/")
    page.goto(f"{base}/auth/2fa/webauthn/add/")
    page.get_by_label("Password").fill(PASSWORD)  # confirmed again before a change of factors
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url(f"{base}/auth/2fa/webauthn/add/**")
    check_page(page, "security-key-add")
    page.get_by_label("Name").fill("Test key")
    page.get_by_role("button", name="Add").click()
    page.wait_for_url(lambda url: "/webauthn/add/" not in url)
    assert Authenticator.objects.filter(user=owner, type=Authenticator.Type.WEBAUTHN).exists()

    page.get_by_role("button", name="Log out").click()
    sign_in(page, base, owner.email)
    page.wait_for_url(f"{base}/auth/2fa/authenticate/**")
    page.get_by_role("button", name="Use a security key").click()
    page.wait_for_url(f"{base}/")
