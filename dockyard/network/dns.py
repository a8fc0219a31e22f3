"""The embedded DNS server: container names on user-defined networks, the rest forwarded.

Like Docker, every container on a user-defined network gets `nameserver
127.0.0.11`. The daemon creates a UDP and a TCP socket bound to
127.0.0.11:53 *inside* the container's namespace (a thread enters the
namespace, creates and binds them, and leaves; the sockets stay there) and
serves them from its event loop. A query is answered from the networks of the
container that sent it (the socket says which container that is): container
names, `--network-alias` aliases, short IDs and the aliases of its links resolve
to addresses (A for IPv4, AAAA for IPv6 ones), and reverse lookups of those
addresses (in-addr.arpa and ip6.arpa) to names. Anything else is forwarded from
the host's namespace to the container's `--dns` servers or the host's
resolvers (loopback resolvers such as 127.0.0.53 work, as they are reached
from the host) -- except for a container only on `--internal` networks,
which gets SERVFAIL: forwarding would be a way out of a network that has
none (Docker does the same). After a daemon restart the sockets are created
again.

A flood of queries cannot exhaust the daemon's file descriptors: at most
MAX_FORWARDS forwards (one upstream socket each, closed on every path) are
under way at once, beyond that a query gets SERVFAIL at once; at most
MAX_TCP_CLIENTS TCP connections are served, each closed when idle for
TCP_IDLE seconds.

Binding 127.0.0.11:53 directly (Docker redirects from a random port with
rules inside the namespace) means a process in the container cannot bind the
wildcard address on port 53; binding its own interface address works.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import struct
from dataclasses import dataclass, field
from typing import Protocol

from dnslib import AAAA, PTR, QTYPE, RCODE, RR, A, DNSRecord

from dockyard.network import netns

log = logging.getLogger(__name__)

ADDRESS = ("127.0.0.11", 53)
TTL = 600
UPSTREAM_PORT = 53
UPSTREAM_TIMEOUT = 3.0
MAX_FORWARDS = 256
MAX_TCP_CLIENTS = 128
TCP_IDLE = 10.0


class Answers(Protocol):
    """What the engine knows, from the point of view of one container."""

    def lookup(self, container_id: str, name: str) -> list[str] | None:
        """Addresses of `name` on the container's networks; None if it is not a local name."""

    def reverse(self, container_id: str, address: str) -> str | None: ...

    def upstreams(self, container_id: str) -> list[str]:
        """Where to forward the container's other queries; [] for none."""


@dataclass
class _Server:
    udp: asyncio.DatagramTransport
    tcp: asyncio.Server
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()
        for task in self.tasks:
            task.cancel()


