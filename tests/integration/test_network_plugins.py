"""Networks through network and IPAM plugins, end to end against a real daemon.

The plugins: ones written without the SDK (`tests/bare_network.py` on the
stdlib's HTTP server: a veth-and-bridge network driver and an in-memory IPAM),
on a unix socket and on TCP found through a `.spec` file, and the SDK examples
in `plugins/` as their own processes. The call sequences of `network create`,
`run --network`, connect/disconnect, stop and `network rm` are asserted against
the order Docker's daemon uses (spec §4.10, §5.3); broken plugins (garbage, an
HTML 500, an empty 200, a timeout, death mid-call) fail the request with an
error naming the plugin and the call and leave nothing half made: no record, no
device, no nftables rule, no allocation. Traffic stays between containers on
the test's own subnets.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.bare_network import BareIpam, VethNetwork, links_with
from tests.bare_plugin import BarePlugin, Call, Raw, wait_for
from tests.plugin_env import EXAMPLES, PluginDaemon, PluginProcess

IMAGE = "demo/busybox:1"
ECHO_SERVER = ["nc", "-ll", "-p", "5432", "-e", "cat"]
CALL_TIMEOUT = 2
GATEWAY_TYPE = {"RequestAddressType": "com.docker.network.gateway"}


@pytest.fixture(scope="module")
def daemon(busybox_tar: Path) -> Iterator[PluginDaemon]:
    d = PluginDaemon()
    d.start_with(plugin_call_timeout=CALL_TIMEOUT)
    d.cli("import", str(busybox_tar), IMAGE, check=True)
    yield d
    d.cleanup()


@dataclass
class Plugins:
    """A network plugin and an IPAM plugin (no SDK), each on its own socket."""

    net_name: str
    ipam_name: str
    veth: VethNetwork
    ipam: BareIpam
    net: BarePlugin
    ipam_plugin: BarePlugin

    def calls(self, since: int = 0) -> list[Call]:
        """Calls to both plugins in the order they arrived (from `since` on)."""
        both = sorted([*self.net.calls, *self.ipam_plugin.calls], key=lambda c: c.at)
        return both[since:]

    def paths(self, since: int = 0) -> list[str]:
        return [c.path for c in self.calls(since)]

    def mark(self) -> int:
        return len(self.net.calls) + len(self.ipam_plugin.calls)


def serve(daemon: PluginDaemon, veth: VethNetwork, ipam: BareIpam) -> Plugins:
    tag = secrets.token_hex(3)
    net_name, ipam_name = f"veth-{tag}", f"ipam-{tag}"
    net = BarePlugin(["NetworkDriver"], veth.replies()).serve_unix(daemon.sock(net_name))
    ipam_plugin = BarePlugin(["IpamDriver"], ipam.replies()).serve_unix(daemon.sock(ipam_name))
    return Plugins(net_name, ipam_name, veth, ipam, net, ipam_plugin)


@pytest.fixture
def plugins(daemon: PluginDaemon) -> Iterator[Plugins]:
    prefix = "tv" + secrets.token_hex(2)
    found = serve(
        daemon,
        VethNetwork(prefix, gw_alloc_checker=True),
        BareIpam(f"10.{daemon.net_octet}.64.0/18"),
    )
    yield found
    found.net.stop()
    found.ipam_plugin.stop()
    for link in links_with(prefix):
        daemon_ip("link", "del", link)


def daemon_ip(*args: str) -> None:
    import subprocess

    subprocess.run(["ip", *args], capture_output=True)


def inspect(daemon: PluginDaemon, name: str) -> dict[str, Any]:
    return json.loads(daemon.cli("inspect", name, check=True).stdout)[0]  # type: ignore[no-any-return]


def endpoint_rows(daemon: PluginDaemon) -> list[str]:
    conn = sqlite3.connect(daemon.data_root / "dockyard.db")
    try:
        return [row[0] for row in conn.execute("SELECT container_id FROM endpoints")]
    finally:
        conn.close()


def network_names(daemon: PluginDaemon) -> list[str]:
    return daemon.cli("network", "ls", "--format", "{{.Name}}", check=True).stdout.split()


def talk(daemon: PluginDaemon, network: str, target: str) -> str:
    script = f"echo hi | nc -w 2 {target} 5432"
    return daemon.cli("run", "--rm", "--network", network, IMAGE, "sh", "-c", script).stdout.strip()


# -- the call order -------------------------------------------------------------


def test_call_sequences_and_the_interface_in_the_container(
    daemon: PluginDaemon, plugins: Plugins
) -> None:
    subnet = daemon.subnet(71)
    gateway = subnet.replace(".0/24", ".1")
    prefix = subnet.rsplit(".", 1)[0]
    plugins.veth.static_routes = [
        {
            "Destination": f"10.{daemon.net_octet}.72.0/24",
            "RouteType": 0,
            "NextHop": f"{prefix}.254",
        },
        {"Destination": f"10.{daemon.net_octet}.73.0/24", "RouteType": 1},
    ]
    # network create: driver registered, GwAllocCheck, IPAM (§5.3), CreateNetwork
    created = daemon.cli(
        "network", "create", "-d", plugins.net_name, "--ipam-driver", plugins.ipam_name,
        "--subnet", subnet, "--gateway", gateway, "-o", "mtu=1400", "n1",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    calls = plugins.calls()
    assert [c.path for c in calls] == [
        "/Plugin.Activate",
        "/NetworkDriver.GetCapabilities",
        "/NetworkDriver.GwAllocCheck",
        "/Plugin.Activate",
        "/IpamDriver.GetCapabilities",
        "/IpamDriver.GetDefaultAddressSpaces",
        "/IpamDriver.GetDefaultAddressSpaces",
        "/IpamDriver.RequestPool",
        "/IpamDriver.RequestAddress",
        "/NetworkDriver.CreateNetwork",
    ]
    assert calls[0].headers["Accept"] == "application/vnd.docker.plugins.v1.2+json"
    assert calls[1].body == b""  # argument-less: an empty body
    generic = {"mtu": "1400"}
    assert calls[2].json == {
        "Options": {
            "com.docker.network.enable_ipv4": True,
            "com.docker.network.enable_ipv6": False,
            "com.docker.network.generic": generic,
        }
    }
    assert calls[7].json == {
        "AddressSpace": "bare-local", "Pool": subnet, "SubPool": "", "Options": {}, "V6": False,
    }  # fmt: skip
    pool_id = plugins.ipam.pool_id(subnet)
    assert calls[8].json == {"PoolID": pool_id, "Address": gateway, "Options": GATEWAY_TYPE}
    create = calls[9].json
    assert create["Options"]["com.docker.network.generic"] == generic
    assert create["IPv4Data"] == [
        {"AddressSpace": "bare-local", "Pool": subnet, "Gateway": f"{gateway}/24"}
    ]
    assert create["IPv6Data"] == [] and len(create["NetworkID"]) == 64
    network_id = create["NetworkID"]
    shown = json.loads(daemon.cli("network", "inspect", "n1", check=True).stdout)[0]
    assert shown["Driver"] == plugins.net_name and shown["IPAM"]["Driver"] == plugins.ipam_name
    assert shown["IPAM"]["Config"] == [{"Subnet": subnet, "Gateway": gateway}]
    assert shown["Options"] == generic

    # run --network: RequestAddress, CreateEndpoint, Join, ProgramExternalConnectivity
    mark = plugins.mark()
    daemon.cli("run", "-d", "--name", "c1", "--network", "n1", IMAGE, *ECHO_SERVER, check=True)
    calls = plugins.calls(mark)
    assert [c.path for c in calls] == [
        "/IpamDriver.RequestAddress",
        "/NetworkDriver.CreateEndpoint",
        "/NetworkDriver.Join",
        "/NetworkDriver.ProgramExternalConnectivity",
    ]
    assert calls[0].json == {"PoolID": pool_id, "Address": "", "Options": {}}
    address = f"{prefix}.2/24"
    endpoint = calls[1].json
    assert endpoint["NetworkID"] == network_id
    assert endpoint["Interface"] == {"Address": address, "AddressIPv6": "", "MacAddress": ""}
    assert endpoint["Options"]["com.docker.network.portmap"] == []
    join = calls[2].json
    assert join["EndpointID"] == endpoint["EndpointID"]
    assert Path(join["SandboxKey"]).is_file()  # the container's netns (nsfs)
    assert calls[3].json["EndpointID"] == endpoint["EndpointID"]

    # the plugin's interface is the container's eth0, with the IPAM address, the MAC the
    # plugin filled in, the gateway as default route and the static routes
    settings = inspect(daemon, "c1")["NetworkSettings"]["Networks"]["n1"]
    assert settings["IPAddress"] == f"{prefix}.2" and settings["Gateway"] == gateway
    mac = settings["MacAddress"]
    assert mac.startswith("02:42:")
    link = daemon.cli("exec", "c1", "ip", "-o", "addr", "show", "eth0", check=True).stdout
    assert address in link
    assert mac in daemon.cli("exec", "c1", "cat", "/sys/class/net/eth0/address").stdout
    routes = daemon.cli("exec", "c1", "ip", "route", check=True).stdout
    assert f"default via {gateway} dev eth0" in routes
    assert f"10.{daemon.net_octet}.72.0/24 via {prefix}.254 dev eth0" in routes
    assert f"10.{daemon.net_octet}.73.0/24 dev eth0" in routes
    # the host end sits on the plugin's bridge; nothing of the plugin is left in the host
    # namespace but these
    host_end = plugins.veth.host_end(endpoint["EndpointID"])
    assert links_with(plugins.veth.prefix) == sorted([plugins.veth.bridge(network_id), host_end])
    # containers on the plugin's network reach each other, by name too (embedded DNS)
    plugins.veth.static_routes = []
    assert talk(daemon, "n1", "c1") == "hi"
    assert talk(daemon, "n1", f"{prefix}.2") == "hi"

    # connect a running container on another network: no ProgramExternalConnectivity (its
    # gateway endpoint stays on the default bridge); disconnect: no Revoke either
    daemon.cli("run", "-d", "--name", "c2", IMAGE, "sleep", "300", check=True)
    mark = plugins.mark()
    daemon.cli("network", "connect", "n1", "c2", check=True)
    assert plugins.paths(mark) == [
        "/IpamDriver.RequestAddress",
        "/NetworkDriver.CreateEndpoint",
        "/NetworkDriver.Join",
    ]
    assert f"{prefix}." in daemon.cli("exec", "c2", "ip", "-o", "addr", "show", "eth1").stdout
    mark = plugins.mark()
    daemon.cli("network", "disconnect", "n1", "c2", check=True)
    assert plugins.paths(mark) == [
        "/NetworkDriver.Leave",
        "/NetworkDriver.DeleteEndpoint",
        "/IpamDriver.ReleaseAddress",
    ]
    daemon.cli("rm", "-f", "c2", check=True)

    # network rm while in use: refused by the engine, nothing sent
    mark = plugins.mark()
    refused = daemon.cli("network", "rm", "n1")
    assert refused.returncode != 0 and "has active endpoints" in refused.stderr
    assert plugins.paths(mark) == []

    # stop: Revoke, Leave, DeleteEndpoint, ReleaseAddress
    mark = plugins.mark()
    daemon.cli("stop", "-t", "1", "c1", check=True)
    calls = plugins.calls(mark)
    assert [c.path for c in calls] == [
        "/NetworkDriver.RevokeExternalConnectivity",
        "/NetworkDriver.Leave",
        "/NetworkDriver.DeleteEndpoint",
        "/IpamDriver.ReleaseAddress",
    ]
    assert {c.json["EndpointID"] for c in calls[:3]} == {endpoint["EndpointID"]}
    assert calls[3].json == {"PoolID": pool_id, "Address": f"{prefix}.2"}
    # a restart makes a new endpoint (Docker recreates them on every start)
    mark = plugins.mark()
    daemon.cli("start", "c1", check=True)
    again = plugins.calls(mark)
    assert again[1].path == "/NetworkDriver.CreateEndpoint"
    assert again[1].json["EndpointID"] != endpoint["EndpointID"]
    daemon.cli("rm", "-f", "c1", check=True)

    # network rm: DeleteNetwork, the gateway released, the pool released
    mark = plugins.mark()
    daemon.cli("network", "rm", "n1", check=True)
    calls = plugins.calls(mark)
    assert [c.path for c in calls] == [
        "/NetworkDriver.DeleteNetwork",
        "/IpamDriver.ReleaseAddress",
        "/IpamDriver.ReleasePool",
    ]
    assert calls[1].json == {"PoolID": pool_id, "Address": gateway}
    assert calls[2].json == {"PoolID": pool_id}
    assert plugins.ipam.allocations() == {}
    assert wait_for(lambda: links_with(plugins.veth.prefix) == [])
    assert endpoint_rows(daemon) == []
    # activation happened once per plugin for all of it
    assert plugins.paths().count("/Plugin.Activate") == 2
    info = daemon.api("GET", "/v1.45/info")[1]["Plugins"]
    assert plugins.net_name in info["Network"] and plugins.ipam_name in info["IPAM"]


def test_a_tcp_plugin_found_through_a_spec_file(daemon: PluginDaemon) -> None:
    """One plugin serving both kinds on TCP, found through NAME.spec."""
    prefix = "tt" + secrets.token_hex(2)
    veth, ipam = VethNetwork(prefix), BareIpam(daemon.subnet(75))
    name = "tcpnet-" + secrets.token_hex(3)
    plugin = BarePlugin(["NetworkDriver", "IpamDriver"], {**veth.replies(), **ipam.replies()})
    with plugin.serve_tcp():
        (daemon.spec_dir / f"{name}.spec").write_text(f"tcp://{plugin.address}\n")
        try:
            daemon.cli("network", "create", "-d", name, "--ipam-driver", name, "tcpnet", check=True)
            shown = json.loads(daemon.cli("network", "inspect", "tcpnet").stdout)[0]
            assert shown["IPAM"]["Config"][0]["Subnet"] == daemon.subnet(75)
            out = daemon.cli(
                "run",
                "--rm",
                "--network",
                "tcpnet",
                IMAGE,
                "ip",
                "-o",
                "-4",
                "addr",
                "show",
                "eth0",
            )
            assert daemon.subnet(75).replace(".0/24", ".2/24") in out.stdout, out.stderr
            daemon.cli("network", "rm", "tcpnet", check=True)
        finally:
            daemon.cli("network", "rm", "tcpnet")
            for link in links_with(prefix):
                daemon_ip("link", "del", link)
    paths = plugin.paths()
    assert paths.count("/Plugin.Activate") == 1
    assert paths[-3:] == [
        "/NetworkDriver.DeleteNetwork",
        "/IpamDriver.ReleaseAddress",
        "/IpamDriver.ReleasePool",
    ]
    assert ipam.allocations() == {}
    assert links_with(prefix) == []


def test_the_sdk_example_plugins_through_the_docker_cli(
    daemon: PluginDaemon, tmp_path: Path
) -> None:
    tag = secrets.token_hex(3)
    net_name, ipam_name = f"vbridge-{tag}", f"fileipam-{tag}"
    state = tmp_path / "ipam.json"
    env = {"IPAM_STATE": str(state), "IPAM_RANGE": f"10.{daemon.net_octet}.96.0/19"}
    with (
        PluginProcess(f"{EXAMPLES}/net_bridge.py:BridgeNetwork", daemon.sock(net_name)),
        PluginProcess(f"{EXAMPLES}/ipam_file.py:FileIpam", daemon.sock(ipam_name), env),
    ):
        made = daemon.docker(
            "network", "create", "-d", net_name, "--ipam-driver", ipam_name, "sdknet"
        )
        assert made.returncode == 0, made.stderr
        network_id = made.stdout.strip()
        try:
            shown = json.loads(daemon.docker("network", "inspect", "sdknet").stdout)[0]
            subnet = shown["IPAM"]["Config"][0]["Subnet"]
            assert subnet == f"10.{daemon.net_octet}.96.0/24"
            assert links_with("vbr" + network_id[:10]) == ["vbr" + network_id[:10]]
            daemon.docker("run", "-d", "--name", "sdk1", "--network", "sdknet", IMAGE, *ECHO_SERVER)
            assert talk(daemon, "sdknet", "sdk1") == "hi"
            pools = json.loads(state.read_text())
            assert [sorted(p["used"]) for p in pools.values()] == [
                [f"10.{daemon.net_octet}.96.1", f"10.{daemon.net_octet}.96.2"]
            ]
            assert daemon.docker("rm", "-f", "sdk1").returncode == 0
            assert daemon.docker("network", "rm", "sdknet").returncode == 0
        finally:
            daemon.cli("rm", "-f", "sdk1")
            daemon.cli("network", "rm", "sdknet")
        assert json.loads(state.read_text()) == {}
        assert wait_for(lambda: links_with("vbr" + network_id[:10]) == [])


def test_an_ipam_plugin_serves_the_ipv6_pool_of_an_ipv6_network(
    daemon: PluginDaemon, tmp_path: Path
) -> None:
    tag = secrets.token_hex(3)
    ipam_name, network = f"fileipam6-{tag}", f"v6net-{tag}"
    state = tmp_path / "ipam.json"
    env = {"IPAM_STATE": str(state), "IPAM_RANGE": f"10.{daemon.net_octet}.160.0/19"}
    v6 = daemon.subnet6(9)
    with PluginProcess(f"{EXAMPLES}/ipam_file.py:FileIpam", daemon.sock(ipam_name), env):
        made = daemon.docker(
            *("network", "create", "--ipv6", "--ipam-driver", ipam_name),
            *("--subnet", f"10.{daemon.net_octet}.160.0/24", "--subnet", v6, network),
        )
        assert made.returncode == 0, made.stderr
        try:
            run = daemon.docker(
                "run", "-d", "--name", f"b6-{tag}", "--network", network, IMAGE, "sleep", "60"
            )
            assert run.returncode == 0, run.stderr
            info = json.loads(daemon.docker("inspect", f"b6-{tag}").stdout)[0]
            address = info["NetworkSettings"]["Networks"][network]["GlobalIPv6Address"]
            pools = {p["pool"]: p["used"] for p in json.loads(state.read_text()).values()}
            assert set(pools) == {f"10.{daemon.net_octet}.160.0/24", v6}
            assert pools[v6] == [v6.replace("::/64", "::1"), address]  # gateway, container
        finally:
            daemon.docker("rm", "-f", f"b6-{tag}")
            daemon.docker("network", "rm", network)
        assert json.loads(state.read_text()) == {}


# -- broken plugins -------------------------------------------------------------

FAILURES: dict[str, Raw] = {
    "garbage": Raw(200, b"\x00\x01not json{"),
    "html-500": Raw(500, b"<html><body><h1>500 Internal Server Error</h1></body></html>"),
    "empty-200": Raw(200, b""),
    "timeout": Raw(200, b"{}", delay=CALL_TIMEOUT + 1.5),
    "death": Raw(die=True),
}


def inject(plugin: BarePlugin, path: str, failure: Raw, when: Callable[[Call], bool]) -> None:
    """Answer `path` with `failure` (once) when `when(call)`; normally otherwise."""
    normal = plugin.replies.get(path, Raw(404, b'{"Err": "not implemented"}'))
    fired: list[bool] = []

    def reply(call: Call) -> Any:
        if not fired and when(call):
            fired.append(True)
            return failure
        return normal(call) if callable(normal) else normal

    plugin.replies[path] = reply


CE, JOIN, DE = (
    "/NetworkDriver.CreateEndpoint",
    "/NetworkDriver.Join",
    "/NetworkDriver.DeleteEndpoint",
)
ROLLBACKS = {
    "IpamDriver.RequestAddress": [],
    "NetworkDriver.CreateEndpoint": [CE, DE],
    "NetworkDriver.Join": [CE, JOIN, DE],
    "NetworkDriver.ProgramExternalConnectivity": [
        CE,
        JOIN,
        "/NetworkDriver.ProgramExternalConnectivity",
        "/NetworkDriver.RevokeExternalConnectivity",
        "/NetworkDriver.Leave",
        DE,
    ],
}


def clean_state(daemon: PluginDaemon) -> dict[str, Any]:
    return {
        "links": daemon.links(),
        "nft": daemon.nft_ruleset(),
        "allocations": daemon.allocations(),
        "networks": network_names(daemon),
    }


@pytest.mark.parametrize("failure", list(FAILURES))
@pytest.mark.parametrize(
    "call",
    ["IpamDriver.RequestPool", "IpamDriver.RequestAddress", "NetworkDriver.CreateNetwork"],
)
def test_a_broken_plugin_fails_network_create_and_leaves_nothing(
    daemon: PluginDaemon, plugins: Plugins, call: str, failure: str
) -> None:
    before = clean_state(daemon)
    broken = plugins.ipam_plugin if call.startswith("Ipam") else plugins.net
    inject(broken, "/" + call, FAILURES[failure], lambda c: True)
    result = daemon.cli(
        "network", "create", "-d", plugins.net_name, "--ipam-driver", plugins.ipam_name, "bad"
    )
    assert result.returncode != 0
    broken_name = plugins.ipam_name if broken is plugins.ipam_plugin else plugins.net_name
    assert f"plugin {broken_name} failed with error: {call}:" in result.stderr, result.stderr
    assert clean_state(daemon) == before
    if broken is not plugins.ipam_plugin or failure != "death":
        assert plugins.ipam.allocations() == {}
    if broken is not plugins.net or failure != "death":
        assert plugins.veth.networks == {}
        assert wait_for(lambda: links_with(plugins.veth.prefix) == [])
    if call == "NetworkDriver.CreateNetwork" and failure != "death":
        # the network may have been made by a plugin that timed out: deleted again
        assert plugins.paths()[-3:] == [
            "/NetworkDriver.DeleteNetwork",
            "/IpamDriver.ReleaseAddress",
            "/IpamDriver.ReleasePool",
        ]


@pytest.mark.parametrize("failure", list(FAILURES))
@pytest.mark.parametrize(
    "call",
    [
        "IpamDriver.RequestAddress",
        "NetworkDriver.CreateEndpoint",
        "NetworkDriver.Join",
        "NetworkDriver.ProgramExternalConnectivity",
    ],
)
def test_a_broken_plugin_fails_the_start_and_leaves_no_endpoint(
    daemon: PluginDaemon, plugins: Plugins, call: str, failure: str
) -> None:
    name = "net-" + secrets.token_hex(3)
    daemon.cli(
        "network", "create", "-d", plugins.net_name, "--ipam-driver", plugins.ipam_name, name,
        check=True,
    )  # fmt: skip
    network_id = plugins.net.calls_to("/NetworkDriver.CreateNetwork")[-1].json["NetworkID"]
    allocated = plugins.ipam.allocations()
    before = clean_state(daemon)
    broken = plugins.ipam_plugin if call.startswith("Ipam") else plugins.net
    inject(
        broken, "/" + call, FAILURES[failure], lambda c: "RequestAddressType" not in c.body.decode()
    )
    container = "c-" + secrets.token_hex(3)
    result = daemon.cli("run", "-d", "--name", container, "--network", name, IMAGE, "sleep", "60")
    try:
        assert result.returncode != 0
        broken_name = plugins.ipam_name if broken is plugins.ipam_plugin else plugins.net_name
        assert f"plugin {broken_name} failed with error: {call}:" in result.stderr, result.stderr
        assert inspect(daemon, container)["State"]["Running"] is False
        assert endpoint_rows(daemon) == []
        assert clean_state(daemon) == before
        if broken is not plugins.ipam_plugin or failure != "death":
            assert plugins.ipam.allocations() == allocated
        if broken is not plugins.net or failure != "death":
            assert plugins.veth.endpoints == {}
            bridge = plugins.veth.bridge(network_id)
            assert wait_for(lambda: links_with(plugins.veth.prefix) == [bridge])
            sent = [p for p in plugins.paths() if p.startswith("/NetworkDriver.")]
            # once CreateEndpoint was sent the endpoint is deleted (a plugin that timed out
            # may have made it); Leave only after a Join that succeeded
            assert sent[sent.index("/NetworkDriver.CreateNetwork") + 1 :] == ROLLBACKS[call]
    finally:
        daemon.cli("rm", "-f", container)
    if broken is not plugins.net or failure != "death":
        assert daemon.cli("network", "rm", name).returncode == 0


def test_an_endpoint_whose_address_the_plugin_changes_is_deleted(
    daemon: PluginDaemon, plugins: Plugins
) -> None:
    daemon.cli(
        "network", "create", "-d", plugins.net_name, "--ipam-driver", plugins.ipam_name, "nm",
        check=True,
    )  # fmt: skip
    inject(
        plugins.net,
        "/NetworkDriver.CreateEndpoint",
        {"Interface": {"Address": "192.0.2.9/24"}},  # type: ignore[arg-type]
        lambda c: True,
    )
    result = daemon.cli("run", "--rm", "--network", "nm", IMAGE, "true")
    assert result.returncode != 0
    assert "driver modified interface address" in result.stderr
    assert [p for p in plugins.paths() if p.startswith("/NetworkDriver.")][-2:] == [
        "/NetworkDriver.CreateEndpoint",
        "/NetworkDriver.DeleteEndpoint",
    ]
    assert endpoint_rows(daemon) == []
    daemon.cli("network", "rm", "nm", check=True)
    assert plugins.ipam.allocations() == {}


# -- restarts, MAC addresses, references -------------------------------------------


def test_replay_after_a_daemon_restart_and_mac_addresses(busybox_tar: Path) -> None:
    daemon = PluginDaemon()
    prefix = "tr" + secrets.token_hex(2)
    try:
        daemon.start_with()
        daemon.cli("import", str(busybox_tar), IMAGE, check=True)
        plugins = serve(
            daemon,
            VethNetwork(prefix),
            BareIpam(f"10.{daemon.net_octet}.64.0/18", replay=True, mac=True),
        )
        daemon.cli(
            "network", "create", "-d", plugins.net_name, "--ipam-driver", plugins.ipam_name,
            "--subnet", daemon.subnet(64),
            "--aux-address", f"router={daemon.subnet(64).replace('.0/24', '.9')}", "rn",
            check=True,
        )  # fmt: skip
        mark = plugins.mark()
        daemon.cli("run", "-d", "--name", "r1", "--network", "rn", IMAGE, *ECHO_SERVER, check=True)
        request, create = plugins.calls(mark)[:2]
        mac = inspect(daemon, "r1")["NetworkSettings"]["Networks"]["rn"]["MacAddress"]
        # RequiresMACAddress: the engine made a MAC and passed it to IPAM and the driver
        assert request.json["Options"] == {"com.docker.network.endpoint.macaddress": mac}
        assert create.json["Interface"]["MacAddress"] == mac
        assert mac in daemon.cli("exec", "r1", "cat", "/sys/class/net/eth0/address").stdout
        address = create.json["Interface"]["Address"].split("/")[0]
        held = plugins.ipam.allocations()

        # the plugin forgets everything while the daemon is down (no state on disk)
        daemon.stop()
        plugins.ipam.forget()
        mark = plugins.mark()
        daemon.start()
        # replayed in the background, before anything else uses the plugin
        assert wait_for(lambda: len(plugins.calls(mark)) >= 6)
        replayed = plugins.calls(mark)
        # nothing is replayed to the network plugin (it keeps its own state); IPAM gets
        # the pool, its gateway, the aux address and the running container's address
        assert [c.path for c in replayed] == [
            "/Plugin.Activate",
            "/IpamDriver.GetCapabilities",
            "/IpamDriver.RequestPool",
            "/IpamDriver.RequestAddress",
            "/IpamDriver.RequestAddress",
            "/IpamDriver.RequestAddress",
        ]
        subnet = daemon.subnet(64)
        assert replayed[2].json["Pool"] == subnet
        assert replayed[3].json["Options"] == GATEWAY_TYPE
        assert replayed[4].json["Address"] == subnet.replace(".0/24", ".9")
        assert replayed[5].json["Address"] == address
        assert plugins.ipam.allocations() == held
        new_pool = plugins.ipam.pool_id(subnet)
        # the container kept running and its network works
        assert talk(daemon, "rn", "r1") == "hi"
        mark = plugins.mark()
        daemon.cli("rm", "-f", "r1", check=True)
        stop = plugins.calls(mark)
        assert [c.path for c in stop] == [
            "/NetworkDriver.RevokeExternalConnectivity",
            "/NetworkDriver.Leave",
            "/NetworkDriver.DeleteEndpoint",
            "/IpamDriver.ReleaseAddress",
        ]
        assert stop[-1].json == {"PoolID": new_pool, "Address": address}
        daemon.cli("network", "rm", "rn", check=True)
        assert plugins.ipam.allocations() == {}
        plugins.net.stop()
        plugins.ipam_plugin.stop()
    finally:
        daemon.cleanup()
        for link in links_with(prefix):
            daemon_ip("link", "del", link)


def test_start_up_does_not_wait_for_an_ipam_plugin_that_replays(busybox_tar: Path) -> None:
    """An IPAM plugin that asks for replays hangs in RequestPool when the daemon starts:
    the daemon answers at once; whatever needs the plugin (a new container on its
    network, removing a stopped container's endpoint) waits until the replay is done, so
    no address is handed out twice."""
    daemon = PluginDaemon()
    prefix = "tw" + secrets.token_hex(2)
    try:
        daemon.start_with(plugin_call_timeout=60)
        daemon.cli("import", str(busybox_tar), IMAGE, check=True)
        ipam = BareIpam(f"10.{daemon.net_octet}.64.0/18", replay=True)
        plugins = serve(daemon, VethNetwork(prefix), ipam)
        daemon.cli(
            "network", "create", "--ipam-driver", plugins.ipam_name,
            "--subnet", daemon.subnet(64), "rw", check=True,
        )  # fmt: skip
        daemon.cli(
            "run", "-d", "--name", "w1", "--network", "rw", IMAGE, "sleep", "600", check=True
        )
        first = inspect(daemon, "w1")["NetworkSettings"]["Networks"]["rw"]["IPAddress"]

        daemon.stop()
        ipam.forget()
        release = threading.Event()
        replies = ipam.replies()
        answer = replies["/IpamDriver.RequestPool"]

        def hanging_request_pool(call: Call) -> object:
            release.wait(45)
            return answer(call)  # type: ignore[operator]

        plugins.ipam_plugin.replies["/IpamDriver.RequestPool"] = hanging_request_pool
        mark = plugins.mark()
        daemon.start()  # returns at the first answer to /_ping
        assert not release.is_set()
        status, listed = daemon.api("GET", "/v1.45/containers/json")
        assert status == 200 and [c["Names"] for c in listed] == [["/w1"]]
        assert daemon.api("GET", "/v1.45/networks/rw")[0] == 200
        assert wait_for(lambda: "/IpamDriver.RequestPool" in plugins.paths(mark))
        # A second container on the network waits for the replay, then gets another address.
        second: dict[str, Any] = {}
        runner = threading.Thread(
            target=lambda: second.update(
                result=daemon.cli(
                    "run", "-d", "--name", "w2", "--network", "rw", IMAGE, "sleep", "600"
                )
            )
        )
        runner.start()
        assert wait_for(lambda: daemon.api("GET", "/v1.45/containers/w2/json")[0] == 200)
        time.sleep(1)  # its start reaches the network set-up, which waits for the replay
        assert "/IpamDriver.RequestAddress" not in plugins.paths(mark)  # nothing before the pool
        release.set()
        runner.join(60)
        assert second["result"].returncode == 0, second["result"].stderr
        addresses = {
            inspect(daemon, n)["NetworkSettings"]["Networks"]["rw"]["IPAddress"]
            for n in ("w1", "w2")
        }
        assert first in addresses and len(addresses) == 2
        assert sorted(ipam.allocations()[daemon.subnet(64)]) == sorted(
            [*addresses, daemon.subnet(64).replace(".0/24", ".1")]
        )
        daemon.cli("rm", "-f", "w1", "w2", check=True)
        daemon.cli("network", "rm", "rw", check=True)
        assert ipam.allocations() == {}
        plugins.net.stop()
        plugins.ipam_plugin.stop()
    finally:
        daemon.cleanup()
        for link in links_with(prefix):
            daemon_ip("link", "del", link)


def test_a_managed_ipam_plugin_is_referenced_by_its_networks(
    daemon: PluginDaemon, busybox_tar: Path
) -> None:
    from tests.integration.test_plugin_managed import make_plugin_dir, plugin_config

    name = "dy/fileipam:1"
    state = daemon.base / "ipam-state"
    state.mkdir()
    config = plugin_config(state)
    config["entrypoint"] = [
        *config["entrypoint"][:4],
        "/dockyard/plugins/ipam_file.py:FileIpam",
        "--socket",
        "/run/docker/plugins/ipam.sock",
    ]
    config["interface"] = {"types": ["docker.ipamdriver/1.0"], "socket": "ipam.sock"}
    config["env"] = [e for e in config["env"] if e["name"] != "LOG_DIR"] + [
        {"name": "IPAM_STATE", "value": "/logs/state.json"},
        {"name": "IPAM_RANGE", "value": f"10.{daemon.net_octet}.112.0/20"},
    ]
    source = make_plugin_dir(daemon.base / "fileipam", busybox_tar, config)
    daemon.cli("plugin", "create", name, str(source), check=True)
    daemon.cli("plugin", "enable", name, check=True)
    try:
        # the built-in bridge driver with a plugin's addresses
        daemon.cli("network", "create", "--ipam-driver", name, "mn", check=True)
        out = daemon.cli("run", "--rm", "--network", "mn", IMAGE, "ip", "-o", "-4", "addr")
        assert f"10.{daemon.net_octet}.112.2/24" in out.stdout, out.stderr
        status, body = daemon.api("POST", f"/v1.45/plugins/{name}/disable")
        assert (status, body["message"]) == (409, f"plugin {name} is in use")
        assert daemon.api("DELETE", f"/v1.45/plugins/{name}")[0] == 409
        # the reference is the network's: it is taken again when the daemon starts
        daemon.stop()
        daemon.start()
        assert daemon.api("POST", f"/v1.45/plugins/{name}/disable")[0] == 409
        daemon.cli("network", "rm", "mn", check=True)
        assert json.loads((state / "state.json").read_text()) == {}
        daemon.cli("plugin", "disable", name, check=True)
    finally:
        daemon.cli("network", "rm", "mn")
        daemon.cli("plugin", "rm", "-f", name)
