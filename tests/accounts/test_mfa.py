"""Two-factor sign-in (TOTP and recovery codes, allauth.mfa) on Gatehouse's own log-in page: enrol, sign in with
a code, secrets encrypted at rest, no JWT for a password alone, and an org that requires it of its admins."""

from __future__ import annotations

import re
import time

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
from rest_framework.test import APIClient

from accounts.models import Role
from tests.factories import PASSWORD, MembershipFactory

pytestmark = pytest.mark.django_db


def code(secret: str, step: int = 0) -> str:
    return format_hotp_value(hotp_value(secret, int(time.time()) // 30 + step))


def log_in(client, email: str, password: str = PASSWORD):
    return client.post("/accounts/login/", {"username": email, "password": password})


def activation_page(client):
    """The TOTP set-up page, after confirming the password again (allauth asks before any change of factors)."""
    asked = client.get("/auth/2fa/totp/activate/")
    assert asked.status_code == 302 and asked["Location"].startswith("/auth/account/reauthenticate/")
    assert client.post(asked["Location"], {"password": PASSWORD}).status_code == 302
    page = client.get("/auth/2fa/totp/activate/")
    assert page.status_code == 200, page.status_code
    return page


def enrol(client, user) -> str:
    assert log_in(client, user.email).status_code == 302
    page = activation_page(client)
    secret = page.context["form"].secret
    assert "data:image/svg+xml" in page.content.decode() and "Authenticator secret" in page.content.decode()
    answer = client.post("/auth/2fa/totp/activate/", {"code": code(secret)})
    assert answer.status_code == 302, answer.content.decode()[-1500:]
    client.logout()
    return secret


def test_enrol_then_sign_in_needs_the_code(client, owner, settings):
    settings.MFA_TOTP_TOLERANCE = 1  # the next code is accepted (the one just used for enrolment is spent)
    secret = enrol(client, owner)
    stored = Authenticator.objects.get(user=owner, type=Authenticator.Type.TOTP)
    assert secret not in str(stored.data)  # encrypted at rest

    first = log_in(client, owner.email)
    assert first.status_code == 302 and "/auth/2fa/authenticate/" in first["Location"]
    assert client.get("/").status_code == 302  # not signed in yet
    wrong = client.post("/auth/2fa/authenticate/", {"code": "000000" if code(secret, 1) != "000000" else "111111"})
    assert wrong.status_code == 200 and "code" in wrong.content.decode().lower()
    done = client.post("/auth/2fa/authenticate/", {"code": code(secret, 1)})
    assert done.status_code == 302
    assert client.get("/").status_code == 200


def test_no_jwt_for_a_password_alone_once_two_factor_is_on(client, owner, settings):
    settings.MFA_TOTP_TOLERANCE = 1
    enrol(client, owner)
    res = APIClient().post("/api/v1/auth/token", {"email": owner.email, "password": PASSWORD}, format="json")
    assert res.status_code == 403 and "two-factor" in res.json()["detail"]


def test_an_org_can_require_it_of_its_admins(client, org, owner, settings):
    settings.MFA_TOTP_TOLERANCE = 1
    org.settings = {"require_admin_mfa": True}
    org.save()
    viewer = MembershipFactory(organization=org, role=Role.VIEWER, user__email="viewer@example.com").user
    assert log_in(client, viewer.email).status_code == 302
    assert client.get("/settings/mcps/").status_code == 200  # not an admin: not held back
    client.logout()

    assert log_in(client, owner.email).status_code == 302
    held = client.get("/settings/mcps/")
    assert held.status_code == 302 and held["Location"] == "/auth/2fa/"
    secret = activation_page(client).context["form"].secret
    assert client.post("/auth/2fa/totp/activate/", {"code": code(secret)}).status_code == 302
    assert client.get("/settings/mcps/").status_code == 200  # set up: free to go on
    assert re.search(r"recovery", client.get("/auth/2fa/").content.decode(), re.I)


def test_the_admin_log_in_asks_for_the_second_factor_too(client, owner, settings):
    settings.MFA_TOTP_TOLERANCE = 1
    owner.is_staff = True
    owner.save()
    enrol(client, owner)
    answer = client.post("/admin/login/", {"username": owner.email, "password": PASSWORD, "next": "/admin/"})
    assert client.get("/settings/api-keys/").status_code == 302  # not signed in on the password alone
    assert answer.status_code in (200, 302)


def test_an_org_rule_also_stops_a_jwt_for_a_password_alone(org, owner):
    org.settings = {"require_admin_mfa": True}
    org.save()
    res = APIClient().post("/api/v1/auth/token", {"email": owner.email, "password": PASSWORD}, format="json")
    assert res.status_code == 403
