"""What clients ask of networks, as typed messages, checked before anything is allocated.

`NetworkCreateRequest` is `POST /networks/create`'s body (moby's
`network.CreateRequest`), decoded with Go's JSON rules where it enters the
API; `network_create` checks it and splits its IPAM configuration by address
family. `endpoint_settings` checks a container's `EndpointSettings` for one
network (addresses, link-local addresses, MAC, aliases) and gives back what
inspect echoes. Messages are Docker's; the error texts of Docker 28's
endpoint checks are reproduced, including their `invalid endpoint settings:`
heading.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from dockyard.containers.schema import EndpointIPAMConfig, EndpointSettings
from dockyard.errors import Forbidden, InvalidArgument
from dockyard.network.model import Network
from dockyard.wire import Message, wire

# Network modes and network names that are not user-defined networks (moby's IsPredefined).
PREDEFINED = ("bridge", "host", "none", "default")


class IPAMPool(Message):
    """One `IPAM.Config` entry: a subnet with its range, gateway and reserved addresses."""

    subnet: str = wire(default="")
    ip_range: str = wire("IPRange", default="")
    gateway: str = wire(default="")
    auxiliary_addresses: dict[str, str] | None = wire(default=None)


class IPAM(Message):
    driver: str = wire(default="")
    options: dict[str, str] | None = wire(default=None)
    config: list[IPAMPool] | None = wire(default=None)


class ConfigReference(Message):
    network: str = wire(default="")


class NetworkCreateRequest(Message):
    """`POST /networks/create`'s body."""

    name: str = wire(default="")
    check_duplicate: bool | None = wire(default=None)
    driver: str = wire(default="")
    scope: str = wire(default="")
    enable_ipv4: bool | None = wire("EnableIPv4", default=None)
    enable_ipv6: bool | None = wire("EnableIPv6", default=None)
    ipam: IPAM | None = wire("IPAM", default=None)
    internal: bool = wire(default=False)
    attachable: bool = wire(default=False)
    ingress: bool = wire(default=False)
    config_only: bool = wire(default=False)
    config_from: ConfigReference | None = wire(default=None)
    options: dict[str, str] | None = wire(default=None)
    labels: dict[str, str] | None = wire(default=None)


class NetworkConnectRequest(Message):
    """`POST /networks/{id}/connect`'s body."""

    container: str = wire(default="")
    endpoint_config: EndpointSettings | None = wire(default=None)


class NetworkDisconnectRequest(Message):
    """`POST /networks/{id}/disconnect`'s body."""

    container: str = wire(default="")
    force: bool = wire(default=False)


@dataclass
class SubnetConfig:
    """One subnet to ask IPAM for; an empty `subnet` lets IPAM choose one."""

    subnet: str = ""
    gateway: str = ""
    ip_range: str = ""
    aux: dict[str, str] = field(default_factory=dict)


@dataclass
class NetworkCreate:
    name: str
    driver: str = "bridge"
    scope: str = "local"
    internal: bool = False
    attachable: bool = False
    ingress: bool = False
    enable_ipv6: bool = False
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    ipam_driver: str = "default"
    ipam_options: dict[str, str] = field(default_factory=dict)
    subnets: list[SubnetConfig] = field(default_factory=list)  # IPv4; [] when IPAM chooses
    subnets6: list[SubnetConfig] = field(default_factory=list)  # IPv6, with enable_ipv6 only


_DEFAULT_BRIDGE = "com.docker.network.bridge.default_bridge"
_ENABLE_IPV6_OPTION = "com.docker.network.enable_ipv6"


