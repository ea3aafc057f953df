from __future__ import annotations

import ipaddress
import socket

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts import epoch
from accounts.models import Role
from tests.factories import MembershipFactory, OrganizationFactory, make_api_key

_real_connect = socket.socket.connect


def _loopback_only_connect(self, address):
    """Tests may talk to this machine only; anything else is a bug in the test (or in the SSRF guard)."""
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0]
        try:
            loopback = ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise OSError(f"test network guard: refusing to connect to {host}")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch):
    monkeypatch.setattr(socket.socket, "connect", _loopback_only_connect)


@pytest.fixture
def allow_private(settings):
    """Lift the SSRF address rules so the client may reach peers on 127.0.0.1 (as in local development)."""
    settings.MCP_ALLOW_PRIVATE_NETWORKS = True


@pytest.fixture(autouse=True)
def _fast_and_clean(settings):
    # Argon2 is the production hasher; tests need speed, not strength.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # No test reaches out to a server unless it starts one and asks for discovery itself.
    settings.MCP_DISCOVER_ON_SAVE = False
    cache.clear()
    # Each test runs in a transaction that is rolled back, counter and all: no worker memo outlives it.
    epoch.MEMO.clear()
    yield
    cache.clear()
    epoch.MEMO.clear()


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
