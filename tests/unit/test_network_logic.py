"""Pure pieces of networking: IPAM allocation, port specs, nftables text, DNS answers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from dnslib import QTYPE, DNSRecord

from dockyard.cli.containers import port_bindings
from dockyard.containers import schema
from dockyard.containers.schema import HostConfig
from dockyard.errors import Conflict, Forbidden, InvalidArgument
from dockyard.network import ports
from dockyard.network.dns import EmbeddedDNS
from dockyard.network.driver import TCP, UDP, PortBinding
from dockyard.network.firewall import BridgeRules, Firewall, Forward
from dockyard.network.ipam import GATEWAY_REQUEST
from dockyard.network.ipam_default import DefaultIpam, parse_pools
from dockyard.state.db import Database


@pytest.fixture
def ipam(tmp_path: Path) -> DefaultIpam:
    db = Database(str(tmp_path / "db"))
    return DefaultIpam(db, parse_pools([{"base": "10.50.0.0/22", "size": 24}]))


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_pools_come_from_the_defaults_without_overlap(ipam: DefaultIpam) -> None:
    first = run(ipam.request_pool("LocalDefault"))
    explicit = run(ipam.request_pool("LocalDefault", "10.50.1.0/24"))
    third = run(ipam.request_pool("LocalDefault"))
    assert (first.pool, explicit.pool, third.pool) == (
        "10.50.0.0/24",
        "10.50.1.0/24",
        "10.50.2.0/24",
    )
    with pytest.raises(Forbidden, match="Pool overlaps with other one on this address space"):
        run(ipam.request_pool("LocalDefault", "10.50.0.128/25"))
    run(ipam.request_pool("LocalDefault"))
    with pytest.raises(Forbidden, match="non-overlapping"):
        run(ipam.request_pool("LocalDefault"))
    run(ipam.release_pool(first.pool_id))
    assert run(ipam.request_pool("LocalDefault")).pool == "10.50.0.0/24"


def test_addresses_are_never_handed_out_twice(ipam: DefaultIpam, tmp_path: Path) -> None:
    pool = run(ipam.request_pool("LocalDefault", "10.50.3.0/29"))
    gateway, _ = run(ipam.request_address(pool.pool_id, "", dict(GATEWAY_REQUEST)))
    assert gateway == "10.50.3.1/29"
    given = [run(ipam.request_address(pool.pool_id))[0] for _ in range(5)]
    assert given == [f"10.50.3.{n}/29" for n in range(2, 7)]
    with pytest.raises(Forbidden, match="No available addresses"):
        run(ipam.request_address(pool.pool_id))
    run(ipam.release_address(pool.pool_id, "10.50.3.3"))
    # A fresh allocator on the same database (a daemon restart) knows what is taken.
    again = DefaultIpam(Database(str(tmp_path / "db")), ipam.default_pools)
    assert run(again.request_address(pool.pool_id))[0] == "10.50.3.3/29"
    with pytest.raises(Forbidden, match="Address already in use"):
        run(again.request_address(pool.pool_id, "10.50.3.4"))
    with pytest.raises(InvalidArgument, match="out of range"):
        run(again.request_address(pool.pool_id, "10.50.9.9"))


def test_released_addresses_are_not_reused_at_once(ipam: DefaultIpam) -> None:
    pool = run(ipam.request_pool("LocalDefault", "10.50.3.0/24"))
    first, _ = run(ipam.request_address(pool.pool_id))
    run(ipam.release_address(pool.pool_id, first.split("/")[0]))
    second, _ = run(ipam.request_address(pool.pool_id))
    assert second != first


def test_ip_range_limits_endpoints_but_not_the_gateway(ipam: DefaultIpam) -> None:
    pool = run(ipam.request_pool("LocalDefault", "10.50.3.0/24", "10.50.3.128/25"))
    assert run(ipam.request_address(pool.pool_id, "", dict(GATEWAY_REQUEST)))[0] == "10.50.3.1/24"
    assert run(ipam.request_address(pool.pool_id))[0] == "10.50.3.128/24"


def test_cli_port_specs_become_port_bindings() -> None:
    assert port_bindings(("127.0.0.1:8080:80", "9000:90/udp", "70", "1.2.3.4::60")) == {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
        "90/udp": [{"HostIp": "", "HostPort": "9000"}],
        "70/tcp": [{"HostIp": "", "HostPort": ""}],
        "60/tcp": [{"HostIp": "1.2.3.4", "HostPort": ""}],
    }
    assert port_bindings(("8000-8001:80-81",)) == {
        "80/tcp": [{"HostIp": "", "HostPort": "8000"}],
        "81/tcp": [{"HostIp": "", "HostPort": "8001"}],
    }


def test_requested_ports_include_exposed_ones_with_publish_all() -> None:
    bindings = port_map({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080-8090"}]})
    requested = ports.requested(bindings, {"80/tcp": {}, "53/udp": {}}, True)
    assert requested == [
        PortBinding(TCP, 80, "", "127.0.0.1", 8080, 8090),
        PortBinding(UDP, 53, "", "", 0, 0),  # "": the network's default host address
    ]
    with pytest.raises(InvalidArgument):
        ports.validate(port_map({"80/tcp": [{"HostPort": "99999"}]}))
    with pytest.raises(InvalidArgument):
        ports.validate(port_map({"80/tcp": [{"HostIp": "not-an-ip"}]}))
    normal = ports.validate(port_map({"80": [None]}))
    assert {k: [b.to_wire() for b in v or []] for k, v in normal.items()} == {
        "80/tcp": [{"HostIp": "", "HostPort": ""}]
    }


def port_map(raw: dict[str, Any]) -> ports.PortMap:
    return schema.decode(HostConfig, {"PortBindings": raw}).port_bindings or {}


def test_holding_a_taken_port_is_refused_with_dockers_words() -> None:
    held = ports.hold([PortBinding(TCP, 80, "", "127.0.0.1", 0, 0)], "10.0.0.2")
    try:
        port = held.bindings[0].host_port
        assert port > 0
        with pytest.raises(Conflict, match=f"Bind for 127.0.0.1:{port} failed: port is already"):
            ports.hold([PortBinding(TCP, 80, "", "127.0.0.1", port, port)], "10.0.0.3")
    finally:
        held.close()


def test_firewall_table_is_one_atomic_script() -> None:
    script = Firewall("t1")._structure(
        [BridgeRules("br1", "10.1.0.0/24"), BridgeRules("br2", "10.2.0.0/24", internal=True)],
        [
            Forward("tcp", "0.0.0.0", 8080, "10.1.0.2", 80),
            Forward("udp", "127.0.0.1", 53, "10.1.0.3", 53),
        ],
    )
    lines = script.splitlines()
    assert lines[:2] == ["table ip t1 {}", "delete table ip t1"]  # replace, in one transaction
    assert "elements = { 8080 : 10.1.0.2 . 80 };" in script
    assert "elements = { 127.0.0.1 . 53 : 10.1.0.3 . 53 };" in script
    assert '    ip saddr 10.1.0.0/24 oifname != "br1" masquerade' in lines
    assert not any("10.2.0.0/24 oifname !=" in line for line in lines)  # internal: no NAT out
    assert '    iifname "br2" drop' in lines and '    oifname "br1" drop' in lines


class _Names:
    def lookup(self, container_id: str, name: str) -> list[str] | None:
        return ["10.1.0.5", "10.2.0.5"] if name == "db" else None

    def reverse(self, container_id: str, address: str) -> str | None:
        return "db.appnet" if address == "10.1.0.5" else None

    def upstreams(self, container_id: str) -> list[str]:
        return []


def test_dns_answers_local_names_and_leaves_the_rest() -> None:
    dns = EmbeddedDNS(_Names())
    reply = DNSRecord.parse(dns.local_answer("c", DNSRecord.question("DB").pack()) or b"")
    assert sorted(str(rr.rdata) for rr in reply.rr) == ["10.1.0.5", "10.2.0.5"]
    empty = DNSRecord.parse(dns.local_answer("c", DNSRecord.question("db", "AAAA").pack()) or b"")
    assert empty.rr == [] and empty.header.rcode == 0
    ptr = DNSRecord.parse(
        dns.local_answer("c", DNSRecord.question("5.0.1.10.in-addr.arpa", "PTR").pack()) or b""
    )
    assert str(ptr.rr[0].rdata) == "db.appnet." and ptr.rr[0].rtype == QTYPE.PTR
    assert dns.local_answer("c", DNSRecord.question("example.org").pack()) is None
    servfail = asyncio.run(dns.answer("c", DNSRecord.question("example.org").pack(), tcp=False))
    assert DNSRecord.parse(servfail).header.rcode == 2  # no upstream: SERVFAIL, not silence
