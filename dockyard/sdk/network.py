"""Network plugins (libnetwork remote drivers): subclass `NetworkPlugin`.

Each method receives the request model of its endpoint (see
`dockyard.plugins.protocol.network`) and returns the reply model, a dict, or
None for `{}`. An engine calls `get_capabilities()` once, then per network
`create_network`/`delete_network`, per container and network
`create_endpoint`, `join` (return the host-side interface the engine moves
into the container as `InterfaceName.SrcName`), `leave`, `delete_endpoint`.
`program_external_connectivity` and `revoke_external_connectivity` are
optional: left alone they answer 404, which engines take as "nothing to do".
"""

from __future__ import annotations

from typing import Any, ClassVar

from dockyard.plugins.protocol import NETWORK
from dockyard.plugins.protocol.network import (
    AllocateNetworkReply,
    AllocateNetworkRequest,
    CapabilitiesReply,
    CreateEndpointReply,
    CreateEndpointRequest,
    CreateNetworkRequest,
    DiscoveryRequest,
    EndpointInfoReply,
    EndpointInterface,
    EndpointRequest,
    GwAllocCheckReply,
    GwAllocCheckRequest,
    InterfaceName,
    JoinReply,
    JoinRequest,
    NetworkRequest,
    ProgramRequest,
    StaticRoute,
)
from dockyard.sdk.base import Endpoint, Plugin, PluginError

__all__ = [
    "CapabilitiesReply",
    "CreateEndpointRequest",
    "CreateNetworkRequest",
    "EndpointInterface",
    "EndpointRequest",
    "InterfaceName",
    "JoinReply",
    "JoinRequest",
    "NetworkPlugin",
    "NetworkRequest",
    "ProgramRequest",
    "StaticRoute",
]


class NetworkPlugin(Plugin):
    kind = NETWORK
    scope: ClassVar[str] = "local"
    endpoints: ClassVar[dict[str, Endpoint]] = {
        "NetworkDriver.GetCapabilities": Endpoint("get_capabilities", None),
        "NetworkDriver.GwAllocCheck": Endpoint("gw_alloc_check", GwAllocCheckRequest, True),
        "NetworkDriver.CreateNetwork": Endpoint("create_network", CreateNetworkRequest),
        "NetworkDriver.DeleteNetwork": Endpoint("delete_network", NetworkRequest),
        "NetworkDriver.AllocateNetwork": Endpoint("allocate_network", AllocateNetworkRequest),
        "NetworkDriver.FreeNetwork": Endpoint("free_network", NetworkRequest),
        "NetworkDriver.CreateEndpoint": Endpoint(
            "create_endpoint", CreateEndpointRequest, wrap=lambda r: endpoint_reply(r)
        ),
        "NetworkDriver.EndpointOperInfo": Endpoint("endpoint_info", EndpointRequest),
        "NetworkDriver.DeleteEndpoint": Endpoint("delete_endpoint", EndpointRequest),
        "NetworkDriver.Join": Endpoint("join", JoinRequest),
        "NetworkDriver.Leave": Endpoint("leave", EndpointRequest),
        "NetworkDriver.ProgramExternalConnectivity": Endpoint(
            "program_external_connectivity", ProgramRequest, True
        ),
        "NetworkDriver.RevokeExternalConnectivity": Endpoint(
            "revoke_external_connectivity", EndpointRequest, True
        ),
        "NetworkDriver.DiscoverNew": Endpoint("discover_new", DiscoveryRequest),
        "NetworkDriver.DiscoverDelete": Endpoint("discover_delete", DiscoveryRequest),
    }

    def get_capabilities(self) -> Any:
        return CapabilitiesReply(scope=self.scope, connectivity_scope=self.scope)

    def gw_alloc_check(self, req: GwAllocCheckRequest) -> Any:
        return GwAllocCheckReply()

    def create_network(self, req: CreateNetworkRequest) -> Any:
        raise PluginError("NetworkDriver.CreateNetwork is not implemented by this plugin")

    def delete_network(self, req: NetworkRequest) -> Any:
        raise PluginError("NetworkDriver.DeleteNetwork is not implemented by this plugin")

    def allocate_network(self, req: AllocateNetworkRequest) -> Any:
        return AllocateNetworkReply()

    def free_network(self, req: NetworkRequest) -> Any:
        return None

    def create_endpoint(self, req: CreateEndpointRequest) -> Any:
        """Return None to keep what the engine supplied, or an `EndpointInterface` (a
        `CreateEndpointReply`) filling in only what it left empty (typically the MAC)."""
        return None

    def endpoint_info(self, req: EndpointRequest) -> Any:
        return EndpointInfoReply()

    def delete_endpoint(self, req: EndpointRequest) -> Any:
        return None

    def join(self, req: JoinRequest) -> Any:
        raise PluginError("NetworkDriver.Join is not implemented by this plugin")

    def leave(self, req: EndpointRequest) -> Any:
        return None

    def program_external_connectivity(self, req: ProgramRequest) -> Any:
        return None

    def revoke_external_connectivity(self, req: EndpointRequest) -> Any:
        return None

    def discover_new(self, req: DiscoveryRequest) -> Any:
        return None

    def discover_delete(self, req: DiscoveryRequest) -> Any:
        return None


def endpoint_reply(result: Any) -> Any:
    """`create_endpoint` may return a bare `EndpointInterface`; wrap it."""
    if isinstance(result, EndpointInterface):
        return CreateEndpointReply(interface=result)
    return result
