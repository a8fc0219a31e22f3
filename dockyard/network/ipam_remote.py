"""An IpamDriver plugin as one more `IpamDriver`.

Thin on purpose: each method is one call of the typed protocol client (which
reads errors from `Error`, insists on CIDR replies and names the plugin and
the call in every failure). Activation asks `GetCapabilities` once; a failing
call registers the driver without capabilities, as Docker does. The manager
reads `RequiresMACAddress` (a MAC for every endpoint, passed in the address
request's options) and `RequiresRequestReplay` (pools, gateways and addresses
requested again after a daemon restart) from the cached answer.
"""

from __future__ import annotations

from typing import Any

from dockyard.network.ipam import AddressSpaces, IpamCapabilities, Pool
from dockyard.plugins.legacy import Plugin
from dockyard.plugins.protocol import ipam as proto


class RemoteIpam:
    """The IPAM plugin `plugin`; make one with `activate`."""

    def __init__(self, plugin: Plugin, capabilities: IpamCapabilities) -> None:
        self.plugin = plugin
        self.name = plugin.name
        self.client = proto.IpamDriverClient(plugin.client)
        self.capabilities = capabilities

    @classmethod
    async def activate(cls, plugin: Plugin) -> RemoteIpam:
        reply = await proto.IpamDriverClient(plugin.client).capabilities()
        return cls(
            plugin, IpamCapabilities(reply.requires_mac_address, reply.requires_request_replay)
        )

    async def get_capabilities(self) -> IpamCapabilities:
        return self.capabilities

    async def get_default_address_spaces(self) -> AddressSpaces:
        reply = await self.client.default_address_spaces()
        return AddressSpaces(reply.local_default_address_space, reply.global_default_address_space)

    async def request_pool(
        self,
        address_space: str,
        pool: str = "",
        sub_pool: str = "",
        options: dict[str, str] | None = None,
        v6: bool = False,
    ) -> Pool:
        reply = await self.client.request_pool(
            proto.RequestPoolRequest(address_space, pool, sub_pool, dict(options or {}), v6)
        )
        return Pool(reply.pool_id, reply.pool, dict(reply.data))

    async def release_pool(self, pool_id: str) -> None:
        await self.client.release_pool(pool_id)

    async def request_address(
        self, pool_id: str, address: str = "", options: dict[str, str] | None = None
    ) -> tuple[str, dict[str, Any]]:
        reply = await self.client.request_address(
            proto.RequestAddressRequest(pool_id, address, dict(options or {}))
        )
        return reply.address, dict(reply.data)

    async def release_address(self, pool_id: str, address: str) -> None:
        await self.client.release_address(pool_id, address)
