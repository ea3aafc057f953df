import io

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from accounts.models import ApiKey, Membership, Organization, Role, User

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_create_user_with_org_and_role():
    out = run("create_user", "first@example.com", "--org", "acme", "--role", "viewer")
    org = Organization.objects.get(slug="acme")
    assert "as owner" in out  # a new org's first member is its owner
    assert Membership.objects.get(user__email="first@example.com", organization=org).role == Role.OWNER
    run("create_user", "Ops@Example.com", "--password", "a-long-password-1", "--org", "acme", "--role", "admin")
    user = User.objects.get(email="ops@example.com")
    assert user.check_password("a-long-password-1")
    assert Membership.objects.get(user=user, organization=org).role == Role.ADMIN
    # Running again changes the role, creates nothing twice.
    run("create_user", "ops@example.com", "--org", "acme", "--role", "viewer")
    assert User.objects.filter(email="ops@example.com").count() == 1
    assert Membership.objects.get(user=user, organization=org).role == Role.VIEWER


def test_create_superuser_flag():
    run("create_user", "root@example.com", "--password", "a-long-password-1", "--superuser")
    user = User.objects.get(email="root@example.com")
    assert user.is_superuser and user.is_staff


def test_create_api_key_prints_a_working_key_last():
    run("create_user", "agent@example.com")
    out = run("create_api_key", "agent@example.com", "--name", "ci", "--scopes", "read")
    raw = out.strip().splitlines()[-1]
    assert raw.startswith("gh_")
    key = ApiKey.objects.get(name="ci")
    assert key.scopes == ["read"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get("/api/v1/api-keys").status_code == 200
    assert client.post("/api/v1/api-keys", {"name": "x"}, format="json").status_code == 403


def test_create_api_key_errors():
    with pytest.raises(CommandError, match="No user"):
        run("create_api_key", "ghost@example.com")
    run("create_user", "agent@example.com")
    with pytest.raises(CommandError, match="Unknown scope"):
        run("create_api_key", "agent@example.com", "--scopes", "read,root")


def test_demo_is_idempotent():
    first = run("demo")
    run("demo")
    assert User.objects.filter(email__endswith="@example.com").count() == 3
    assert Membership.objects.filter(organization__slug="acme").count() == 3
    assert first.strip().splitlines()[-1].startswith("gh_")


def test_prune_guests_deletes_only_long_expired_guests():
    from datetime import timedelta

    from django.utils import timezone

    from tests.factories import make_api_key

    now = timezone.now()
    old = User.objects.create_user(None, is_guest=True, guest_expires_at=now - timedelta(days=3))
    make_api_key(old)
    fresh = User.objects.create_user(None, is_guest=True, guest_expires_at=now - timedelta(hours=1))
    live = User.objects.create_user(None, is_guest=True, guest_expires_at=now + timedelta(days=1))
    registered = User.objects.create_user("keep@example.com", "pw-long-enough-1")
    out = run("prune_guests", "--grace-hours", "24")
    assert "Deleted 1" in out
    assert set(User.objects.values_list("pk", flat=True)) == {fresh.pk, live.pk, registered.pk}
    assert not ApiKey.objects.filter(user_id=old.pk).exists()
