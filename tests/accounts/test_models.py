import pytest
from django.db import IntegrityError, transaction

from accounts.models import Membership, User
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_email_is_unique_case_insensitively():
    User.objects.create_user("Case@Example.com", "pw")
    assert User.objects.get().email == "case@example.com"
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(email="CASE@example.com")


def test_guests_have_no_email_and_several_may_exist():
    User.objects.create_user(None, is_guest=True)
    User.objects.create_user(None, is_guest=True)
    assert User.objects.filter(is_guest=True, email__isnull=True).count() == 2


def test_registered_users_need_an_email():
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(email=None, is_guest=False)


def test_membership_is_unique_per_user_and_org():
    m = MembershipFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Membership.objects.create(user=m.user, organization=m.organization)


def test_a_user_may_belong_to_several_orgs():
    user = UserFactory()
    MembershipFactory(user=user)
    MembershipFactory(user=user)
    assert user.memberships.count() == 2
