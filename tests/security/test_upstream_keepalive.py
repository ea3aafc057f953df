"""Kept-alive upstream connections: reused across calls, reopened when the server closed them, and never a
second send of a request that may have reached the server (tools/call is not idempotent).

The peer counts the TCP connections it accepts and the tools it runs; `drop_idle` closes every open
connection the way a server's keep-alive timeout does (FIN, or RST when asked).
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
from django.utils import timezone

from governance.models import RequestLog, ToolApproval
from mcpsettings.mcp_client import McpClient, McpError, transport
from mcpsettings.models import McpTool
from tests.conftest import key_client
from tests.factories import make_server
from tests.peers.recorder import RecordingHandler, RecordingServer

pytestmark = pytest.mark.usefixtures("allow_private")
VERSION = ("2025-06-18",)  # the peer answers 2026-07-28 with 400; skip that round trip


class ConnectionCountingServer(RecordingServer):
    def __init__(self) -> None:
        super().__init__()
        self.open: list[socket.socket] = []
        self.accepted = 0
        self.closed = threading.Semaphore(0)

    def process_request(self, request, client_address) -> None:
        self.accepted += 1
        self.open.append(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        super().shutdown_request(request)
        self.closed.release()

    def drop_idle(self, *, reset: bool = False) -> None:
        """Close every open connection now, as an idle keep-alive timeout does; wait until they are closed."""
        dropped, self.open = self.open, []
        for sock in dropped:
            try:
                if reset:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                continue  # already closed by its handler
        for _ in dropped:
            self.closed.acquire(timeout=5)
        time.sleep(0.05)  # let the FIN/RST reach the client's socket


class ClosingHandler(RecordingHandler):
    """Answers with `Connection: close` and closes, as some servers and proxies do."""

    def end_headers(self) -> None:
        self.send_header("Connection", "close")
        self.close_connection = True
        super().end_headers()


@pytest.fixture
def peer():
    with ConnectionCountingServer() as server:
        yield server


def idle_connections(client: McpClient) -> list:
    return [conn for conns in client.transport._idle.values() for conn in conns]


def call(client: McpClient, n: int = 1) -> dict:
    return client.call_tool("t", {"n": n})


def race(monkeypatch) -> None:
    """The server closes right after the client checked the idle connection: the check cannot see it."""
    monkeypatch.setattr(transport._Connection, "usable", lambda self, now: True)


def test_calls_share_one_kept_alive_connection(peer):
    with McpClient(peer.url("run"), versions=VERSION, timeout=5) as client:
        for i in range(5):
            assert call(client, i)["isError"] is False
    assert peer.executions == 5
    assert peer.accepted == 1  # initialize, initialized and 5 calls on one connection


def test_a_connection_the_server_closed_is_replaced_and_the_tool_runs_once(peer):
    with McpClient(peer.url("run"), versions=VERSION, timeout=5) as client:
        call(client)
        peer.drop_idle()
        assert call(client)["isError"] is False
    assert peer.executions == 2 and peer.accepted == 2


def test_a_reset_connection_that_took_no_byte_is_retried_once_and_the_tool_runs_once(peer, monkeypatch):
    with McpClient(peer.url("run"), versions=VERSION, timeout=5) as client:
        call(client)
        race(monkeypatch)
        peer.drop_idle(reset=True)  # the kernel refuses the next send outright: nothing leaves
        assert call(client)["isError"] is False
    assert peer.executions == 2 and peer.accepted == 2


class Breaking:
    """A socket that lets `allow` bytes of the next send through, then fails as a reset connection does."""

    def __init__(self, sock, allow: int) -> None:
        self._sock, self._allow = sock, allow

    def send(self, data) -> int:
        if self._allow:
            sent = self._sock.send(data[: self._allow])
            self._allow = 0
            return sent
        raise ConnectionResetError(104, "Connection reset by peer")

    def __getattr__(self, name):
        return getattr(self._sock, name)


def test_a_connection_that_fails_before_the_first_byte_is_retried(peer):
    with McpClient(peer.url("run"), versions=VERSION, timeout=5) as client:
        call(client)
        (conn,) = idle_connections(client)
        conn.sock = Breaking(conn.sock, allow=0)
        assert call(client)["isError"] is False
    assert peer.executions == 2 and peer.accepted == 2


def test_a_connection_that_fails_after_a_partial_send_is_not_retried(peer):
    with McpClient(peer.url("run"), versions=VERSION, timeout=5) as client:
        call(client)
        (conn,) = idle_connections(client)
        conn.sock = Breaking(conn.sock, allow=20)
        with pytest.raises(McpError) as info:
            call(client)
        assert peer.accepted == 1  # no second connection: the request was not sent again
    assert info.value.kind == "unreachable" and "cannot be reached" in str(info.value)
    assert peer.executions == 1


def test_a_request_sent_whole_is_not_resent_when_the_connection_then_breaks(peer, monkeypatch):
    """The server closed as the request went out: it may have run it, so the agent gets an error, not a retry."""
    with McpClient(peer.url("run"), versions=VERSION, timeout=5) as client:
        call(client)
        race(monkeypatch)
        peer.drop_idle()  # FIN only: the send succeeds, no answer comes
        with pytest.raises(McpError) as info:
            call(client)
        assert peer.accepted == 1  # not sent again (closing the session below opens a new one)
    assert info.value.kind == "unreachable" and peer.executions == 1


def test_a_reset_after_the_request_arrived_is_not_retried(peer):
    """/reset reads the whole request, then resets the connection: the client must not send it again."""
    with McpClient(peer.url("reset"), versions=VERSION, timeout=5) as client:
        client.connect()  # initialize and initialized on one connection, kept alive
        with pytest.raises(McpError) as info:
            client.list_tools()
        assert peer.accepted == 1
    assert info.value.kind == "unreachable"
    assert [method for path, method, _ in peer.requests if path == "/reset"].count("tools/list") == 1


def test_connection_close_from_the_server_is_honoured(peer):
    peer.RequestHandlerClass = ClosingHandler
    with McpClient(peer.url("run"), versions=VERSION, timeout=5) as client:
        for _ in range(3):
            call(client)
        assert idle_connections(client) == []
        assert peer.accepted == 5  # initialize, initialized, 3 calls
    assert peer.executions == 3


def test_threads_sharing_a_pooled_client_each_get_a_connection(peer):
    """upstream.POOL hands one client to concurrent calls: every call runs once, none sees another's answer."""
    errors: list[BaseException] = []
    with McpClient(peer.url("run"), versions=VERSION, timeout=10) as client:
        client.connect()

        def work(worker: int) -> None:
            try:
                for i in range(20):
                    assert client.call_tool("t", {"worker": worker, "i": i})["isError"] is False
            except BaseException as exc:  # collected for the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(idle_connections(client)) <= 6
    assert errors == []
    assert peer.executions == 120
    expected = sorted(str({"worker": w, "i": i}) for w in range(6) for i in range(20))
    assert sorted(map(str, peer.seen)) == expected
    assert peer.accepted <= 6  # at most one connection per concurrent call, each reused


# --- a governed call through the REST API (the pooled client in upstream.POOL) --------------------------


@pytest.fixture
def governed(db, owner, peer):
    server = make_server(owner, name="Kept alive", endpoint_url=peer.url("run"))
    McpTool.objects.create(server=server, name="t", digest="0" * 64, last_seen=timezone.now())
    ToolApproval.objects.create(user=owner, server=server, tool_name="t", approval_type="always")
    return server


def governed_call(owner, server):
    return key_client(owner).post(
        "/api/v1/tools/call", {"server": str(server.pk), "tool": "t", "arguments": {}}, format="json"
    )


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst-in-the-race"])
def test_a_governed_call_after_the_server_dropped_the_connection_runs_exactly_once(
    owner, peer, governed, monkeypatch, reset
):
    assert governed_call(owner, governed).status_code == 200
    before = peer.executions
    if reset:
        race(monkeypatch)  # only the no-byte-sent retry can save this call
    peer.drop_idle(reset=reset)
    res = governed_call(owner, governed)
    assert res.status_code == 200, res.content
    assert peer.executions == before + 1
    assert RequestLog.objects.filter(server=governed, status="ok").count() == 2
