"""Bridge networks, published ports and name resolution, on real bridges, veths and nftables.

Every daemon has its own bridge names, subnets and nftables table (see the
harness); traffic stays between containers, the host's loopback and
namespaces these tests create.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Daemon

IMAGE = "demo/busybox:1"
ECHO_SERVER = ["nc", "-ll", "-p", "5432", "-e", "cat"]
HTTP_SERVER = ["httpd", "-f", "-p", "80", "-h", "/etc"]


def _inspect(daemon: Daemon, name: str) -> dict[str, Any]:
    return json.loads(daemon.cli("inspect", name, check=True).stdout)[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http_get(port: int, host: str = "127.0.0.1", path: str = "/hostname") -> str:
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=3) as reply:
                return str(reply.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _settled(daemon: Daemon, links: list[str]) -> None:
    """Wait (bounded) for the kernel to free stopped sandboxes' interfaces in the background."""
    deadline = time.monotonic() + 10
    while daemon.links() != links and time.monotonic() < deadline:
        time.sleep(0.05)


def _talk(daemon: Daemon, target: str, *, inside: str = "", network: str = "") -> str:
    """Send "hi" to the echo server at `target`: from `inside`, or a new container on `network`."""
    script = f"echo hi | nc -w 2 {target} 5432"
    if inside:
        result = daemon.cli("exec", inside, "sh", "-c", script)
    else:
        result = daemon.cli("run", "--rm", "--network", network, IMAGE, "sh", "-c", script)
    return result.stdout.strip()


@pytest.fixture
def net(daemon: Daemon) -> Iterator[Any]:
    """Creates networks and containers for one test and removes them afterwards."""

    class Scope:
        def __init__(self) -> None:
            self.networks: list[str] = []
            self.containers: list[str] = []

        def network(self, *flags: str) -> str:
            name = "n-" + secrets.token_hex(4)
            daemon.cli("network", "create", *flags, name, check=True)
            self.networks.append(name)
            return name

        def run(self, *args: str) -> str:
            name = "c-" + secrets.token_hex(4)
            daemon.cli("run", "-d", "--name", name, *args, check=True)
            self.containers.append(name)
            return name

    scope = Scope()
    yield scope
    if scope.containers:
        daemon.cli("rm", "-f", *scope.containers)
    for network in scope.networks:
        daemon.cli("network", "rm", network)


def test_containers_on_a_network_find_each_other_by_name_alias_and_short_id(
    daemon: Daemon, net: Any
) -> None:
    appnet = net.network("--subnet", daemon.subnet(7))
    db = net.run("--network", appnet, "--network-alias", "database", IMAGE, *ECHO_SERVER)
    info = _inspect(daemon, db)
    address = info["NetworkSettings"]["Networks"][appnet]["IPAddress"]
    assert address.startswith(daemon.subnet(7).rsplit(".", 2)[0])
    for target in (db, "database", info["Id"][:12]):
        assert _talk(daemon, target, network=appnet) == "hi", target
    lookup = daemon.cli(
        "run",
        "--rm",
        "--network",
        appnet,
        IMAGE,
        "sh",
        "-c",
        "cat /etc/resolv.conf; nslookup database",
    ).stdout
    assert "nameserver 127.0.0.11" in lookup and address in lookup
    # Names of other networks' containers and made-up names do not resolve.
    missing = daemon.cli("run", "--rm", "--network", appnet, IMAGE, "nslookup", "no-such-thing")
    assert missing.returncode != 0


def test_containers_on_different_networks_cannot_reach_each_other(daemon: Daemon, net: Any) -> None:
    first, second = net.network(), net.network()
    server = net.run("--network", first, IMAGE, *ECHO_SERVER)
    address = _inspect(daemon, server)["NetworkSettings"]["Networks"][first]["IPAddress"]
    assert _talk(daemon, address, network=first) == "hi"
    assert _talk(daemon, address, network=second) == ""
    assert _talk(daemon, server, network=second) == ""  # nor is its name known there
    assert _talk(daemon, address, network="bridge") == ""


