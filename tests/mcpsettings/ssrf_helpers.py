"""The SSRF corpus, and a resolver patch so names resolve the same way on every machine."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

CORPUS = Path(__file__).with_name("ssrf_corpus.txt")

# Names the tests resolve themselves (no network): a public one and some that lead inside.
RESOLVES = {
    "public.example.test": ["93.184.216.34"],
    "rebind.example.test": ["127.0.0.1"],
    "internal.example.test": ["10.1.2.3"],
    "mixed.example.test": ["93.184.216.34", "192.168.0.5"],
    "example.com": ["93.184.216.34"],
    "mcp.example.com": ["93.184.216.34"],
    "localhost": ["127.0.0.1"],  # the live test server (refused by name by the SSRF rules anyway)
}


def bad_urls() -> list[tuple[str, str]]:
    rows = []
    for line in CORPUS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            url, why = line.split("\t")
            rows.append((url, why))
    return rows


def fake_getaddrinfo(base: dict[str, list[str]]):
    def getaddrinfo(host, port, *args, **kwargs):
        if isinstance(host, bytes):
            host = host.decode("idna")
        host = host.rstrip(".").lower() if isinstance(host, str) else host
        try:
            ipaddress.ip_address(host)
            table = {**base, host: [host]}  # IP literals resolve to themselves
        except ValueError:
            table = base
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        out = []
        for addr in table[host]:
            family = socket.AF_INET6 if ":" in addr else socket.AF_INET
            sockaddr = (addr, port or 0, 0, 0) if family == socket.AF_INET6 else (addr, port or 0)
            out.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
        return out

    return getaddrinfo
