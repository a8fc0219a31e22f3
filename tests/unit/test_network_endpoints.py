"""Pure pieces of container networking: link variables, name rules, endpoint checks, IPv6
IPAM, IPv6 DNS answers and the ip6 table."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path
from typing import Any

import pytest
from dnslib import QTYPE, DNSRecord

from dockyard.containers import links, names
from dockyard.containers.schema import EndpointIPAMConfig, EndpointSettings
from dockyard.errors import Forbidden, InvalidArgument
from dockyard.network import requests
from dockyard.network.dns import EmbeddedDNS
from dockyard.network.firewall import BridgeRules, Firewall
from dockyard.network.ipam import GATEWAY_REQUEST
from dockyard.network.ipam_default import DefaultIpam, parse_pools, ula_base
from dockyard.network.model import Network, PoolLease
from dockyard.state.db import Database


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


# -- legacy links ----------------------------------------------------------------


def test_link_variables_are_dockers() -> None:
    env = links.env_vars(
        "172.17.0.3",
        "172.17.0.2",
        "/web/my-db",
        ["PATH=/bin", "HOME=/root", "USER=pg", "FLAG", "EMPTY="],
        {"5432/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}, "8002/tcp": {}},
    )
    assert env == [
        "MY_DB_PORT=tcp://172.17.0.2:5432",
        *_port("MY_DB", 5432, "tcp"),
        *_port("MY_DB", 8000, "tcp"),
        *_port("MY_DB", 8001, "tcp"),
        *_port("MY_DB", 8002, "tcp"),
        # moby closes a run of ports when the next port breaks it, after that port's own
        *_port("MY_DB", 53, "udp"),
        "MY_DB_PORT_8000_TCP_START=tcp://172.17.0.2:8000",
        "MY_DB_PORT_8000_TCP_PORT_START=8000",
        "MY_DB_PORT_8000_TCP_END=tcp://172.17.0.2:8002",
        "MY_DB_PORT_8000_TCP_PORT_END=8002",
        "MY_DB_NAME=/web/my-db",
        "MY_DB_ENV_USER=pg",
        "MY_DB_ENV_EMPTY=",
    ]
    assert links.env_vars("", "10.0.0.2", "/a/b", None, None) == ["B_NAME=/a/b"]


def _port(alias: str, number: int, proto: str) -> list[str]:
    prefix = f"{alias}_PORT_{number}_{proto.upper()}"
    return [
        f"{prefix}={proto}://172.17.0.2:{number}",
        f"{prefix}_ADDR=172.17.0.2",
        f"{prefix}_PORT={number}",
        f"{prefix}_PROTO={proto}",
    ]


def test_links_parse_as_moby_does_and_are_stored_in_dockers_form() -> None:
    assert requests.parse_link("db") == ("db", "db")
    assert requests.parse_link("db:alias") == ("db", "alias")
    assert requests.parse_link("/db:/web/alias") == ("db", "alias")
    for bad in ("", "a:b:c"):
        with pytest.raises(InvalidArgument):
            requests.parse_link(bad)
    link = links.parse("db:alias", "web")
    assert (link.name, link.stored()) == ("/web/alias", "/db:/web/alias")
    assert links.parse(link.stored(), "web") == link


# -- names -----------------------------------------------------------------------


def test_network_names_need_only_be_non_blank() -> None:
    for name in ("test 01", "_private", "ünïcode", "a/b", "x"):
        assert requests.network_create(requests.NetworkCreateRequest(name=name)).name == name
    for blank in ("", "   "):
        with pytest.raises(InvalidArgument, match="invalid name: name is empty"):
            requests.network_create(requests.NetworkCreateRequest(name=blank))
    for predefined in ("bridge", "host", "none", "default"):
        with pytest.raises(Forbidden, match=f"not permitted on predefined {predefined} network"):
            requests.network_create(requests.NetworkCreateRequest(name=predefined))


def test_container_names_follow_dockers_pattern_exactly() -> None:
    assert names.validate("/web_1.a-b") == "web_1.a-b"
    for bad in ("a", "_web", "web app", "web\n", "-web", "web/x"):
        with pytest.raises(InvalidArgument, match="Invalid container name"):
            names.validate(bad)


# -- endpoint settings ------------------------------------------------------------


def _network(*subnets: str, predefined: bool = False) -> Network:
    network = Network(
        "n" * 64, "bridge" if predefined else "app", "bridge", "", predefined=predefined
    )
    for subnet in subnets:
        lease = PoolLease(f"LocalDefault/{subnet}", subnet)
        if ipaddress.ip_network(subnet).version == 6:
            network.pools6.append(lease)
        else:
            network.pools.append(lease)
    return network


def test_endpoint_settings_are_checked_with_dockers_words() -> None:
    app = _network("10.9.0.0/24", "fd00:9::/64")
    ok = requests.endpoint_settings(
        "app",
        app,
        EndpointSettings(
            ipam_config=EndpointIPAMConfig(
                ipv6_address="fd00:9::5", link_local_ips=["169.254.1.1", "fe80::1"]
            ),
            mac_address="02-42-AC-11-00-0A",
        ),
    )
    assert ok.ipam_config is not None and ok.ipam_config.link_local_ips == [
        "169.254.1.1",
        "fe80::1",
    ]
    assert ok.network_id == app.id

    def error(network: Network | None, **fields: Any) -> str:
        with pytest.raises(InvalidArgument) as caught:
            requests.endpoint_settings("app", network, EndpointSettings(**fields))
        return caught.value.message

    assert error(app, mac_address="zz:11") == "invalid MAC address zz:11"
    outside = error(app, ipam_config=EndpointIPAMConfig(ipv4_address="10.9.1.5"))
    assert outside == (
        "invalid endpoint settings:\n"
        "no configured subnet or ip-range contain the IP address 10.9.1.5"
    )
    both = error(
        None,
        ipam_config=EndpointIPAMConfig(ipv4_address="fd00::1", link_local_ips=["nope"]),
    )
    assert both == (
        "invalid endpoint settings:\n* invalid IPv4 address: fd00::1\n"
        "* invalid link-local IP address: nope"
    )
    bridge = _network("172.17.0.0/16", predefined=True)
    with pytest.raises(InvalidArgument, match="network-scoped alias is supported only"):
        requests.endpoint_settings("bridge", bridge, EndpointSettings(aliases=["x"]))
    chosen = _network("10.9.0.0/24")
    chosen.pools[0].configured = False  # IPAM chose the subnet
    assert "networks with user configured subnets" in error(
        chosen, ipam_config=EndpointIPAMConfig(ipv4_address="10.9.0.5")
    )


def test_mac_addresses_parse_as_go_does() -> None:
    assert requests.parse_mac("02:42:ac:11:00:0a") == bytes.fromhex("0242ac11000a")
    assert requests.parse_mac("02-42-AC-11-00-0A") == bytes.fromhex("0242ac11000a")
    assert requests.parse_mac("0242.ac11.000a") == bytes.fromhex("0242ac11000a")
    assert requests.parse_mac("02:00:5e:10:00:00:00:01") is not None  # EUI-64
    for bad in ("", "02:42:ac:11:00", "02:42:ac:11:00:0g", "0242ac11000a", "02:42-ac:11:00:0a"):
        assert requests.parse_mac(bad) is None


# -- IPv6 IPAM ---------------------------------------------------------------------


@pytest.fixture
def ipam(tmp_path: Path) -> DefaultIpam:
    db = Database(str(tmp_path / "db"))
    return DefaultIpam(db, parse_pools([{"base": "10.50.0.0/22", "size": 24}], "daemon-1"))


def test_the_ipv6_default_pool_is_a_ula_48_derived_from_the_daemon(ipam: DefaultIpam) -> None:
    base, size = ula_base("daemon-1")
    assert base.prefixlen == 48 and size == 64 and base.subnet_of(ipaddress.ip_network("fd00::/8"))
    assert ula_base("daemon-1") == (base, size) and ula_base("daemon-2")[0] != base
    first = run(ipam.request_pool("LocalDefault", v6=True))
    second = run(ipam.request_pool("LocalDefault", v6=True))
    assert [first.pool, second.pool] == [str(s) for s in list(base.subnets(new_prefix=64))[:2]]
    v4 = run(ipam.request_pool("LocalDefault"))
    assert v4.pool == "10.50.0.0/24"  # the families come from their own bases
    configured = parse_pools([{"base": "fd00:aa::/56", "size": 64}])
    assert [(str(b), s) for b, s in configured] == [("fd00:aa::/56", 64)]


def test_ipv6_addresses_skip_the_subnet_router_anycast_and_honour_ranges(
    ipam: DefaultIpam,
) -> None:
    pool = run(ipam.request_pool("LocalDefault", "fd00:1::/64", "fd00:1::/96"))
    gateway, _ = run(ipam.request_address(pool.pool_id, "", dict(GATEWAY_REQUEST)))
    assert gateway == "fd00:1::1/64"
    given = [run(ipam.request_address(pool.pool_id))[0] for _ in range(2)]
    assert given == ["fd00:1::2/64", "fd00:1::3/64"]
    assert run(ipam.request_address(pool.pool_id, "fd00:1::f00d"))[0] == "fd00:1::f00d/64"
    with pytest.raises(Forbidden, match="Address already in use"):
        run(ipam.request_address(pool.pool_id, "fd00:1::f00d"))
    with pytest.raises(Forbidden, match="Pool overlaps"):
        run(ipam.request_pool("LocalDefault", "fd00:1::/48"))
    with pytest.raises(InvalidArgument, match="incompatible address families"):
        run(ipam.request_pool("LocalDefault", "fd00:2::/64", "10.0.0.0/24"))


# -- IPv6 answers and rules ---------------------------------------------------------


class _Names:
    def lookup(self, container_id: str, name: str) -> list[str] | None:
        return ["10.1.0.5", "fd00:1::5"] if name == "db" else None

    def reverse(self, container_id: str, address: str) -> str | None:
        return "db.appnet" if address == "fd00:1::5" else None

    def upstreams(self, container_id: str) -> list[str]:
        return []


def test_dns_answers_aaaa_and_ip6_arpa() -> None:
    dns = EmbeddedDNS(_Names())
    a = DNSRecord.parse(dns.local_answer("c", DNSRecord.question("db").pack()) or b"")
    assert [str(rr.rdata) for rr in a.rr] == ["10.1.0.5"]
    aaaa = DNSRecord.parse(dns.local_answer("c", DNSRecord.question("db", "AAAA").pack()) or b"")
    assert [str(rr.rdata) for rr in aaaa.rr] == ["fd00:1::5"] and aaaa.rr[0].rtype == QTYPE.AAAA
    name = ipaddress.IPv6Address("fd00:1::5").reverse_pointer
    ptr = DNSRecord.parse(dns.local_answer("c", DNSRecord.question(name, "PTR").pack()) or b"")
    assert str(ptr.rr[0].rdata) == "db.appnet."


def test_the_ip6_table_comes_and_goes_with_ipv6_networks() -> None:
    firewall = Firewall("t1")
    without = firewall._structure([BridgeRules("br1", "10.1.0.0/24")], [])
    assert without.splitlines()[-2:] == ["table ip6 t1 {}", "delete table ip6 t1"]
    script = firewall._structure(
        [
            BridgeRules("br1", "10.1.0.0/24", subnet6="fd00:1::/64"),
            BridgeRules("br2", "10.2.0.0/24", internal=True, subnet6="fd00:2::/64"),
        ],
        [],
    )
    lines = script.splitlines()
    assert lines[:2] == ["table ip t1 {}", "delete table ip t1"]
    assert "table ip6 t1 {" in lines
    assert '    ip6 saddr fd00:1::/64 oifname != "br1" masquerade' in lines
    assert not any("fd00:2::/64 oifname" in line for line in lines)  # internal: no NAT out
    assert '    oifname "br1" ct state established,related accept' in lines
