"""Legacy links: `--link`, `HostConfig.Links`, `EndpointSettings.Links`, `rm --link`.

On the default bridge a link is an /etc/hosts line and environment variables
in the linking container; on a user-defined network it is a DNS alias only the
linking container resolves. Driven by the docker CLI 28, docker-py and our CLI
against a real daemon.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness import Daemon

IMAGE = "demo/busybox:1"


@pytest.fixture
def names(daemon: Daemon) -> Iterator[Any]:
    """Unique container and network names for one test; whatever they name is removed."""

    class Names:
        def __init__(self) -> None:
            self.containers: list[str] = []
            self.networks: list[str] = []

        def container(self) -> str:
            self.containers.append("l-" + secrets.token_hex(3))
            return self.containers[-1]

        def network(self) -> str:
            self.networks.append("ln-" + secrets.token_hex(3))
            assert daemon.docker("network", "create", self.networks[-1]).returncode == 0
            return self.networks[-1]

    n = Names()
    yield n
    daemon.docker("rm", "-f", *n.containers)
    for network in n.networks:
        daemon.docker("network", "rm", network)


def _docker(daemon: Daemon, *args: str) -> str:
    result = daemon.docker(*args)
    assert result.returncode == 0, (args, result.stderr)
    return result.stdout


def _inspect(daemon: Daemon, name: str) -> dict[str, Any]:
    return dict(json.loads(_docker(daemon, "inspect", name))[0])


def test_a_link_on_the_default_bridge_gives_hosts_entry_and_variables(
    daemon: Daemon, names: Any
) -> None:
    db, web = names.container(), names.container()
    _docker(
        daemon,
        *("run", "-d", "--name", db, "-e", "SECRET=s3", "--expose", "5432"),
        *("--expose", "7000-7001/udp", IMAGE, "sleep", "300"),
    )
    db_info = _inspect(daemon, db)
    db_ip = db_info["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
    output = _docker(
        daemon,
        *("run", "--name", web, "--link", f"{db}:data-base", IMAGE),
        *("sh", "-c", "env; echo @@; cat /etc/hosts; echo @@; ping -c 1 -W 3 data-base"),
    )
    env, hosts, ping = output.split("@@\n")
    variables = dict(line.split("=", 1) for line in env.splitlines() if "=" in line)
    assert variables["DATA_BASE_NAME"] == f"/{web}/data-base"
    assert variables["DATA_BASE_PORT"] == f"tcp://{db_ip}:5432"  # TCP first
    assert variables["DATA_BASE_PORT_5432_TCP"] == f"tcp://{db_ip}:5432"
    assert variables["DATA_BASE_PORT_5432_TCP_ADDR"] == db_ip
    assert variables["DATA_BASE_PORT_5432_TCP_PORT"] == "5432"
    assert variables["DATA_BASE_PORT_5432_TCP_PROTO"] == "tcp"
    assert variables["DATA_BASE_PORT_7000_UDP_START"] == f"udp://{db_ip}:7000"
    assert variables["DATA_BASE_PORT_7000_UDP_PORT_END"] == "7001"
    assert variables["DATA_BASE_ENV_SECRET"] == "s3"
    assert "DATA_BASE_ENV_PATH" not in variables
    assert f"{db_ip}\tdata-base {db_info['Config']['Hostname']} {db}" in hosts.splitlines()
    assert "1 packets received" in ping
    web_info = _inspect(daemon, web)
    assert web_info["HostConfig"]["Links"] == [f"/{db}:/{web}/data-base"]
    # docker ps lists the link's name beside the linked container's own.
    shown = _docker(
        daemon,
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        f"id={db_info['Id']}",
        "--format",
        "{{.Names}}",
    )
    assert shown.strip() == f"{db},{web}/data-base"


def test_docker_py_links_and_remove_link(client: Any, daemon: Daemon, names: Any) -> None:
    first, second = names.container(), names.container()
    for name in (first, second):
        client.containers.run(IMAGE, "sleep 300", name=name, detach=True, environment={"FOO": "1"})
    parent = names.container()
    output = client.containers.run(
        IMAGE, "env", name=parent, links={first: "mylink1", second: "mylink2"}
    ).decode()
    assert "MYLINK1_NAME=" in output and "MYLINK1_ENV_FOO=1" in output
    assert "MYLINK2_NAME=" in output and "MYLINK2_ENV_FOO=1" in output
    api = client.api
    api.remove_container(f"{parent}/mylink1", link=True)
    links = api.inspect_container(parent)["HostConfig"]["Links"]
    assert links == [f"/{second}:/{parent}/mylink2"]
    listed = [n for c in api.containers(all=True) for n in c["Names"]]
    assert f"/{parent}/mylink1" not in listed and f"/{parent}/mylink2" in listed
    assert {f"/{first}", f"/{second}", f"/{parent}"} <= set(listed)  # containers stay


def test_removing_a_link_of_a_running_container_takes_its_hosts_line(
    daemon: Daemon, names: Any
) -> None:
    db, web = names.container(), names.container()
    _docker(daemon, "run", "-d", "--name", db, IMAGE, "sleep", "300")
    _docker(daemon, "run", "-d", "--name", web, "--link", f"{db}:dbx", IMAGE, "sleep", "300")
    assert "dbx" in _docker(daemon, "exec", web, "cat", "/etc/hosts")
    assert _docker(daemon, "rm", "--link", f"/{web}/dbx").strip() == f"/{web}/dbx"
    assert "dbx" not in _docker(daemon, "exec", web, "cat", "/etc/hosts")
    assert _inspect(daemon, web)["HostConfig"]["Links"] is None
    result = daemon.docker("rm", "--link", f"/{web}/dbx")
    assert result.returncode != 0 and f"No such container: {web}/dbx" in result.stderr
    result = daemon.docker("rm", "--link", db)
    assert result.returncode != 0
    assert "Conflict, cannot remove the default link name of the container" in result.stderr


def test_links_follow_renames_restarts_and_removal(daemon: Daemon, names: Any) -> None:
    db, web, renamed = names.container(), names.container(), names.container()
    _docker(daemon, "run", "-d", "--name", db, IMAGE, "sleep", "300")
    _docker(daemon, "run", "-d", "--name", web, "--link", db, IMAGE, "sleep", "300")
    _docker(daemon, "rename", db, renamed)
    assert _inspect(daemon, web)["HostConfig"]["Links"] == [f"/{renamed}:/{web}/{db}"]
    old_ip = _inspect(daemon, renamed)["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
    _docker(daemon, "restart", "-t", "0", renamed)
    new_ip = _inspect(daemon, renamed)["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
    hosts = _docker(daemon, "exec", web, "cat", "/etc/hosts")
    assert f"{new_ip}\t{db} " in hosts  # the parent sees the child's new address
    if new_ip != old_ip:
        assert f"{old_ip}\t" not in hosts
    _docker(daemon, "rm", "-f", renamed)
    assert _inspect(daemon, web)["HostConfig"]["Links"] is None


def test_bad_links_get_dockers_errors(daemon: Daemon, names: Any) -> None:
    stopped, on_net, host = names.container(), names.container(), names.container()
    net = names.network()
    result = daemon.docker("run", "--rm", "--link", "no-such-box:x", IMAGE, "true")
    assert result.returncode == 125
    assert "could not get container for no-such-box: No such container: no-such-box" in (
        result.stderr
    )
    _docker(daemon, "create", "--name", stopped, IMAGE, "true")
    result = daemon.docker("run", "--rm", "--link", f"{stopped}:x", IMAGE, "true")
    assert result.returncode == 125
    assert f"Cannot link to a non running container: /{stopped} AS /" in result.stderr
    _docker(daemon, "run", "-d", "--name", on_net, "--network", net, IMAGE, "sleep", "300")
    result = daemon.docker("run", "--rm", "--link", f"{on_net}:x", IMAGE, "true")
    assert result.returncode == 125
    assert f"Cannot link to /{on_net}, as it does not belong to the default network" in (
        result.stderr
    )
    _docker(daemon, "create", "--name", host, "--network", "host", IMAGE, "true")
    for args in (("--link", f"{host}:x"), ("--network", "host", "--link", f"{on_net}:x")):
        result = daemon.docker("create", *args, IMAGE, "true")
        assert result.returncode != 0
        assert "host type networking can't be used with links" in result.stderr


def test_links_on_a_user_defined_network_are_dns_aliases(daemon: Daemon, names: Any) -> None:
    foo1, foo2 = names.network(), names.network()
    first, second = names.container(), names.container()
    _docker(daemon, "run", "-d", "--name", first, "--network", foo1, IMAGE, "sleep", "300")
    # A link to a container that does not exist is fine there, as in Docker.
    _docker(
        daemon,
        *("run", "-d", "--name", second, "--network", foo1),
        *("--link", f"{first}:FirstInFoo1", "--link", "third:bar", IMAGE, "sleep", "300"),
    )

    def reaches(name: str) -> bool:
        return daemon.docker("exec", second, "ping", "-c", "1", "-W", "3", name).returncode == 0

    assert reaches(first) and reaches("FirstInFoo1") and reaches("firstinfoo1")
    settings = _inspect(daemon, second)["NetworkSettings"]["Networks"][foo1]
    assert settings["Links"] == [f"{first}:FirstInFoo1", "third:bar"]
    assert _inspect(daemon, second)["HostConfig"]["Links"] is None  # as Docker shows it
    # The alias is the linking container's own: others do not resolve it.
    other = daemon.docker(
        "run", "--rm", "--network", foo1, IMAGE, "ping", "-c", "1", "-W", "2", "FirstInFoo1"
    )
    assert other.returncode != 0
    _docker(daemon, "network", "connect", foo2, first)
    _docker(daemon, "network", "connect", "--link", f"{first}:FirstInFoo2", foo2, second)
    assert reaches("FirstInFoo2")
    _docker(daemon, "network", "disconnect", foo1, first)
    assert not reaches("FirstInFoo1") and reaches("FirstInFoo2")


def test_our_cli_link_flags(daemon: Daemon, names: Any) -> None:
    db, web = names.container(), names.container()
    daemon.cli("run", "-d", "--name", db, IMAGE, "sleep", "300", check=True)
    output = daemon.cli(
        "run",
        "--name",
        web,
        "--link",
        f"{db}:store",
        IMAGE,
        "sh",
        "-c",
        "echo $STORE_NAME",
        check=True,
    ).stdout
    assert output.strip() == f"/{web}/store"
    daemon.cli("rm", "--link", f"/{web}/store", check=True)
    assert _inspect(daemon, web)["HostConfig"]["Links"] is None
