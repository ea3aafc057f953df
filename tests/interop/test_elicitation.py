"""An upstream's question mid-call (elicitation) reaches the person through Gatehouse when the client declared
it can ask them, and is refused at once when it did not: never a call hanging until the timeout."""

from __future__ import annotations

import time

import pytest

from tests.interop.conftest import needs_node, serve, ts_client
from tests.peers.sdk import Peer, build_content_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("allow_private"), needs_node]


@pytest.fixture(scope="module")
def asking_peer():
    # "legacy": a handshake-era server (2026-07-28 servers cannot ask mid-call; they answer input_required)
    with Peer("legacy", server=build_content_server()) as running:
        yield running


@pytest.fixture
def agent(settings, live_server, owner, asking_peer):
    return serve(settings, live_server, owner, asking_peer.url)


def test_the_question_reaches_a_client_that_declared_elicitation(agent):
    out = ts_client(
        {"url": agent["url"], "key": agent["key"], "elicitation": True, "steps": [["call", {"name": "docs__pick"}]]}
    )
    assert out["call"][0]["ok"], out
    assert out["call"][0]["value"]["content"][0]["text"] == "accept:blue"


def test_a_client_without_elicitation_gets_an_answer_at_once(agent):
    start = time.monotonic()
    out = ts_client({"url": agent["url"], "key": agent["key"], "steps": [["call", {"name": "docs__pick"}]]})
    assert time.monotonic() - start < 15
    item = out["call"][0]
    text = str(item.get("value") or item.get("error"))
    assert "accept" not in text and ("elicitation" in text.lower() or "error" in text.lower()), item
