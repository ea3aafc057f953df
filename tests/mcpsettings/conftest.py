import socket

import pytest

from tests.mcpsettings.ssrf_helpers import RESOLVES, fake_getaddrinfo


@pytest.fixture(autouse=True)
def fake_dns(monkeypatch, settings):
    """Names resolve from a table (no network); tests may edit it to simulate rebinding.

    Address rules are on (as in production) unless a test lifts them.
    """
    settings.MCP_ALLOW_PRIVATE_NETWORKS = False
    table = dict(RESOLVES)
    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo(table))
    return table
