"""The embedded DNS server under a flood: bounded upstream sockets, SERVFAIL beyond."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

from dnslib import RCODE, DNSRecord

from dockyard.network import dns


class _Silent:
    """Answers nothing locally; forwards to an upstream that never replies."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream

    def lookup(self, container_id: str, name: str) -> list[str] | None:
        return None

    def reverse(self, container_id: str, address: str) -> str | None:
        return None

    def upstreams(self, container_id: str) -> list[str]:
        return [self.upstream]


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_flood_of_forwarded_queries_uses_bounded_sockets(monkeypatch: Any) -> None:
    monkeypatch.setattr(dns, "UPSTREAM_TIMEOUT", 0.5)
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    monkeypatch.setattr(dns, "UPSTREAM_PORT", silent.getsockname()[1])
    server = dns.EmbeddedDNS(_Silent("127.0.0.1"))
    query = bytes(DNSRecord.question("flood.example").pack())

    async def flood() -> tuple[list[bytes], int]:
        before = _open_fds()
        tasks = [asyncio.create_task(server.answer("c", query, tcp=False)) for _ in range(2000)]
        await asyncio.sleep(0.2)
        during = _open_fds() - before
        return await asyncio.gather(*tasks), during

    try:
        replies, during = asyncio.run(flood())
    finally:
        silent.close()
    assert during <= dns.MAX_FORWARDS + 16
    assert all(DNSRecord.parse(r).header.rcode == RCODE.SERVFAIL for r in replies)