def test_published_port_answers_on_the_hosts_loopback(daemon: Daemon, net: Any) -> None:
    loopback_port, any_port = _free_port(), _free_port()
    web = net.run(
        "-p", f"127.0.0.1:{loopback_port}:80", "-p", f"{any_port}:80", IMAGE, *HTTP_SERVER
    )
    hostname = _inspect(daemon, web)["Config"]["Hostname"]
    assert _http_get(loopback_port).strip() == hostname
    assert _http_get(any_port).strip() == hostname
    ports = daemon.docker("port", web).stdout.splitlines()
    assert f"80/tcp -> 127.0.0.1:{loopback_port}" in ports
    assert f"80/tcp -> 0.0.0.0:{any_port}" in ports
    listed = daemon.docker("ps", "--filter", f"name={web}", "--format", "{{.Ports}}").stdout
    assert f"127.0.0.1:{loopback_port}->80/tcp" in listed
    # Another container on the default bridge reaches it through the host's address too.
    settings = _inspect(daemon, web)["NetworkSettings"]
    assert settings["IPAddress"] and settings["Gateway"]
    via_gateway = daemon.cli(
        "run",
        "--rm",
        IMAGE,
        "wget",
        "-q",
        "-O",
        "-",
        f"http://{settings['Gateway']}:{any_port}/hostname",
    )
    assert via_gateway.stdout.strip() == hostname
    daemon.cli("rm", "-f", web, check=True)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{loopback_port}/hostname", timeout=2)


def test_publish_all_gives_exposed_ports_ephemeral_host_ports(client: Any, name: str) -> None:
    container = client.containers.run(
        IMAGE, HTTP_SERVER, name=name, detach=True, ports={"80/tcp": None}
    )
    try:
        container.reload()
        binding = container.attrs["NetworkSettings"]["Ports"]["80/tcp"][0]
        assert binding["HostIp"] == "0.0.0.0" and int(binding["HostPort"]) >= 1024
        assert _http_get(int(binding["HostPort"])).strip() == container.attrs["Config"]["Hostname"]
        explicit_port = _free_port()
        other = client.containers.run(
            IMAGE, HTTP_SERVER, detach=True, ports={"80/tcp": ("127.0.0.1", explicit_port)}
        )
        try:
            assert _http_get(explicit_port).strip() == other.attrs["Config"]["Hostname"]
        finally:
            other.remove(force=True)
    finally:
        container.remove(force=True)


def test_dash_capital_p_publishes_expose(daemon: Daemon, net: Any) -> None:
    web = net.run("-P", "--expose", "80", "--expose", "81/udp", IMAGE, *HTTP_SERVER)
    lines = daemon.cli("port", web).stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("80/tcp -> 0.0.0.0:")
    port = int(lines[0].rsplit(":", 1)[1])
    assert _http_get(port).strip() == _inspect(daemon, web)["Config"]["Hostname"]


def test_taken_host_port_fails_the_start_and_leaks_nothing(own_daemon: Daemon) -> None:
    d = own_daemon
    links, rules, allocations = d.links(), d.nft_ruleset(), d.allocations()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        result = d.cli(
            "run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:80", IMAGE, "sleep", "60"
        )
        assert result.returncode == 125
        assert "port is already allocated" in result.stderr
        docker = d.docker("run", "--rm", "-p", f"127.0.0.1:{port}:80", IMAGE, "true")
        assert docker.returncode != 0 and "port is already allocated" in docker.stderr
    assert _inspect(d, "web")["State"]["Status"] == "created"
    bridge = json.loads(d.cli("network", "inspect", "bridge").stdout)[0]
    assert bridge["Containers"] == {}
    _settled(d, links)
    assert (d.links(), d.nft_ruleset(), d.allocations()) == (links, rules, allocations)
    assert d.leftovers()["mounts"] == []
    # The same container starts once the port is free, on the port it asked for.
    d.cli("start", "web", check=True)
    assert d.cli("port", "web", "80").stdout.strip() == f"127.0.0.1:{port}"
    d.cli("rm", "-f", "web", check=True)


