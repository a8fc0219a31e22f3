"""The network driver interface, shaped after libnetwork's remote driver protocol.

Every driver, built-in (bridge, host, null) or a remote plugin, implements
`NetworkDriver`; each method is one `/NetworkDriver.*` call of the plugin
protocol with the same arguments, so a remote adapter only (de)serialises.

Lifecycle (the manager's call order):

    create_network            network create (after IPAM gave it pools)
      create_endpoint         a container joins the network (address from IPAM)
        join                  the driver makes an interface for the sandbox
          program_external_connectivity   for the container's gateway endpoint (ports)
          revoke_external_connectivity
        leave
      delete_endpoint
    delete_network

The engine, not the driver, moves `JoinResponse.src_name` into the sandbox,
renames it `dst_prefix` + index and sets its addresses and routes. A driver may
create the interface directly inside the sandbox (the bridge driver does, which
saves a namespace move); the engine accepts it in either place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

# Option keys of the protocol (libnetwork's names).
GENERIC = "com.docker.network.generic"
INTERNAL = "com.docker.network.internal"
ENABLE_IPV4 = "com.docker.network.enable_ipv4"
ENABLE_IPV6 = "com.docker.network.enable_ipv6"
PORT_MAP = "com.docker.network.portmap"
EXPOSED_PORTS = "com.docker.network.endpoint.exposedports"
MAC_ADDRESS = "com.docker.network.endpoint.macaddress"

TCP, UDP, SCTP = 6, 17, 132
PROTOCOLS = {"tcp": TCP, "udp": UDP, "sctp": SCTP}
PROTOCOL_NAMES = {number: name for name, number in PROTOCOLS.items()}


@dataclass
class Capabilities:
    scope: str = "local"
    connectivity_scope: str = "local"
    gw_alloc_checker: bool = False


@dataclass
class IPAMData:
    """What IPAM allocated for one pool; `pool` and `gateway` are CIDR strings."""

    address_space: str
    pool: str
    gateway: str = ""
    aux_addresses: dict[str, str] = field(default_factory=dict)


@dataclass
class EndpointInterface:
    """Addresses in CIDR form, MAC as aa:bb:cc:dd:ee:ff; empty when unknown."""

    address: str = ""
    address_ipv6: str = ""
    mac_address: str = ""


@dataclass
class StaticRoute:
    destination: str
    route_type: int  # 0: via next_hop, 1: directly connected
    next_hop: str = ""


@dataclass
class JoinResponse:
    src_name: str
    dst_prefix: str = "eth"
    gateway: str = ""  # plain IP
    gateway_ipv6: str = ""
    static_routes: list[StaticRoute] = field(default_factory=list)
    disable_gateway_service: bool = False


@dataclass
class PortBinding:
    """One published port, libnetwork's `types.PortBinding` (its JSON in `PORT_MAP`)."""

    proto: int
    port: int  # in the container
    ip: str = ""  # the container's address
    host_ip: str = ""
    host_port: int = 0  # 0: any free port
    host_port_end: int = 0

    def to_wire(self) -> dict[str, Any]:
        return {
            "Proto": self.proto,
            "IP": self.ip,
            "Port": self.port,
            "HostIP": self.host_ip,
            "HostPort": self.host_port,
            "HostPortEnd": self.host_port_end,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> PortBinding:
        return cls(
            proto=int(data.get("Proto") or TCP),
            port=int(data.get("Port") or 0),
            ip=str(data.get("IP") or ""),
            host_ip=str(data.get("HostIP") or ""),
            host_port=int(data.get("HostPort") or 0),
            host_port_end=int(data.get("HostPortEnd") or 0),
        )


class NetworkDriver(Protocol):
    """One network driver; all IDs are 64-hex strings chosen by the engine."""

    name: str

    async def get_capabilities(self) -> Capabilities: ...

    async def create_network(
        self,
        network_id: str,
        options: dict[str, Any],
        ipv4_data: list[IPAMData],
        ipv6_data: list[IPAMData],
    ) -> None:
        """Create (or, on daemon start-up, re-create idempotently) a network."""

    async def delete_network(self, network_id: str) -> None: ...

    async def create_endpoint(
        self,
        network_id: str,
        endpoint_id: str,
        interface: EndpointInterface,
        options: dict[str, Any],
    ) -> EndpointInterface | None:
        """Returns values the driver filled in (only those the engine left empty)."""

    async def endpoint_oper_info(self, network_id: str, endpoint_id: str) -> dict[str, Any]: ...

    async def delete_endpoint(self, network_id: str, endpoint_id: str) -> None: ...

    async def join(
        self, network_id: str, endpoint_id: str, sandbox_key: str, options: dict[str, Any]
    ) -> JoinResponse:
        """Make the endpoint's interface; idempotent for an endpoint already joined."""

    async def leave(self, network_id: str, endpoint_id: str) -> None: ...

    async def program_external_connectivity(
        self, network_id: str, endpoint_id: str, options: dict[str, Any]
    ) -> None: ...

    async def revoke_external_connectivity(self, network_id: str, endpoint_id: str) -> None: ...
