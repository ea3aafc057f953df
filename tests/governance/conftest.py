"""Fixtures for the governance tests: a real SDK peer upstream and servers discovered from it."""

from __future__ import annotations

import pytest

from mcpsettings import discovery
from mcpsettings.models import McpServer
from tests.factories import make_server
from tests.governance.helpers import CANARY
from tests.peers.sdk import Peer


@pytest.fixture(scope="module")
def peer():
    with Peer("json") as running:
        yield running


@pytest.fixture
def server(owner, peer):
    s = make_server(owner, name="Peer", endpoint_url=peer.url, auth_type="bearer", token=CANARY)
    assert discovery.discover(s).ok
    return McpServer.objects.get(pk=s.pk)


@pytest.fixture
def org_server(org, owner, peer):
    s = make_server(owner, name="Team Peer", endpoint_url=peer.url, organization=org)
    assert discovery.discover(s).ok
    return McpServer.objects.get(pk=s.pk)