@contextlib.contextmanager
def outside_host(daemon: Daemon) -> Iterator[str]:
    """A namespace standing for the outside world, behind a veth the test owns.

    It answers "pong" on port 9000 and has no route back to container networks,
    so a reply proves the host masqueraded the container's traffic.
    """
    tag = secrets.token_hex(3)
    host_if, subnet = f"dyo{tag}", f"10.{daemon.net_octet}.250"
    ns_file = Path(tempfile.mkdtemp(prefix="dyo-")) / "ns"
    ns_file.touch()
    server = None
    try:
        subprocess.run(["unshare", f"--net={ns_file}", "true"], check=True)
        subprocess.run(
            [
                "ip",
                "link",
                "add",
                host_if,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                str(ns_file),
            ],
            check=True,
        )
        subprocess.run(["ip", "addr", "add", f"{subnet}.1/24", "dev", host_if], check=True)
        subprocess.run(["ip", "link", "set", host_if, "up"], check=True)
        # Forwarding on the test's own interface only; the host's global switch is untouched.
        Path(f"/proc/sys/net/ipv4/conf/{host_if}/forwarding").write_text("1")
        inside = ["nsenter", f"--net={ns_file}"]
        subprocess.run([*inside, "ip", "addr", "add", f"{subnet}.2/24", "dev", "eth0"], check=True)
        subprocess.run([*inside, "ip", "link", "set", "eth0", "up"], check=True)
        server = subprocess.Popen(
            [*inside, "busybox", "nc", "-ll", "-p", "9000", "-e", "busybox", "echo", "pong"]
        )
        yield f"{subnet}.2"
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["umount", str(ns_file)], capture_output=True)
        ns_file.unlink(missing_ok=True)
        os.rmdir(ns_file.parent)


def test_internal_network_has_no_route_out(daemon: Daemon, net: Any) -> None:
    internal, normal = net.network("--internal"), net.network()
    with outside_host(daemon) as outside:
        probe = f"ip route; nc -w 2 {outside} 9000"
        reached = daemon.cli("run", "--rm", "--network", normal, IMAGE, "sh", "-c", probe).stdout
        assert "default via" in reached and "pong" in reached
        cut_off = daemon.cli("run", "--rm", "--network", internal, IMAGE, "sh", "-c", probe).stdout
        assert "default via" not in cut_off and "pong" not in cut_off
        # Even with a route added by hand (NET_ADMIN), the host drops what leaves the network.
        gateway = json.loads(daemon.cli("network", "inspect", internal).stdout)[0]["IPAM"][
            "Config"
        ][0]["Gateway"]
        forced = daemon.cli(
            "run",
            "--rm",
            "--cap-add",
            "NET_ADMIN",
            "--network",
            internal,
            IMAGE,
            "sh",
            "-c",
            f"ip route add default via {gateway}; nc -w 2 {outside} 9000",
        ).stdout
        assert "pong" not in forced


def test_connect_and_disconnect_change_what_a_running_container_reaches(
    daemon: Daemon, client: Any, net: Any
) -> None:
    backend, frontend = net.network(), net.network()
    db = net.run("--network", backend, "--network-alias", "database", IMAGE, *ECHO_SERVER)
    app = net.run("--network", frontend, IMAGE, "sleep", "300")
    assert _talk(daemon, "database", inside=app) == ""
    network = client.networks.get(backend)
    network.connect(app, aliases=["app-alias"])
    assert _talk(daemon, "database", inside=app) == "hi"
    assert _talk(daemon, db, inside=app) == "hi"
    # The others now find it by its alias on that network too.
    lookup = daemon.cli("exec", db, "nslookup", "app-alias").stdout
    app_ip = _inspect(daemon, app)["NetworkSettings"]["Networks"][backend]["IPAddress"]
    assert app_ip and app_ip in lookup
    network.disconnect(app)
    assert _talk(daemon, "database", inside=app) == ""
    assert backend not in _inspect(daemon, app)["NetworkSettings"]["Networks"]
    # A created (not started) container can be connected too, as compose does.
    created = "c-" + secrets.token_hex(4)
    net.containers.append(created)
    daemon.cli(
        "create",
        "--name",
        created,
        "--network",
        frontend,
        IMAGE,
        "sh",
        "-c",
        "echo hi | nc -w 2 database 5432",
        check=True,
    )
    daemon.docker("network", "connect", backend, created)
    result = daemon.cli("start", "-a", created)
    assert result.stdout.strip() == "hi"
    networks = _inspect(daemon, created)["NetworkSettings"]["Networks"]
    assert set(networks) == {frontend, backend}


