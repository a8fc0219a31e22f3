"""The NetworkDriver conformance suite, run against every built-in driver and
against plugins through the remote adapter.

What the manager relies on from any driver: capabilities with a valid scope,
create/delete of networks and endpoints in the protocol's order, an interface
from Join (made in the sandbox, or on the host for the engine to move), the
gateway it was given, and tolerance of leave/delete for endpoints it does not
know (a daemon that crashed half way). Built-in drivers also replay
create_network and join idempotently (daemon start-up) and the bridge publishes
ports; plugins keep their own state across daemon restarts and are not replayed.
The plugins: the SDK example `plugins/net_bridge.py` in its own process, and a
veth plugin written without the SDK (`tests/bare_network.py`). Runs on real
devices with names and a table private to the test.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import secrets
import subprocess
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dockyard.network import netns
from dockyard.network.driver import (
    GENERIC,
    PORT_MAP,
    TCP,
    EndpointInterface,
    IPAMData,
    NetworkDriver,
    PortBinding,
)
from dockyard.network.drivers.bridge import BridgeDriver
from dockyard.network.drivers.host import NoInterfaceDriver
from dockyard.network.drivers.remote import RemoteNetworkDriver
from dockyard.network.firewall import Firewall
from dockyard.plugins.client import PluginClient
from dockyard.plugins.discovery import Endpoint
from dockyard.plugins.legacy import Plugin
from tests.bare_network import VethNetwork, links_with
from tests.bare_plugin import BarePlugin
from tests.harness import free_octet
from tests.plugin_env import EXAMPLES, PluginProcess


@dataclass
class Subject:
    make: Callable[[], Awaitable[NetworkDriver]]
    owned: Callable[[str, str], tuple[str, ...]]  # link name prefixes, by network/endpoint ID
    replayed: bool = True  # a built-in driver, replayed at daemon start-up
    publishes: bool = False  # publishes ports

    async def close(self, driver: NetworkDriver) -> None:
        if isinstance(driver, RemoteNetworkDriver):
            await driver.plugin.client.close()


def _remote(name: str, socket: str) -> Callable[[], Awaitable[NetworkDriver]]:
    async def make() -> NetworkDriver:
        client = PluginClient(name, Endpoint("unix", socket), retry_window=0)
        return await RemoteNetworkDriver.activate(Plugin(name, client, ("NetworkDriver",)))

    return make


def _delete_links(prefix: str) -> None:
    for name in links_with(prefix):
        subprocess.run(["ip", "link", "del", name], capture_output=True)


@pytest.fixture(params=["bridge", "host", "null", "sdk-plugin", "bare-plugin"])
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Subject]:
    tag = secrets.token_hex(2)
    if request.param in ("host", "null"):
        driver = NoInterfaceDriver(request.param)

        async def builtin() -> NetworkDriver:
            return driver

        yield Subject(builtin, lambda n, e: (f"dc{tag}",))
        return
    if request.param == "sdk-plugin":
        socket = str(tmp_path / "vbridge.sock")
        with PluginProcess(f"{EXAMPLES}/net_bridge.py:BridgeNetwork", socket):
            yield Subject(
                _remote("vbridge", socket),
                lambda n, e: ("vbr" + n[:10], "vbh" + e[:10], "vbc" + e[:10]),
                replayed=False,
            )
        return
    if request.param == "bare-plugin":
        veth = VethNetwork(f"dc{tag}")
        socket = str(tmp_path / "veth.sock")
        with BarePlugin(["NetworkDriver"], veth.replies()).serve_unix(socket):
            yield Subject(_remote("veth", socket), lambda n, e: (f"dc{tag}",), replayed=False)
        _delete_links(f"dc{tag}")
        return
    table = f"dockyard_conf_{tag}"
    bridge = BridgeDriver(Firewall(table), f"dc{tag}n", f"dc{tag}v", 1500)
    asyncio.run(bridge.resume())

    async def same() -> NetworkDriver:
        return bridge

    yield Subject(same, lambda n, e: (f"dc{tag}n",), publishes=True)
    subprocess.run(["nft", "delete", "table", "ip", table], capture_output=True)
    _delete_links(f"dc{tag}")


def test_driver_follows_the_protocol(subject: Subject) -> None:
    asyncio.run(_lifecycle(subject))


async def _lifecycle(subject: Subject) -> None:
    driver = await subject.make()
    try:
        await _drive(driver, subject)
    finally:
        await subject.close(driver)


async def _drive(driver: NetworkDriver, subject: Subject) -> None:
    capabilities = await driver.get_capabilities()
    assert capabilities.scope in ("local", "global")
    subnet = ipaddress.ip_network(f"10.{free_octet()}.0.0/24")
    network_id, endpoint_id = secrets.token_hex(32), secrets.token_hex(32)
    data = [IPAMData("LocalDefault", str(subnet), f"{subnet[1]}/24")]
    options = {GENERIC: {}}
    await driver.create_network(network_id, options, data, [])
    if subject.replayed:
        await driver.create_network(network_id, options, data, [])  # replayed at start-up
    address = f"{subnet[2]}/24"
    reply = await driver.create_endpoint(network_id, endpoint_id, EndpointInterface(address), {})
    assert reply is None or reply.address in ("", address)  # never changes what it was given
    sandbox_dir = Path(tempfile.mkdtemp(prefix="dyc-"))
    sandbox = str(sandbox_dir / "ns")
    try:
        (await netns.create(sandbox)).close()
        joined = await driver.join(network_id, endpoint_id, sandbox, {})
        if subject.replayed:
            again = await driver.join(network_id, endpoint_id, sandbox, {})  # replay finds it
            assert again.src_name == joined.src_name
        if joined.src_name:
            assert joined.gateway == str(subnet[1])
            async with await netns.netlink(sandbox) as inside:
                in_sandbox = bool(await inside.link_lookup(ifname=joined.src_name))
            # in the sandbox already, or on the host for the engine to move in
            assert in_sandbox or joined.src_name in links_with(joined.src_name)
            port = PortBinding(TCP, 80, "", "127.0.0.1", 0, 0)
            await driver.program_external_connectivity(
                network_id, endpoint_id, {PORT_MAP: [port.to_wire()]}
            )
            if subject.publishes:
                info = await driver.endpoint_oper_info(network_id, endpoint_id)
                published = [PortBinding.from_wire(b) for b in info[PORT_MAP]]
                assert [(b.port, b.host_ip) for b in published] == [(80, "127.0.0.1")]
                assert published[0].host_port > 0 and published[0].ip == str(subnet[2])
            await driver.revoke_external_connectivity(network_id, endpoint_id)
            info = await driver.endpoint_oper_info(network_id, endpoint_id)
            assert not info.get(PORT_MAP)
        await driver.leave(network_id, endpoint_id)
    finally:
        netns.destroy(sandbox)
        os.rmdir(sandbox_dir)
    await driver.delete_endpoint(network_id, endpoint_id)
    # What a crashed daemon may ask about endpoints the driver never saw.
    await driver.revoke_external_connectivity(network_id, secrets.token_hex(32))
    await driver.leave(network_id, secrets.token_hex(32))
    await driver.delete_endpoint(network_id, secrets.token_hex(32))
    await driver.delete_network(network_id)
    await driver.delete_network(network_id)
    for prefix in subject.owned(network_id, endpoint_id):
        assert links_with(prefix) == [], prefix
