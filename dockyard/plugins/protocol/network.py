"""NetworkDriver (libnetwork's remote driver): `/NetworkDriver.*` endpoints,
messages and client.

Lifecycle: `GetCapabilities` right after activation; per network
`GwAllocCheck` (if advertised), `CreateNetwork` ... `DeleteNetwork`; per
container and network `CreateEndpoint`, `Join` (at start, with the netns path
as `SandboxKey`), `ProgramExternalConnectivity` for the gateway endpoint, and
in reverse at stop `RevokeExternalConnectivity`, `Leave`, `DeleteEndpoint`.
`EndpointOperInfo` when the engine reports ports. A 404 to
Program/RevokeExternalConnectivity means "not implemented" and is fine.
Errors come back in `Err`; Docker prefixes them with `remote: `.
"""

from __future__ import annotations

from typing import Any

from dockyard.plugins.client import PluginClient, PluginError
from dockyard.wire import Message, wire

GENERIC = "com.docker.network.generic"


class IPAMData(Message):
    address_space: str = wire(default="")
    pool: str = wire(default="")
    gateway: str = wire(default="", omitempty=True)
    aux_addresses: dict[str, str] | None = wire(default=None, omitempty=True)


class CapabilitiesReply(Message):
    scope: str = wire(default="")
    connectivity_scope: str = wire(default="")
    gw_alloc_checker: bool = wire(default=False)
    err: str = wire(default="", omitempty=True)


class GwAllocCheckRequest(Message):
    options: dict[str, Any] = wire(default_factory=dict)


class GwAllocCheckReply(Message):
    skip_ipv4: bool = wire("SkipIPv4", default=False)
    skip_ipv6: bool = wire("SkipIPv6", default=False)
    err: str = wire(default="", omitempty=True)


class CreateNetworkRequest(Message):
    network_id: str = wire("NetworkID", default="")
    options: dict[str, Any] = wire(default_factory=dict)
    ipv4_data: list[IPAMData] = wire("IPv4Data", default_factory=list)
    ipv6_data: list[IPAMData] = wire("IPv6Data", default_factory=list)


class NetworkRequest(Message):
    """DeleteNetwork and FreeNetwork."""

    network_id: str = wire("NetworkID", default="")


class AllocateNetworkRequest(Message):
    network_id: str = wire("NetworkID", default="")
    options: dict[str, str] = wire(default_factory=dict)
    ipv4_data: list[IPAMData] = wire("IPv4Data", default_factory=list)
    ipv6_data: list[IPAMData] = wire("IPv6Data", default_factory=list)


class AllocateNetworkReply(Message):
    options: dict[str, str] = wire(default_factory=dict)
    err: str = wire(default="", omitempty=True)


class EndpointInterface(Message):
    address: str = wire(default="")
    address_ipv6: str = wire("AddressIPv6", default="")
    mac_address: str = wire(default="")


class CreateEndpointRequest(Message):
    network_id: str = wire("NetworkID", default="")
    endpoint_id: str = wire("EndpointID", default="")
    interface: EndpointInterface | None = wire(default=None)
    options: dict[str, Any] = wire(default_factory=dict)


class CreateEndpointReply(Message):
    interface: EndpointInterface | None = wire(default=None)
    err: str = wire(default="", omitempty=True)


class EndpointRequest(Message):
    """DeleteEndpoint, EndpointOperInfo, Leave, RevokeExternalConnectivity."""

    network_id: str = wire("NetworkID", default="")
    endpoint_id: str = wire("EndpointID", default="")


class EndpointInfoReply(Message):
    value: dict[str, Any] = wire(default_factory=dict)
    err: str = wire(default="", omitempty=True)


class JoinRequest(Message):
    network_id: str = wire("NetworkID", default="")
    endpoint_id: str = wire("EndpointID", default="")
    sandbox_key: str = wire(default="")
    options: dict[str, Any] = wire(default_factory=dict)


class InterfaceName(Message):
    src_name: str = wire(default="")
    dst_prefix: str = wire(default="")


class StaticRoute(Message):
    destination: str = wire(default="")
    route_type: int = wire(default=0)
    next_hop: str = wire(default="", omitempty=True)


