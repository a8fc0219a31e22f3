"""Network and endpoint records, as kept in the database, and what the manager is told of a
container.

A network is what `network create` asked for (echoed back exactly in
inspect: Options and Labels above all, which compose compares) plus what IPAM
gave it: IPv4 pools and, for a network with IPv6 enabled, IPv6 pools. An
endpoint is one container's attachment to one network while the container
runs: its addresses, MAC, interface name inside the container, the names it
answers to in DNS and, for the container's gateway endpoint, the host ports it
publishes.

The manager never holds a container object: containers/ describes a container
with a `SandboxConfig` (plain data) when its sandbox is made, and again at
daemon start-up for the containers still running.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from dockyard.containers.schema import EndpointSettings
from dockyard.network.driver import PortBinding


@dataclass
class PoolLease:
    pool_id: str
    subnet: str  # CIDR
    gateway: str = ""  # CIDR
    ip_range: str = ""
    aux: dict[str, str] = field(default_factory=dict)  # name -> plain IP
    address_space: str = ""  # "": the default IPAM's LocalDefault (records from before plugins)
    configured: bool = True  # the subnet was given by the user (--ip needs one), not chosen


@dataclass
class Network:
    id: str
    name: str
    driver: str
    created: str  # RFC 3339
    scope: str = "local"
    internal: bool = False
    attachable: bool = False
    ingress: bool = False
    enable_ipv6: bool = False
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    ipam_driver: str = "default"
    ipam_options: dict[str, str] = field(default_factory=dict)
    ipam_config: list[dict[str, Any]] = field(default_factory=list)  # as inspect shows it
    pools: list[PoolLease] = field(default_factory=list)  # IPv4
    predefined: bool = False
    pools6: list[PoolLease] = field(default_factory=list)  # IPv6 (enable_ipv6 only)

    @property
    def user_defined(self) -> bool:
        return not self.predefined

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Network:
        data = json.loads(text)
        data["pools"] = [PoolLease(**p) for p in data.get("pools") or []]
        data["pools6"] = [PoolLease(**p) for p in data.get("pools6") or []]
        return cls(**data)


@dataclass
class Endpoint:
    id: str
    network_id: str
    container_id: str
    address: str = ""  # IPv4, CIDR; "" on host/none networks
    pool_id: str = ""
    mac: str = ""
    gateway: str = ""  # plain IP, "" without a default route through this network
    ifname: str = ""  # inside the container
    aliases: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # the EndpointSettings requested
    joined: bool = False  # interface in place; false while being set up or torn down
    pending: bool = False  # CreateEndpoint not sent yet (nothing to delete at the driver)
    external: bool = False  # the container's gateway endpoint (publishes its ports)
    ports: list[dict[str, Any]] = field(default_factory=list)  # published, libnetwork form
    address6: str = ""  # IPv6, CIDR; "" on a network without IPv6
    pool6_id: str = ""
    gateway6: str = ""  # plain IP
    link_local: list[str] = field(default_factory=list)  # LinkLocalIPs, CIDR
    # The container's name, kept current on rename: network inspect, DNS PTR answers, messages.
    container_name: str = ""
    # What the endpoint answers to in the network's DNS (Docker's DNSNames: name, aliases,
    # short ID, hostname); empty on networks without DNS.
    dns_names: list[str] = field(default_factory=list)
    # EndpointSettings.Links: alias -> container name, names only this container resolves.
    links: dict[str, str] = field(default_factory=dict)

    @property
    def ip(self) -> str:
        return self.address.split("/")[0] if self.address else ""

    @property
    def prefix_len(self) -> int:
        return int(self.address.split("/")[1]) if self.address else 0

    @property
    def ip6(self) -> str:
        return self.address6.split("/")[0] if self.address6 else ""

    @property
    def prefix6_len(self) -> int:
        return int(self.address6.split("/")[1]) if self.address6 else 0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Endpoint:
        return cls(**json.loads(text))


@dataclass
class SandboxConfig:
    """A container as the network manager sees it: given by containers/ when the container
    starts, and again at daemon start-up while it runs. Plain data, kept in memory only."""

    container_id: str
    name: str  # without the leading slash
    hostname: str
    # The networks to join, name -> settings, in the container's order: the first one
    # that is not internal gives the default route and publishes the ports.
    networks: dict[str, EndpointSettings]
    exposed_ports: list[str] = field(default_factory=list)  # "80/tcp"
    ports: list[PortBinding] = field(default_factory=list)  # what it asks to publish
    dns: list[str] = field(default_factory=list)  # its --dns servers: where its queries go

    @property
    def short_id(self) -> str:
        return self.container_id[:12]


@dataclass
class Sandbox:
    """What a container's spec and /etc files need from its networking."""

    path: str | None  # the namespace to join; None: the runtime makes (none) or skips (host) one
    addresses: list[str] = field(default_factory=list)  # its own, IPv4 then IPv6
    embedded_dns: bool = False
