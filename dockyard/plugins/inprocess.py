"""Built-in drivers behind the plugin protocol, so the conformance checker checks them.

`dockyard plugin check local|bridge|default` must judge the built-in volume
driver, bridge driver and IPAM by the same checks as anyone's plugin. Rather
than a second set of checks that call Python methods, the driver is wrapped
in the SDK's plugin class of its kind (each endpoint one method of the
driver's interface, engine errors answered as the protocol's `Err`), served
on a socket in a private directory for the duration of the check, and
checked over the wire like any plugin (`exposed`, `check_served`). This is
the remote adapters (`volumes/remote.py`, `network/drivers/remote.py`,
`network/ipam_remote.py`) run backwards: what passes here is what the engine
could also use as a plugin. Nothing but the checker ever sees the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import Any

from dockyard.errors import DockyardError
from dockyard.network.driver import EndpointInterface, IPAMData, NetworkDriver
from dockyard.network.ipam import IpamDriver
from dockyard.plugins import check
from dockyard.plugins.check import CheckReport
from dockyard.plugins.client import PluginClient
from dockyard.plugins.discovery import Endpoint
from dockyard.sdk import IpamPlugin, NetworkPlugin, PluginError
from dockyard.sdk.base import Plugin
from dockyard.sdk.ipam import (
    AddressSpacesReply,
    ReleaseAddressRequest,
    ReleasePoolRequest,
    RequestAddressReply,
    RequestAddressRequest,
    RequestPoolReply,
    RequestPoolRequest,
)
from dockyard.sdk.network import (
    CapabilitiesReply,
    CreateEndpointRequest,
    CreateNetworkRequest,
    EndpointRequest,
    InterfaceName,
    JoinReply,
    JoinRequest,
    NetworkRequest,
    ProgramRequest,
    StaticRoute,
)
from dockyard.sdk.network import EndpointInterface as WireInterface
from dockyard.sdk.server import serve
from dockyard.sdk.volume import Volume, VolumePlugin
from dockyard.volumes.driver import VolumeDriver


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    """The engine's typed errors as the protocol's (HTTP 500, `{"Err": ...}`)."""
    try:
        yield
    except DockyardError as e:
        raise PluginError(e.message) from e


class ServedNetworkDriver(NetworkPlugin):
    def __init__(self, driver: NetworkDriver) -> None:
        self.driver = driver

    async def get_capabilities(self) -> Any:
        caps = await self.driver.get_capabilities()
        return CapabilitiesReply(caps.scope, caps.connectivity_scope, caps.gw_alloc_checker)

    async def create_network(self, req: CreateNetworkRequest) -> None:
        def data(items: list[Any]) -> list[IPAMData]:
            return [
                IPAMData(d.address_space, d.pool, d.gateway, dict(d.aux_addresses or {}))
                for d in items
            ]

        with _refusals():
            await self.driver.create_network(
                req.network_id, req.options, data(req.ipv4_data), data(req.ipv6_data)
            )

    async def delete_network(self, req: NetworkRequest) -> None:
        with _refusals():
            await self.driver.delete_network(req.network_id)

    async def create_endpoint(self, req: CreateEndpointRequest) -> Any:
        sent = req.interface or WireInterface()
        with _refusals():
            reply = await self.driver.create_endpoint(
                req.network_id,
                req.endpoint_id,
                EndpointInterface(sent.address, sent.address_ipv6, sent.mac_address),
                req.options,
            )
        if reply is None:
            return None
        return WireInterface(reply.address, reply.address_ipv6, reply.mac_address)

    async def endpoint_info(self, req: EndpointRequest) -> Any:
        with _refusals():
            return {"Value": await self.driver.endpoint_oper_info(req.network_id, req.endpoint_id)}

    async def delete_endpoint(self, req: EndpointRequest) -> None:
        with _refusals():
            await self.driver.delete_endpoint(req.network_id, req.endpoint_id)

    async def join(self, req: JoinRequest) -> Any:
        with _refusals():
            joined = await self.driver.join(
                req.network_id, req.endpoint_id, req.sandbox_key, req.options
            )
        return JoinReply(
            interface_name=InterfaceName(joined.src_name, joined.dst_prefix),
            gateway=joined.gateway,
            gateway_ipv6=joined.gateway_ipv6,
            static_routes=[
                StaticRoute(r.destination, r.route_type, r.next_hop) for r in joined.static_routes
            ],
            disable_gateway_service=joined.disable_gateway_service,
        )

    async def leave(self, req: EndpointRequest) -> None:
        with _refusals():
            await self.driver.leave(req.network_id, req.endpoint_id)

    async def program_external_connectivity(self, req: ProgramRequest) -> None:
        with _refusals():
            await self.driver.program_external_connectivity(
                req.network_id, req.endpoint_id, req.options
            )

    async def revoke_external_connectivity(self, req: EndpointRequest) -> None:
        with _refusals():
            await self.driver.revoke_external_connectivity(req.network_id, req.endpoint_id)


class ServedIpamDriver(IpamPlugin):
    def __init__(self, ipam: IpamDriver) -> None:
        self.ipam = ipam

    async def get_capabilities(self) -> Any:
        caps = await self.ipam.get_capabilities()
        return {
            "RequiresMACAddress": caps.requires_mac_address,
            "RequiresRequestReplay": caps.requires_request_replay,
        }

    async def get_default_address_spaces(self) -> Any:
        spaces = await self.ipam.get_default_address_spaces()
        return AddressSpacesReply(spaces.local, spaces.global_)

    async def request_pool(self, req: RequestPoolRequest) -> Any:
        with _refusals():
            pool = await self.ipam.request_pool(
                req.address_space, req.pool, req.sub_pool, req.options, req.v6
            )
        return RequestPoolReply(pool.pool_id, pool.pool, dict(pool.data))

    async def release_pool(self, req: ReleasePoolRequest) -> None:
        with _refusals():
            await self.ipam.release_pool(req.pool_id)

    async def request_address(self, req: RequestAddressRequest) -> Any:
        with _refusals():
            address, data = await self.ipam.request_address(req.pool_id, req.address, req.options)
        return RequestAddressReply(address, dict(data))

    async def release_address(self, req: ReleaseAddressRequest) -> None:
        with _refusals():
            await self.ipam.release_address(req.pool_id, req.address)


class ServedVolumeDriver(VolumePlugin):
    def __init__(self, driver: VolumeDriver, scope: str = "local") -> None:
        self.driver = driver
        self.scope = scope  # type: ignore[misc]  # per instance: the driver's own

    async def create(self, name: str, opts: dict[str, str]) -> None:
        with _refusals():
            await self.driver.create(name, opts)

    async def remove(self, name: str) -> None:
        with _refusals():
            await self.driver.remove(name)

    async def mount(self, name: str, id: str) -> str:
        with _refusals():
            return await self.driver.mount(name, id)

    async def unmount(self, name: str, id: str) -> None:
        with _refusals():
            await self.driver.unmount(name, id)

    async def path(self, name: str) -> str:
        with _refusals():
            return await self.driver.path(name)

    async def get(self, name: str) -> Volume | None:
        with _refusals():
            info = await self.driver.get(name)
        return (
            None
            if info is None
            else Volume(info.name, info.mountpoint, info.created_at, info.status)
        )

    async def list(self) -> list[Volume]:
        with _refusals():
            infos = await self.driver.list()
        return [Volume(i.name, i.mountpoint, i.created_at, i.status) for i in infos]


@contextlib.asynccontextmanager
async def exposed(name: str, plugin: Plugin) -> AsyncIterator[PluginClient]:
    """A client of `plugin` served on a socket in a private directory while the block runs."""
    directory = tempfile.mkdtemp(prefix="dockyard-check-")  # 0700
    socket = os.path.join(directory, name.replace("/", "_") + ".sock")
    stop = asyncio.Event()
    ready = asyncio.Event()
    server = asyncio.create_task(
        serve(plugin, socket=socket, stop=stop, ready=lambda address: ready.set())
    )
    try:
        waiting = asyncio.create_task(ready.wait())
        await asyncio.wait((server, waiting), return_when=asyncio.FIRST_COMPLETED)
        if server.done():
            waiting.cancel()
            server.result()  # raises why it could not serve
        client = PluginClient(name, Endpoint("unix", socket), retry_window=0)
        try:
            yield client
        finally:
            await client.close()
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await server
        shutil.rmtree(directory, ignore_errors=True)


async def check_served(name: str, plugin: Plugin, **options: Any) -> CheckReport:
    """Serve `plugin` privately while the checker runs against it (options: `check.run`'s)."""
    async with exposed(name, plugin) as client:
        report = await check.run(client, **options)
    report.address += " (built in, served privately for the check)"
    return report
