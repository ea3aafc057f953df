import re

import pytest
from django.urls import reverse

from accounts.models import ApiKey, AuditEvent, Invitation, Membership, Role, User
from tests.factories import PASSWORD, make_api_key

pytestmark = pytest.mark.django_db


def test_signup_logs_in_and_audits(client):
    res = client.post(
        "/accounts/signup/", {"email": "New@Example.com", "username": "New", "password": "a-strong-pass-123"}
    )
    assert res.status_code == 302 and res["Location"] == "/"
    user = User.objects.get(email="new@example.com")
    assert user.check_password("a-strong-pass-123") and not user.is_guest
    assert AuditEvent.objects.filter(action="user.signup", actor=user).exists()
    assert client.get("/").status_code == 200


def test_signup_bad_input_keeps_what_was_typed(client, owner):
    res = client.post("/accounts/signup/", {"email": "OWNER@example.com", "username": "Typed Name", "password": "x"})
    assert res.status_code == 400
    html = res.content.decode()
    assert "already exists" in html or "too short" in html
    assert 'value="Typed Name"' in html and 'value="OWNER@example.com"' in html
    res = client.post("/accounts/signup/", {"email": "fresh@example.com", "username": "T", "password": "short"})
    assert res.status_code == 400 and "too short" in res.content.decode()
    assert not User.objects.filter(email="fresh@example.com").exists()
    res = client.post("/accounts/signup/", {"email": "not-an-email", "password": "a-strong-pass-123"})
    assert res.status_code == 400 and "valid email" in res.content.decode()


def test_login_logout(client, owner):
    res = client.post("/accounts/login/", {"username": "owner@example.com", "password": PASSWORD})
    assert res.status_code == 302
    assert client.get("/").status_code == 200
    assert client.get("/accounts/logout/").status_code == 405  # POST only
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_wrong_password_is_400_and_rate_limited(client, owner, settings):
    settings.LOGIN_RATE_LIMIT = (3, 900)
    for _ in range(3):
        res = client.post("/accounts/login/", {"username": "owner@example.com", "password": "wrong"})
        assert res.status_code == 400 and "correct" in res.content.decode()
    res = client.post("/accounts/login/", {"username": "owner@example.com", "password": PASSWORD})
    assert res.status_code == 400 and "Too many failed log-in attempts" in res.content.decode()


def test_pages_need_login(client):
    for url in ["/", "/settings/api-keys/", "/accounts/password/", "/orgs/new/", "/accounts/claim/"]:
        res = client.get(url)
        assert res.status_code == 302 and res["Location"].startswith("/accounts/login/"), url


def test_password_change(client, owner):
    client.force_login(owner)
    res = client.post("/accounts/password/", {"old_password": "nope", "new_password1": "x", "new_password2": "y"})
    assert res.status_code == 400
    res = client.post(
        "/accounts/password/",
        {"old_password": PASSWORD, "new_password1": "another-long-pass-9", "new_password2": "another-long-pass-9"},
    )
    assert res.status_code == 302
    owner.refresh_from_db()
    assert owner.check_password("another-long-pass-9")
    assert client.get("/").status_code == 200  # session kept
    assert AuditEvent.objects.filter(action="user.password_change", actor=owner).exists()


def test_guest_session_then_claim_keeps_everything(client):
    assert client.get("/accounts/guest/").status_code == 405
    res = client.post("/accounts/guest/")
    assert res.status_code == 302
    guest = User.objects.get(is_guest=True)
    assert guest.email is None and guest.guest_expires_at is not None
    page = client.get("/").content.decode()
    assert "Claim your account" in page
    # The guest makes something.
    client.post("/settings/api-keys/", {"name": "guest key", "scopes": ["read"], "expires_in_days": ""})
    assert ApiKey.objects.filter(user=guest).count() == 1
    res = client.post("/accounts/claim/", {"email": "claimed@example.com", "username": "C", "password": "short"})
    assert res.status_code == 400 and 'value="claimed@example.com"' in res.content.decode()
    res = client.post(
        "/accounts/claim/", {"email": "claimed@example.com", "username": "C", "password": "a-strong-pass-123"}
    )
    assert res.status_code == 302
    user = User.objects.get(pk=guest.pk)
    assert not user.is_guest and user.email == "claimed@example.com" and user.guest_expires_at is None
    assert ApiKey.objects.filter(user=user, name="guest key").exists()
    assert client.get("/").status_code == 200  # still logged in
    assert AuditEvent.objects.filter(action="guest.claim", actor=user).exists()
    assert client.get("/accounts/claim/").status_code == 302  # nothing left to claim


def test_claim_with_a_taken_email_is_refused(client, owner):
    client.post("/accounts/guest/")
    res = client.post(
        "/accounts/claim/", {"email": "owner@example.com", "username": "C", "password": "a-strong-pass-123"}
    )
    assert res.status_code == 400 and "already exists" in res.content.decode()
    assert User.objects.filter(is_guest=True).count() == 1


def test_expired_guest_is_logged_out(client):
    client.post("/accounts/guest/")
    User.objects.filter(is_guest=True).update(guest_expires_at="2000-01-01T00:00:00Z")
    assert client.get("/").status_code == 302