def test_host_none_and_container_network_modes(daemon: Daemon, net: Any) -> None:
    # Which namespace a container is in, not which devices the host has: others on this
    # machine add and remove devices at any time.
    host_ns = os.readlink(f"/proc/{daemon.proc.pid}/ns/net") if daemon.proc else ""
    show_ns = "readlink /proc/self/ns/net; ls /sys/class/net"
    none = daemon.cli("run", "--rm", "--network", "none", IMAGE, "sh", "-c", show_ns).stdout
    assert none.split()[0].startswith("net:[") and none.split()[0] != host_ns
    assert none.split()[1:] == ["lo"]
    inside = daemon.cli("run", "--rm", "--network", "host", IMAGE, "sh", "-c", show_ns).stdout
    assert inside.split()[0] == host_ns and "lo" in inside.split()[1:]
    db = net.run(IMAGE, *ECHO_SERVER)
    ip = _inspect(daemon, db)["NetworkSettings"]["IPAddress"]
    shared = daemon.cli(
        "run",
        "--rm",
        "--network",
        f"container:{db}",
        IMAGE,
        "sh",
        "-c",
        "ip -4 addr show eth0; echo hi | nc -w 2 127.0.0.1 5432",
    ).stdout
    assert ip in shared and "hi" in shared
    settings = json.loads(daemon.cli("network", "inspect", "host").stdout)[0]
    assert settings["Driver"] == "host"


def test_static_ip_is_given_once(daemon: Daemon, net: Any) -> None:
    subnet = daemon.subnet(9)
    network = net.network("--subnet", subnet, "--ip-range", subnet.replace(".0/24", ".128/25"))
    first = net.run("--network", network, IMAGE, "sleep", "300")
    assert (
        _inspect(daemon, first)["NetworkSettings"]["Networks"][network]["IPAddress"].rsplit(".", 1)[
            1
        ]
        == "128"
    )
    wanted = subnet.replace(".0/24", ".20")
    fixed = net.run("--network", network, "--ip", wanted, IMAGE, "sleep", "300")
    settings = _inspect(daemon, fixed)["NetworkSettings"]["Networks"][network]
    assert settings["IPAddress"] == wanted
    assert settings["IPAMConfig"] == {"IPv4Address": wanted}
    second = daemon.cli("run", "--rm", "--network", network, "--ip", wanted, IMAGE, "true")
    assert second.returncode != 0 and "Address already in use" in second.stderr


def test_network_objects_have_dockers_shapes(client: Any, daemon: Daemon) -> None:
    import docker.types

    names = {n.name for n in client.networks.list()}
    assert {"bridge", "host", "none"} <= names
    pool = docker.types.IPAMPool(
        subnet=daemon.subnet(11),
        gateway=daemon.subnet(11).replace(".0/24", ".254"),
        aux_addresses={"router": daemon.subnet(11).replace(".0/24", ".253")},
    )
    network = client.networks.create(
        "shapes-" + secrets.token_hex(3),
        driver="bridge",
        options={"com.example.x": "1"},
        labels={"a": "b"},
        ipam=docker.types.IPAMConfig(pool_configs=[pool]),
    )
    try:
        attrs = client.networks.get(network.id).attrs
        assert attrs["Options"] == {"com.example.x": "1"} and attrs["Labels"] == {"a": "b"}
        assert attrs["IPAM"]["Config"] == [
            {
                "Subnet": daemon.subnet(11),
                "Gateway": daemon.subnet(11).replace(".0/24", ".254"),
                "AuxiliaryAddresses": {"router": daemon.subnet(11).replace(".0/24", ".253")},
            }
        ]
        assert attrs["Driver"] == "bridge" and attrs["Scope"] == "local"
        assert len(attrs["Id"]) == 64 and attrs["Internal"] is False
        container = client.containers.run(IMAGE, "sleep 300", detach=True, network=network.name)
        try:
            attrs = client.networks.get(network.id).attrs
            endpoint = attrs["Containers"][container.id]
            assert endpoint["IPv4Address"].endswith("/24")
            assert endpoint["IPv4Address"].split(".")[3].split("/")[0] not in ("253", "254")
            filtered = client.networks.list(filters={"label": "a=b"})
            assert [n.id for n in filtered] == [network.id]
        finally:
            container.remove(force=True)
    finally:
        network.remove()
    client.networks.create("prune-me-" + secrets.token_hex(3))
    deleted = client.networks.prune()["NetworksDeleted"]
    assert any(n.startswith("prune-me-") for n in deleted)
    assert {"bridge", "host", "none"} <= {n.name for n in client.networks.list()}


