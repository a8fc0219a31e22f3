"""The IPAM driver interface, shaped after Docker's `/IpamDriver.*` plugin protocol.

Lifecycle: a network asks for pools (`request_pool`, one per subnet), then for
its gateway and auxiliary addresses and, per endpoint, one address each
(`request_address`); everything is given back with `release_address` and
finally `release_pool`. Pool IDs are the driver's; addresses are plain IPs in
requests and CIDR strings in replies, as on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

GATEWAY_REQUEST = {"RequestAddressType": "com.docker.network.gateway"}
GATEWAY_DATA = "com.docker.network.gateway"


@dataclass
class IpamCapabilities:
    requires_mac_address: bool = False
    requires_request_replay: bool = False


@dataclass
class AddressSpaces:
    local: str
    global_: str


@dataclass
class Pool:
    pool_id: str
    pool: str  # CIDR
    data: dict[str, Any] = field(default_factory=dict)


class IpamDriver(Protocol):
    name: str

    async def get_capabilities(self) -> IpamCapabilities: ...

    async def get_default_address_spaces(self) -> AddressSpaces: ...

    async def request_pool(
        self,
        address_space: str,
        pool: str = "",
        sub_pool: str = "",
        options: dict[str, str] | None = None,
        v6: bool = False,
    ) -> Pool: ...

    async def release_pool(self, pool_id: str) -> None: ...

    async def request_address(
        self, pool_id: str, address: str = "", options: dict[str, str] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """An address (CIDR) of the pool: `address` exactly, or any free one."""

    async def release_address(self, pool_id: str, address: str) -> None: ...
