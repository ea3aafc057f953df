"""client_ip: the peer address, or behind trusted proxies the address they saw — never what the client wrote."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from accounts.ratelimit import client_ip

PROXY = "10.0.0.5"  # REMOTE_ADDR: our own (last) proxy


@pytest.fixture
def behind_proxy(settings):
    """BEHIND_TLS_PROXY=true, as config/settings.py sets it, with one trusted proxy."""
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.TRUSTED_PROXY_COUNT = 1
    return settings


def ip_for(forwarded: str | None, remote: str = PROXY) -> str | None:
    meta = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded
    return client_ip(RequestFactory().get("/", **meta))


def test_without_a_proxy_the_header_is_ignored(settings):
    settings.SECURE_PROXY_SSL_HEADER = None
    assert ip_for("198.51.100.7", remote="203.0.113.9") == "203.0.113.9"
    assert ip_for(None, remote="") is None
    assert ip_for(None, remote="not-an-ip") is None


def test_the_proxy_appended_address_wins_over_a_spoofed_left_most_one(behind_proxy):
    assert ip_for("203.0.113.9") == "203.0.113.9"
    assert ip_for("1.1.1.1, 203.0.113.9") == "203.0.113.9"
    assert ip_for("1.1.1.1,2.2.2.2 ,  203.0.113.9") == "203.0.113.9"
    assert ip_for("[2001:db8::1]:443, 2001:4860::8") == "2001:4860::8"
    assert ip_for("1.1.1.1, ::ffff:203.0.113.9") == "203.0.113.9"  # IPv4-mapped, unwrapped


def test_with_two_proxies_the_client_is_second_from_the_right(behind_proxy):
    behind_proxy.TRUSTED_PROXY_COUNT = 2
    # client → edge (appends client) → internal proxy (appends edge) → us
    assert ip_for("6.6.6.6, 203.0.113.9, 10.0.0.4") == "203.0.113.9"
    assert ip_for("203.0.113.9, 10.0.0.4") == "203.0.113.9"
    # Too short a chain: the request did not come through both proxies.
    assert ip_for("203.0.113.9") == PROXY


@pytest.mark.parametrize(
    "forwarded",
    [
        "abc",
        "1.2.3.4.5",
        "::ffff:zz",
        "\u0000",
        "1.1.1.1, abc",
        "1.1.1.1, 999.1.1.1",
        "1.1.1.1, 0.0.0.0",
        "1.1.1.1, fe80::1%eth0",
        "1.1.1.1, " + "9" * 10_000,
        ",".join(["1.1.1.1"] * 5_000) + ", ",
        " ",
        ",",
    ],
)
def test_a_malformed_trusted_position_gives_remote_addr(behind_proxy, forwarded):
    assert ip_for(forwarded) == PROXY


def test_garbage_left_of_the_trusted_position_is_never_read(behind_proxy):
    assert ip_for("abc, \u0000, 1.2.3.4.5, 203.0.113.9") == "203.0.113.9"
    assert ip_for("x" * 100_000 + ", 203.0.113.9") == "203.0.113.9"


def test_a_bad_setting_never_breaks_a_request(behind_proxy):
    behind_proxy.TRUSTED_PROXY_COUNT = "nonsense"
    assert ip_for("1.1.1.1, 203.0.113.9") == "203.0.113.9"  # falls back to one proxy
    behind_proxy.TRUSTED_PROXY_COUNT = 0  # no proxy appends: the peer is the client
    assert ip_for("1.1.1.1, 203.0.113.9") == PROXY
    behind_proxy.TRUSTED_PROXY_COUNT = 1
    assert ip_for("203.0.113.9", remote="garbage") == "203.0.113.9"
    assert ip_for("abc", remote="garbage") is None
