"""The NetworkDriver conformance suite, run against every built-in driver.

What the manager relies on from any driver (a remote plugin adapter will run
the same suite): capabilities with a valid scope, create/delete of networks
and endpoints in the protocol's order, idempotent replays of create_network
and join (daemon start-up), and tolerance of leave/delete for endpoints it
does not know (a daemon that crashed half way). Runs in-process on real
devices with names and a table private to the test.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import secrets
import subprocess
import tempfile
from collections.abc import Iterator
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
from dockyard.network.firewall import Firewall
from tests.harness import free_octet


@pytest.fixture(params=["bridge", "host", "null"])
def driver(request: pytest.FixtureRequest) -> Iterator[tuple[NetworkDriver, str]]:
    tag = secrets.token_hex(2)
    if request.param != "bridge":
        yield NoInterfaceDriver(request.param), tag
        return
    table = f"dockyard_conf_{tag}"
    bridge = BridgeDriver(Firewall(table), f"dc{tag}n", f"dc{tag}v", 1500)
    asyncio.run(bridge.resume())
    yield bridge, tag
    subprocess.run(["nft", "delete", "table", "ip", table], capture_output=True)
    for line in subprocess.run(
        ["ip", "-o", "link"], capture_output=True, text=True
    ).stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(f"dc{tag}"):
            subprocess.run(["ip", "link", "del", name], capture_output=True)


def test_driver_follows_the_protocol(driver: tuple[NetworkDriver, str]) -> None:
    asyncio.run(_lifecycle(*driver))


async def _lifecycle(driver: NetworkDriver, tag: str) -> None:
    capabilities = await driver.get_capabilities()
    assert capabilities.scope in ("local", "global")
    subnet = ipaddress.ip_network(f"10.{free_octet()}.0.0/24")
    network_id, endpoint_id = secrets.token_hex(32), secrets.token_hex(32)
    data = [IPAMData("LocalDefault", str(subnet), f"{subnet[1]}/24")]
    options = {GENERIC: {}}
    await driver.create_network(network_id, options, data, [])
    await driver.create_network(network_id, options, data, [])  # replayed at start-up
    address = f"{subnet[2]}/24"
    reply = await driver.create_endpoint(network_id, endpoint_id, EndpointInterface(address), {})
    assert reply is None or reply.address in ("", address)  # never changes what it was given
    sandbox_dir = Path(tempfile.mkdtemp(prefix="dyc-"))
    sandbox = str(sandbox_dir / "ns")
    try:
        (await netns.create(sandbox)).close()
        joined = await driver.join(network_id, endpoint_id, sandbox, {})
        again = await driver.join(network_id, endpoint_id, sandbox, {})  # replay finds it
        assert again.src_name == joined.src_name
        if joined.src_name:
            assert joined.gateway == str(subnet[1])
            async with await netns.netlink(sandbox) as inside:
                assert await inside.link_lookup(ifname=joined.src_name)
            port = PortBinding(TCP, 80, "", "127.0.0.1", 0, 0)
            await driver.program_external_connectivity(
                network_id, endpoint_id, {PORT_MAP: [port.to_wire()]}
            )
            info = await driver.endpoint_oper_info(network_id, endpoint_id)
            published = [PortBinding.from_wire(b) for b in info[PORT_MAP]]
            assert [(b.port, b.host_ip) for b in published] == [(80, "127.0.0.1")]
            assert published[0].host_port > 0 and published[0].ip == str(subnet[2])
            await driver.revoke_external_connectivity(network_id, endpoint_id)
            assert (await driver.endpoint_oper_info(network_id, endpoint_id))[PORT_MAP] == []
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
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"dc{tag}n" not in links