def test_api_keys_page_shows_the_new_key_once(client, owner):
    client.force_login(owner)
    res = client.post(
        "/settings/api-keys/", {"name": "laptop agent", "scopes": ["read", "call"], "expires_in_days": "30"}
    )
    assert res.status_code == 200
    html = res.content.decode()
    raw = re.search(r'id="new-key" type="text" readonly value="(gh_[^"]+)"', html).group(1)
    key = ApiKey.objects.get(user=owner, name="laptop agent")
    assert key.scopes == ["read", "call"] and key.expires_at is not None and key.prefix == raw[:11]
    assert res["Cache-Control"] == "no-store"
    again = client.get("/settings/api-keys/").content.decode()
    assert raw not in again and key.prefix in again


def test_api_keys_page_bad_input_keeps_input(client, owner):
    client.force_login(owner)
    res = client.post("/settings/api-keys/", {"name": "", "scopes": ["read"]})
    assert res.status_code == 400 and "This field is required" in res.content.decode()
    res = client.post("/settings/api-keys/", {"name": "kept name", "scopes": []})
    assert res.status_code == 400 and 'value="kept name"' in res.content.decode()
    assert not ApiKey.objects.exists()


def test_revoke_from_the_page_and_outsider_gets_404(client, owner, outsider):
    key, _ = make_api_key(owner)
    client.force_login(outsider)
    assert client.post(f"/settings/api-keys/{key.pk}/revoke/").status_code == 404
    client.force_login(owner)
    assert client.get(f"/settings/api-keys/{key.pk}/revoke/").status_code == 405
    assert client.post(f"/settings/api-keys/{key.pk}/revoke/").status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert "Revoked" in client.get("/settings/api-keys/").content.decode()


def test_org_page_lists_members_with_roles(client, org, owner, teammate, viewer):
    client.force_login(teammate)
    html = client.get(f"/orgs/{org.slug}/").content.decode()
    for email in ["owner@example.com", "teammate@example.com", "viewer@example.com"]:
        assert email in html
    assert "Owner" in html and "Viewer" in html
    assert "Invite a member" not in html  # developers do not manage members


def test_org_page_is_404_for_outsiders(client, org, owner, outsider):
    client.force_login(outsider)
    assert client.get(f"/orgs/{org.slug}/").status_code == 404
    m = Membership.objects.get(user=owner)
    assert client.post(f"/orgs/{org.slug}/members/{m.pk}/", {"role": "viewer"}).status_code == 404
    assert client.get("/orgs/no-such-org/").status_code == 404


def test_viewer_cannot_change_members(client, org, owner, viewer):
    client.force_login(viewer)
    m = Membership.objects.get(user=owner)
    assert client.post(f"/orgs/{org.slug}/members/{m.pk}/", {"remove": "1"}).status_code == 403
    assert client.post(f"/orgs/{org.slug}/", {"email": "x@example.com", "role": "admin"}).status_code == 403
    assert Membership.objects.filter(pk=m.pk).exists()


def test_owner_invites_changes_and_removes_members(client, org, owner, outsider):
    client.force_login(owner)
    res = client.post(f"/orgs/{org.slug}/", {"email": "OUTSIDER@example.com", "role": "developer"})
    assert res.status_code == 200 and "Invitation created for outsider@example.com." in res.content.decode()
    assert not Membership.objects.filter(user=outsider, organization=org).exists()  # not until they accept
    invitation = Invitation.objects.get(organization=org, email="outsider@example.com")
    client.force_login(outsider)
    assert client.post(f"/invitations/{invitation.pk}/respond/", {"accept": "1"}).status_code == 302
    m = Membership.objects.get(user=outsider, organization=org)
    assert m.role == Role.DEVELOPER
    client.force_login(owner)
    client.post(f"/orgs/{org.slug}/members/{m.pk}/", {"role": "admin"})
    m.refresh_from_db()
    assert m.role == Role.ADMIN
    client.post(f"/orgs/{org.slug}/members/{m.pk}/", {"remove": "1"})
    assert not Membership.objects.filter(pk=m.pk).exists()
    actions = list(AuditEvent.objects.filter(organization=org).values_list("action", flat=True))
    assert {"membership.add", "membership.change_role", "membership.remove"} <= set(actions)


def test_last_owner_cannot_leave_or_be_demoted(client, org, owner):
    client.force_login(owner)
    m = Membership.objects.get(user=owner)
    res = client.post(f"/orgs/{org.slug}/members/{m.pk}/", {"role": "viewer"}, follow=True)
    assert "at least one owner" in res.content.decode()
    client.post(f"/orgs/{org.slug}/members/{m.pk}/", {"remove": "1"})
    m.refresh_from_db()
    assert m.role == Role.OWNER


def test_admin_cannot_grant_owner(client, org, owner, teammate):
    admin_user = Membership.objects.create(
        user=User.objects.create_user("admin@example.com", PASSWORD), organization=org, role=Role.ADMIN
    ).user
    client.force_login(admin_user)
    m = Membership.objects.get(user=teammate)
    client.post(f"/orgs/{org.slug}/members/{m.pk}/", {"role": "owner"})
    m.refresh_from_db()
    assert m.role == Role.DEVELOPER


def test_create_organization(client, owner):
    client.force_login(owner)
    res = client.post("/orgs/new/", {"name": "", "slug": ""})
    assert res.status_code == 400
    res = client.post("/orgs/new/", {"name": "Initech Labs", "slug": ""})
    assert res.status_code == 302 and res["Location"] == reverse("accounts:org_detail", args=["initech-labs"])
    assert Membership.objects.get(organization__slug="initech-labs").role == Role.OWNER
    res = client.post("/orgs/new/", {"name": "Dup", "slug": "initech-labs"})
    assert res.status_code == 400 and "taken" in res.content.decode()