def network_create(request: NetworkCreateRequest) -> NetworkCreate:
    """The create request checked (names, CIDRs, gateways inside subnets...) and split by family.

    Docker's only rule for a network name is that it is not blank: "test 01" and
    "_private" are fine. No device name derives from it."""
    name = request.name
    if not name.strip():
        raise InvalidArgument("invalid name: name is empty")
    if name in PREDEFINED:
        raise Forbidden(f"operation is not permitted on predefined {name} network ")
    options = dict(request.options or {})
    if _DEFAULT_BRIDGE in options:  # would let a network take over a host's bridge
        raise InvalidArgument(f"option {_DEFAULT_BRIDGE} is reserved for the default network")
    enable_ipv6 = bool(request.enable_ipv6)
    if request.enable_ipv6 is None and _ENABLE_IPV6_OPTION in options:
        enable_ipv6 = _parse_bool(options.pop(_ENABLE_IPV6_OPTION), _ENABLE_IPV6_OPTION)
    elif request.enable_ipv6 is not None:
        options.pop(_ENABLE_IPV6_OPTION, None)  # the field wins, as in Docker
    if request.enable_ipv4 is False:
        raise InvalidArgument("IPv6-only networks (EnableIPv4: false) are not supported")
    ipam = request.ipam or IPAM()
    subnets: list[SubnetConfig] = []
    subnets6: list[SubnetConfig] = []
    for pool in ipam.config or []:
        config = _subnet_config(pool)
        if config.subnet and ipaddress.ip_network(config.subnet).version == 6:
            if enable_ipv6:  # Docker ignores IPv6 subnets of a network without IPv6
                subnets6.append(config)
        else:
            subnets.append(config)
    return NetworkCreate(
        name=name,
        driver=request.driver or "bridge",
        scope=request.scope or "local",
        internal=request.internal,
        attachable=request.attachable,
        ingress=request.ingress,
        enable_ipv6=enable_ipv6,
        options=options,
        labels=dict(request.labels or {}),
        ipam_driver=ipam.driver or "default",
        ipam_options=dict(ipam.options or {}),
        subnets=subnets,
        subnets6=subnets6,
    )


