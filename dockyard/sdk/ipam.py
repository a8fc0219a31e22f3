"""IPAM plugins: subclass `IpamPlugin`.

An engine calls `get_capabilities()` once; per network
`get_default_address_spaces()`, `request_pool` (an empty `pool` means "you
choose"), `request_address` for the gateway (its options carry
`RequestAddressType: com.docker.network.gateway`) and for each container
(`address` empty means "any free one"); `release_address` and `release_pool`
when they go. Addresses in replies are CIDR (`10.0.0.5/24`). Raise
`PluginError` to refuse.
"""

from __future__ import annotations

from typing import Any, ClassVar

from dockyard.plugins.protocol import IPAM
from dockyard.plugins.protocol.ipam import (
    GATEWAY_REQUEST,
    AddressSpacesReply,
    CapabilitiesReply,
    ReleaseAddressRequest,
    ReleasePoolRequest,
    RequestAddressReply,
    RequestAddressRequest,
    RequestPoolReply,
    RequestPoolRequest,
)
from dockyard.sdk.base import Endpoint, Plugin, PluginError

__all__ = [
    "GATEWAY_REQUEST",
    "AddressSpacesReply",
    "IpamPlugin",
    "ReleaseAddressRequest",
    "ReleasePoolRequest",
    "RequestAddressReply",
    "RequestAddressRequest",
    "RequestPoolReply",
    "RequestPoolRequest",
]


class IpamPlugin(Plugin):
    kind = IPAM
    local_address_space: ClassVar[str] = "local"
    global_address_space: ClassVar[str] = "global"
    endpoints: ClassVar[dict[str, Endpoint]] = {
        "IpamDriver.GetCapabilities": Endpoint("get_capabilities", None),
        "IpamDriver.GetDefaultAddressSpaces": Endpoint("get_default_address_spaces", None),
        "IpamDriver.RequestPool": Endpoint("request_pool", RequestPoolRequest),
        "IpamDriver.ReleasePool": Endpoint("release_pool", ReleasePoolRequest),
        "IpamDriver.RequestAddress": Endpoint("request_address", RequestAddressRequest),
        "IpamDriver.ReleaseAddress": Endpoint("release_address", ReleaseAddressRequest),
    }

    def get_capabilities(self) -> Any:
        return CapabilitiesReply()

    def get_default_address_spaces(self) -> Any:
        return AddressSpacesReply(self.local_address_space, self.global_address_space)

    def request_pool(self, req: RequestPoolRequest) -> Any:
        raise PluginError("IpamDriver.RequestPool is not implemented by this plugin")

    def release_pool(self, req: ReleasePoolRequest) -> Any:
        return None

    def request_address(self, req: RequestAddressRequest) -> Any:
        raise PluginError("IpamDriver.RequestAddress is not implemented by this plugin")

    def release_address(self, req: ReleaseAddressRequest) -> Any:
        return None