def test_bad_network_input_gets_dockers_errors(daemon: Daemon, net: Any) -> None:
    taken = net.network("--subnet", daemon.subnet(13))
    status, body = daemon.api(
        "POST",
        "/v1.45/networks/create",
        {
            "Name": "overlap",
            "IPAM": {"Config": [{"Subnet": daemon.subnet(13).replace(".0/24", ".128/25")}]},
        },
    )
    assert status == 403 and "Pool overlaps with other one on this address space" in body["message"]
    status, body = daemon.api("POST", "/v1.45/networks/create", {"Name": taken})
    assert status == 409 and "already exists" in body["message"]
    status, body = daemon.api(
        "POST",
        "/v1.45/networks/create",
        {"Name": "bad", "IPAM": {"Config": [{"Subnet": "10.1.2.0/33"}]}},
    )
    assert status == 400 and "invalid CIDR address: 10.1.2.0/33" in body["message"]
    status, body = daemon.api(
        "POST",
        "/v1.45/networks/create",
        {"Name": "bad", "IPAM": {"Config": [{"Subnet": "10.1.2.0/24", "Gateway": "10.9.9.9"}]}},
    )
    assert status == 400 and "gateway" in body["message"]
    status, body = daemon.api("GET", "/v1.45/networks/nope")
    assert status == 404 and body["message"] == "network nope not found"
    result = daemon.docker("run", "--rm", "--network", "nope", IMAGE, "true")
    assert result.returncode == 125 and "network nope not found" in result.stderr
    status, body = daemon.api("DELETE", "/v1.45/networks/bridge")
    assert status == 403 and "pre-defined network and cannot be removed" in body["message"]
    user = net.run("--network", taken, IMAGE, "sleep", "300")
    removal = daemon.docker("network", "rm", taken)
    assert removal.returncode != 0 and "has active endpoints" in removal.stderr
    status, body = daemon.api("DELETE", f"/v1.45/networks/{taken}")
    assert status == 409 and user in body["message"]
    result = daemon.cli("run", "--rm", "--network-alias", "x", IMAGE, "true")
    assert result.returncode == 125 and "user defined networks" in result.stderr
    result = daemon.cli("run", "--rm", "--network", taken, "--ip", "10.0.0.5", IMAGE, "true")
    assert result.returncode == 125 and "10.0.0.5" in result.stderr
    connect_twice = daemon.docker("network", "connect", taken, user)
    assert connect_twice.returncode != 0 and "already exists in network" in connect_twice.stderr


