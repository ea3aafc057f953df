"""Joining an org takes the invitee's consent: invitations, accepting/declining them, leaving."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts import services
from accounts.models import AuditEvent, Invitation, Membership, Role, User
from tests.factories import GuestFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

LINK = re.compile(r'id="invite-link" type="text" readonly value="https?://[^"/]+/invitations/([A-Za-z0-9_-]+)/"')


@pytest.fixture
def bob(db) -> User:
    """A registered user who is in no org."""
    return UserFactory(email="bob@example.com", username="Bob")


def invite(client, org, email: str, role: str = "developer"):
    return client.post(f"/orgs/{org.slug}/", {"email": email, "role": role})


def link_token(res) -> str:
    return LINK.search(res.content.decode()).group(1)


# --- creating invitations ------------------------------------------------------------------------


def test_inviting_an_existing_user_does_not_make_them_a_member(client, org, owner, bob):
    client.force_login(owner)
    res = invite(client, org, "Bob@Example.com")
    assert res.status_code == 200
    html = res.content.decode()
    assert "Invitation created for bob@example.com." in html
    assert res["Cache-Control"] == "no-store"
    raw = link_token(res)
    assert not Membership.objects.filter(user=bob, organization=org).exists()
    invitation = Invitation.objects.get(organization=org)
    assert invitation.email == "bob@example.com" and invitation.role == Role.DEVELOPER
    assert invitation.invited_by == owner and invitation.is_open
    assert timedelta(days=13, hours=23) < invitation.expires_at - invitation.created_at <= timedelta(days=14)
    # Only a digest is stored; the raw token is in no row and not on the next page.
    assert raw not in invitation.token_digest
    assert all(raw not in str(e.changes) for e in AuditEvent.objects.all())
    assert AuditEvent.objects.filter(action="invitation.create", organization=org, actor=owner).exists()
    again = client.get(f"/orgs/{org.slug}/").content.decode()
    assert raw not in again and "bob@example.com" in again  # listed as an open invitation
    assert "Revoke the invitation for bob@example.com" in again


def _normalized(html: str, email: str = "") -> str:
    if email:
        html = html.replace(email, "EMAIL")
    html = re.sub(r"/invitations/[A-Za-z0-9_-]+/", "/invitations/TOKEN/", html)
    html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "CSRF", html)
    return html


def test_the_answer_is_the_same_for_registered_and_unregistered_emails(client, org, owner, bob):
    client.force_login(owner)
    registered = invite(client, org, "bob@example.com")
    services.invitation_revoke(actor=owner, invitation=Invitation.objects.get(email="bob@example.com"))
    unregistered = invite(client, org, "nobody@example.com")
    assert registered.status_code == unregistered.status_code == 200
    assert _normalized(registered.content.decode(), "bob@example.com") == _normalized(
        unregistered.content.decode(), "nobody@example.com"
    )
    assert "registered" not in unregistered.content.decode().lower()
    assert not Membership.objects.filter(user=bob, organization=org).exists()
    assert Invitation.objects.filter(organization=org, email="nobody@example.com").exists()


def test_viewers_and_developers_cannot_invite_or_revoke(client, org, owner, teammate, viewer):
    invitation, _ = services.invitation_create(actor=owner, organization=org, email="x@example.com", role="viewer")
    for member in (teammate, viewer):
        client.force_login(member)
        assert "Invite a member" not in client.get(f"/orgs/{org.slug}/").content.decode()
        assert invite(client, org, "y@example.com").status_code == 403
        assert client.post(f"/orgs/{org.slug}/invitations/{invitation.pk}/revoke/").status_code == 403
    assert not Invitation.objects.filter(email="y@example.com").exists()
    invitation.refresh_from_db()
    assert invitation.is_open


def test_an_admin_cannot_invite_an_owner_and_members_are_not_invited(client, org, owner, teammate):
    admin = MembershipFactory(organization=org, role=Role.ADMIN, user__email="admin@example.com").user
    client.force_login(admin)
    res = invite(client, org, "boss@example.com", role="owner")
    assert res.status_code == 400 and "Only an owner" in res.content.decode()
    res = invite(client, org, "TEAMMATE@example.com")
    assert res.status_code == 400 and "already a member" in res.content.decode()
    res = invite(client, org, "not-an-email")
    assert res.status_code == 400
    assert not Invitation.objects.exists()


def test_inviting_again_replaces_the_open_invitation(client, org, owner, bob):
    client.force_login(owner)
    first = link_token(invite(client, org, "bob@example.com"))
    second = link_token(invite(client, org, "bob@example.com", role="admin"))
    assert first != second
    assert Invitation.objects.filter(organization=org, email="bob@example.com").count() == 2
    assert services.invitation_for_token(first).state == "revoked"
    client.force_login(bob)
    assert "no longer open: it has been revoked" in client.get(f"/invitations/{first}/").content.decode()
    page = client.get(f"/invitations/{second}/").content.decode()
    assert "as <strong>admin</strong>" in page


def test_the_database_keeps_one_open_invitation_per_email(org, owner):
    services.invitation_create(actor=owner, organization=org, email="dup@example.com", role="viewer")
    common = {"organization": org, "role": "viewer", "expires_at": timezone.now() + timedelta(days=1)}
    with pytest.raises(IntegrityError), transaction.atomic():
        Invitation.objects.create(email="dup@example.com", token_digest="a" * 64, **common)
    with pytest.raises(IntegrityError), transaction.atomic():
        Invitation.objects.create(email="Mixed@example.com", token_digest="b" * 64, **common)
    with pytest.raises(IntegrityError), transaction.atomic():
        now = timezone.now()
        Invitation.objects.create(
            email="two@example.com", token_digest="c" * 64, accepted_at=now, revoked_at=now, **common
        )


# --- the invitee answers ----------------------------------------------------------------------------


def test_invitee_accepts_from_the_dashboard(client, org, owner, bob):
    invitation, _ = services.invitation_create(actor=owner, organization=org, email="bob@example.com", role="admin")
    client.force_login(bob)
    home = client.get("/").content.decode()
    assert "invited you to join <strong>Acme</strong> as admin" in home
    assert f'action="/invitations/{invitation.pk}/respond/"' in home and "csrfmiddlewaretoken" in home
    assert client.get(f"/invitations/{invitation.pk}/respond/").status_code == 405  # POST only
    res = client.post(f"/invitations/{invitation.pk}/respond/", {"accept": "1"})
    assert res.status_code == 302 and res["Location"] == f"/orgs/{org.slug}/"
    assert Membership.objects.get(user=bob, organization=org).role == Role.ADMIN
    invitation.refresh_from_db()
    assert invitation.state == "accepted" and invitation.accepted_by == bob
    assert AuditEvent.objects.filter(action="invitation.accept", actor=bob, organization=org).exists()
    assert AuditEvent.objects.filter(action="membership.add", actor=bob, organization=org).exists()
    assert "invited you to join" not in client.get("/").content.decode()
    # Answered: a second answer changes nothing.
    client.post(f"/invitations/{invitation.pk}/respond/", {"decline": "1"})
    invitation.refresh_from_db()
    assert invitation.state == "accepted"


def test_invitee_declines_from_the_dashboard(client, org, owner, bob):
    invitation, _ = services.invitation_create(actor=owner, organization=org, email="bob@example.com", role="viewer")
    client.force_login(bob)
    res = client.post(f"/invitations/{invitation.pk}/respond/", {"decline": "1"})
    assert res.status_code == 302 and res["Location"] == "/"
    assert not Membership.objects.filter(user=bob, organization=org).exists()
    invitation.refresh_from_db()
    assert invitation.state == "declined"
    assert AuditEvent.objects.filter(action="invitation.decline", actor=bob).exists()
    assert "invited you to join" not in client.get("/").content.decode()


def test_invitee_accepts_or_declines_by_link(client, org, other_org, owner, outsider, bob):
    _, raw = services.invitation_create(actor=owner, organization=org, email="BOB@example.com", role="viewer")
    assert client.get(f"/invitations/{raw}/").status_code == 302  # log in first
    client.force_login(bob)
    res = client.get(f"/invitations/{raw}/")
    html = res.content.decode()
    assert res.status_code == 200 and "Invitation to Acme" in html
    assert str(owner) in html and "as <strong>viewer</strong>" in html
    assert 'name="accept"' in html and 'name="decline"' in html
    res = client.post(f"/invitations/{raw}/", {"accept": "1"})
    assert res.status_code == 302
    assert Membership.objects.get(user=bob, organization=org).role == Role.VIEWER
    _, other = services.invitation_create(actor=outsider, organization=other_org, email="bob@example.com", role="admin")
    assert client.post(f"/invitations/{other}/", {"decline": "1"}).status_code == 302
    assert not Membership.objects.filter(user=bob, organization=other_org).exists()
    assert Invitation.objects.get(organization=other_org).state == "declined"


def test_someone_elses_link_is_refused_and_reveals_nothing(client, org, owner, teammate, bob):
    invitation, raw = services.invitation_create(actor=owner, organization=org, email="bob@example.com", role="admin")
    stranger = UserFactory(email="mallory@example.com", username="Mallory")
    client.force_login(stranger)
    res = client.get(f"/invitations/{raw}/")
    html = res.content.decode()
    assert res.status_code == 404 and "not valid for the account you are signed in with" in html
    for secret in ("bob@example.com", "Acme", str(owner), "admin"):
        assert secret not in html.split("<main", 1)[1], secret
    unknown = client.get("/invitations/not-a-real-token/")
    assert unknown.status_code == 404 and _normalized(unknown.content.decode()) == _normalized(html)
    assert client.post(f"/invitations/{raw}/", {"accept": "1"}).status_code == 404
    assert client.post(f"/invitations/{invitation.pk}/respond/", {"accept": "1"}).status_code == 404
    # Not even a member of the org (who holds the link) can accept it for themselves.
    client.force_login(teammate)
    assert client.post(f"/invitations/{raw}/", {"accept": "1"}).status_code == 404
    assert Membership.objects.get(user=teammate).role == Role.DEVELOPER
    assert not Membership.objects.filter(user__in=[stranger, bob], organization=org).exists()
    invitation.refresh_from_db()
    assert invitation.is_open
    with pytest.raises(Invitation.DoesNotExist):
        services.invitation_accept(actor=stranger, invitation=invitation)


def test_a_guest_cannot_accept_until_they_claim(client, org, owner):
    _, raw = services.invitation_create(actor=owner, organization=org, email="later@example.com", role="viewer")
    client.post("/accounts/guest/")
    guest = User.objects.get(is_guest=True)
    res = client.get(f"/invitations/{raw}/")
    assert res.status_code == 403 and "Claim your account" in res.content.decode()
    assert client.post(f"/invitations/{raw}/", {"accept": "1"}).status_code == 403
    assert not Membership.objects.filter(user=guest).exists()
    with pytest.raises(ValidationError) as info:
        services.invitation_accept(actor=guest, invitation=Invitation.objects.get())
    assert "Claim your account" in str(info.value)
    client.post("/accounts/claim/", {"email": "later@example.com", "username": "L", "password": "a-strong-pass-123"})
    assert client.post(f"/invitations/{raw}/", {"accept": "1"}).status_code == 302
    assert Membership.objects.get(user=guest, organization=org).role == Role.VIEWER


def test_expired_revoked_and_stale_invitations_cannot_be_accepted(client, org, owner, bob):
    admin = MembershipFactory(organization=org, role=Role.ADMIN, user__email="admin@example.com").user
    expired, _ = services.invitation_create(actor=owner, organization=org, email="bob@example.com", role="viewer")
    Invitation.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    client.force_login(bob)
    assert "invited you to join" not in client.get("/").content.decode()
    res = client.post(f"/invitations/{expired.pk}/respond/", {"accept": "1"}, follow=True)
    assert "no longer open: it has expired" in res.content.decode()
    assert not Membership.objects.filter(user=bob, organization=org).exists()
    # The inviter lost the right to grant the role: the invitation no longer works.
    stale, _ = services.invitation_create(actor=admin, organization=org, email="bob@example.com", role="admin")
    services.membership_change_role(actor=owner, membership=Membership.objects.get(user=admin), role="viewer")
    res = client.post(f"/invitations/{stale.pk}/respond/", {"accept": "1"}, follow=True)
    assert "can no longer grant it" in res.content.decode()
    assert not Membership.objects.filter(user=bob, organization=org).exists()


def test_owner_revokes_an_invitation(client, org, owner, bob):
    invitation, raw = services.invitation_create(actor=owner, organization=org, email="bob@example.com", role="viewer")
    client.force_login(owner)
    assert client.get(f"/orgs/{org.slug}/invitations/{invitation.pk}/revoke/").status_code == 405
    res = client.post(f"/orgs/{org.slug}/invitations/{invitation.pk}/revoke/")
    assert res.status_code == 302
    invitation.refresh_from_db()
    assert invitation.state == "revoked"
    assert AuditEvent.objects.filter(action="invitation.revoke", actor=owner, organization=org).exists()
    assert "Revoke the invitation for" not in client.get(f"/orgs/{org.slug}/").content.decode()
    client.force_login(bob)
    assert "invited you to join" not in client.get("/").content.decode()
    assert client.post(f"/invitations/{raw}/", {"accept": "1"}).status_code == 302
    assert not Membership.objects.filter(user=bob, organization=org).exists()


def test_outsiders_get_404_on_the_invitation_urls(client, org, owner, outsider, other_org):
    invitation, raw = services.invitation_create(actor=owner, organization=org, email="bob@example.com", role="viewer")
    theirs, _ = services.invitation_create(actor=outsider, organization=other_org, email="z@example.com", role="viewer")
    client.force_login(outsider)
    assert client.post(f"/orgs/{org.slug}/invitations/{invitation.pk}/revoke/").status_code == 404
    # Their own org's slug with another org's invitation: still 404.
    assert client.post(f"/orgs/{other_org.slug}/invitations/{invitation.pk}/revoke/").status_code == 404
    assert client.get(f"/invitations/{raw}/").status_code == 404
    assert client.post(f"/invitations/{invitation.pk}/respond/", {"decline": "1"}).status_code == 404
    assert client.post(f"/orgs/{org.slug}/leave/").status_code == 404
    assert client.post(f"/orgs/{org.slug}/", {"email": "a@example.com", "role": "owner"}).status_code == 404
    invitation.refresh_from_db()
    assert invitation.is_open
    client.force_login(owner)
    assert client.post(f"/orgs/{org.slug}/invitations/{theirs.pk}/revoke/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.is_open


# --- leaving -----------------------------------------------------------------------------------------


def test_a_member_can_leave(client, org, owner, teammate):
    client.force_login(teammate)
    html = client.get(f"/orgs/{org.slug}/").content.decode()
    assert "Leave organization" in html and f'action="/orgs/{org.slug}/leave/"' in html
    assert client.get(f"/orgs/{org.slug}/leave/").status_code == 405
    res = client.post(f"/orgs/{org.slug}/leave/")
    assert res.status_code == 302 and res["Location"] == "/"
    assert not Membership.objects.filter(user=teammate, organization=org).exists()
    assert AuditEvent.objects.filter(action="membership.leave", actor=teammate, organization=org).exists()
    assert client.get(f"/orgs/{org.slug}/").status_code == 404


def test_the_last_owner_cannot_leave_but_one_of_two_can(client, org, owner, teammate):
    client.force_login(owner)
    res = client.post(f"/orgs/{org.slug}/leave/", follow=True)
    assert "at least one owner" in res.content.decode()
    assert Membership.objects.get(user=owner, organization=org).role == Role.OWNER
    services.membership_change_role(actor=owner, membership=Membership.objects.get(user=teammate), role="owner")
    assert client.post(f"/orgs/{org.slug}/leave/").status_code == 302
    assert not Membership.objects.filter(user=owner, organization=org).exists()
    assert list(Membership.objects.filter(organization=org).values_list("role", flat=True)) == ["owner"]


def test_invited_before_signing_up(client, org, owner):
    """Invited before signing up: emails are not verified, so an account made after the invitation does not see
    it on the dashboard (someone else may have registered that address); the link, sent to the invitee, works."""
    client.force_login(owner)
    raw = link_token(invite(client, org, "newcomer@example.com", role="developer"))
    client.logout()
    client.post("/accounts/signup/", {"email": "Newcomer@example.com", "password": "a-strong-pass-123"})
    dashboard = client.get("/").content.decode()
    assert "Acme" not in dashboard and "invited you" not in dashboard
    assert client.post(f"/invitations/{raw}/", {"accept": "1"}).status_code == 302
    user = User.objects.get(email="newcomer@example.com")
    assert Membership.objects.get(user=user, organization=org).role == Role.DEVELOPER


def test_guests_have_no_invitations(org, owner):
    services.invitation_create(actor=owner, organization=org, email="g@example.com", role="viewer")
    assert not Invitation.objects.visible_to(GuestFactory()).exists()


def test_the_link_token_never_reaches_the_logs_or_the_database(client, org, owner, outsider, bob, caplog):
    caplog.set_level(logging.DEBUG)
    client.force_login(owner)
    raw = link_token(invite(client, org, "bob@example.com"))
    client.force_login(outsider)
    assert client.get(f"/invitations/{raw}/").status_code == 404
    assert client.put(f"/invitations/{raw}/").status_code == 405
    client.logout()
    client.post("/accounts/guest/")
    assert client.get(f"/invitations/{raw}/").status_code == 403
    client.force_login(bob)
    assert client.get(f"/invitations/{raw}/").status_code == 200
    assert client.post(f"/invitations/{raw}/", {"accept": "1"}).status_code == 302
    logged = "\n".join(r.getMessage() + " " + str(r.args) for r in caplog.records)
    assert "/invitations/<token>/" in logged  # the refusals are logged, without the token
    assert raw not in logged
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            assert raw not in str(cursor.fetchall()), table
