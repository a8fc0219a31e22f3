"""A network plugin: one Linux bridge per network, one veth pair per endpoint.

CreateNetwork makes a bridge `vbr<network id[:10]>` holding the gateway
address the engine's IPAM chose; CreateEndpoint makes a veth pair
(`vbh<endpoint id[:10]>` on the host, `vbc...` for the container) whose host end
joins the bridge; Join hands the other end to the engine, which moves it
into the container as `eth0` and gives it the endpoint's address, and names
the bridge's address as the container's gateway. Leave has nothing to do;
DeleteEndpoint and DeleteNetwork remove the links. Containers on one network
reach each other and the host; NAT to the outside is left to the host's
firewall. Needs root and `ip` (iproute2).

    python -m dockyard.sdk run plugins/net_bridge.py:BridgeNetwork --name vbridge
    dockyard network create -d vbridge --subnet 10.99.0.0/24 net1
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import subprocess

from dockyard.sdk import NetworkPlugin, PluginError, run
from dockyard.sdk.network import (
    CreateEndpointRequest,
    CreateNetworkRequest,
    EndpointRequest,
    InterfaceName,
    JoinReply,
    JoinRequest,
    NetworkRequest,
)


async def ip(*args: str, check: bool = True) -> None:
    proc = await asyncio.create_subprocess_exec(
        "ip", *args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, err = await proc.communicate()
    if check and proc.returncode:
        raise PluginError(f"ip {' '.join(args)}: {err.decode().strip()}")


def bridge_name(network_id: str) -> str:
    return "vbr" + network_id[:10]


class BridgeNetwork(NetworkPlugin):
    def __init__(self) -> None:
        self.gateways: dict[str, str] = {}  # network id -> gateway IP

    async def create_network(self, req: CreateNetworkRequest) -> None:
        bridge = bridge_name(req.network_id)
        await ip("link", "add", bridge, "type", "bridge")
        try:
            for data in req.ipv4_data:
                if data.gateway:
                    await ip("addr", "add", data.gateway, "dev", bridge)
                    self.gateways[req.network_id] = str(ipaddress.ip_interface(data.gateway).ip)
            await ip("link", "set", bridge, "up")
        except PluginError:
            await ip("link", "del", bridge, check=False)
            raise

    async def delete_network(self, req: NetworkRequest) -> None:
        self.gateways.pop(req.network_id, None)
        await ip("link", "del", bridge_name(req.network_id), check=False)

    async def create_endpoint(self, req: CreateEndpointRequest) -> None:
        host, peer = "vbh" + req.endpoint_id[:10], "vbc" + req.endpoint_id[:10]
        await ip("link", "add", host, "type", "veth", "peer", "name", peer)
        try:
            await ip("link", "set", host, "master", bridge_name(req.network_id))
            await ip("link", "set", host, "up")
        except PluginError:
            await ip("link", "del", host, check=False)
            raise

    async def delete_endpoint(self, req: EndpointRequest) -> None:
        await ip("link", "del", "vbh" + req.endpoint_id[:10], check=False)

    def join(self, req: JoinRequest) -> JoinReply:
        return JoinReply(
            interface_name=InterfaceName("vbc" + req.endpoint_id[:10], "eth"),
            gateway=self.gateways.get(req.network_id, ""),
        )


if __name__ == "__main__":
    run(BridgeNetwork(), os.environ.get("PLUGIN_NAME", "vbridge"))
