"""A NetworkDriver plugin (libnetwork's remote driver) as one more `NetworkDriver`.

Thin on purpose: each method is one call of the typed protocol client, which
owns the wire (errors naming the plugin and the call, timeouts, retries, 404
as "optional" for external connectivity). What is left here is what Docker's
remote driver adapter checks on the engine's behalf:

* activation: `GetCapabilities` once, when the adapter is made; an invalid
  scope fails it, so the driver is never registered;
* `GwAllocCheck` only when the driver advertised `GwAllocChecker`;
* a CreateEndpoint reply may fill in only what the engine left empty (the
  MAC, typically); changing a supplied value, or a value that does not parse,
  fails the call (the manager then rolls back with `DeleteEndpoint`);
* a Join reply must name an interface (`SrcName`); its gateways must be IP
  addresses and its static routes CIDRs with a next hop when they are of type
  0. Moving the interface into the sandbox is the manager's job.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from dockyard.network.driver import (
    Capabilities,
    EndpointInterface,
    IPAMData,
    JoinResponse,
    StaticRoute,
)
from dockyard.plugins.client import PluginError
from dockyard.plugins.legacy import Plugin
from dockyard.plugins.protocol import network as proto


class RemoteNetworkDriver:
    """The network plugin `plugin`; make one with `activate`."""

    def __init__(self, plugin: Plugin, capabilities: Capabilities) -> None:
        self.plugin = plugin
        self.name = plugin.name
        self.client = proto.NetworkDriverClient(plugin.client)
        self.capabilities = capabilities

    @classmethod
    async def activate(cls, plugin: Plugin) -> RemoteNetworkDriver:
        """The registration hook Docker runs once per activated plugin."""
        reply = await proto.NetworkDriverClient(plugin.client).capabilities()
        return cls(
            plugin,
            Capabilities(reply.scope, reply.connectivity_scope, reply.gw_alloc_checker),
        )

    async def get_capabilities(self) -> Capabilities:
        return self.capabilities

    async def gw_alloc_check(self, options: dict[str, Any]) -> tuple[bool, bool]:
        """Whether to skip the IPv4 and IPv6 gateway allocations for a new network."""
        if not self.capabilities.gw_alloc_checker:
            return False, False
        reply = await self.client.gw_alloc_check(options)
        return reply.skip_ipv4, reply.skip_ipv6

    async def create_network(
        self,
        network_id: str,
        options: dict[str, Any],
        ipv4_data: list[IPAMData],
        ipv6_data: list[IPAMData],
    ) -> None:
        await self.client.create_network(
            proto.CreateNetworkRequest(
                network_id, options, _ipam_data(ipv4_data), _ipam_data(ipv6_data)
            )
        )

    async def delete_network(self, network_id: str) -> None:
        await self.client.delete_network(network_id)

    async def create_endpoint(
        self,
        network_id: str,
        endpoint_id: str,
        interface: EndpointInterface,
        options: dict[str, Any],
    ) -> EndpointInterface | None:
        sent = proto.EndpointInterface(
            interface.address, interface.address_ipv6, interface.mac_address
        )
        reply = await self.client.create_endpoint(
            proto.CreateEndpointRequest(network_id, endpoint_id, sent, options)
        )
        if reply is None:
            return None
        try:
            return _filled_in(interface, reply)
        except ValueError as e:
            raise PluginError(self.name, "NetworkDriver.CreateEndpoint", str(e), status=200) from e

    async def endpoint_oper_info(self, network_id: str, endpoint_id: str) -> dict[str, Any]:
        return await self.client.endpoint_info(network_id, endpoint_id)

    async def delete_endpoint(self, network_id: str, endpoint_id: str) -> None:
        await self.client.delete_endpoint(network_id, endpoint_id)

    async def join(
        self, network_id: str, endpoint_id: str, sandbox_key: str, options: dict[str, Any]
    ) -> JoinResponse:
        reply = await self.client.join(
            proto.JoinRequest(network_id, endpoint_id, sandbox_key, options)
        )
        try:
            return _join_response(reply)
        except ValueError as e:
            raise PluginError(self.name, "NetworkDriver.Join", str(e), status=200) from e

    async def leave(self, network_id: str, endpoint_id: str) -> None:
        await self.client.leave(network_id, endpoint_id)

    async def program_external_connectivity(
        self, network_id: str, endpoint_id: str, options: dict[str, Any]
    ) -> None:
        await self.client.program_external_connectivity(network_id, endpoint_id, options)

    async def revoke_external_connectivity(self, network_id: str, endpoint_id: str) -> None:
        await self.client.revoke_external_connectivity(network_id, endpoint_id)


def _ipam_data(data: list[IPAMData]) -> list[proto.IPAMData]:
    return [
        proto.IPAMData(d.address_space, d.pool, d.gateway, dict(d.aux_addresses) or None)
        for d in data
    ]


def _filled_in(sent: EndpointInterface, reply: proto.EndpointInterface) -> EndpointInterface:
    """What the driver filled in; ValueError if it changed what the engine supplied."""
    result = EndpointInterface()
    for field, what, parse in (
        ("address", "address", _cidr),
        ("address_ipv6", "IPv6 address", _cidr),
        ("mac_address", "MAC address", _mac),
    ):
        given, got = getattr(sent, field), getattr(reply, field)
        if not got:
            continue
        parse(got)
        if given and parse(given) != parse(got):
            raise ValueError(f"driver modified interface {what} ({given} -> {got})")
        setattr(result, field, "" if given else got)
    return result


def _join_response(reply: proto.JoinReply) -> JoinResponse:
    names = reply.interface_name
    if names is None or not names.src_name:
        raise ValueError("no interface name information received")
    for gateway in (reply.gateway, reply.gateway_ipv6):
        if gateway:
            try:
                ipaddress.ip_address(gateway)
            except ValueError:
                raise ValueError(f"invalid gateway {gateway!r}") from None
    routes = []
    for route in reply.static_routes:
        _cidr(route.destination)
        if route.route_type == 0:
            try:
                ipaddress.ip_address(route.next_hop)
            except ValueError:
                raise ValueError(
                    f"static route to {route.destination}: invalid next hop {route.next_hop!r}"
                ) from None
        elif route.route_type != 1:
            raise ValueError(f"static route to {route.destination}: type {route.route_type}")
        routes.append(StaticRoute(route.destination, route.route_type, route.next_hop))
    return JoinResponse(
        src_name=names.src_name,
        dst_prefix=names.dst_prefix or "eth",
        gateway=reply.gateway,
        gateway_ipv6=reply.gateway_ipv6,
        static_routes=routes,
        disable_gateway_service=reply.disable_gateway_service,
    )


def _cidr(text: str) -> str:
    if "/" not in text:
        raise ValueError(f"invalid CIDR address {text!r}")
    try:
        return str(ipaddress.ip_interface(text))
    except ValueError:
        raise ValueError(f"invalid CIDR address {text!r}") from None


def _mac(text: str) -> str:
    parts = text.lower().replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError(f"invalid MAC address {text!r}")
    try:
        [int(p, 16) for p in parts]
    except ValueError:
        raise ValueError(f"invalid MAC address {text!r}") from None
    return ":".join(parts)
