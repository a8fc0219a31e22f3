"""What the host keeps away from containers and network peers: its loopback, ports
published on one address, other containers on an ICC-less bridge, foreign interfaces.

A "peer" here is a network namespace the test creates and plugs into one of the
daemon's own bridges, so the test controls its routes and sysctls as an attacker
on that link would.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
from collections.abc import Iterator

from tests.harness import Daemon
from tests.integration.test_networks import HTTP_SERVER, IMAGE, _free_port, _http_get, _inspect


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
