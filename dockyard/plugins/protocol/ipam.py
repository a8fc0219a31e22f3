"""IpamDriver: `/IpamDriver.*` endpoints, messages and client.

Lifecycle: `GetCapabilities` after activation (failure just means no
capabilities); per network `GetDefaultAddressSpaces`, `RequestPool`, gateway
and aux `RequestAddress`; per endpoint `RequestAddress`/`ReleaseAddress`; at
network removal `ReleaseAddress` for the gateway and aux addresses, then
`ReleasePool`. Errors in a 200 reply come in `Error` (not `Err`); replies to
`RequestAddress` must be CIDR.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from dockyard.plugins.client import PluginClient, PluginError
from dockyard.wire import Message, wire

GATEWAY_REQUEST = "com.docker.network.gateway"
REQUEST_ADDRESS_TYPE = "RequestAddressType"
MAC_OPTION = "com.docker.network.endpoint.macaddress"


class CapabilitiesReply(Message):
    requires_mac_address: bool = wire("RequiresMACAddress", default=False)
    requires_request_replay: bool = wire(default=False)
    error: str = wire(default="", omitempty=True)


class AddressSpacesReply(Message):
    local_default_address_space: str = wire(default="")
    global_default_address_space: str = wire(default="")
    error: str = wire(default="", omitempty=True)


class RequestPoolRequest(Message):
    address_space: str = wire(default="")
    pool: str = wire(default="")
    sub_pool: str = wire(default="")
    options: dict[str, str] = wire(default_factory=dict)
    v6: bool = wire("V6", default=False)


class RequestPoolReply(Message):
    pool_id: str = wire("PoolID", default="")
    pool: str = wire(default="")
    data: dict[str, str] = wire(default_factory=dict)
    error: str = wire(default="", omitempty=True)


class ReleasePoolRequest(Message):
    pool_id: str = wire("PoolID", default="")


class RequestAddressRequest(Message):
    pool_id: str = wire("PoolID", default="")
    address: str = wire(default="")
    options: dict[str, str] = wire(default_factory=dict)


class RequestAddressReply(Message):
    address: str = wire(default="")
    data: dict[str, str] = wire(default_factory=dict)
    error: str = wire(default="", omitempty=True)


class ReleaseAddressRequest(Message):
    pool_id: str = wire("PoolID", default="")
    address: str = wire(default="")


class ErrorReply(Message):
    error: str = wire(default="", omitempty=True)


class IpamDriverClient:
    """Typed calls to one IpamDriver plugin; failures raise `PluginError`."""

    def __init__(self, client: PluginClient) -> None:
        self.client = client

    @property
    def name(self) -> str:
        return self.client.name

    async def _call(self, method: str, request: Message | None, reply: type[Any]) -> Any:
        return await self.client.call(method, request, reply, error_key="Error")

    async def capabilities(self) -> CapabilitiesReply:
        """Capabilities; a failing call registers the driver without any (as in Docker)."""
        try:
            reply: CapabilitiesReply = await self._call(
                "IpamDriver.GetCapabilities", None, CapabilitiesReply
            )
        except PluginError:
            return CapabilitiesReply()
        return reply

    async def default_address_spaces(self) -> AddressSpacesReply:
        reply: AddressSpacesReply = await self._call(
            "IpamDriver.GetDefaultAddressSpaces", None, AddressSpacesReply
        )
        return reply

    async def request_pool(self, request: RequestPoolRequest) -> RequestPoolReply:
        if request.sub_pool and not request.pool:
            raise PluginError(self.name, "IpamDriver.RequestPool", "sub-pool without a pool")
        reply: RequestPoolReply = await self._call(
            "IpamDriver.RequestPool", request, RequestPoolReply
        )
        _cidr(self.name, "IpamDriver.RequestPool", reply.pool)
        return reply

    async def release_pool(self, pool_id: str) -> None:
        await self._call("IpamDriver.ReleasePool", ReleasePoolRequest(pool_id), ErrorReply)

    async def request_address(self, request: RequestAddressRequest) -> RequestAddressReply:
        reply: RequestAddressReply = await self._call(
            "IpamDriver.RequestAddress", request, RequestAddressReply
        )
        if not reply.address:
            raise PluginError(self.name, "IpamDriver.RequestAddress", "no IP returned")
        _cidr(self.name, "IpamDriver.RequestAddress", reply.address)
        return reply

    async def release_address(self, pool_id: str, address: str) -> None:
        await self._call(
            "IpamDriver.ReleaseAddress", ReleaseAddressRequest(pool_id, address), ErrorReply
        )


def _cidr(plugin: str, method: str, text: str) -> None:
    try:
        if "/" not in text:
            raise ValueError("no prefix length")
        ipaddress.ip_interface(text)
    except ValueError as e:
        raise PluginError(plugin, method, f"invalid CIDR address {text!r}: {e}") from None
