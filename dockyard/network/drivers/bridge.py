"""The `bridge` driver: a Linux bridge per network, a veth pair per endpoint, nftables rules.

Networks: a bridge device named `<bridge-prefix><network id>` (or the option
`com.docker.network.bridge.name`) holding the gateway address, with IPv4
forwarding and `route_localnet` switched on for that device only (forwarding
per device, so the host's global `ip_forward` is the daemon's choice, not the
driver's). A network with IPv6 data also gets its IPv6 gateway address on the
bridge (without duplicate address detection, which would keep it unusable for
a second or more) and IPv6 switched on for that device only; its endpoints get
an IPv6 address and an IPv6 gateway in `join`. A device name never comes from a
network's name: it is the network ID, or a bridge name option the kernel's
rules allow. Endpoints: a veth pair whose host end is `<veth-prefix><endpoint id>`,
enslaved to the bridge, and whose other end is created directly inside the
sandbox (no namespace move, which costs the kernel a synchronisation). Ports:
`program_external_connectivity` holds the host ports and adds their DNAT map
elements; `revoke_external_connectivity` takes them away.

The driver keeps its state in memory; on daemon start-up the manager replays
`create_network`, `create_endpoint`, `join` and `program_external_connectivity`
for what still exists, and each of them is idempotent. Until `resume()` is
called the firewall is not rewritten, so the rules of the previous daemon keep
working during start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from pyroute2 import NetlinkError

from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound, Unavailable
from dockyard.network import netns, ports
from dockyard.network.driver import (
    GENERIC,
    INTERNAL,
    PORT_MAP,
    Capabilities,
    EndpointInterface,
    IPAMData,
    JoinResponse,
    PortBinding,
)
from dockyard.network.firewall import BridgeRules, Firewall, Forward

log = logging.getLogger(__name__)

BRIDGE_NAME = "com.docker.network.bridge.name"
MTU = "com.docker.network.driver.mtu"
MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade"
ICC = "com.docker.network.bridge.enable_icc"
HOST_BINDING = "com.docker.network.bridge.host_binding_ipv4"
DEFAULT_BRIDGE = "com.docker.network.bridge.default_bridge"
IFNAMSIZ = 15
IFA_F_NODAD = 0x02
# The alias (IFLA_IFALIAS) of every bridge this driver creates, followed by the network ID:
# how an interface of ours is told from one of the host's with the same name.
OWNER = "dockyard network "


@dataclass
class _Endpoint:
    id: str
    address: str
    mac: str
    veth: str
    peer: str
    held: ports.Held = field(default_factory=ports.Held)
    address6: str = ""

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]


@dataclass
class _Network:
    id: str
    bridge: str
    subnet: str
    gateway: str  # CIDR
    internal: bool
    masquerade: bool
    mtu: int
    default: bool = False  # the daemon's default bridge: may be a bridge the host made (-b)
    icc: bool = True  # false: containers of the network cannot talk to each other
    host_binding: str = "0.0.0.0"  # the host address of ports published without one
    endpoints: dict[str, _Endpoint] = field(default_factory=dict)
    subnet6: str = ""  # "": no IPv6
    gateway6: str = ""  # CIDR


def mac_for(address: str) -> str:
    """Docker's classic MAC for an IPv4 address: 02:42 then the address's four bytes."""
    octets = ipaddress.IPv4Address(address.split("/")[0]).packed
    return "02:42:" + ":".join(f"{b:02x}" for b in octets)


def _sysctl(bridge: str, key: str, value: str, family: str = "ipv4") -> None:
    """A setting of the bridge device only (never the host's `all` or `default`)."""
    with open(f"/proc/sys/net/{family}/conf/{bridge}/{key}", "w") as f:
        f.write(value)


def valid_device_name(name: str) -> bool:
    """The kernel's rule for interface names (dev_valid_name), minus quotes, backslashes
    and control characters: the name also goes into the firewall's rule text."""
    if not name or len(name) > IFNAMSIZ or name in (".", ".."):
        return False
    return all(33 <= ord(c) < 127 and c not in '/:"\\' for c in name)


class BridgeDriver:
    name = "bridge"

    def __init__(
        self, firewall: Firewall, bridge_prefix: str, veth_prefix: str, default_mtu: int
    ) -> None:
        self.firewall = firewall
        self.bridge_prefix = bridge_prefix
        self.veth_prefix = veth_prefix
        self.default_mtu = default_mtu
        self.networks: dict[str, _Network] = {}
        self._deferred = True
        self._netlink: Any = None  # one rtnetlink connection to the host's namespace, kept open
        self._bridges: dict[str, int] = {}  # bridge name -> interface index
        self._unlinking: set[asyncio.Task[None]] = set()  # veth pairs being deleted
        # Held around every change of published ports and the firewall write that follows,
        # so the table and the endpoints' ports always agree.
        self._lock = asyncio.Lock()

    async def _host(self) -> Any:
        if self._netlink is None:
            self._netlink = await netns.netlink()
        return self._netlink

    def close(self) -> None:
        for task in self._unlinking:  # what is left, the next start's sweep deletes
            task.cancel()
        if self._netlink is not None:
            self._netlink.close()
            self._netlink = None

    def _name(self, prefix: str, ident: str) -> str:
        return prefix + ident[: IFNAMSIZ - len(prefix)]

    async def resume(self) -> None:
        """End of start-up: write the firewall from what was replayed."""
        self._deferred = False
        await self._sync()

    async def _sync(self) -> None:
        if self._deferred:
            return
        async with self._lock:  # the table is written from the state as it is now
            await self.firewall.apply(self.rules(), self.forwards())

    def rules(self) -> list[BridgeRules]:
        return [
            BridgeRules(n.bridge, n.subnet, n.internal, n.masquerade, n.subnet6)
            for n in self.networks.values()
        ]

    def forwards(self) -> list[Forward]:
        return [
            _forward(binding)
            for n in self.networks.values()
            for ep in n.endpoints.values()
            for binding in ep.held.bindings
        ]

    def links(self) -> set[str]:
        """Every device name this driver owns now."""
        names = {n.bridge for n in self.networks.values()}
        names |= {ep.veth for n in self.networks.values() for ep in n.endpoints.values()}
        return names

    async def get_capabilities(self) -> Capabilities:
        return Capabilities()

    # -- networks ------------------------------------------------------------

    async def create_network(
        self,
        network_id: str,
        options: dict[str, Any],
        ipv4_data: list[IPAMData],
        ipv6_data: list[IPAMData],
    ) -> None:
        generic = dict(options.get(GENERIC) or {})
        if not ipv4_data or not ipv4_data[0].gateway:
            raise InvalidArgument("bridge networks need an IPv4 pool with a gateway")
        if len(ipv4_data) > 1:
            raise InvalidArgument("bridge driver doesn't support multiple subnets")
        data = ipv4_data[0]
        try:
            mtu = int(generic.get(MTU) or self.default_mtu)
        except ValueError:
            raise InvalidArgument(f"invalid MTU: {generic.get(MTU)}") from None
        icc = _flag(generic, ICC)
        masquerade = _flag(generic, MASQUERADE)
        host_binding = str(generic.get(HOST_BINDING) or "0.0.0.0")
        try:
            ipaddress.IPv4Address(host_binding)
        except ValueError:
            raise InvalidArgument(
                f"invalid {HOST_BINDING} {host_binding!r}: an IPv4 address is required"
            ) from None
        if len(ipv6_data) > 1:
            raise InvalidArgument("bridge driver doesn't support multiple IPv6 subnets")
        bridge = generic.get(BRIDGE_NAME) or self._name(self.bridge_prefix, network_id)
        if len(bridge) > IFNAMSIZ:
            raise InvalidArgument(f"bridge name {bridge!r} is longer than {IFNAMSIZ} characters")
        if not valid_device_name(bridge):
            raise InvalidArgument(f"invalid bridge name {bridge!r}")
        for other in self.networks.values():
            if other.bridge == bridge and other.id != network_id:
                raise Conflict(f"bridge name {bridge} is already in use by another network")
        network = _Network(
            network_id,
            bridge,
            str(ipaddress.ip_network(data.pool, strict=False)),
            data.gateway,
            bool(options.get(INTERNAL)),
            masquerade,
            mtu,
            str(generic.get(DEFAULT_BRIDGE, "")).lower() == "true",
            icc,
            host_binding,
        )
        if ipv6_data:
            if not ipv6_data[0].gateway:
                raise InvalidArgument("bridge networks need an IPv6 gateway for their IPv6 pool")
            network.subnet6 = str(ipaddress.ip_network(ipv6_data[0].pool, strict=False))
            network.gateway6 = ipv6_data[0].gateway
        replay = network_id in self.networks
        if replay:
            network.endpoints = self.networks[network_id].endpoints
        ipr = await self._host()
        existed = bool(await ipr.link_lookup(ifname=bridge))
        try:
            try:
                await self._ensure_bridge(network)
            except (NetlinkError, OSError) as e:
                raise Unavailable(f"cannot set up bridge {bridge}: {e}") from e
            self.networks[network_id] = network
            await self._sync()
        except BaseException:
            if not replay:
                self.networks.pop(network_id, None)
            if not existed:  # a failed create leaves no device behind
                self._bridges.pop(bridge, None)
                with contextlib.suppress(NetlinkError):
                    await ipr.link("del", ifname=bridge)
            raise

    async def _ensure_bridge(self, network: _Network) -> None:
        gateway = ipaddress.ip_interface(network.gateway)
        ipr = await self._host()
        found = await ipr.link_lookup(ifname=network.bridge)
        if found:
            index = found[0]
            await self._adopt(ipr, index, network)
        else:
            await ipr.link(
                "add",
                ifname=network.bridge,
                kind="bridge",
                address=mac_for(str(gateway.ip)),
                mtu=network.mtu,
            )
            index = (await ipr.link_lookup(ifname=network.bridge))[0]
            await ipr.link("set", index=index, ifalias=OWNER + network.id)
        addresses = [a.get("address") async for a in await ipr.get_addr(index=index, family=2)]
        if str(gateway.ip) not in addresses:
            await ipr.addr(
                "add", index=index, address=str(gateway.ip), prefixlen=gateway.network.prefixlen
            )
        if network.gateway6:
            _sysctl(network.bridge, "disable_ipv6", "0", "ipv6")
            gateway6 = ipaddress.ip_interface(network.gateway6)
            found6 = [a.get("address") async for a in await ipr.get_addr(index=index, family=10)]
            if str(gateway6.ip) not in found6:
                await ipr.addr(
                    "add",
                    index=index,
                    address=str(gateway6.ip),
                    prefixlen=gateway6.network.prefixlen,
                    flags=IFA_F_NODAD,
                )
        await ipr.link("set", index=index, state="up")
        self._bridges[network.bridge] = index
        _sysctl(network.bridge, "forwarding", "1")
        _sysctl(network.bridge, "route_localnet", "1")

    async def _adopt(self, ipr: Any, index: int, network: _Network) -> None:
        """Use an existing interface as the network's bridge, if it is ours to use: one
        this driver made for the network, the host's bridge named as the default bridge
        (like Docker's -b), or, while start-up replays the records, an unmarked bridge
        (made before bridges were marked). Never an interface of the host."""
        link = await _link(ipr, index)
        alias = link.get("ifalias") or ""
        if alias == OWNER + network.id:
            return
        bridge = link.get(("linkinfo", "kind")) == "bridge"
        if bridge and network.default:
            return
        if bridge and self._deferred and not alias:
            await ipr.link("set", index=index, ifalias=OWNER + network.id)
            return
        raise Conflict(
            f"cannot create network with bridge name {network.bridge}: an interface with that "
            "name already exists and was not created by Dockyard for this network"
        )

    async def _owned(self, ipr: Any, network: _Network) -> int | None:
        """The index of the network's bridge if this driver made it for the network."""
        for index in await ipr.link_lookup(ifname=network.bridge):
            if (await _link(ipr, index)).get("ifalias") == OWNER + network.id:
                return int(index)
        return None

    async def delete_network(self, network_id: str) -> None:
        network = self.networks.pop(network_id, None)
        if network is None:
            return
        for ep in network.endpoints.values():
            ep.held.close()
        self._bridges.pop(network.bridge, None)
        ipr = await self._host()
        with contextlib.suppress(NetlinkError):
            index = await self._owned(ipr, network)
            if index is not None:  # never an interface of the host's
                await ipr.link("del", index=index)
        await self._sync()

    def _network(self, network_id: str) -> _Network:
        network = self.networks.get(network_id)
        if network is None:
            raise NotFound(f"network {network_id} not found")
        return network

    # -- endpoints -----------------------------------------------------------

    async def create_endpoint(
        self,
        network_id: str,
        endpoint_id: str,
        interface: EndpointInterface,
        options: dict[str, Any],
    ) -> EndpointInterface | None:
        network = self._network(network_id)
        if not interface.address:
            raise InvalidArgument("bridge endpoints need an IPv4 address")
        mac = interface.mac_address or mac_for(interface.address)
        previous = network.endpoints.get(endpoint_id)
        network.endpoints[endpoint_id] = _Endpoint(
            endpoint_id,
            interface.address,
            mac,
            self._name(self.veth_prefix, endpoint_id),
            "dy" + endpoint_id[:12],
            previous.held if previous else ports.Held(),
            interface.address_ipv6 if network.subnet6 else "",
        )
        return None if interface.mac_address else EndpointInterface(mac_address=mac)

    async def endpoint_oper_info(self, network_id: str, endpoint_id: str) -> dict[str, Any]:
        ep = self._network(network_id).endpoints.get(endpoint_id)
        if ep is None:
            return {}
        return {PORT_MAP: [b.to_wire() for b in ep.held.bindings]}

    async def delete_endpoint(self, network_id: str, endpoint_id: str) -> None:
        network = self.networks.get(network_id)
        ep = network.endpoints.pop(endpoint_id, None) if network else None
        if ep is not None:
            ep.held.close()
            # The sandbox may outlive the endpoint (a container sharing it with
            # --network container:...), and the pair with it: deleted here, as Docker
            # does, but off the container's path: the kernel takes ~10 ms to delete a
            # veth pair, which usually goes with its sandbox anyway.
            task = asyncio.create_task(self._unlink(ep.veth))
            self._unlinking.add(task)
            task.add_done_callback(self._unlinking.discard)

    async def _unlink(self, veth: str) -> None:
        with contextlib.suppress(NetlinkError):
            await (await self._host()).link("del", ifname=veth)

    async def join(
        self, network_id: str, endpoint_id: str, sandbox_key: str, options: dict[str, Any]
    ) -> JoinResponse:
        network = self._network(network_id)
        ep = network.endpoints.get(endpoint_id)
        if ep is None:
            raise NotFound(f"endpoint {endpoint_id} not found")
        gateway = "" if network.internal else network.gateway.split("/")[0]
        gateway6 = "" if network.internal or not ep.address6 else network.gateway6.split("/")[0]
        ipr = await self._host()
        bridge = self._bridges.get(network.bridge)
        if bridge is None:
            raise Unavailable(f"bridge {network.bridge} of network {network_id} is gone")
        fd = os.open(sandbox_key, os.O_RDONLY)
        try:
            await ipr.link(
                "add",
                ifname=ep.veth,
                kind="veth",
                master=bridge,
                mtu=network.mtu,
                state="up",
                peer={"ifname": ep.peer, "net_ns_fd": fd, "mtu": network.mtu},
            )
        except NetlinkError as e:
            if e.code == errno.EEXIST and await ipr.link_lookup(ifname=ep.veth):
                # joined already (replay)
                return JoinResponse(src_name=ep.peer, gateway=gateway, gateway_ipv6=gateway6)
            raise Unavailable(f"cannot create interface {ep.veth}: {e}") from e
        finally:
            os.close(fd)
        if not network.icc:
            # An isolated bridge port forwards only to ports that are not isolated (the
            # bridge itself, so the host): no traffic between the network's containers.
            try:
                await ipr.brport(
                    "set", index=(await ipr.link_lookup(ifname=ep.veth))[0], isolated=1
                )
            except (NetlinkError, IndexError) as e:
                with contextlib.suppress(NetlinkError):
                    await ipr.link("del", ifname=ep.veth)
                raise Unavailable(f"cannot isolate interface {ep.veth}: {e}") from e
        return JoinResponse(src_name=ep.peer, gateway=gateway, gateway_ipv6=gateway6)

    async def leave(self, network_id: str, endpoint_id: str) -> None:
        return None  # the engine takes the interface out of the sandbox

    async def program_external_connectivity(
        self, network_id: str, endpoint_id: str, options: dict[str, Any]
    ) -> None:
        network = self._network(network_id)
        ep = network.endpoints.get(endpoint_id)
        if ep is None:
            raise NotFound(f"endpoint {endpoint_id} not found")
        requests = [PortBinding.from_wire(b) for b in options.get(PORT_MAP) or []]
        if not requests or network.internal:
            return
        for request in requests:
            request.host_ip = request.host_ip or network.host_binding
        ep.held.close()
        try:
            held = ports.hold(requests, ep.ip)
        except DockyardError as e:
            if not self._deferred:
                raise
            # Start-up replay: the rules still work without the daemon holding the port.
            log.warning("cannot hold published ports of endpoint %s: %s", endpoint_id, e.message)
            for request in requests:
                request.ip = ep.ip
            held = ports.Held(bindings=requests)
        async with self._lock:
            try:
                if not self._deferred:
                    await self.firewall.add([_forward(b) for b in held.bindings])
            except BaseException:
                held.close()
                raise
            ep.held = held

    async def revoke_external_connectivity(self, network_id: str, endpoint_id: str) -> None:
        network = self.networks.get(network_id)
        ep = network.endpoints.get(endpoint_id) if network else None
        if ep is None or not ep.held.bindings:
            return
        async with self._lock:
            bindings, ep.held = ep.held, ports.Held()
            bindings.close()
            if not self._deferred:
                await self.firewall.delete([_forward(b) for b in bindings.bindings])


async def _link(ipr: Any, index: int) -> Any:
    """The RTM_NEWLINK message describing interface `index`."""
    async for message in await ipr.get_links(index):
        return message
    raise NetlinkError(errno.ENODEV, f"no interface with index {index}")


def _flag(options: dict[str, Any], key: str) -> bool:
    """A boolean driver option (default true), parsed like Go's strconv.ParseBool."""
    value = str(options.get(key, "true")).lower()
    if value in ("1", "t", "true"):
        return True
    if value in ("0", "f", "false"):
        return False
    raise InvalidArgument(f"invalid value {options[key]!r} for option {key}: a boolean is required")


def _forward(binding: PortBinding) -> Forward:
    return Forward(
        ports.proto_name(binding.proto),
        binding.host_ip or "0.0.0.0",
        binding.host_port,
        binding.ip,
        binding.port,
    )