def test_kill9_keeps_traffic_flowing_and_restart_leaks_nothing(own_daemon: Daemon) -> None:
    d = own_daemon
    baseline_links, baseline_allocations = d.links(), d.allocations()
    port = _free_port()
    d.cli("network", "create", "--subnet", d.subnet(21), "appnet", check=True)
    d.cli(
        "run",
        "-d",
        "--name",
        "db",
        "--network",
        "appnet",
        "--network-alias",
        "database",
        IMAGE,
        *ECHO_SERVER,
        check=True,
    )
    d.cli(
        "run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:80", IMAGE, *HTTP_SERVER, check=True
    )
    d.cli("run", "-d", "--name", "app", "--network", "appnet", IMAGE, "sleep", "600", check=True)
    d.cli("network", "connect", "bridge", "app", check=True)
    before = {name: _inspect(d, name)["NetworkSettings"] for name in ("db", "web", "app")}
    links, rules, allocations = d.links(), d.nft_ruleset(), d.allocations()
    hostname = _inspect(d, "web")["Config"]["Hostname"]
    assert _http_get(port).strip() == hostname

    d.kill9()
    assert _http_get(port).strip() == hostname  # the kernel keeps forwarding without the daemon
    d.start()
    assert _http_get(port).strip() == hostname
    assert _talk(d, "database", inside="app") == "hi"  # the DNS server serves the sandbox again
    for name in ("db", "web", "app"):
        after = _inspect(d, name)["NetworkSettings"]
        assert (
            after["Networks"] == before[name]["Networks"]
            and after["Ports"] == before[name]["Ports"]
        )
    assert (d.links(), d.nft_ruleset(), d.allocations()) == (links, rules, allocations)

    # A container that dies while the daemon is down gives everything back at restart.
    app = _inspect(d, "app")
    d.kill9()
    os.kill(app["State"]["Pid"], signal.SIGKILL)
    time.sleep(0.5)
    d.start()
    deadline = time.monotonic() + 20
    while _inspect(d, "app")["State"]["Status"] != "exited" and time.monotonic() < deadline:
        time.sleep(0.1)  # its monitor may still be recording the exit
    assert _inspect(d, "app")["State"]["Status"] == "exited"
    app_addresses = {n["IPAddress"] for n in app["NetworkSettings"]["Networks"].values()}
    assert {a for _, a in d.allocations()} == {a for _, a in allocations} - app_addresses
    appnet = json.loads(d.cli("network", "inspect", "appnet").stdout)[0]
    assert [c["Name"] for c in appnet["Containers"].values()] == ["db"]
    assert _talk(d, "database", network="appnet") == "hi"
    d.cli("rm", "-f", "db", "web", "app", check=True)
    d.cli("network", "rm", "appnet", check=True)
    _settled(d, baseline_links)
    assert d.links() == baseline_links
    assert d.allocations() == baseline_allocations
    assert "elements" not in d.nft_ruleset()
    assert d.leftovers()["mounts"] == []
    assert not list((d.exec_root / "netns").iterdir())