def _parse_bool(text: str, key: str) -> bool:
    """Go's strconv.ParseBool."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise InvalidArgument(f'driver-opt "{key}" is not a valid bool')


def _subnet_config(pool: IPAMPool) -> SubnetConfig:
    aux = dict(pool.auxiliary_addresses or {})
    if not pool.subnet:
        if pool.gateway or pool.ip_range or aux:
            raise InvalidArgument("invalid IPAM config: Gateway and IPRange need a Subnet")
        return SubnetConfig()
    subnet = _network(pool.subnet, "subnet")
    ip_range = ""
    if pool.ip_range:
        sub = _network(pool.ip_range, "ip-range")
        if sub.version != subnet.version or not sub.subnet_of(subnet):  # type: ignore[arg-type]
            raise InvalidArgument(f"no matching subnet for range {pool.ip_range}")
        ip_range = str(sub)
    if pool.gateway and _address(pool.gateway, "gateway") not in subnet:
        raise InvalidArgument(f"no matching subnet for gateway {pool.gateway}")
    reserved = {}
    for name, address in aux.items():
        parsed = _address(address, "aux-address")
        if parsed not in subnet:
            raise InvalidArgument(f"no matching subnet for aux-address {address} ({name})")
        reserved[name] = str(parsed)  # as IPAM records it ("fd00::0:5" is "fd00::5")
    return SubnetConfig(str(subnet), pool.gateway, ip_range, reserved)


def _network(text: str, what: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        given = ipaddress.ip_interface(text)
        if "/" not in text:
            raise ValueError(text)
    except ValueError:
        raise InvalidArgument(f"invalid {what}: invalid CIDR address: {text}") from None
    if given.ip != given.network.network_address:  # host bits set
        raise InvalidArgument(f"invalid {what} {text}: it should be {given.network}")
    return given.network


def _address(text: str, what: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise InvalidArgument(f"invalid {what} address: {text}") from None


# -- endpoint settings ---------------------------------------------------------


def is_user_defined(name: str) -> bool:
    """Whether network name (or mode) `name` is a user-defined network (moby's rule)."""
    return name not in PREDEFINED and not name.startswith("container:")


def endpoint_settings(
    key: str, network: Network | None, settings: EndpointSettings
) -> EndpointSettings:
    """A container's EndpointSettings for network `key` (found as `network`, or not there
    yet), checked as Docker checks them; what inspect echoes back.

    Raises InvalidArgument with Docker's text: "invalid MAC address X", or "invalid
    endpoint settings:" and one line per problem."""
    ipam = settings.ipam_config or EndpointIPAMConfig()
    problems: list[str] = []
    user_defined = network.user_defined if network is not None else is_user_defined(key)
    if not user_defined:
        if ipam.ipv4_address or ipam.ipv6_address:
            problems.append("user specified IP address is supported on user defined networks only")
        if settings.aliases:
            problems.append(
                "network-scoped alias is supported only for containers in user defined networks"
            )
    v4 = _endpoint_address(ipam.ipv4_address, 4, problems)
    v6 = _endpoint_address(ipam.ipv6_address, 6, problems)
    for address in ipam.link_local_ips or []:
        try:
            if ipaddress.ip_address(address).is_unspecified:
                raise ValueError(address)
        except ValueError:
            problems.append(f"invalid link-local IP address: {address}")
    if network is not None:
        for given, pools in ((v4, network.pools), (v6, network.pools6)):
            if given is None:
                continue
            configured = [ipaddress.ip_network(p.subnet) for p in pools if p.configured]
            if not configured:
                problems.append(
                    "user specified IP address is supported only when connecting to networks "
                    "with user configured subnets"
                )
            elif not any(given in subnet for subnet in configured):
                problems.append(f"no configured subnet or ip-range contain the IP address {given}")
    if settings.mac_address and parse_mac(settings.mac_address) is None:
        raise InvalidArgument(f"invalid MAC address {settings.mac_address}")
    if problems:
        raise InvalidArgument("invalid endpoint settings:\n" + _joined(problems))
    for link in settings.links or []:
        parse_link(link)
    has_ipam = ipam.ipv4_address or ipam.ipv6_address or ipam.link_local_ips
    return EndpointSettings(
        ipam_config=EndpointIPAMConfig(
            ipv4_address=ipam.ipv4_address,
            ipv6_address=ipam.ipv6_address,
            link_local_ips=list(ipam.link_local_ips) if ipam.link_local_ips else None,
        )
        if has_ipam
        else None,
        links=list(settings.links) if settings.links else None,
        aliases=list(settings.aliases) if settings.aliases else None,
        mac_address=settings.mac_address,
        driver_opts=settings.driver_opts or None,
        gw_priority=settings.gw_priority,
        network_id=network.id if network is not None else "",
    )


def _endpoint_address(
    text: str, version: int, problems: list[str]
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text)
        if address.version != version or address.is_unspecified:
            raise ValueError(text)
    except ValueError:
        problems.append(f"invalid IPv{version} address: {text}")
        return None
    return address


def _joined(problems: list[str]) -> str:
    """Several problems the way moby joins errors (one alone is just its text)."""
    if len(problems) == 1:
        return problems[0]
    return "* " + "\n* ".join(problems)


_MAC_GROUPS = {
    ":": re.compile(r"[0-9a-fA-F]{2}"),
    "-": re.compile(r"[0-9a-fA-F]{2}"),
    ".": re.compile(r"[0-9a-fA-F]{4}"),
}


def parse_mac(text: str) -> bytes | None:
    """A MAC address as Go's net.ParseMAC reads it (EUI-48, EUI-64 or 20-byte InfiniBand,
    separated by ':' or '-' per byte or '.' per two bytes); None if it is not one."""
    for separator, group in _MAC_GROUPS.items():
        parts = text.split(separator)
        if len(parts) < 2 or not all(group.fullmatch(p) for p in parts):
            continue
        raw = bytes.fromhex("".join(parts))
        if len(raw) in (6, 8, 20):
            return raw
    return None


def parse_link(text: str) -> tuple[str, str]:
    """A link as moby's ParseLink reads it: "name:alias", "name" (alias = name), or
    Docker's stored form "/name:/parent/alias"; (name, alias)."""
    if not text:
        raise InvalidArgument("empty string specified for links")
    parts = text.split(":")
    if len(parts) > 2:
        raise InvalidArgument(f"bad format for links: {text}")
    if len(parts) == 1:
        return text, text
    name, alias = parts
    if name.startswith("/"):
        return name[1:], alias.rsplit("/", 1)[-1]
    return name, alias
