"""Network and endpoint records, as kept in the database.

A network is what `network create` asked for (echoed back exactly in
inspect: Options and Labels above all, which compose compares) plus what IPAM
gave it. An endpoint is one container's attachment to one network while the
container runs: its address, MAC, interface name inside the container, aliases
and, for the container's gateway endpoint, the host ports it publishes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class PoolLease:
    pool_id: str
    subnet: str  # CIDR
    gateway: str = ""  # CIDR
    ip_range: str = ""
    aux: dict[str, str] = field(default_factory=dict)  # name -> plain IP
    address_space: str = ""  # "": the default IPAM's LocalDefault (records from before plugins)


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
    pools: list[PoolLease] = field(default_factory=list)
    predefined: bool = False

    @property
    def user_defined(self) -> bool:
        return not self.predefined

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Network:
        data = json.loads(text)
        data["pools"] = [PoolLease(**p) for p in data.get("pools") or []]
        return cls(**data)


@dataclass
class Endpoint:
    id: str
    network_id: str
    container_id: str
    address: str = ""  # CIDR, "" on host/none networks
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

    @property
    def ip(self) -> str:
        return self.address.split("/")[0] if self.address else ""

    @property
    def prefix_len(self) -> int:
        return int(self.address.split("/")[1]) if self.address else 0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Endpoint:
        return cls(**json.loads(text))
