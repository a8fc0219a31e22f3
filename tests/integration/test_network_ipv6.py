"""IPv6 networks: dual-stack bridges, fixed and ULA subnets, `--ip6`, IPv6 traffic and rules.

Each daemon's IPv6 subnets come from a ULA range of its own (`Daemon.subnet6`) or
from the /48 it derives from its ID; traffic stays between containers on one
bridge, in namespaces the daemon made for the test. No host sysctl is changed
(test daemons run with `ip-forward: false`).
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness import Daemon

IMAGE = "demo/busybox:1"


def _inspect(daemon: Daemon, what: str, name: str) -> dict[str, Any]:
    result = daemon.docker(what, "inspect", name) if what else daemon.docker("inspect", name)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout)[0])


def _nft6(daemon: Daemon) -> str:
    result = subprocess.run(
        ["nft", "list", "table", "ip6", daemon.nft_table], capture_output=True, text=True
    )
    return result.stdout if result.returncode == 0 else ""


@pytest.fixture
def scope(daemon: Daemon) -> Iterator[Any]:
    """Networks and containers of one test, removed afterwards."""

    class Scope:
        def __init__(self) -> None:
            self.networks: list[str] = []
            self.containers: list[str] = []

        def network(self, *flags: str) -> str:
            name = "v6-" + secrets.token_hex(3)
            result = daemon.docker("network", "create", *flags, name)
            assert result.returncode == 0, result.stderr
            self.networks.append(name)
            return name

        def run(self, *args: str) -> str:
            name = "c6-" + secrets.token_hex(3)
            result = daemon.docker("run", "-d", "--name", name, *args)
            assert result.returncode == 0, result.stderr
            self.containers.append(name)
            return name

    s = Scope()
    yield s
    if s.containers:
        daemon.docker("rm", "-f", *s.containers)
    for network in s.networks:
        daemon.docker("network", "rm", network)


def test_dual_stack_network_with_fixed_subnets_carries_ipv6_between_containers(
    daemon: Daemon, scope: Any
) -> None:
    v6 = daemon.subnet6(1)
    net = scope.network(
        "--ipv6",
        "--subnet",
        daemon.subnet(61),
        "--subnet",
        v6,
        "--gateway",
        v6.replace("::/64", "::fe"),
    )
    info = _inspect(daemon, "network", net)
    assert info["EnableIPv6"] is True
    assert {c["Subnet"]: c.get("Gateway") for c in info["IPAM"]["Config"]} == {
        daemon.subnet(61): daemon.subnet(61).replace(".0/24", ".1"),
        v6: v6.replace("::/64", "::fe"),
    }
    server = scope.run("--network", net, IMAGE, "nc", "-ll", "-p", "7000", "-e", "echo", "over-v6")
    client = scope.run("--network", net, IMAGE, "sleep", "300")
    settings = _inspect(daemon, "", server)["NetworkSettings"]["Networks"][net]
    address = ipaddress.IPv6Address(settings["GlobalIPv6Address"])
    assert address in ipaddress.IPv6Network(v6) and settings["GlobalIPv6PrefixLen"] == 64
    assert settings["IPv6Gateway"] == v6.replace("::/64", "::fe")
    assert settings["IPAddress"].startswith(daemon.subnet(61).rsplit(".", 2)[0])
    members = _inspect(daemon, "network", net)["Containers"]
    assert any(m["IPv6Address"] == f"{address}/64" for m in members.values())

    def inside(*command: str) -> subprocess.CompletedProcess[str]:
        return daemon.docker("exec", client, *command)

    # Reached by address and by name (AAAA from the network's DNS server), over IPv6 only.
    assert inside("ping6", "-c", "1", "-W", "3", str(address)).returncode == 0
    assert "over-v6" in inside("sh", "-c", f"nc -w 3 {address} 7000 </dev/null").stdout
    lookup = inside("nslookup", "-type=AAAA", server).stdout
    assert str(address) in lookup
    routes = inside("ip", "-6", "route").stdout
    assert f"default via {v6.replace('::/64', '::fe')}" in routes
    hosts = inside("cat", "/etc/hosts").stdout
    own = _inspect(daemon, "", client)["NetworkSettings"]["Networks"][net]["GlobalIPv6Address"]
    assert f"{own}\t" in hosts  # the container's own IPv6 address with its hostname
    # The daemon's ip6 table masquerades the subnet out and isolates the bridge.
    rules = _nft6(daemon)
    assert f"ip6 saddr {v6} oifname != " in rules and "masquerade" in rules
    assert "ct state established,related accept" in rules


def test_ipv6_without_a_subnet_gets_a_ula_64_of_the_daemons_own(daemon: Daemon, scope: Any) -> None:
    first, second = scope.network("--ipv6"), scope.network("--ipv6")
    subnets = []
    for net in (first, second):
        configs = _inspect(daemon, "network", net)["IPAM"]["Config"]
        six = [ipaddress.ip_network(c["Subnet"]) for c in configs if ":" in c["Subnet"]]
        assert len(six) == 1 and six[0].prefixlen == 64
        assert six[0].subnet_of(ipaddress.IPv6Network("fd00::/8"))  # a unique local address
        subnets.append(six[0])
    assert subnets[0] != subnets[1]
    assert subnets[0].supernet(new_prefix=48) == subnets[1].supernet(new_prefix=48)
    box = scope.run("--network", first, IMAGE, "sleep", "300")
    address = _inspect(daemon, "", box)["NetworkSettings"]["Networks"][first]["GlobalIPv6Address"]
    assert ipaddress.IPv6Address(address) in subnets[0]
    shown = daemon.docker("exec", box, "ip", "-6", "addr", "show", "eth0").stdout
    assert f"{address}/64" in shown


def test_docker_py_ip6_static_addresses_on_create_and_connect(client: Any, daemon: Daemon) -> None:
    import docker.types

    v6 = daemon.subnet6(2)
    base = v6.replace("::/64", "::")
    ipam = docker.types.IPAMConfig(
        pool_configs=[
            docker.types.IPAMPool(subnet=v6, iprange=f"{base}0/96", gateway=f"{base}ffff")
        ]
    )
    network = client.networks.create("v6py-" + secrets.token_hex(3), enable_ipv6=True, ipam=ipam)
    api = client.api
    try:
        assert api.inspect_network(network.id)["EnableIPv6"] is True
        created = api.create_container(
            IMAGE,
            "sleep 300",
            host_config=api.create_host_config(network_mode=network.name),
            networking_config=api.create_networking_config(
                {network.name: api.create_endpoint_config(ipv6_address=f"{base}f00d")}
            ),
        )
        try:
            api.start(created)
            settings = api.inspect_container(created)["NetworkSettings"]["Networks"]
            assert settings[network.name]["IPAMConfig"]["IPv6Address"] == f"{base}f00d"
            assert settings[network.name]["GlobalIPv6Address"] == f"{base}f00d"
            api.disconnect_container_from_network(created, network.name)
            api.connect_container_to_network(created, network.name, ipv6_address=f"{base}beef")
            settings = api.inspect_container(created)["NetworkSettings"]["Networks"]
            assert settings[network.name]["GlobalIPv6Address"] == f"{base}beef"
            shown = daemon.docker("exec", created["Id"], "ip", "-6", "addr").stdout
            assert f"{base}beef/64" in shown and f"{base}f00d" not in shown
        finally:
            api.remove_container(created, force=True)
    finally:
        network.remove()
    # Nothing of the network stays allocated.
    assert not [a for a in daemon.allocations() if ":" in a[1] and a[1].startswith(base)]


def test_bad_ipv6_input_gets_dockers_errors(daemon: Daemon, scope: Any) -> None:
    v6 = daemon.subnet6(3)
    net = scope.network("--ipv6", "--subnet", v6)
    plain = scope.network()
    outside = daemon.subnet6(4).replace("::/64", "::5")
    result = daemon.docker("run", "--rm", "--network", net, "--ip6", outside, IMAGE, "true")
    assert result.returncode == 125
    assert f"no configured subnet or ip-range contain the IP address {outside}" in result.stderr
    result = daemon.docker("run", "--rm", "--network", net, "--ip6", "10.1.2.3", IMAGE, "true")
    assert result.returncode != 0 and "10.1.2.3" in result.stderr
    status, body = daemon.api(
        "POST",
        "/v1.45/containers/create",
        {
            "Image": IMAGE,
            "Cmd": ["true"],
            "HostConfig": {"NetworkMode": net},
            "NetworkingConfig": {
                "EndpointsConfig": {net: {"IPAMConfig": {"IPv6Address": "10.1.2.3"}}}
            },
        },
    )
    assert status == 400
    assert body["message"] == (
        f"invalid config for network {net}: invalid endpoint settings:\n"
        "invalid IPv6 address: 10.1.2.3"
    )
    ip6 = v6.replace("::/64", "::9")
    result = daemon.docker("run", "--rm", "--network", plain, "--ip6", ip6, IMAGE, "true")
    assert result.returncode == 125
    assert "networks with user configured subnets" in result.stderr
    status, body = daemon.api(
        "POST",
        "/v1.45/networks/create",
        {"Name": "v6-overlap", "EnableIPv6": True, "IPAM": {"Config": [{"Subnet": v6}]}},
    )
    assert status == 403 and "Pool overlaps with other one on this address space" in body["message"]
    status, body = daemon.api(
        "POST",
        "/v1.45/networks/create",
        {"Name": "v6-bad", "EnableIPv6": True, "IPAM": {"Config": [{"Subnet": "fd00::1/64"}]}},
    )
    assert status == 400 and "it should be fd00::/64" in body["message"]
    assert daemon.api("GET", "/v1.45/networks/v6-overlap")[0] == 404


def test_ipv6_rules_and_addresses_go_with_the_network_and_survive_a_restart(
    own_daemon: Daemon,
) -> None:
    d = own_daemon
    v6 = d.subnet6(5)
    assert d.docker("network", "create", "--ipv6", "--subnet", v6, "six").returncode == 0
    box = d.docker("run", "-d", "--name", "box", "--network", "six", IMAGE, "sleep", "300")
    assert box.returncode == 0, box.stderr
    peer = d.docker("run", "-d", "--name", "peer", "--network", "six", IMAGE, "sleep", "300")
    assert peer.returncode == 0, peer.stderr
    address = _inspect(d, "", "peer")["NetworkSettings"]["Networks"]["six"]["GlobalIPv6Address"]
    assert f"ip6 saddr {v6}" in _nft6(d)
    d.kill9()
    d.start()
    assert d.docker("exec", "box", "ping6", "-c", "1", "-W", "3", address).returncode == 0
    assert f"ip6 saddr {v6}" in _nft6(d)  # written again from the records
    assert d.docker("rm", "-f", "box", "peer").returncode == 0
    assert d.docker("network", "rm", "six").returncode == 0
    assert _nft6(d) == ""  # no IPv6 network left: no ip6 table
    assert not [a for a in d.allocations() if ":" in a[1]]
