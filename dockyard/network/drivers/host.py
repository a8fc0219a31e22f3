"""The `host` and `null` drivers: networks whose containers get no interface of their own.

`host` containers share the host's namespace and `none` (driver `null`)
containers get a namespace with loopback only; both networks exist so that
such containers appear in `network inspect`, as in Docker.
"""

from __future__ import annotations

from typing import Any

from dockyard.errors import Forbidden
from dockyard.network.driver import Capabilities, EndpointInterface, IPAMData, JoinResponse


class NoInterfaceDriver:
    def __init__(self, name: str) -> None:
        self.name = name
        self._networks: set[str] = set()

    async def get_capabilities(self) -> Capabilities:
        return Capabilities()

    async def create_network(
        self,
        network_id: str,
        options: dict[str, Any],
        ipv4_data: list[IPAMData],
        ipv6_data: list[IPAMData],
    ) -> None:
        if self._networks and network_id not in self._networks:
            raise Forbidden(f'only one instance of "{self.name}" network is allowed')
        self._networks.add(network_id)

    async def delete_network(self, network_id: str) -> None:
        self._networks.discard(network_id)

    async def create_endpoint(
        self,
        network_id: str,
        endpoint_id: str,
        interface: EndpointInterface,
        options: dict[str, Any],
    ) -> EndpointInterface | None:
        return None

    async def endpoint_oper_info(self, network_id: str, endpoint_id: str) -> dict[str, Any]:
        return {}

    async def delete_endpoint(self, network_id: str, endpoint_id: str) -> None:
        return None

    async def join(
        self, network_id: str, endpoint_id: str, sandbox_key: str, options: dict[str, Any]
    ) -> JoinResponse:
        return JoinResponse(src_name="")

    async def leave(self, network_id: str, endpoint_id: str) -> None:
        return None

    async def program_external_connectivity(
        self, network_id: str, endpoint_id: str, options: dict[str, Any]
    ) -> None:
        return None

    async def revoke_external_connectivity(self, network_id: str, endpoint_id: str) -> None:
        return None
