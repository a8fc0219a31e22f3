"""The daemon's nftables table: NAT, published ports and isolation between networks.

Everything lives in ONE table (`ip <nftables-table>`, configurable so that
several daemons never touch each other's rules or the host's). Its structure
is rebuilt atomically from the engine's records whenever networks change (one
`nft -f` transaction: the old table and the new one never both apply, and
there is no moment without rules). Published ports are elements of four maps
(tcp/udp, any host address/one host address), added and deleted atomically
with their endpoint, so a port mapping never needs a rule handle.

    loopback (raw prerouting)  drop what arrives from outside for 127.0.0.0/8: bridges have
                               route_localnet on (127.0.0.1-published ports need it), which
                               would otherwise let a container reach the host's loopback
                               services (CVE-2020-8558; Docker adds the same rule)
    prerouting, output (nat)   local destination -> dnat through the port maps
                               (output covers the host itself, 127.0.0.1 included)
    postrouting (nat)          masquerade what leaves a network; 127.0.0.1 -> container;
                               hairpin (a container reaching a published port)
    forward (filter)           a network's bridge accepts what stays inside, replies and
                               published ports; everything else into it is dropped
                               (isolation from other networks); internal networks
                               also drop everything going out

Base chains use policy accept and only ever judge traffic of the daemon's own
bridges, so the host's and other daemons' traffic is left alone.

Networks with IPv6 get the same masquerade and forward rules in a second
table of the same name in the `ip6` family (`ip6 <nftables-table>`), written
in the same transaction and deleted in it when no network has IPv6. Ports are
published on IPv4 host addresses only, so the IPv6 table has no port maps.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from dockyard.errors import Unavailable

MAPS = {
    "tcp_any": "inet_service",
    "udp_any": "inet_service",
    "tcp_ip": "ipv4_addr . inet_service",
    "udp_ip": "ipv4_addr . inet_service",
}


@dataclass(frozen=True)
class BridgeRules:
    bridge: str
    subnet: str
    internal: bool = False
    masquerade: bool = True
    subnet6: str = ""  # "": no IPv6 on the network


@dataclass(frozen=True)
class Forward:
    """A published port: host address and port -> container address and port."""

    proto: str  # tcp | udp
    host_ip: str  # "0.0.0.0": every local address
    host_port: int
    ip: str
    port: int

    @property
    def map(self) -> str:
        return f"{self.proto}_{'any' if self.host_ip == '0.0.0.0' else 'ip'}"

    @property
    def key(self) -> str:
        if self.host_ip == "0.0.0.0":
            return str(self.host_port)
        return f"{self.host_ip} . {self.host_port}"


class Firewall:
    def __init__(self, table: str) -> None:
        self.table = table
        self._lock = asyncio.Lock()

    def _structure(self, networks: list[BridgeRules], forwards: list[Forward]) -> str:
        t = self.table
        lines = [f"table ip {t} {{}}", f"delete table ip {t}", f"table ip {t} {{"]
        for name, key in MAPS.items():
            elements = [f"{f.key} : {f.ip} . {f.port}" for f in forwards if f.map == name]
            body = f"type {key} : ipv4_addr . inet_service;"
            if elements:
                body += " elements = { " + ", ".join(elements) + " };"
            lines.append(f"  map {name} {{ {body} }}")
        lines += [
            "  chain publish {",
            "    dnat ip to ip daddr . tcp dport map @tcp_ip",
            "    dnat ip to ip daddr . udp dport map @udp_ip",
            "    dnat ip to tcp dport map @tcp_any",
            "    dnat ip to udp dport map @udp_any",
            "  }",
            "  chain loopback {",
            "    type filter hook prerouting priority raw; policy accept;",
            '    ip daddr 127.0.0.0/8 iifname != "lo" fib saddr type != local drop',
            "  }",
            "  chain prerouting {",
            "    type nat hook prerouting priority dstnat; policy accept;",
            "    fib daddr type local jump publish",
            "  }",
            "  chain output {",
            "    type nat hook output priority -100; policy accept;",
            "    fib daddr type local jump publish",
            "  }",
            "  chain postrouting {",
            "    type nat hook postrouting priority srcnat; policy accept;",
        ]
        for n in networks:
            br = json.dumps(n.bridge)
            lines.append(f"    oifname {br} ip saddr 127.0.0.0/8 masquerade")
            lines.append(f"    oifname {br} ip saddr {n.subnet} ct status dnat masquerade")
            if n.masquerade and not n.internal:
                lines.append(f"    ip saddr {n.subnet} oifname != {br} masquerade")
        lines += ["  }", *_forward_chain(networks, published=True), "}"]
        lines += self._structure6([n for n in networks if n.subnet6])
        return "\n".join(lines) + "\n"

    def _structure6(self, networks: list[BridgeRules]) -> list[str]:
        """The `ip6` table: masquerade and isolation for networks with IPv6 (or its removal)."""
        t = self.table
        lines = [f"table ip6 {t} {{}}", f"delete table ip6 {t}"]
        if not networks:
            return lines
        lines += [
            f"table ip6 {t} {{",
            "  chain postrouting {",
            "    type nat hook postrouting priority srcnat; policy accept;",
        ]
        for n in networks:
            if n.masquerade and not n.internal:
                lines.append(
                    f"    ip6 saddr {n.subnet6} oifname != {json.dumps(n.bridge)} masquerade"
                )
        lines += ["  }", *_forward_chain(networks, published=False), "}"]
        return lines

    def script(self, networks: list[BridgeRules], forwards: list[Forward]) -> str:
        """The `nft -f` script that `apply` writes for this state (`system check` compares
        the live table with it)."""
        return self._structure(networks, forwards)

    async def apply(self, networks: list[BridgeRules], forwards: list[Forward]) -> None:
        """Replace the whole table in one transaction."""
        async with self._lock:
            await _nft(self._structure(networks, forwards))

    async def add(self, forwards: list[Forward]) -> None:
        if forwards:
            async with self._lock:
                await _nft(self._elements("add", forwards))

    async def delete(self, forwards: list[Forward]) -> None:
        if forwards:
            async with self._lock:
                await _nft(self._elements("delete", forwards))

    def _elements(self, verb: str, forwards: list[Forward]) -> str:
        lines = []
        for f in forwards:
            value = f" : {f.ip} . {f.port}" if verb == "add" else ""
            lines.append(f"{verb} element ip {self.table} {f.map} {{ {f.key}{value} }}")
        return "\n".join(lines) + "\n"

    async def remove(self) -> None:
        async with self._lock:
            t = self.table
            await _nft(
                f"table ip {t} {{}}\ndelete table ip {t}\n"
                f"table ip6 {t} {{}}\ndelete table ip6 {t}\n"
            )


async def _nft(script: str) -> None:
    try:
        proc = await asyncio.create_subprocess_exec(
            "nft",
            "-f",
            "-",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError as e:
        raise Unavailable("nftables (the nft command) is not installed") from e
    _out, err = await proc.communicate(script.encode())
    if proc.returncode:
        raise Unavailable(f"nftables: {err.decode(errors='replace').strip()}")


def _forward_chain(networks: list[BridgeRules], *, published: bool) -> list[str]:
    """The forward chain: traffic within a bridge, replies, and (with `published`, IPv4's
    DNAT) connections to published ports; everything else into a bridge is dropped, and an
    internal network's traffic never leaves its bridge."""
    lines = [
        "  chain forward {",
        "    type filter hook forward priority filter; policy accept;",
    ]
    for n in networks:
        br = json.dumps(n.bridge)
        lines.append(f"    iifname {br} oifname {br} accept")
        if n.internal:
            lines.append(f"    oifname {br} drop")
            lines.append(f"    iifname {br} drop")
            continue
        lines.append(f"    oifname {br} ct state established,related accept")
        if published:
            lines.append(f"    oifname {br} ct status dnat accept")
        lines.append(f"    oifname {br} drop")
    lines.append("  }")
    return lines
