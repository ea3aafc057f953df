import pytest

from accounts import services
from accounts.models import AuditEvent
from accounts.services import SECRET_MARK, audit_record, diff

pytestmark = pytest.mark.django_db


def test_audit_events_are_append_only(owner):
    event = audit_record(actor=owner, action="test.thing", target=owner)
    event.action = "tampered"
    with pytest.raises(ValueError):
        event.save()
    with pytest.raises(ValueError):
        event.delete()
    assert AuditEvent.objects.get(pk=event.pk).action == "test.thing"


def test_diff_hides_secret_values():
    changes = diff({"name": "a", "token": "s3cret-old"}, {"name": "b", "token": "s3cret-new"}, secret_fields=["token"])
    assert changes == {"name": ["a", "b"], "token": [SECRET_MARK, SECRET_MARK]}
    assert "s3cret" not in str(changes)


def test_a_failed_service_leaves_no_audit_row(org, owner):
    before = AuditEvent.objects.count()
    with pytest.raises(Exception):
        services.api_key_create(actor=owner, name="", scopes=["read"])
    assert AuditEvent.objects.count() == before


def test_visible_to_scopes_audit_events(org, owner, teammate, outsider):
    services.api_key_create(actor=teammate, name="k", scopes=["read"])
    services.membership_change_role(actor=owner, membership=teammate.memberships.get(), role="viewer")
    services.api_key_create(actor=outsider, name="k", scopes=["read"])
    owner_sees = set(AuditEvent.objects.visible_to(owner).values_list("action", "actor__email"))
    assert ("membership.change_role", "owner@example.com") in owner_sees
    assert not any(email == "outsider@example.com" for _, email in owner_sees)
    assert set(AuditEvent.objects.visible_to(outsider).values_list("actor__email", flat=True)) == {
        "outsider@example.com"
    }