class JoinReply(Message):
    interface_name: InterfaceName | None = wire(default=None)
    gateway: str = wire(default="", omitempty=True)
    gateway_ipv6: str = wire("GatewayIPv6", default="", omitempty=True)
    static_routes: list[StaticRoute] = wire(default_factory=list, omitempty=True)
    disable_gateway_service: bool = wire(default=False, omitempty=True)
    err: str = wire(default="", omitempty=True)


class ProgramRequest(Message):
    network_id: str = wire("NetworkID", default="")
    endpoint_id: str = wire("EndpointID", default="")
    options: dict[str, Any] = wire(default_factory=dict)


class DiscoveryRequest(Message):
    discovery_type: int = wire(default=0)
    discovery_data: Any = wire(default=None)


class ErrReply(Message):
    err: str = wire(default="", omitempty=True)


class NetworkDriverClient:
    """Typed calls to one NetworkDriver plugin; failures raise `PluginError`."""

    def __init__(self, client: PluginClient) -> None:
        self.client = client

    @property
    def name(self) -> str:
        return self.client.name

    async def capabilities(self) -> CapabilitiesReply:
        """The driver's scopes; invalid ones make the driver unusable (as in Docker)."""
        reply = await self.client.call("NetworkDriver.GetCapabilities", None, CapabilitiesReply)
        scope = reply.scope.lower()
        if scope not in ("local", "global"):
            raise PluginError(
                self.name, "NetworkDriver.GetCapabilities", f"invalid scope {reply.scope!r}"
            )
        conn = reply.connectivity_scope.lower() or scope
        if conn not in ("local", "global"):
            raise PluginError(
                self.name,
                "NetworkDriver.GetCapabilities",
                f"invalid connectivity scope {reply.connectivity_scope!r}",
            )
        reply.scope, reply.connectivity_scope = scope, conn
        return reply

    async def gw_alloc_check(self, options: dict[str, Any]) -> GwAllocCheckReply:
        return await self.client.call(
            "NetworkDriver.GwAllocCheck", GwAllocCheckRequest(options), GwAllocCheckReply
        )

    async def create_network(self, request: CreateNetworkRequest) -> None:
        await self.client.call("NetworkDriver.CreateNetwork", request, ErrReply)

    async def delete_network(self, network_id: str) -> None:
        await self.client.call("NetworkDriver.DeleteNetwork", NetworkRequest(network_id), ErrReply)

    async def create_endpoint(self, request: CreateEndpointRequest) -> EndpointInterface | None:
        reply = await self.client.call("NetworkDriver.CreateEndpoint", request, CreateEndpointReply)
        return reply.interface

    async def endpoint_info(self, network_id: str, endpoint_id: str) -> dict[str, Any]:
        reply = await self.client.call(
            "NetworkDriver.EndpointOperInfo",
            EndpointRequest(network_id, endpoint_id),
            EndpointInfoReply,
        )
        return reply.value

    async def delete_endpoint(self, network_id: str, endpoint_id: str) -> None:
        await self.client.call(
            "NetworkDriver.DeleteEndpoint", EndpointRequest(network_id, endpoint_id), ErrReply
        )

    async def join(self, request: JoinRequest) -> JoinReply:
        return await self.client.call("NetworkDriver.Join", request, JoinReply)

    async def leave(self, network_id: str, endpoint_id: str) -> None:
        await self.client.call(
            "NetworkDriver.Leave", EndpointRequest(network_id, endpoint_id), ErrReply
        )

    async def program_external_connectivity(
        self, network_id: str, endpoint_id: str, options: dict[str, Any]
    ) -> None:
        await self._optional(
            "NetworkDriver.ProgramExternalConnectivity",
            ProgramRequest(network_id, endpoint_id, options),
        )

    async def revoke_external_connectivity(self, network_id: str, endpoint_id: str) -> None:
        await self._optional(
            "NetworkDriver.RevokeExternalConnectivity", EndpointRequest(network_id, endpoint_id)
        )

    async def _optional(self, method: str, request: Message) -> None:
        try:
            await self.client.call(method, request, ErrReply)
        except PluginError as e:
            if e.http_status != 404:
                raise