@contextlib.contextmanager
def upstream_dns(address: str, name: str, answer: str) -> Iterator[list[str]]:
    """A DNS server on the host's loopback that knows one name; yields the names asked."""
    import threading

    from dnslib import RR, A, DNSRecord

    asked: list[str] = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 53))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = DNSRecord.parse(data)
            qname = str(query.q.qname).rstrip(".")
            asked.append(qname)
            reply = query.reply()
            if qname == name and query.q.qtype == 1:
                reply.add_answer(RR(query.q.qname, 1, rdata=A(answer), ttl=60))
            sock.sendto(reply.pack(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield asked
    finally:
        stop.set()
        thread.join()
        sock.close()


def test_unknown_names_are_forwarded_to_the_containers_dns_servers(
    daemon: Daemon, net: Any
) -> None:
    appnet = net.network()
    server = f"127.0.0.{secrets.randbelow(200) + 20}"
    with upstream_dns(server, "outside.example", "192.0.2.77") as asked:
        result = daemon.cli(
            "run",
            "--rm",
            "--network",
            appnet,
            "--dns",
            server,
            "--add-host",
            "gw:host-gateway",
            "--hostname",
            "inside",
            IMAGE,
            "sh",
            "-c",
            "nslookup outside.example; cat /etc/resolv.conf /etc/hosts; hostname",
        )
    # The container asked 127.0.0.11; the daemon forwarded from the host to --dns (a loopback
    # address of the host, which the container itself could never reach).
    assert "192.0.2.77" in result.stdout, result.stdout + result.stderr
    assert "outside.example" in asked
    assert "nameserver 127.0.0.11" in result.stdout and server not in result.stdout
    bridge = json.loads(daemon.cli("network", "inspect", "bridge").stdout)[0]
    gateway = bridge["IPAM"]["Config"][0]["Gateway"]
    assert f"{gateway}\tgw" in result.stdout
    assert result.stdout.strip().endswith("inside")


def test_many_containers_leave_no_device_rule_or_address_behind(daemon: Daemon, net: Any) -> None:
    appnet = net.network()
    links, rules, allocations = daemon.links(), daemon.nft_ruleset(), daemon.allocations()
    sandboxes = set((daemon.exec_root / "netns").iterdir())  # other tests' running containers
    for network in ("bridge", appnet, "bridge", appnet, "none"):
        for _ in range(3):
            port = _free_port()
            result = daemon.cli(
                "run",
                "--rm",
                "--network",
                network,
                *(["-p", f"127.0.0.1:{port}:80"] if network != "none" else []),
                IMAGE,
                "true",
            )
            assert result.returncode == 0, result.stderr
    _settled(daemon, links)
    assert daemon.links() == links
    assert daemon.nft_ruleset() == rules
    assert daemon.allocations() == allocations
    assert set((daemon.exec_root / "netns").iterdir()) == sandboxes


def test_daemon_start_removes_what_no_record_owns(own_daemon: Daemon) -> None:
    """Leftovers of a crash half way (devices, a sandbox, an address) are cleaned at start."""
    import sqlite3

    d = own_daemon
    links, allocations = d.links(), d.allocations()
    stray_veth, stray_bridge = f"{d.veth_prefix}0bad", f"{d.bridge_prefix}0bad"
    subprocess.run(
        [
            "ip",
            "link",
            "add",
            stray_veth,
            "type",
            "veth",
            "peer",
            "name",
            f"dyx{secrets.token_hex(3)}",
        ],
        check=True,
    )
    subprocess.run(["ip", "link", "add", stray_bridge, "type", "bridge"], check=True)
    sandbox = d.exec_root / "netns" / secrets.token_hex(32)
    sandbox.touch()
    subprocess.run(["unshare", f"--net={sandbox}", "true"], check=True)
    pool = allocations[0][0]
    stray_address = f"10.{d.net_octet}.0.200"
    with sqlite3.connect(d.data_root / "dockyard.db") as conn:
        conn.execute("INSERT INTO ipam_addresses VALUES (?, ?)", (pool, stray_address))
    d.kill9()
    d.start()
    assert d.links() == links
    assert d.allocations() == allocations
    assert not sandbox.exists() and d.leftovers()["mounts"] == []


def test_docker_py_create_with_networking_config_and_published_port(
    client: Any, daemon: Daemon, net: Any
) -> None:
    """The low-level calls compose makes: create with EndpointsConfig aliases, then start."""
    network = net.network()
    api = client.api
    port = _free_port()
    created = api.create_container(
        IMAGE,
        ECHO_SERVER,
        name="c-" + secrets.token_hex(4),
        ports=[5432],
        host_config=api.create_host_config(port_bindings={5432: port}, network_mode=network),
        networking_config=api.create_networking_config(
            {network: api.create_endpoint_config(aliases=["store"])}
        ),
    )
    net.containers.append(created["Id"])
    api.start(created["Id"])
    attrs = api.inspect_container(created["Id"])
    assert attrs["NetworkSettings"]["Networks"][network]["Aliases"] == ["store"]
    assert attrs["NetworkSettings"]["Ports"]["5432/tcp"] == [
        {"HostIp": "0.0.0.0", "HostPort": str(port)}
    ]
    assert _talk(daemon, "store", network=network) == "hi"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"ping\n")
        assert s.recv(16) == b"ping\n"
    listed = api.containers(filters={"network": network})
    assert [c["Id"] for c in listed] == [created["Id"]]
    assert listed[0]["Ports"] == [
        {"IP": "0.0.0.0", "PrivatePort": 5432, "PublicPort": port, "Type": "tcp"}
    ]


def test_failed_network_create_leaves_nothing(daemon: Daemon) -> None:
    links, allocations = daemon.links(), daemon.allocations()
    status, body = daemon.api(
        "POST",
        "/v1.45/networks/create",
        {"Name": "too-big-mtu", "Options": {"com.docker.network.driver.mtu": "999999"}},
    )
    assert status == 500 and "cannot set up bridge" in body["message"]
    assert daemon.api("GET", "/v1.45/networks/too-big-mtu")[0] == 404
    assert (daemon.links(), daemon.allocations()) == (links, allocations)


def test_mac_address_and_link_local_ips_are_set_and_shown(
    daemon: Daemon, client: Any, net: Any
) -> None:
    appnet = net.network("--subnet", daemon.subnet(17))
    mac = "92:d0:c6:0a:29:33"
    box = "c-" + secrets.token_hex(4)
    net.containers.append(box)
    started = daemon.docker(
        *("run", "-d", "--name", box, "--network", appnet, "--mac-address", mac),
        *("--link-local-ip", "169.254.7.7", "--link-local-ip", "fe80::254:77"),
        *(IMAGE, "sleep", "300"),
    )
    assert started.returncode == 0, started.stderr
    shown = daemon.docker("exec", box, "ip", "addr", "show", "eth0").stdout
    assert f"link/ether {mac}" in shown
    assert "inet 169.254.7.7/16" in shown and "inet6 fe80::254:77/64" in shown
    settings = _inspect(daemon, box)["NetworkSettings"]["Networks"][appnet]
    assert settings["MacAddress"] == mac
    assert settings["IPAMConfig"] == {"LinkLocalIPs": ["169.254.7.7", "fe80::254:77"]}
    peer = net.run("--network", appnet, IMAGE, "sleep", "300")
    ping = daemon.cli("exec", peer, "ping", "-c", "1", "-W", "3", "169.254.7.7")
    assert ping.returncode != 0  # the peer has no link-local address of its own yet
    # Its own link-local address comes with a new connection.
    daemon.docker("network", "disconnect", appnet, peer)
    connected = daemon.docker("network", "connect", "--link-local-ip", "169.254.7.8", appnet, peer)
    assert connected.returncode == 0, connected.stderr
    assert daemon.cli("exec", peer, "ping", "-c", "1", "-W", "3", "169.254.7.7").returncode == 0
    # docker-py: the container-wide MAC moves to the main network's endpoint (API >= 1.44).
    output = client.containers.run(
        IMAGE, "cat /sys/class/net/eth0/address", mac_address="02:42:ac:11:00:0a", remove=True
    )
    assert output.decode().strip() == "02:42:ac:11:00:0a"
    status, body = daemon.api(
        "POST",
        "/v1.45/containers/create",
        {"Image": IMAGE, "Cmd": ["true"], "MacAddress": "zz:11"},
    )
    assert (status, body["message"]) == (
        400,
        "invalid config for network default: invalid MAC address zz:11",
    )
    status, body = daemon.api(
        "POST",
        f"/v1.45/networks/{net.network()}/connect",
        {"Container": peer, "EndpointConfig": {"MacAddress": "02:42"}},
    )
    assert (status, body["message"]) == (400, "invalid MAC address 02:42")


def test_network_events_carry_dockers_attributes(daemon: Daemon, client: Any, net: Any) -> None:
    since = time.time() - 1
    name = net.network()
    box = net.run("--network", name, IMAGE, "sleep", "300")
    box_id = _inspect(daemon, box)["Id"]
    network_id = json.loads(daemon.cli("network", "inspect", name).stdout)[0]["Id"]
    daemon.cli("network", "disconnect", name, box, check=True)
    daemon.cli("network", "connect", name, box, check=True)
    daemon.cli("rm", "-f", box, check=True)
    daemon.cli("network", "rm", name, check=True)
    net.networks.remove(name)
    events = list(
        client.events(since=since, until=time.time() + 1, filters={"type": "network"}, decode=True)
    )
    mine = [
        (e["Action"], e["Actor"]["Attributes"]) for e in events if e["Actor"]["ID"] == network_id
    ]
    assert [action for action, _ in mine] == [
        "create",
        "connect",  # at start
        "disconnect",
        "connect",
        "disconnect",  # at removal
        "destroy",
    ]
    for action, attributes in mine:
        assert attributes["name"] == name and attributes["type"] == "bridge"
        if action in ("connect", "disconnect"):
            assert attributes["container"] == box_id
