"""What the host keeps away from containers and network peers: its loopback, ports
published on one address, other containers on an ICC-less bridge, foreign interfaces.

A "peer" here is a network namespace the test creates and plugs into one of the
daemon's own bridges, so the test controls its routes and sysctls as an attacker
on that link would.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

from tests.harness import Daemon
from tests.integration.test_networks import (
    ECHO_SERVER,
    HTTP_SERVER,
    IMAGE,
    _free_port,
    _http_get,
    _inspect,
    _talk,
    upstream_dns,
)


def _sh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False)


class Peer:
    def __init__(self, ns: str) -> None:
        self.ns = ns

    def run(self, script: str) -> subprocess.CompletedProcess[str]:
        return _sh("ip", "netns", "exec", self.ns, "sh", "-c", script)

    def connect(self, host: str, port: int) -> bool:
        code = (
            "import socket,sys\n"
            "try:\n"
            f"    s = socket.create_connection(({host!r}, {port}), timeout=2)\n"
            "    s.sendall(b'x')\n"
            "except OSError:\n"
            "    sys.exit(1)\n"
        )
        return _sh("ip", "netns", "exec", self.ns, "python3", "-c", code).returncode == 0


@contextlib.contextmanager
def peer_on(daemon: Daemon, bridge: str, address: str) -> Iterator[Peer]:
    """A namespace with a veth on `bridge`, `address`/24, that routes 127.0.0.0/8 to the host."""
    ns, host_end = f"{daemon.veth_prefix}ns", f"{daemon.veth_prefix}p"
    _sh("ip", "netns", "add", ns)
    try:
        _sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _sh("ip", "link", "set", host_end, "master", bridge, "up")
        peer = Peer(ns)
        gateway = address.rsplit(".", 1)[0] + ".1"
        setup = peer.run(
            f"ip addr add {address}/24 dev eth0 && ip link set eth0 up && "
            "sysctl -qw net.ipv4.conf.all.route_localnet=1 && ip link set lo down && "
            f"ip route add 127.0.0.0/8 via {gateway} dev eth0"
        )
        assert setup.returncode == 0, setup.stderr
        yield peer
    finally:
        _sh("ip", "link", "del", host_end)
        _sh("ip", "netns", "del", ns)


def _gateway(daemon: Daemon, network: str) -> str:
    info = json.loads(daemon.cli("network", "inspect", network, check=True).stdout)[0]
    return str(info["IPAM"]["Config"][0]["Gateway"])


def test_peers_on_a_bridge_reach_neither_loopback_nor_ports_published_on_it(
    daemon: Daemon,
) -> None:
    gateway = _gateway(daemon, "bridge")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    loopback_port, any_port = _free_port(), _free_port()
    web = "g-" + gateway.replace(".", "")
    daemon.cli(
        "run", "-d", "--name", web,
        "-p", f"127.0.0.1:{loopback_port}:80", "-p", f"{any_port}:80",
        IMAGE, *HTTP_SERVER, check=True,
    )  # fmt: skip
    try:
        assert _http_get(loopback_port).strip() == _inspect(daemon, web)["Config"]["Hostname"]
        with peer_on(daemon, daemon.bridge, gateway.rsplit(".", 1)[0] + ".250") as peer:
            # The peer's traffic reaches the host: a port published on every address answers.
            assert peer.connect(gateway, any_port)
            # A host service on 127.0.0.1 is out of reach (CVE-2020-8558)...
            assert not peer.connect("127.0.0.1", listener.getsockname()[1])
            # ... and so is a port published on 127.0.0.1, by any of the host's addresses.
            assert not peer.connect("127.0.0.1", loopback_port)
            assert not peer.connect(gateway, loopback_port)
    finally:
        listener.close()
        daemon.cli("rm", "-f", web)


def _refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return True
    return False


def test_bridge_options_enable_icc_and_host_binding_ipv4(daemon: Daemon) -> None:
    name = "icc-" + secrets.token_hex(3)
    ports = [_free_port(), _free_port()]
    options = (
        "-o", "com.docker.network.bridge.enable_icc=false",
        "-o", "com.docker.network.bridge.host_binding_ipv4=127.0.0.1",
    )  # fmt: skip
    daemon.cli("network", "create", *options, name, check=True)
    server, other = name + "-s", name + "-o"
    try:
        daemon.cli(
            "run", "-d", "--name", server, "--network", name, "-p", f"{ports[0]}:5432",
            IMAGE, *ECHO_SERVER, check=True,
        )  # fmt: skip
        daemon.cli(
            "run", "-d", "--name", other, "--network", name, IMAGE, "sleep", "60", check=True
        )
        address = _inspect(daemon, server)["NetworkSettings"]["Networks"][name]["IPAddress"]
        # No traffic between the network's containers, by address or by name...
        assert _talk(daemon, address, inside=other) == ""
        assert _talk(daemon, server, inside=other) == ""
        # ... while the host still reaches the published port, on the network's host address only.
        assert daemon.cli("port", server).stdout.split() == [
            "5432/tcp",
            "->",
            f"127.0.0.1:{ports[0]}",
        ]
        with socket.create_connection(("127.0.0.1", ports[0]), timeout=5) as s:
            s.sendall(b"hi\n")
            assert s.recv(3) == b"hi\n"
        assert _refused(_gateway(daemon, name), ports[0])
        # An explicit HostIp still wins over the network's default.
        explicit = daemon.cli(
            "run", "-d", "--network", name, "-p", f"0.0.0.0:{ports[1]}:5432", IMAGE, *ECHO_SERVER,
            check=True,
        ).stdout.strip()  # fmt: skip
        assert daemon.cli("port", explicit).stdout.split()[-1] == f"0.0.0.0:{ports[1]}"
        daemon.cli("rm", "-f", explicit)
    finally:
        daemon.cli("rm", "-f", server, other)
        daemon.cli("network", "rm", name)
    # A network with icc on lets its containers talk (the control case).
    control = daemon.cli("network", "create", name, check=True)
    assert control.returncode == 0
    try:
        daemon.cli(
            "run", "-d", "--name", server, "--network", name, IMAGE, *ECHO_SERVER, check=True
        )
        assert _talk(daemon, server, network=name) == "hi"
    finally:
        daemon.cli("rm", "-f", server)
        daemon.cli("network", "rm", name)


def test_bad_bridge_options_are_refused(daemon: Daemon) -> None:
    for option in (
        "com.docker.network.bridge.enable_icc=maybe",
        "com.docker.network.bridge.host_binding_ipv4=not-an-address",
        "com.docker.network.bridge.enable_ip_masquerade=sometimes",
        # the default network's own mark: with it, a network could take a host's bridge
        "com.docker.network.bridge.default_bridge=true",
    ):
        result = daemon.cli("network", "create", "-o", option, "bad-" + secrets.token_hex(3))
        assert result.returncode != 0 and option.split("=")[0] in result.stderr, result.stderr
    assert not [n for n in daemon.cli("network", "ls").stdout.split() if n.startswith("bad-")]


def test_a_hosts_interface_is_never_adopted_nor_deleted(daemon: Daemon) -> None:
    for kind in (["veth", "peer", "name", f"{daemon.bridge_prefix}hp"], ["bridge"]):
        device = f"{daemon.bridge_prefix}h{kind[0][0]}"
        subprocess.run(["ip", "link", "add", device, "type", *kind], check=True)
        try:
            name = "adopt-" + secrets.token_hex(3)
            status, body = daemon.api(
                "POST",
                "/v1.45/networks/create",
                {"Name": name, "Options": {"com.docker.network.bridge.name": device}},
            )
            assert status == 409 and "not created by Dockyard" in body["message"], body
            assert daemon.api("GET", f"/v1.45/networks/{name}")[0] == 404
            # The host's interface is left as it was: still there, no address added.
            shown = _sh("ip", "-4", "-o", "addr", "show", "dev", device)
            assert shown.returncode == 0 and shown.stdout == "", shown
        finally:
            _sh("ip", "link", "del", device)
    # A bridge name of the daemon's own making is still fine, and goes with the network.
    device, name = f"{daemon.bridge_prefix}own", "own-" + secrets.token_hex(3)
    daemon.cli(
        "network", "create", "-o", f"com.docker.network.bridge.name={device}", name, check=True
    )
    assert device in daemon.links()
    daemon.cli("network", "rm", name, check=True)
    assert device not in daemon.links()


def test_concurrent_creates_of_one_name_give_one_network_and_409s(daemon: Daemon) -> None:
    links, allocations = daemon.links(), daemon.allocations()
    name = "race-" + secrets.token_hex(3)
    with ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(
                lambda _: daemon.api("POST", "/v1.45/networks/create", {"Name": name}), range(8)
            )
        )
    statuses = sorted(status for status, _ in results)
    assert statuses == [201] + [409] * 7, results
    for status, body in results:
        if status == 409:
            assert body["message"] == f"network with name {name} already exists"
    assert len(daemon.links()) == len(links) + 1
    daemon.cli("network", "rm", name, check=True)
    assert (daemon.links(), daemon.allocations()) == (links, allocations)


def test_no_veth_outlives_its_container_when_another_shares_the_namespace(
    daemon: Daemon,
) -> None:
    links = daemon.links()
    owner, sharer = "own-" + secrets.token_hex(3), "shr-" + secrets.token_hex(3)
    daemon.cli("run", "-d", "--name", owner, IMAGE, "sleep", "600", check=True)
    try:
        daemon.cli(
            "run", "-d", "--name", sharer, "--network", f"container:{owner}",
            IMAGE, "sleep", "600", check=True,
        )  # fmt: skip
        assert len(daemon.links()) == len(links) + 1
        daemon.cli("rm", "-f", owner, check=True)
        deadline = time.monotonic() + 10
        while daemon.links() != links and time.monotonic() < deadline:
            time.sleep(0.05)
        assert daemon.links() == links
    finally:
        daemon.cli("rm", "-f", owner, sharer)


def test_a_container_only_on_internal_networks_gets_no_dns_forwarding(daemon: Daemon) -> None:
    internal, normal = "int-" + secrets.token_hex(3), "ext-" + secrets.token_hex(3)
    daemon.cli("network", "create", "--internal", internal, check=True)
    daemon.cli("network", "create", normal, check=True)
    server = f"127.0.0.{secrets.randbelow(200) + 20}"
    try:
        with upstream_dns(server, "outside.example", "192.0.2.77") as asked:
            probe = ["--dns", server, IMAGE, "nslookup", "outside.example"]
            cut_off = daemon.cli("run", "--rm", "--network", internal, *probe)
            assert "192.0.2.77" not in cut_off.stdout and asked == []
            # The same container on a network with a way out is answered (the control case).
            reached = daemon.cli("run", "--rm", "--network", normal, *probe)
            assert "192.0.2.77" in reached.stdout and "outside.example" in asked
    finally:
        daemon.cli("network", "rm", internal, normal)


def test_network_prune_until_takes_go_durations(daemon: Daemon) -> None:
    name = "old-" + secrets.token_hex(3)
    daemon.cli("network", "create", "--label", f"t={name}", name, check=True)

    def prune(until: str) -> tuple[int, Any]:
        wanted = json.dumps({"until": [until], "label": [f"t={name}"]})
        return daemon.api("POST", f"/v1.45/networks/prune?filters={quote(wanted)}")

    try:
        assert prune("1h30m") == (200, {"NetworksDeleted": None})  # made less than 1h30m ago
        status, body = prune("10x")
        assert (status, body["message"]) == (
            400,
            'failed to parse value as time or duration: "10x"',
        )
        time.sleep(1.1)
        assert prune("1s") == (200, {"NetworksDeleted": [name]})
    finally:
        daemon.cli("network", "rm", name)


def test_wrong_json_types_are_400s(daemon: Daemon) -> None:
    bad_creates = [
        {"Driver": 3},
        {"Scope": ["local"]},
        {"Internal": "yes"},
        {"Labels": 5},
        {"Options": {"com.docker.network.driver.mtu": 1500}},
        {"IPAM": "x"},
        {"IPAM": {"Driver": 1}},
        {"IPAM": {"Config": [{"Subnet": 5}]}},
        {"IPAM": {"Config": [{"Subnet": "10.9.9.0/24", "AuxiliaryAddresses": ["a"]}]}},
    ]
    for body in bad_creates:
        name = "types-" + secrets.token_hex(3)
        status, reply = daemon.api("POST", "/v1.45/networks/create", {"Name": name, **body})
        assert status == 400 and "invalid JSON" in reply["message"], (body, status, reply)
        assert daemon.api("GET", f"/v1.45/networks/{name}")[0] == 404
    name = "types-" + secrets.token_hex(3)
    daemon.cli("network", "create", name, check=True)
    daemon.cli("create", "--name", name, IMAGE, "true", check=True)
    try:
        bad_connects = [
            {"Container": 5},
            {"Container": name, "EndpointConfig": {"DriverOpts": ["x"]}},
            {"Container": name, "EndpointConfig": {"MacAddress": 7}},
            {"Container": name, "EndpointConfig": {"IPAMConfig": {"IPv4Address": 7}}},
            {"Container": name, "EndpointConfig": {"Links": "a:b"}},
        ]
        for body in bad_connects:
            status, reply = daemon.api("POST", f"/v1.45/networks/{name}/connect", body)
            assert status == 400 and "invalid JSON" in reply["message"], (body, status, reply)
        for body in ({"Name": 5}, {"Driver": 3}, {"Labels": {"a": 1}}, {"DriverOpts": 2}):
            status, reply = daemon.api("POST", "/v1.45/volumes/create", body)
            assert status == 400 and "invalid JSON" in reply["message"], (body, status, reply)
    finally:
        daemon.cli("rm", "-f", name)
        daemon.cli("network", "rm", name)


def test_names_resolve_with_their_network_as_domain(daemon: Daemon) -> None:
    first, second = "dom-" + secrets.token_hex(3), "dom-" + secrets.token_hex(3)
    server = "srv-" + secrets.token_hex(3)
    daemon.cli("network", "create", first, check=True)
    daemon.cli("network", "create", second, check=True)
    try:
        daemon.cli(
            "run", "-d", "--name", server, "--network", first, "--network-alias", "db",
            IMAGE, *ECHO_SERVER, check=True,
        )  # fmt: skip
        address = _inspect(daemon, server)["NetworkSettings"]["Networks"][first]["IPAddress"]
        for target in (f"{server}.{first}", f"db.{first}"):
            assert _talk(daemon, target, network=first) == "hi", target
        # Not through a network the asker is not on, nor another network's domain.
        looked_up = daemon.cli(
            "run", "--rm", "--network", first, IMAGE, "nslookup", f"{server}.{second}"
        )
        assert address not in looked_up.stdout
    finally:
        daemon.cli("rm", "-f", server)
        daemon.cli("network", "rm", first, second)


def test_network_names_are_what_docker_accepts_and_never_name_a_device(
    daemon: Daemon, client: Any
) -> None:
    tag = secrets.token_hex(2)
    spaced, underscored = f"test 0{tag}", f"_private{tag}"
    before = set(daemon.links())
    created = [client.networks.create(spaced), client.networks.create(underscored)]
    try:
        assert client.api.inspect_network(spaced)["Name"] == spaced
        box = "n-" + secrets.token_hex(3)
        run = daemon.docker("run", "-d", "--name", box, "--network", spaced, IMAGE, "sleep", "60")
        assert run.returncode == 0, run.stderr
        try:
            assert daemon.docker("exec", box, "ping", "-c", "1", "-W", "3", box).returncode == 0
        finally:
            daemon.docker("rm", "-f", box)
        # Bridges are named after network IDs, not the user's words.
        new = set(daemon.links()) - before
        assert new and all(" " not in n and "_private" not in n for n in new)
        for network in created:
            assert any(network.id.startswith(n[len(daemon.bridge_prefix) :]) for n in new)
    finally:
        for network in created:
            network.remove()
    for name, status, message in (
        ("   ", 400, "invalid name: name is empty"),
        ("bridge", 403, "operation is not permitted on predefined bridge network "),
        ("default", 403, "operation is not permitted on predefined default network "),
    ):
        got = daemon.api("POST", "/v1.45/networks/create", {"Name": name})
        assert (got[0], got[1]["message"]) == (status, message)
    bad = daemon.api(
        "POST",
        "/v1.45/networks/create",
        {"Name": "odd-" + tag, "Options": {"com.docker.network.bridge.name": 'br"x'}},
    )
    assert bad[0] == 400 and "invalid bridge name" in bad[1]["message"]
