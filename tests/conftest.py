from __future__ import annotations

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts.models import Role
from tests.factories import MembershipFactory, OrganizationFactory, make_api_key


@pytest.fixture(autouse=True)
def _fast_and_clean(settings):
    # Argon2 is the production hasher; tests need speed, not strength.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def org(db):
    return OrganizationFactory(name="Acme", slug="acme")


@pytest.fixture
def other_org(db):
    return OrganizationFactory(name="Globex", slug="globex")


@pytest.fixture
def owner(org):
    """Owner of `org`."""
    return MembershipFactory(organization=org, role=Role.OWNER, user__email="owner@example.com").user


@pytest.fixture
def teammate(org):
    """Developer in `org`."""
    return MembershipFactory(organization=org, role=Role.DEVELOPER, user__email="teammate@example.com").user


@pytest.fixture
def viewer(org):
    return MembershipFactory(organization=org, role=Role.VIEWER, user__email="viewer@example.com").user


@pytest.fixture
def outsider(other_org):
    """Owner of another org; shares nothing with `owner`."""
    return MembershipFactory(organization=other_org, role=Role.OWNER, user__email="outsider@example.com").user


@pytest.fixture
def api_client():
    return APIClient()


def key_client(user, scopes=("read", "call", "manage")) -> APIClient:
    _, raw = make_api_key(user, scopes=scopes)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def owner_api(owner):
    return key_client(owner)


@pytest.fixture
def outsider_api(outsider):
    return key_client(outsider)