class EmbeddedDNS:
    def __init__(self, answers: Answers) -> None:
        self.answers = answers
        self._servers: dict[str, _Server] = {}
        self._forwards = 0
        self._tcp_clients = 0

    def serving(self, container_id: str) -> bool:
        return container_id in self._servers

    async def serve(self, container_id: str, sandbox: str) -> None:
        if container_id in self._servers:
            return
        udp_sock, tcp_sock = await netns.bound_sockets(sandbox, ADDRESS)
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UDP(self, container_id), sock=udp_sock
            )
        except BaseException:
            udp_sock.close()
            tcp_sock.close()
            raise
        server = await asyncio.start_server(
            lambda r, w: self._tcp_client(container_id, r, w), sock=tcp_sock
        )
        self._servers[container_id] = _Server(transport, server)

    def stop(self, container_id: str) -> None:
        server = self._servers.pop(container_id, None)
        if server is not None:
            server.close()

    def stop_all(self) -> None:
        for container_id in list(self._servers):
            self.stop(container_id)

    def _track(self, container_id: str, task: asyncio.Task[None]) -> None:
        server = self._servers.get(container_id)
        if server is None:
            task.cancel()
            return
        server.tasks.add(task)
        task.add_done_callback(server.tasks.discard)

    # -- answering -----------------------------------------------------------

    def local_answer(self, container_id: str, query: bytes) -> bytes | None:
        """The reply to a query about a local name, or None to forward it."""
        try:
            request = DNSRecord.parse(query)
        except Exception:
            return None
        if not request.questions:
            return None
        question = request.q
        name = str(question.qname).rstrip(".").lower()
        reply = request.reply()
        reply.header.aa = 1
        if question.qtype == QTYPE.PTR:
            address = _ptr_address(name)
            target = self.answers.reverse(container_id, address) if address else None
            if target is None:
                return None
            reply.add_answer(RR(question.qname, QTYPE.PTR, rdata=PTR(target + "."), ttl=TTL))
            return bytes(reply.pack())
        addresses = self.answers.lookup(container_id, name)
        if addresses is None:
            return None
        # A local name without an address of the asked family gets an empty answer, not a
        # forward that may hang.
        for address in addresses:
            v6 = ":" in address
            if question.qtype in (QTYPE.A, QTYPE.ANY) and not v6:
                reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(address), ttl=TTL))
            if question.qtype in (QTYPE.AAAA, QTYPE.ANY) and v6:
                reply.add_answer(RR(question.qname, QTYPE.AAAA, rdata=AAAA(address), ttl=TTL))
        return bytes(reply.pack())

    async def answer(self, container_id: str, query: bytes, *, tcp: bool) -> bytes:
        local = self.local_answer(container_id, query)
        if local is not None:
            return local
        upstreams = self.answers.upstreams(container_id)
        if not upstreams or self._forwards >= MAX_FORWARDS:
            return _servfail(query)
        self._forwards += 1
        try:
            for upstream in upstreams:
                forward = _forward_tcp if tcp else _forward_udp
                try:
                    return await asyncio.wait_for(forward(upstream, query), UPSTREAM_TIMEOUT)
                except (OSError, TimeoutError, asyncio.IncompleteReadError):
                    continue
        finally:
            self._forwards -= 1
        return _servfail(query)

    async def _udp_query(
        self,
        container_id: str,
        transport: asyncio.DatagramTransport,
        data: bytes,
        addr: tuple[str, int],
    ) -> None:
        reply = await self.answer(container_id, data, tcp=False)
        if reply and not transport.is_closing():
            transport.sendto(reply, addr)

    async def _tcp_client(
        self, container_id: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self._tcp_clients >= MAX_TCP_CLIENTS:
            writer.close()
            return
        self._tcp_clients += 1
        task = asyncio.current_task()
        if task is not None:
            self._track(container_id, task)
        try:
            while True:
                async with asyncio.timeout(TCP_IDLE):
                    size = struct.unpack("!H", await reader.readexactly(2))[0]
                    query = await reader.readexactly(size)
                reply = await self.answer(container_id, query, tcp=True)
                writer.write(struct.pack("!H", len(reply)) + reply)
                async with asyncio.timeout(TCP_IDLE):
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            self._tcp_clients -= 1
            writer.close()


class _UDP(asyncio.DatagramProtocol):
    def __init__(self, dns: EmbeddedDNS, container_id: str) -> None:
        self.dns = dns
        self.container_id = container_id
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is None:
            return
        task = asyncio.ensure_future(
            self.dns._udp_query(self.container_id, self.transport, data, addr)
        )
        self.dns._track(self.container_id, task)


class _Once(asyncio.DatagramProtocol):
    def __init__(self, future: asyncio.Future[bytes]) -> None:
        self.future = future

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.future.done():
            self.future.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


async def _forward_udp(upstream: str, query: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[bytes] = loop.create_future()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Once(future), remote_addr=(upstream, UPSTREAM_PORT)
    )
    try:
        transport.sendto(query)
        return await future
    finally:
        transport.close()


async def _forward_tcp(upstream: str, query: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(upstream, UPSTREAM_PORT)
    try:
        writer.write(struct.pack("!H", len(query)) + query)
        await writer.drain()
        size = struct.unpack("!H", await reader.readexactly(2))[0]
        return await reader.readexactly(size)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def _servfail(query: bytes) -> bytes:
    try:
        request = DNSRecord.parse(query)
    except Exception:
        return b""
    reply = request.reply()
    reply.header.rcode = RCODE.SERVFAIL
    return bytes(reply.pack())


def _ptr_address(name: str) -> str | None:
    if name.endswith(".in-addr.arpa"):
        parts = name[: -len(".in-addr.arpa")].split(".")
        try:
            return str(ipaddress.IPv4Address(".".join(reversed(parts))))
        except ValueError:
            return None
    if name.endswith(".ip6.arpa"):
        nibbles = name[: -len(".ip6.arpa")].split(".")
        if len(nibbles) != 32 or not all(len(n) == 1 for n in nibbles):
            return None
        try:
            return str(ipaddress.IPv6Address(int("".join(reversed(nibbles)), 16)))
        except ValueError:
            return None
    return None
