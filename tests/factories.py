"""Factories for the test suite. Passwords are `password-for-tests`."""

from __future__ import annotations

import factory
from django.utils import timezone

from accounts import services
from accounts.models import ApiKey, Membership, Organization, Role, User

PASSWORD = "password-for-tests"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    username = factory.Sequence(lambda n: f"User {n}")
    password = factory.django.Password(PASSWORD)


class GuestFactory(UserFactory):
    email = None
    is_guest = True
    guest_expires_at = factory.LazyFunction(lambda: timezone.now() + timezone.timedelta(days=1))


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Org {n}")
    slug = factory.Sequence(lambda n: f"org-{n}")
    contact_email = "ops@example.com"


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    organization = factory.SubFactory(OrganizationFactory)
    role = Role.DEVELOPER


def make_api_key(user: User, scopes=("read", "call", "manage"), **kwargs) -> tuple[ApiKey, str]:
    return services.api_key_create(actor=user, name=kwargs.pop("name", "test key"), scopes=list(scopes), **kwargs)


def make_server(actor, **kwargs):
    """A server created through the service (so credentials and audit are real)."""
    from mcpsettings import services

    kwargs.setdefault("name", f"Server {User.objects.count()}-{ApiKey.objects.count()}-{_seq()}")
    kwargs.setdefault("endpoint_url", "https://mcp.example.com/mcp")
    return services.server_create(actor=actor, **kwargs)


_counter = iter(range(10**9))


def _seq() -> int:
    return next(_counter)
