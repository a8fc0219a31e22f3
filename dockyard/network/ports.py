"""Published ports: parsing Docker's `PortBindings`, and holding host ports.

A published port is a DNAT rule (see `firewall`), not a proxy, so traffic keeps
flowing while the daemon is down. The daemon still binds every published host
port while the container runs, like Docker does: that is what makes a second
`-p 8080:...` (or any other program on the port) fail with "port is already
allocated", and what picks a free ephemeral port for `-P` and `-p 80`.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any

from dockyard.containers import schema
from dockyard.errors import Conflict, InvalidArgument, NotImplementedByEngine
from dockyard.network.driver import PROTOCOL_NAMES, PROTOCOLS, PortBinding

PortMap = dict[str, list[schema.PortBinding] | None]


def requested(
    port_bindings: PortMap | None,
    exposed: dict[str, Any] | None,
    publish_all: bool,
) -> list[PortBinding]:
    """What a container asks to publish: its PortBindings, plus every exposed port with -P."""
    bindings: list[PortBinding] = []
    for key, entries in (port_bindings or {}).items():
        number, proto = _port_key(key)
        for entry in entries or [schema.PortBinding()]:
            host_ip = entry.host_ip  # "": the network's default host address
            start, end = _host_ports(entry.host_port)
            bindings.append(PortBinding(PROTOCOLS[proto], number, "", host_ip, start, end))
    if publish_all:
        published = {(b.proto, b.port) for b in bindings}
        for key in exposed or {}:
            number, proto = _port_key(key)
            if (PROTOCOLS[proto], number) not in published:
                bindings.append(PortBinding(PROTOCOLS[proto], number))
    return bindings


def validate(port_bindings: PortMap | None) -> PortMap:
    """HostConfig.PortBindings checked and normalised ("80" -> "80/tcp")."""
    result: PortMap = {}
    for key, entries in (port_bindings or {}).items():
        number, proto = _port_key(key)
        normal: list[schema.PortBinding] = []
        for entry in entries or []:
            entry = entry or schema.PortBinding()
            host_ip = entry.host_ip
            if host_ip:
                try:
                    address = ipaddress.ip_address(host_ip)
                except ValueError:
                    raise InvalidArgument(f"invalid IP address: {host_ip}") from None
                if address.version == 6:
                    raise NotImplementedByEngine("publishing on IPv6 addresses is not supported")
            _host_ports(entry.host_port)
            normal.append(schema.PortBinding(host_ip=host_ip, host_port=entry.host_port))
        result[f"{number}/{proto}"] = normal
    return result


def _port_key(key: str) -> tuple[int, str]:
    number, _, proto = str(key).partition("/")
    proto = (proto or "tcp").lower()
    if not number.isdigit() or not 0 < int(number) < 65536:
        raise InvalidArgument(f"invalid port specification: {key!r}")
    if proto not in PROTOCOLS:
        raise InvalidArgument(f"invalid proto: {proto}")
    if proto == "sctp":
        raise NotImplementedByEngine("publishing sctp ports is not supported by Dockyard")
    return int(number), proto


def _host_ports(text: str) -> tuple[int, int]:
    if not text:
        return 0, 0
    start, sep, end = text.partition("-")
    if not start.isdigit() or (sep and not end.isdigit()):
        raise InvalidArgument(f"invalid hostPort: {text}")
    first, last = int(start), int(end) if sep else int(start)
    if not 0 < first <= last < 65536:
        raise InvalidArgument(f"invalid hostPort: {text}")
    return first, last


@dataclass
class Held:
    """Host ports held for one endpoint: the bindings as published, and their sockets."""

    bindings: list[PortBinding] = field(default_factory=list)
    sockets: list[socket.socket] = field(default_factory=list)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()


def hold(requests: list[PortBinding], container_ip: str) -> Held:
    """Bind each requested host port (ephemeral when 0); all or nothing."""
    held = Held()
    try:
        for request in requests:
            port, sock = _bind(request)
            held.sockets.append(sock)
            held.bindings.append(
                PortBinding(request.proto, request.port, container_ip, request.host_ip, port, port)
            )
    except BaseException:
        held.close()
        raise
    return held


def _bind(request: PortBinding) -> tuple[int, socket.socket]:
    kind = socket.SOCK_STREAM if request.proto != PROTOCOLS["udp"] else socket.SOCK_DGRAM
    if request.host_port:
        candidates = range(request.host_port, (request.host_port_end or request.host_port) + 1)
    else:
        candidates = range(0, 1)
    last: OSError | None = None
    for port in candidates:
        sock = socket.socket(socket.AF_INET, kind)
        try:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((request.host_ip, port))
            if kind == socket.SOCK_STREAM:
                sock.listen(1)
            return sock.getsockname()[1], sock
        except OSError as e:
            sock.close()
            last = e
    shown = (
        str(request.host_port)
        if request.host_port_end in (0, request.host_port)
        else f"{request.host_port}-{request.host_port_end}"
    )
    if last is not None and last.errno == errno.EADDRINUSE:
        raise Conflict(
            f"Bind for {request.host_ip}:{shown} failed: port is already allocated"
        ) from last
    raise InvalidArgument(f"Bind for {request.host_ip}:{shown} failed: {last}") from last


def proto_name(number: int) -> str:
    return PROTOCOL_NAMES.get(number, "tcp")
