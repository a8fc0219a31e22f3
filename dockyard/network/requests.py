"""Network create requests: Docker's JSON checked and normalised before anything is allocated."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from dockyard.containers.schema import EndpointIPAMConfig, EndpointSettings
from dockyard.errors import InvalidArgument, NotImplementedByEngine
from dockyard.network.model import Network

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


@dataclass
class NetworkCreate:
    name: str
    driver: str = "bridge"
    scope: str = "local"
    internal: bool = False
    attachable: bool = False
    ingress: bool = False
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    ipam_driver: str = "default"
    ipam_options: dict[str, str] = field(default_factory=dict)
    # One entry per subnet ({} when IPAM chooses): Subnet, Gateway, IPRange, AuxiliaryAddresses.
    ipam_configs: list[dict[str, Any]] = field(default_factory=list)


_DEFAULT_BRIDGE = "com.docker.network.bridge.default_bridge"


def network_create(request: dict[str, Any]) -> NetworkCreate:
    """`POST /networks/create`'s body, validated (names, CIDRs, gateways inside subnets...)."""
    name = request.get("Name")
    if not isinstance(name, str) or not name:
        raise InvalidArgument("network name is required")
    if not _NAME.match(name):
        raise InvalidArgument(
            f"invalid network name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    if request.get("EnableIPv6"):
        raise NotImplementedByEngine("IPv6 networks are not supported by Dockyard yet")
    ipam = request.get("IPAM") or {}
    if not isinstance(ipam, dict):
        raise InvalidArgument("invalid JSON: IPAM must be an object")
    for key in ("Internal", "Attachable", "Ingress", "CheckDuplicate", "ConfigOnly"):
        _typed(request.get(key), bool, key, "a boolean")
    options = _string_map(request.get("Options"), "Options")
    if _DEFAULT_BRIDGE in options:  # would let a network take over a host's bridge
        raise InvalidArgument(f"option {_DEFAULT_BRIDGE} is reserved for the default network")
    return NetworkCreate(
        name=name,
        driver=_typed(request.get("Driver"), str, "Driver", "a string") or "bridge",
        scope=_typed(request.get("Scope"), str, "Scope", "a string") or "local",
        internal=bool(request.get("Internal")),
        attachable=bool(request.get("Attachable")),
        ingress=bool(request.get("Ingress")),
        options=options,
        labels=_string_map(request.get("Labels"), "Labels"),
        ipam_driver=_typed(ipam.get("Driver"), str, "IPAM.Driver", "a string") or "default",
        ipam_options=_string_map(ipam.get("Options"), "IPAM.Options"),
        ipam_configs=_ipam_configs(ipam.get("Config")),
    )


def endpoint_settings(network: Network, settings: EndpointSettings) -> EndpointSettings:
    """A container's EndpointSettings for `network`, checked; what inspect echoes back."""
    aliases = list(settings.aliases or [])
    ipam = settings.ipam_config or EndpointIPAMConfig()
    static = ipam.ipv4_address
    if network.predefined:
        if aliases:
            raise InvalidArgument(
                "network-scoped alias is supported only for containers in user defined networks"
            )
        if static:
            raise InvalidArgument(
                "user specified IP address is supported on user defined networks only"
            )
    if static:
        try:
            address = ipaddress.IPv4Address(static)
        except ValueError:
            raise InvalidArgument(f"invalid IPv4 address: {static}") from None
        if not any(address in ipaddress.ip_network(p.subnet) for p in network.pools):
            raise InvalidArgument(
                f"no configured subnet or ip-range contain the IP address {static}"
            )
        if not any(c.get("Subnet") for c in network.ipam_config if c) or not network.pools:
            raise InvalidArgument(
                "user specified IP address is supported only when connecting to networks "
                "with user configured subnets"
            )
    return EndpointSettings(
        ipam_config=EndpointIPAMConfig(ipv4_address=static) if static else None,
        links=settings.links or None,
        aliases=aliases or None,
        mac_address=settings.mac_address,
        driver_opts=settings.driver_opts or None,
        network_id=network.id,
    )


def _typed(value: Any, kind: type, name: str, what: str) -> Any:
    """`value` if it is of JSON type `kind` (or absent); else a 400 naming the field."""
    if value is not None and not isinstance(value, kind):
        raise InvalidArgument(f"invalid JSON: {name} must be {what}")
    return value


def _string_map(value: Any, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidArgument(f"invalid JSON: {name} must map strings to strings")
    return dict(value)


def _ipam_configs(raw: Any) -> list[dict[str, Any]]:
    if not raw:
        return []
    if not isinstance(raw, list):
        raise InvalidArgument("invalid JSON: IPAM.Config must be a list")
    configs: list[dict[str, Any]] = []
    for entry in raw:
        if not isinstance(entry, dict):
            raise InvalidArgument("invalid JSON: IPAM.Config entries must be objects")
        for key in ("Subnet", "Gateway", "IPRange"):
            _typed(entry.get(key), str, f"IPAM.Config.{key}", "a string")
        subnet_text = entry.get("Subnet") or ""
        gateway = entry.get("Gateway") or ""
        ip_range = entry.get("IPRange") or ""
        aux = entry.get("AuxiliaryAddresses") or entry.get("AuxAddress") or {}
        _string_map(aux, "IPAM.Config.AuxiliaryAddresses")
        if not subnet_text:
            if gateway or ip_range or aux:
                raise InvalidArgument("invalid IPAM config: Gateway and IPRange need a Subnet")
            configs.append({})
            continue
        subnet = _network(subnet_text, "subnet")
        if ip_range:
            sub = _network(ip_range, "ip-range")
            if not sub.subnet_of(subnet):
                raise InvalidArgument(f"no matching subnet for range {ip_range}")
        if gateway and _address(gateway, "gateway") not in subnet:
            raise InvalidArgument(f"no matching subnet for gateway {gateway}")
        for name, address in aux.items():
            if _address(address, "aux-address") not in subnet:
                raise InvalidArgument(f"no matching subnet for aux-address {address} ({name})")
        configs.append(
            {
                "Subnet": str(subnet),
                "Gateway": gateway,
                "IPRange": str(_network(ip_range, "ip-range")) if ip_range else "",
                "AuxiliaryAddresses": dict(aux),
            }
        )
    return configs


def _network(text: str, what: str) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid {what}: invalid CIDR address: {text}") from None
    if network.version != 4:
        raise NotImplementedByEngine("IPv6 networks are not supported by Dockyard yet")
    if str(network) != text:
        raise InvalidArgument(f"invalid {what} {text}: it should be {network}")
    assert isinstance(network, ipaddress.IPv4Network)
    return network


def _address(text: str, what: str) -> ipaddress.IPv4Address:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidArgument(f"invalid {what} address: {text}") from None
    if address.version != 4:
        raise NotImplementedByEngine("IPv6 networks are not supported by Dockyard yet")
    assert isinstance(address, ipaddress.IPv4Address)
    return address
