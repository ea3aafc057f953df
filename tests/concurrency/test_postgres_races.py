"""Races that only a real database with real concurrent connections can show (PostgreSQL)."""

import threading
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import DatabaseError, connection, connections, transaction
from django.test import Client

from accounts.errors import Conflict
from mcpsettings import services
from mcpsettings.models import Credential, Gateway, McpServer, OAuthClient
from tests.factories import UserFactory
from tests.mcpsettings.test_oauth import connect
from tests.peers.oauth_peer import OAuthPeer

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL's row locks"),
]


def run_in_threads(n: int, fn) -> list:
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def worker(i: int) -> None:
        try:
            barrier.wait()
            results[i] = fn(i)
        except Exception as exc:  # recorded, asserted on by the test
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_fifty_concurrent_creates_stop_at_the_cap(settings):
    settings.MCP_ALLOW_PRIVATE_NETWORKS = True
    settings.MCP_MAX_SERVERS_PER_USER = 25
    user = UserFactory()
    results = run_in_threads(
        50, lambda i: services.server_create(actor=user, name=f"race {i}", endpoint_url="http://10.0.0.1/mcp")
    )
    created = [r for r in results if isinstance(r, McpServer)]
    refused = [r for r in results if isinstance(r, Conflict)]
    assert len(created) == 25 and len(refused) == 25, [r for r in results if not isinstance(r, McpServer | Conflict)]
    assert McpServer.objects.filter(owner=user, deleted_at__isnull=True).count() == 25


def test_concurrent_gateway_creates_never_share_a_pool_endpoint(settings):
    pool = [f"https://gw{i}.example.com" for i in range(5)]
    settings.MCP_GATEWAY_URL_POOLS = pool
    users = [UserFactory() for _ in range(12)]
    results = run_in_threads(12, lambda i: services.gateway_create(actor=users[i], name=f"gw {i}"))
    created = [r for r in results if isinstance(r, Gateway)]
    assert len(created) == 5
    assert all(isinstance(r, Gateway | Conflict) for r in results), results
    endpoints = list(Gateway.objects.values_list("endpoint", flat=True))
    assert sorted(endpoints) == sorted(pool)


def test_concurrent_discovery_of_one_server_leaves_one_consistent_tool_set(settings):
    from mcpsettings import discovery
    from mcpsettings.models import McpTool
    from tests.peers.sdk import Peer

    settings.MCP_ALLOW_PRIVATE_NETWORKS = True
    user = UserFactory()
    with Peer("json") as peer:
        server = services.server_create(actor=user, name="shared", endpoint_url=peer.url)
        results = run_in_threads(8, lambda i: discovery.discover(McpServer.objects.get(pk=server.pk)))
    assert all(getattr(r, "ok", False) for r in results), results
    assert McpTool.objects.filter(server=server).count() == 5
    assert McpServer.objects.get(pk=server.pk).status == "active"


def test_twenty_callers_with_an_expired_token_refresh_exactly_once(settings, client):
    from datetime import timedelta

    from django.utils import timezone

    from mcpsettings import discovery

    settings.MCP_ALLOW_PRIVATE_NETWORKS = True
    user = UserFactory()
    with OAuthPeer() as peer:
        server = services.server_create(actor=user, name="oauth", endpoint_url=peer.url, auth_type="oauth")
        client.force_login(user)
        connect(client, server)
        Credential.objects.filter(server=server, user=user).update(expires_at=timezone.now() - timedelta(seconds=5))
        peer.expire_access_tokens()
        server = McpServer.objects.get(pk=server.pk)
        results = run_in_threads(20, lambda i: discovery.with_client(server, user, lambda c: len(c.list_tools())))
        refreshes = [r for r in peer.provider.token_requests if r.get("grant_type") == "refresh_token"]
    assert results == [5] * 20, results
    assert len(refreshes) == 1 and peer.provider.refresh_count == 1


def test_two_first_connects_at_once_end_with_one_stored_client(settings):
    """Both register at the provider (outside any lock); the first to store wins, the other uses its client."""
    settings.MCP_ALLOW_PRIVATE_NETWORKS = True
    user = UserFactory()

    def click_connect(i: int) -> tuple[int, str]:
        browser = Client()
        browser.force_login(user)
        res = browser.post(f"/settings/mcps/{server.pk}/connect/")
        return res.status_code, parse_qs(urlsplit(res["Location"]).query)["client_id"][0]

    with OAuthPeer(hold_registrations=2) as peer:
        server = services.server_create(actor=user, name="oauth", endpoint_url=peer.url, auth_type="oauth")
        results = run_in_threads(2, click_connect)
        registrations = len(peer.provider.registered_clients)
    stored = OAuthClient.objects.get(server=server)
    assert registrations == 2  # the two registrations really overlapped
    assert results == [(302, stored.client_id)] * 2, results


def test_disconnect_revokes_at_the_provider_without_holding_the_credential_lock(settings, client):
    settings.MCP_ALLOW_PRIVATE_NETWORKS = True
    user = UserFactory()
    seen: list[str] = []

    def try_the_row_lock() -> None:  # runs while the provider handles the revocation
        try:
            with transaction.atomic():
                Credential.objects.select_for_update(nowait=True).get(pk=cred.pk)
            seen.append("free")
        except DatabaseError:
            seen.append("locked")
        finally:
            connections.close_all()

    with OAuthPeer() as peer:
        server = services.server_create(actor=user, name="oauth", endpoint_url=peer.url, auth_type="oauth")
        client.force_login(user)
        connect(client, server)
        cred = Credential.objects.get(server=server, user=user)
        peer.provider.on_revoke = try_the_row_lock
        assert client.post(f"/settings/mcps/{server.pk}/disconnect/").status_code == 302
        revoked = list(peer.provider.revoked)
    assert seen and set(seen) == {"free"}, seen
    assert cred.refresh_token in revoked
    assert not Credential.objects.filter(pk=cred.pk).exists()


def test_one_once_approval_lets_exactly_one_of_twenty_concurrent_calls_through(settings):
    from governance import calls
    from governance.models import ToolApproval
    from mcpsettings import discovery
    from tests.peers.sdk import Peer

    settings.MCP_ALLOW_PRIVATE_NETWORKS = True
    user = UserFactory()
    with Peer("json") as peer:
        server = services.server_create(actor=user, name="p", endpoint_url=peer.url)
        assert discovery.discover(server).ok
        args = {"text": "only once"}
        ToolApproval.objects.create(
            user=user,
            server=server,
            tool_name="echo",
            approval_type="once",
            arguments_digest=calls.arguments_digest(server, "echo", args),
        )
        before = len(peer.server.calls)
        results = run_in_threads(
            20, lambda i: calls.governed_call(user=user, server=server, tool="echo", arguments=args)
        )
        ran = len(peer.server.calls) - before
    kinds = sorted(r.kind for r in results)
    assert kinds.count(calls.ALLOWED) == 1 and kinds.count(calls.PENDING) == 19, kinds
    assert ran == 1
