"""The network manager: networks, endpoints and container sandboxes over the driver interfaces.

It holds the records (`model`), talks to drivers only through `NetworkDriver`
and to IPAM only through `IpamDriver`, and does the engine's share of the
protocol: the sandbox (a network namespace per container), moving and
configuring interfaces in it, routes, the default gateway, `/etc` file
contents and the embedded DNS server.

Container lifecycle hooks (called by the container service, the container's
lock held):

    setup(container)     before the runtime creates the container: sandbox,
                         an endpoint per network (IPAM address, CreateEndpoint,
                         Join, interface configured), gateway and published
                         ports, DNS. Any failure undoes everything.
    teardown(container)  after it stopped: endpoints removed, addresses
                         released, sandbox unmounted. Never fails.

Start-up: `start()` replays every network to its driver before containers are
restored; `reconcile()` afterwards replays the endpoints of running
containers, removes those of dead ones, and deletes sandboxes, devices and
addresses that no record owns.

Drivers and IPAM drivers that are not built in are plugins (`plugins`, set by
the engine), looked up by name when first needed and registered with their
capabilities (`drivers.remote`, `ipam_remote`); each network holds a reference
on its managed plugins. A plugin is a process of its own that keeps its state
across daemon restarts: its networks and live endpoints are not replayed to it,
only an IPAM that asks for it (`RequiresRequestReplay`) gets its pools, gateways
and addresses requested again, as Docker does.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyroute2 import NetlinkError

from dockyard.containers import etcfiles, schema
from dockyard.containers.schema import EndpointSettings, HostConfig, NetworkingConfig
from dockyard.errors import (
    Conflict,
    DockyardError,
    Forbidden,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from dockyard.events.bus import EventBus
from dockyard.images.oci import now_rfc3339
from dockyard.network import netns, ports, requests
from dockyard.network.dns import EmbeddedDNS
from dockyard.network.driver import (
    ENABLE_IPV4,
    ENABLE_IPV6,
    EXPOSED_PORTS,
    GENERIC,
    INTERNAL,
    MAC_ADDRESS,
    PORT_MAP,
    PROTOCOLS,
    EndpointInterface,
    IPAMData,
    JoinResponse,
    NetworkDriver,
    PortBinding,
)
from dockyard.network.drivers.bridge import BRIDGE_NAME, MASQUERADE, MTU, BridgeDriver
from dockyard.network.drivers.host import NoInterfaceDriver
from dockyard.network.drivers.remote import RemoteNetworkDriver
from dockyard.network.firewall import Firewall
from dockyard.network.ipam import GATEWAY_DATA, GATEWAY_REQUEST, IpamDriver
from dockyard.network.ipam_default import DefaultIpam, parse_pools
from dockyard.network.ipam_remote import RemoteIpam
from dockyard.network.model import Endpoint, Network, PoolLease
from dockyard.plugins import inprocess
from dockyard.plugins.check import CheckReport
from dockyard.plugins.managed import ManagedPlugin
from dockyard.plugins.protocol import IPAM, NETWORK
from dockyard.state.db import Database

if TYPE_CHECKING:
    from dockyard.containers.model import Container
    from dockyard.containers.service import ContainerService
    from dockyard.plugins.service import PluginService

log = logging.getLogger(__name__)

BUILTIN_DRIVERS = ("bridge", "host", "null")
BUILTIN_IPAM = "default"


@dataclass
class NetworkConfig:
    """The daemon's networking settings (daemon.json keys in parentheses)."""

    exec_root: str
    bridge: str = "dockyard0"  # default bridge device (bridge)
    bip: str | None = None  # its address, CIDR (bip); None: first free default pool
    default_address_pools: list[dict[str, Any]] | None = None  # (default-address-pools)
    mtu: int = 1500  # (mtu)
    ip_forward: bool = True  # switch on the host's net.ipv4.ip_forward (ip-forward)
    ip_masq: bool = True  # (ip-masq)
    nftables_table: str = "dockyard"  # Dockyard: the nftables table owned by this daemon
    # Dockyard's own prefixes differ from Docker's and Podman's ("br-", "veth"): the daemon
    # deletes devices with its prefixes that it does not own at start-up.
    bridge_prefix: str = "dy-"  # Dockyard: user-defined network bridges
    veth_prefix: str = "dyv"  # Dockyard: host ends of veth pairs


@dataclass
class Setup:
    """What the container's spec and /etc files need from its networking."""

    netns_path: str | None = None  # None: the runtime makes (none) or skips (host) one
    addresses: list[str] = field(default_factory=list)
    embedded_dns: bool = False
    shared_dir: str | None = None  # container:<id>: that container's directory
    hostname: str | None = None
    host_gateway: str = ""  # what `--add-host NAME:host-gateway` means


class NetworkManager:
    def __init__(self, db: Database, events: EventBus, config: NetworkConfig) -> None:
        self.db = db
        self.events = events
        self.config = config
        self.sandbox_dir = os.path.join(config.exec_root, "netns")
        os.makedirs(self.sandbox_dir, mode=0o711, exist_ok=True)
        self.firewall = Firewall(config.nftables_table)
        self.bridge = BridgeDriver(
            self.firewall, config.bridge_prefix, config.veth_prefix, config.mtu
        )
        self.drivers: dict[str, NetworkDriver] = {
            "bridge": self.bridge,
            "host": NoInterfaceDriver("host"),
            "null": NoInterfaceDriver("null"),
        }
        self.ipam = DefaultIpam(db, parse_pools(config.default_address_pools))
        self.ipams: dict[str, IpamDriver] = {"default": self.ipam}
        self.plugins: PluginService | None = None  # set by the engine
        self._registering: dict[str, asyncio.Lock] = {}
        self._creating: set[str] = set()  # names of networks being created
        self.dns = EmbeddedDNS(self)
        self.containers: ContainerService | None = None
        self.networks: dict[str, Network] = {}
        self.endpoints: dict[str, Endpoint] = {}
        for row in db.all("SELECT record FROM networks ORDER BY created"):
            network = Network.from_json(row["record"])
            self.networks[network.id] = network
        for row in db.all("SELECT record FROM endpoints"):
            endpoint = Endpoint.from_json(row["record"])
            self.endpoints[endpoint.id] = endpoint

    # -- records -------------------------------------------------------------

    def _save_network(self, network: Network) -> None:
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO networks(id, name, created, record) VALUES (?,?,?,?) "
                "ON CONFLICT(id) DO UPDATE SET record=excluded.record",
                (network.id, network.name, time.time(), network.to_json()),
            )
        self.networks[network.id] = network

    def _save_endpoint(self, endpoint: Endpoint) -> None:
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO endpoints(id, network_id, container_id, record) VALUES (?,?,?,?) "
                "ON CONFLICT(id) DO UPDATE SET record=excluded.record",
                (endpoint.id, endpoint.network_id, endpoint.container_id, endpoint.to_json()),
            )
        self.endpoints[endpoint.id] = endpoint

    def _forget_endpoint(self, endpoint: Endpoint) -> None:
        with self.db.transaction():
            self.db.execute("DELETE FROM endpoints WHERE id=?", (endpoint.id,))
        self.endpoints.pop(endpoint.id, None)

    def emit(self, network: Network, action: str, **extra: str) -> None:
        attributes = {"name": network.name, "type": network.driver, **extra}
        self.events.emit("network", action, network.id, attributes)

    # -- lookup --------------------------------------------------------------

    def get(self, ref: str) -> Network:
        """By full ID, exact name, or unique ID prefix (docker's order)."""
        if ref in self.networks:
            return self.networks[ref]
        for network in self.networks.values():
            if network.name == ref:
                return network
        if ref:
            matches = [n for n in self.networks.values() if n.id.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise InvalidArgument(f"network {ref} is ambiguous ({len(matches)} matches found)")
        raise NotFound(f"network {ref} not found")

    def all(self) -> list[Network]:
        return sorted(self.networks.values(), key=lambda n: n.created)

    def endpoints_of(self, network: Network) -> list[Endpoint]:
        return [e for e in self.endpoints.values() if e.network_id == network.id]

    def container_endpoints(self, container_id: str) -> list[Endpoint]:
        return [e for e in self.endpoints.values() if e.container_id == container_id]

    def sandbox_path(self, container_id: str) -> str:
        return os.path.join(self.sandbox_dir, container_id)

    def find_container(self, container_id: str) -> Container | None:
        assert self.containers is not None
        try:
            return self.containers.get(container_id)
        except NotFound:
            return None

    # -- start-up ------------------------------------------------------------

    async def start(self) -> None:
        """Make sure the predefined networks exist and replay every network to its driver."""
        if self.config.ip_forward:
            try:
                with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
                    f.write("1")
            except OSError as e:
                log.warning("cannot enable IPv4 forwarding: %s", e)
        names = {n.name for n in self.networks.values()}
        if "bridge" not in names:
            await self._create_default_bridge()
        for name, driver in (("host", "host"), ("none", "null")):
            if name not in names:
                network = Network(secrets.token_hex(32), name, driver, now_rfc3339())
                network.predefined = True
                self._save_network(network)
        for network in self.all():
            self._hold(network, 1)
            if network.driver not in BUILTIN_DRIVERS:
                continue  # a plugin keeps its own networks
            try:
                await (await self._driver(network)).create_network(
                    network.id, self._driver_options(network), self._ipam_data(network), []
                )
            except DockyardError as e:
                log.error("network %s cannot be restored: %s", network.name, e.message)
        await self._replay_allocations()

    async def _replay_allocations(self) -> None:
        """Pools, gateways, aux and endpoint addresses requested again from the IPAM
        plugins that keep no state of their own (`RequiresRequestReplay`), as Docker does
        at start-up; pool IDs may change."""
        by_driver: dict[str, list[Network]] = {}
        for network in self.all():
            if network.ipam_driver != BUILTIN_IPAM and network.pools:
                by_driver.setdefault(network.ipam_driver, []).append(network)
        for name, networks in by_driver.items():
            try:
                ipam = await self.ipam_driver(name)
                if not (await ipam.get_capabilities()).requires_request_replay:
                    continue
            except DockyardError as e:
                log.error("IPAM driver %s cannot be registered: %s", name, e.message)
                continue
            for network in networks:
                try:
                    await self._replay_pools(ipam, network)
                except DockyardError as e:
                    log.error("allocations of network %s: %s", network.name, e.message)

    async def _replay_pools(self, ipam: IpamDriver, network: Network) -> None:
        renamed: dict[str, str] = {}
        for lease in network.pools:
            space = lease.address_space or (await ipam.get_default_address_spaces()).local
            pool = await ipam.request_pool(
                space, lease.subnet, lease.ip_range, dict(network.ipam_options)
            )
            if lease.gateway and not pool.data.get(GATEWAY_DATA):
                await ipam.request_address(
                    pool.pool_id, lease.gateway.split("/")[0], dict(GATEWAY_REQUEST)
                )
            for address in lease.aux.values():
                await ipam.request_address(pool.pool_id, address)
            renamed[lease.pool_id] = pool.pool_id
            lease.pool_id = pool.pool_id
        self._save_network(network)
        for endpoint in self.endpoints_of(network):
            if endpoint.address and endpoint.pool_id in renamed:
                endpoint.pool_id = renamed[endpoint.pool_id]
                self._save_endpoint(endpoint)
                await ipam.request_address(endpoint.pool_id, endpoint.ip)

    async def _create_default_bridge(self) -> None:
        config = [{"Subnet": "", "Gateway": ""}]
        if self.config.bip:
            try:
                interface = ipaddress.ip_interface(self.config.bip)
            except ValueError:
                raise InvalidArgument(f"invalid bip {self.config.bip!r}") from None
            config = [{"Subnet": str(interface.network), "Gateway": str(interface.ip)}]
        options = {
            "com.docker.network.bridge.default_bridge": "true",
            "com.docker.network.bridge.enable_icc": "true",
            MASQUERADE: "true" if self.config.ip_masq else "false",
            "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
            BRIDGE_NAME: self.config.bridge,
            MTU: str(self.config.mtu),
        }
        network = Network(secrets.token_hex(32), "bridge", "bridge", now_rfc3339(), options=options)
        network.predefined = True
        await self._allocate_pools(network, config, explicit=bool(self.config.bip))
        self._save_network(network)

    async def reconcile(self) -> None:
        """After containers are restored: keep what runs, remove what no record owns."""
        assert self.containers is not None
        live: set[str] = set()
        for container in self.containers.all():
            if not container.state.running:
                continue
            endpoints = self.container_endpoints(container.id)
            sandbox = self.sandbox_path(container.id)
            if not netns.is_mounted(sandbox) and any(e.address for e in endpoints):
                log.warning("sandbox of running container %s is gone", container.short_id)
                continue
            for endpoint in endpoints:
                if not endpoint.joined:
                    continue
                try:
                    network = self.networks.get(endpoint.network_id)
                    if network is not None and network.driver in BUILTIN_DRIVERS:
                        await self._replay(endpoint, sandbox)
                    live.add(endpoint.id)
                except DockyardError as e:
                    log.error("endpoint %s cannot be restored: %s", endpoint.id[:12], e.message)
            if self._uses_dns(container.id) and netns.is_mounted(sandbox):
                try:
                    await self.dns.serve(container.id, sandbox)
                except OSError as e:
                    log.error("DNS for %s cannot be restored: %s", container.short_id, e)
        for endpoint in list(self.endpoints.values()):
            if endpoint.id not in live:
                await self._remove_endpoint(endpoint, None)
        running = {c.id for c in self.containers.all() if c.state.running}
        for entry in os.listdir(self.sandbox_dir):
            if entry not in running:
                netns.destroy(os.path.join(self.sandbox_dir, entry))
        await self._release_orphan_addresses()
        await self._delete_stray_links()
        await self.bridge.resume()

    async def _replay(self, endpoint: Endpoint, sandbox: str) -> None:
        network = self.networks[endpoint.network_id]
        driver = await self._driver(network)
        await driver.create_endpoint(
            network.id,
            endpoint.id,
            EndpointInterface(endpoint.address, "", endpoint.mac),
            self._endpoint_options(self.find_container(endpoint.container_id)),
        )
        if endpoint.address:
            await driver.join(network.id, endpoint.id, sandbox, {})
        if endpoint.external and endpoint.ports:
            await driver.program_external_connectivity(
                network.id, endpoint.id, {PORT_MAP: endpoint.ports}
            )

    async def _release_orphan_addresses(self) -> None:
        owned: dict[str, set[str]] = {}
        for network in self.networks.values():
            for pool in network.pools:
                kept = owned.setdefault(pool.pool_id, set())
                if pool.gateway:
                    kept.add(pool.gateway.split("/")[0])
                kept.update(pool.aux.values())
        for endpoint in self.endpoints.values():
            if endpoint.pool_id:
                owned.setdefault(endpoint.pool_id, set()).add(endpoint.ip)
        for pool_id, addresses in self.ipam.allocated().items():
            for address in addresses - owned.get(pool_id, set()):
                await self.ipam.release_address(pool_id, address)
            if pool_id not in owned:
                await self.ipam.release_pool(pool_id)

    async def _delete_stray_links(self) -> None:
        owned = self.bridge.links()
        prefixes = (self.config.bridge_prefix, self.config.veth_prefix)
        async with await netns.netlink() as ipr:
            async for link in await ipr.get_links():
                name = link.get("ifname") or ""
                if name in owned or name == self.config.bridge:
                    continue
                kind = link.get(("linkinfo", "kind"))
                if name.startswith(prefixes) and kind in ("bridge", "veth"):
                    with contextlib.suppress(NetlinkError):
                        await ipr.link("del", index=link["index"])

    async def close(self) -> None:
        self.dns.stop_all()
        self.bridge.close()

    # -- drivers, IPAM -------------------------------------------------------

    async def _driver(self, network: Network) -> NetworkDriver:
        return await self.driver(network.driver)

    async def driver(self, name: str) -> NetworkDriver:
        """The network driver `name`: built in, or a plugin registered on first use."""
        driver = self.drivers.get(name)
        if driver is None:
            async with self._registering.setdefault(NETWORK + name, asyncio.Lock()):
                driver = self.drivers.get(name)
                if driver is None:
                    plugin = await self._plugin(name, NETWORK)
                    driver = self.drivers[name] = await RemoteNetworkDriver.activate(plugin)
        return driver

    async def ipam_driver(self, name: str) -> IpamDriver:
        """The IPAM driver `name`: built in, or a plugin registered on first use."""
        ipam = self.ipams.get(name)
        if ipam is None:
            async with self._registering.setdefault(IPAM + name, asyncio.Lock()):
                ipam = self.ipams.get(name)
                if ipam is None:
                    plugin = await self._plugin(name, IPAM)
                    ipam = self.ipams[name] = await RemoteIpam.activate(plugin)
        return ipam

    async def _plugin(self, name: str, kind: str) -> Any:
        if self.plugins is None:
            raise NotFound(f'plugin "{name}" not found')
        return await self.plugins.get(name, kind)

    async def check_builtin(self, name: str) -> CheckReport:
        """`plugin check bridge|default`: the built-in bridge driver or IPAM through the
        plugin protocol and the same checks as any plugin (see `plugins.inprocess`). The
        bridge is checked on a pool of the default IPAM and in a sandbox of its own."""
        if name == BUILTIN_IPAM:
            return await inprocess.check_served(name, inprocess.ServedIpamDriver(self.ipam))
        if name != "bridge":
            raise InvalidArgument(f"the {name} driver makes no interfaces: nothing to check")
        pool = await self.ipam.request_pool((await self.ipam.get_default_address_spaces()).local)
        sandbox = os.path.join(self.sandbox_dir, "check-" + secrets.token_hex(4))
        try:
            (await netns.create(sandbox)).close()
            return await inprocess.check_served(
                name,
                inprocess.ServedNetworkDriver(self.bridge),
                subnet=pool.pool,
                sandbox=sandbox,
            )
        finally:
            with contextlib.suppress(OSError, NetlinkError):
                # the interfaces the check left go now, not when the kernel frees the netns
                async with await netns.netlink(sandbox) as ipr:
                    async for link in await ipr.get_links():
                        if link.get("ifname") != "lo":
                            await ipr.link("del", index=link["index"])
            with contextlib.suppress(OSError):
                netns.destroy(sandbox)
            await self.ipam.release_pool(pool.pool_id)

    def plugin_names(self) -> tuple[list[str], list[str]]:
        """Network and IPAM plugins registered or named by a network (for `info`)."""
        drivers = [*self.drivers, *(n.driver for n in self.all())]
        ipams = [*self.ipams, *(n.ipam_driver for n in self.all())]
        return (
            [d for d in dict.fromkeys(drivers) if d not in BUILTIN_DRIVERS],
            [i for i in dict.fromkeys(ipams) if i != BUILTIN_IPAM],
        )

    def forget_plugin(self, name: str) -> None:
        """A plugin stopped serving (disabled, removed): register it again on next use."""
        for registry in (self.drivers, self.ipams):
            found = registry.get(name)
            if isinstance(found, RemoteNetworkDriver | RemoteIpam):
                registry.pop(name, None)

    def _managed_plugins(self, network: Network) -> list[ManagedPlugin]:
        """The managed plugins serving `network` (driver, IPAM)."""
        if self.plugins is None:
            return []
        names = [n for n in (network.driver,) if n not in BUILTIN_DRIVERS]
        names += [n for n in (network.ipam_driver,) if n != BUILTIN_IPAM]
        found = [self.plugins.managed.lookup(name) for name in names]
        return [m for m in found if m is not None]

    def _hold(self, network: Network, count: int) -> None:
        """Take (1) or give back (-1) the network's references on its managed plugins."""
        if self.plugins is None:
            return
        for managed in self._managed_plugins(network):
            if count > 0:
                self.plugins.managed.acquire(managed.id)
            else:
                self.plugins.managed.release(managed.id)

    def _driver_options(self, network: Network) -> dict[str, Any]:
        options: dict[str, Any] = {
            ENABLE_IPV4: True,
            ENABLE_IPV6: network.enable_ipv6,
            GENERIC: dict(network.options),
        }
        if network.internal:
            options[INTERNAL] = True
        return options

    def _ipam_data(self, network: Network) -> list[IPAMData]:
        data = []
        for pool in network.pools:
            prefix = pool.subnet.split("/")[1]
            aux = {name: f"{address}/{prefix}" for name, address in pool.aux.items()}
            data.append(
                IPAMData(pool.address_space or "LocalDefault", pool.subnet, pool.gateway, aux)
            )
        return data

    async def _allocate_pools(
        self,
        network: Network,
        configs: list[dict[str, Any]],
        *,
        explicit: bool,
        skip_gateway: bool = False,
    ) -> None:
        """IPAM pools, gateway and aux addresses for every subnet (spec §5.3); all or nothing.

        `skip_gateway`: the network driver said it needs no gateway address (GwAllocCheck);
        one the user asked for is still requested."""
        ipam = await self.ipam_driver(network.ipam_driver)
        await ipam.get_default_address_spaces()  # the network's space (always local here)
        leases: list[PoolLease] = []
        try:
            for config in configs:
                space = (await ipam.get_default_address_spaces()).local
                subnet = config.get("Subnet") or ""
                ip_range = config.get("IPRange") or ""
                rejected = []
                try:
                    while True:
                        pool = await ipam.request_pool(
                            space, subnet, ip_range, dict(network.ipam_options)
                        )
                        if subnet or explicit or not self._overlaps_host_route(pool.pool):
                            break
                        rejected.append(pool.pool_id)  # kept until the end: asked again, IPAM
                        # must hand out another one
                finally:
                    for pool_id in rejected:
                        await ipam.release_pool(pool_id)
                lease = PoolLease(pool.pool_id, pool.pool, ip_range=ip_range, address_space=space)
                leases.append(lease)
                gateway = config.get("Gateway") or ""
                if gateway:
                    lease.gateway, _ = await ipam.request_address(
                        pool.pool_id, gateway, dict(GATEWAY_REQUEST)
                    )
                elif pool.data.get(GATEWAY_DATA):
                    lease.gateway = pool.data[GATEWAY_DATA]
                elif not skip_gateway:
                    lease.gateway, _ = await ipam.request_address(
                        pool.pool_id, "", dict(GATEWAY_REQUEST)
                    )
                for name, address in (config.get("AuxiliaryAddresses") or {}).items():
                    await ipam.request_address(pool.pool_id, address)
                    lease.aux[name] = address
                shown: dict[str, Any] = {"Subnet": pool.pool}
                if ip_range:
                    shown["IPRange"] = ip_range
                if lease.gateway:
                    shown["Gateway"] = lease.gateway.split("/")[0]
                if lease.aux:
                    shown["AuxiliaryAddresses"] = dict(lease.aux)
                network.ipam_config.append(shown)
        except BaseException:
            await self._release_pools(network.ipam_driver, leases)
            network.ipam_config = []
            raise
        network.pools = leases

    async def _release_pools(self, ipam_name: str, leases: list[PoolLease]) -> None:
        """Gateway, aux addresses, then the pool, each on its own: one refusal does not
        keep the rest (a failure is logged; the allocation is the IPAM driver's to lose)."""
        try:
            ipam = await self.ipam_driver(ipam_name)
        except DockyardError as e:
            log.warning("cannot release pools at IPAM driver %s: %s", ipam_name, e.message)
            return
        for lease in leases:
            gateway = [lease.gateway.split("/")[0]] if lease.gateway else []
            for address in [*gateway, *lease.aux.values()]:
                try:
                    await ipam.release_address(lease.pool_id, address)
                except DockyardError as e:
                    log.warning("releasing %s of pool %s: %s", address, lease.pool_id, e.message)
            try:
                await ipam.release_pool(lease.pool_id)
            except DockyardError as e:
                log.warning("releasing pool %s: %s", lease.pool_id, e.message)

    def _overlaps_host_route(self, cidr: str) -> bool:
        candidate = ipaddress.ip_network(cidr)
        try:
            with open("/proc/net/route") as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            return False
        for line in lines:
            fields = line.split()
            if len(fields) < 8 or fields[1] == "00000000":
                continue
            dest = ipaddress.IPv4Address(int(fields[1], 16).to_bytes(4, "little"))
            mask = ipaddress.IPv4Address(int(fields[7], 16).to_bytes(4, "little"))
            if candidate.overlaps(ipaddress.ip_network(f"{dest}/{mask}", strict=False)):
                return True
        return False

    # -- network create / remove / prune ---------------------------------------

    async def create(self, request: dict[str, Any]) -> Network:
        wanted = requests.network_create(request)
        if wanted.name in self._creating or any(
            n.name == wanted.name for n in self.networks.values()
        ):
            raise Conflict(f"network with name {wanted.name} already exists")
        if wanted.driver in ("host", "null"):
            raise Forbidden(f'only one instance of "{wanted.driver}" network is allowed')
        self._creating.add(wanted.name)  # a concurrent create of the name gets the 409 above
        try:
            return await self._create(wanted)
        finally:
            self._creating.discard(wanted.name)

    async def _create(self, wanted: requests.NetworkCreate) -> Network:
        driver = await self.driver(wanted.driver)
        network = Network(
            id=secrets.token_hex(32),
            name=wanted.name,
            driver=wanted.driver,
            created=now_rfc3339(),
            scope=wanted.scope,
            internal=wanted.internal,
            attachable=wanted.attachable,
            ingress=wanted.ingress,
            options=wanted.options,
            labels=wanted.labels,
            ipam_driver=wanted.ipam_driver,
            ipam_options=wanted.ipam_options,
        )
        # The network's references on its managed plugins are taken before any call to
        # them (no await since the driver was found enabled): a `plugin disable` during
        # the calls is refused as "in use" instead of stopping the plugin under them.
        self._hold(network, 1)
        try:
            for managed in self._managed_plugins(network):
                if not managed.enabled:  # disabled while its driver was being found
                    raise Unavailable(f"plugin {managed.name} found but disabled")
            options = self._driver_options(network)
            skip_ipv4 = False
            if isinstance(driver, RemoteNetworkDriver):
                skip_ipv4, _ = await driver.gw_alloc_check(options)
            configs = wanted.ipam_configs
            await self._allocate_pools(
                network, configs or [{}], explicit=bool(configs), skip_gateway=skip_ipv4
            )
            try:
                await driver.create_network(network.id, options, self._ipam_data(network), [])
            except BaseException:
                if network.driver not in BUILTIN_DRIVERS:
                    # A plugin that timed out or died may have made it anyway.
                    with contextlib.suppress(DockyardError):
                        await driver.delete_network(network.id)
                await self._release_pools(network.ipam_driver, network.pools)
                raise
            self._save_network(network)
        except BaseException:
            self._hold(network, -1)
            raise
        self.emit(network, "create")
        return network

    async def remove(self, ref: str) -> None:
        network = self.get(ref)
        if network.predefined:
            raise Forbidden(f"{network.name} is a pre-defined network and cannot be removed")
        active = self.endpoints_of(network)
        if active:
            names = []
            for endpoint in active:
                container = self.find_container(endpoint.container_id)
                names.append(container.name if container else endpoint.container_id[:12])
            raise Conflict(
                f"error while removing network: network {network.name} has active endpoints "
                f"({', '.join(names)})"
            )
        await (await self._driver(network)).delete_network(network.id)
        await self._release_pools(network.ipam_driver, network.pools)
        with self.db.transaction():
            self.db.execute("DELETE FROM networks WHERE id=?", (network.id,))
        self.networks.pop(network.id, None)
        self._hold(network, -1)
        self.emit(network, "destroy")

    def in_use(self, network: Network) -> bool:
        assert self.containers is not None
        if self.endpoints_of(network):
            return True
        return any(network.name in c.networks for c in self.containers.all())

    async def prune(self, keep: Any) -> list[str]:
        """Remove unused user-defined networks for which `keep(network)` is false."""
        removed = []
        for network in self.all():
            if network.predefined or self.in_use(network) or keep(network):
                continue
            await self.remove(network.id)
            removed.append(network.name)
        self.events.emit("network", "prune", "", {"reclaimed": "0"})
        return removed

    # -- container create: which networks ------------------------------------

    def requested_networks(
        self, host_config: HostConfig, networking_config: NetworkingConfig
    ) -> dict[str, EndpointSettings]:
        """The container's networks, name -> EndpointSettings, validated (at create)."""
        mode = host_config.network_mode or "bridge"
        endpoints_config = dict(networking_config.endpoints_config or {})
        if mode in ("host", "none"):
            return {mode: EndpointSettings(network_id=self.get(mode).id)}
        if mode.startswith("container:"):
            assert self.containers is not None
            other = mode.split(":", 1)[1]
            if not other:
                raise InvalidArgument("invalid network mode: container: needs a container")
            self.containers.get(other)
            if host_config.port_bindings or host_config.publish_all_ports:
                raise InvalidArgument(
                    "conflicting options: port publishing and the container type network mode"
                )
            if host_config.dns or host_config.extra_hosts:
                raise InvalidArgument(
                    "conflicting options: dns and the network mode"
                    if host_config.dns
                    else "conflicting options: custom host-to-IP mapping and the network mode"
                )
            return {}
        try:
            primary: Network | None = self.get(mode)
        except NotFound:
            primary = None  # as in Docker, an unknown network fails the start, not the create
        if primary is not None and primary.driver in ("host", "null"):
            return {primary.name: EndpointSettings(network_id=primary.id)}
        primary_settings = None
        keys = [mode, "default", *((primary.name, primary.id) if primary else ())]
        for key in keys:
            if key in endpoints_config:
                primary_settings = endpoints_config.pop(key) or primary_settings
        result: dict[str, EndpointSettings] = {}
        for ref, settings in [(mode, primary_settings), *endpoints_config.items()]:
            try:
                network = self.get(ref)
            except NotFound:
                unknown = schema.copy(settings) if settings else EndpointSettings()
                unknown.network_id = ""
                result[ref] = unknown
                continue
            if network.driver in ("host", "null"):
                raise InvalidArgument(
                    "container cannot be connected to host or none networks and other networks"
                )
            result[network.name] = requests.endpoint_settings(
                network, settings or EndpointSettings()
            )
        return result

    # -- container start / stop hooks ----------------------------------------

    async def setup(self, container: Container) -> Setup:
        started = time.perf_counter()
        setup = await self._setup(container)
        log.debug(
            "network setup of %s (%s): %.2f ms",
            container.short_id,
            container.host_config.network_mode,
            (time.perf_counter() - started) * 1e3,
        )
        return setup

    async def _setup(self, container: Container) -> Setup:
        mode = container.host_config.network_mode or "bridge"
        if mode == "host":
            await self._attach_record_only(container, "host")
            return Setup(host_gateway=self.host_gateway())
        if mode == "none":
            await self._attach_record_only(container, "none")
            return Setup(host_gateway=self.host_gateway())
        if mode.startswith("container:"):
            return self._shared_setup(container, mode.split(":", 1)[1])
        if not container.networks:  # a container created before networks existed
            container.networks = self.requested_networks(container.host_config, NetworkingConfig())
        sandbox = self.sandbox_path(container.id)
        try:
            async with await netns.create(sandbox) as ipr:
                for name, settings in container.networks.items():
                    network = self._network_for(name, settings)
                    await self._attach(container, network, settings, sandbox, ipr)
                await self._choose_gateway(container, ipr)
            if self._uses_dns(container.id):
                await self.dns.serve(container.id, sandbox)
        except BaseException:
            await self.teardown(container)
            raise
        endpoints = self.container_endpoints(container.id)
        return Setup(
            netns_path=sandbox,
            addresses=[e.ip for e in endpoints if e.ip],
            embedded_dns=self._uses_dns(container.id),
            host_gateway=self.host_gateway(),
        )

    def host_gateway(self) -> str:
        """The default bridge's address: how containers reach the host."""
        for network in self.networks.values():
            if network.predefined and network.driver == "bridge" and network.pools:
                return network.pools[0].gateway.split("/")[0]
        return ""

    def _network_for(self, name: str, settings: EndpointSettings) -> Network:
        network_id = settings.network_id
        if network_id in self.networks:
            return self.networks[network_id]
        return self.get(name)

    async def _attach_record_only(self, container: Container, name: str) -> None:
        network = self.get(name)
        endpoint = Endpoint(secrets.token_hex(32), network.id, container.id, joined=True)
        self._save_endpoint(endpoint)

    def _shared_setup(self, container: Container, ref: str) -> Setup:
        assert self.containers is not None
        other = self.containers.get(ref)
        if not other.state.running or not other.state.pid:
            raise Conflict(f"cannot join network namespace of a non running container: {ref}")
        sandbox = self.sandbox_path(other.id)
        if other.host_config.network_mode == "host":
            path = f"/proc/{other.state.pid}/ns/net"
        else:
            path = sandbox if netns.is_mounted(sandbox) else f"/proc/{other.state.pid}/ns/net"
        return Setup(
            netns_path=path,
            shared_dir=self.containers.dir(other),
            hostname=other.config.hostname or other.short_id,
        )

    def _uses_dns(self, container_id: str) -> bool:
        for endpoint in self.container_endpoints(container_id):
            network = self.networks.get(endpoint.network_id)
            if network and network.user_defined and endpoint.address:
                return True
        return False

    async def _attach(
        self,
        container: Container,
        network: Network,
        settings: EndpointSettings,
        sandbox: str,
        ipr: Any,
    ) -> Endpoint:
        """One endpoint of a container, its interface configured in the sandbox (spec §4.10:
        IPAM address, CreateEndpoint, Join, the interface moved in and configured). A failure
        at any step undoes the steps before it: Leave after a Join, DeleteEndpoint once
        CreateEndpoint was sent (a plugin that timed out may have done it), the address."""
        driver = await self._driver(network)
        ipam = await self.ipam_driver(network.ipam_driver)
        endpoint = Endpoint(
            secrets.token_hex(32),
            network.id,
            container.id,
            aliases=list(settings.aliases or []),
            settings=settings.to_wire(),
            mac=settings.mac_address,
            pending=True,
        )
        try:
            address_options: dict[str, str] = {}
            if (await ipam.get_capabilities()).requires_mac_address:
                endpoint.mac = endpoint.mac or _random_mac()
                address_options[MAC_ADDRESS] = endpoint.mac
            if network.pools:
                lease = network.pools[0]
                static = settings.ipam_config.ipv4_address if settings.ipam_config else ""
                endpoint.address, _ = await ipam.request_address(
                    lease.pool_id, static, address_options
                )
                endpoint.pool_id = lease.pool_id
            endpoint.pending = False
            self._save_endpoint(endpoint)
            options = self._endpoint_options(container)
            reply = await driver.create_endpoint(
                network.id,
                endpoint.id,
                EndpointInterface(endpoint.address, "", endpoint.mac),
                {**options, **(settings.driver_opts or {})},
            )
            endpoint.mac = endpoint.mac or (reply.mac_address if reply else "")
            joined = await driver.join(network.id, endpoint.id, sandbox, options)
            endpoint.joined = True  # from here on a failure needs a Leave
            if joined.src_name:
                endpoint.ifname = self._next_ifname(container.id, joined.dst_prefix)
                await self._configure(ipr, joined, endpoint)
            endpoint.gateway = joined.gateway
            self._save_endpoint(endpoint)
        except BaseException:
            await self._remove_endpoint(endpoint, None)
            raise
        return endpoint

    def _endpoint_options(self, container: Container | None) -> dict[str, Any]:
        """CreateEndpoint's options: the container's exposed and published ports."""
        if container is None:
            return {EXPOSED_PORTS: [], PORT_MAP: []}
        hc = container.host_config
        requested = ports.requested(
            hc.port_bindings, container.config.exposed_ports, hc.publish_all_ports
        )
        exposed = []
        for key in container.config.exposed_ports or {}:
            number, _, proto = key.partition("/")
            exposed.append({"Proto": PROTOCOLS.get(proto, PROTOCOLS["tcp"]), "Port": int(number)})
        return {EXPOSED_PORTS: exposed, PORT_MAP: [r.to_wire() for r in requested]}

    def _next_ifname(self, container_id: str, prefix: str) -> str:
        """`prefix` and the lowest index no other interface of the container has."""
        taken = {e.ifname for e in self.container_endpoints(container_id)}
        index = 0
        while f"{prefix}{index}" in taken:
            index += 1
        return f"{prefix}{index}"

    async def _configure(self, ipr: Any, joined: JoinResponse, endpoint: Endpoint) -> None:
        found = await ipr.link_lookup(ifname=joined.src_name)
        if not found:
            # A driver that made the interface on the host: move it in (slower).
            async with await netns.netlink() as host:
                index = await host.link_lookup(ifname=joined.src_name)
                if not index:
                    raise Unavailable(f"interface {joined.src_name} of the driver does not exist")
                fd = os.open(self.sandbox_path(endpoint.container_id), os.O_RDONLY)
                try:
                    await host.link("set", index=index[0], net_ns_fd=fd)
                finally:
                    os.close(fd)
            found = await ipr.link_lookup(ifname=joined.src_name)
        index = found[0]
        link: dict[str, Any] = {"ifname": endpoint.ifname, "state": "up"}
        if endpoint.mac:
            link["address"] = endpoint.mac
        await ipr.link("set", index=index, **link)
        if endpoint.address:
            await ipr.addr("add", index=index, address=endpoint.ip, prefixlen=endpoint.prefix_len)
        for route in joined.static_routes:
            if route.route_type == 1:
                await ipr.route("add", dst=route.destination, oif=index)
            else:
                await ipr.route("add", dst=route.destination, gateway=route.next_hop)

    async def _choose_gateway(
        self, container: Container, ipr: Any, previous: list[dict[str, Any]] | None = None
    ) -> None:
        """Give the container a default route and publish its ports through one endpoint.

        `previous`: the ports the former gateway endpoint published; the same host
        ports are asked for again, so a moved gateway keeps its published ports.
        """
        endpoints = self.container_endpoints(container.id)
        if any(e.external for e in endpoints):
            return
        order = list(container.networks)
        candidates = sorted(
            (e for e in endpoints if e.gateway and e.joined),
            key=lambda e: (
                order.index(self.networks[e.network_id].name)
                if self.networks[e.network_id].name in order
                else len(order)
            ),
        )
        if not candidates:
            return
        endpoint = candidates[0]
        network = self.networks[endpoint.network_id]
        with contextlib.suppress(NetlinkError):
            await ipr.route("del", dst="0.0.0.0/0")
        await ipr.route("add", dst="0.0.0.0/0", gateway=endpoint.gateway)
        hc = container.host_config
        requests = ports.requested(
            hc.port_bindings, container.config.exposed_ports, hc.publish_all_ports
        )
        if previous:
            requests = [PortBinding.from_wire(p) for p in previous]
            for request in requests:
                request.ip = ""
        endpoint.external = True
        self._save_endpoint(endpoint)
        driver = await self._driver(network)
        # The gateway endpoint is always programmed (Docker does; a plugin may answer 404);
        # the built-in bridge has nothing to do without ports.
        if requests or network.driver not in BUILTIN_DRIVERS:
            options = {**self._endpoint_options(container)}
            options[PORT_MAP] = [r.to_wire() for r in requests]
            try:
                await driver.program_external_connectivity(network.id, endpoint.id, options)
            except DockyardError as e:
                raise Unavailable(
                    f"driver failed programming external connectivity on endpoint "
                    f"{container.name} ({endpoint.id}): {e.message}"
                ) from e
        if requests:
            info = await driver.endpoint_oper_info(network.id, endpoint.id)
            endpoint.ports = list(info.get(PORT_MAP) or [])
            self._save_endpoint(endpoint)

    async def teardown(self, container: Container) -> None:
        """Undo `setup` (or what a failed setup got to); never raises."""
        started = time.perf_counter()
        self.dns.stop(container.id)
        for endpoint in self.container_endpoints(container.id):
            await self._remove_endpoint(endpoint, None)
        with contextlib.suppress(OSError):
            netns.destroy(self.sandbox_path(container.id))
        log.debug(
            "network teardown of %s (%s): %.2f ms",
            container.short_id,
            container.host_config.network_mode,
            (time.perf_counter() - started) * 1e3,
        )

    async def _remove_endpoint(self, endpoint: Endpoint, ipr: Any) -> None:
        """Revoke, leave, delete, release (with `ipr`: take the interface out of the sandbox)."""
        network = self.networks.get(endpoint.network_id)
        if network is not None:
            try:
                driver: NetworkDriver | None = await self._driver(network)
            except DockyardError as e:
                log.warning("endpoint %s: %s", endpoint.id[:12], e.message)
                driver = None
            if driver is not None:
                steps = []
                if endpoint.external:
                    steps.append(driver.revoke_external_connectivity)
                if endpoint.joined:
                    steps.append(driver.leave)
                for step in steps:
                    try:
                        await step(network.id, endpoint.id)
                    except DockyardError as e:
                        log.warning("endpoint %s: %s", endpoint.id[:12], e.message)
            if ipr is not None and endpoint.ifname:
                with contextlib.suppress(NetlinkError):
                    await ipr.link("del", ifname=endpoint.ifname)
            if driver is not None and not endpoint.pending:
                try:
                    await driver.delete_endpoint(network.id, endpoint.id)
                except DockyardError as e:
                    log.warning("endpoint %s: %s", endpoint.id[:12], e.message)
            if endpoint.address and endpoint.pool_id:
                try:
                    ipam = await self.ipam_driver(network.ipam_driver)
                    await ipam.release_address(endpoint.pool_id, endpoint.ip)
                except DockyardError as e:
                    log.warning("endpoint %s: %s", endpoint.id[:12], e.message)
        self._forget_endpoint(endpoint)

    # -- connect / disconnect --------------------------------------------------

    async def connect(self, ref: str, container: Container, settings: EndpointSettings) -> None:
        assert self.containers is not None
        network = self.get(ref)
        mode = container.host_config.network_mode or "bridge"
        if network.driver in ("host", "null") or mode in ("host", "none"):
            raise Forbidden(
                "container cannot be disconnected from host network or connected to host network"
                if "host" in (network.name, mode)
                else "container sharing network namespace with another container or host cannot "
                "be connected to any other network"
            )
        if mode.startswith("container:"):
            raise Forbidden(
                "container sharing network namespace with another container or host cannot be "
                "connected to any other network"
            )
        if network.name in container.networks:
            raise Forbidden(
                f"endpoint with name {container.name} already exists in network {network.name}"
            )
        normal = requests.endpoint_settings(network, settings)
        async with self.containers.live(container).lock:
            if container.state.running:
                sandbox = self.sandbox_path(container.id)
                async with await netns.netlink(sandbox) as ipr:
                    endpoint = await self._attach(container, network, normal, sandbox, ipr)
                    container.networks[network.name] = normal
                    try:
                        await self._choose_gateway(container, ipr)
                    except BaseException:
                        container.networks.pop(network.name, None)
                        await self._remove_endpoint(endpoint, ipr)
                        raise
                if self._uses_dns(container.id):
                    await self.dns.serve(container.id, sandbox)
                self._rewrite_etc_files(container)
            else:
                container.networks[network.name] = normal
            self.containers.networks_changed(container)
        self.emit(network, "connect", container=container.id)

    async def disconnect(self, ref: str, container: Container, force: bool = False) -> None:
        assert self.containers is not None
        network = self.get(ref)
        if network.name not in container.networks:
            raise Forbidden(f"container {container.id} is not connected to network {network.name}")
        if network.driver in ("host", "null"):
            raise Forbidden(
                "container cannot be disconnected from host network or connected to host network"
            )
        async with self.containers.live(container).lock:
            endpoints = [
                e for e in self.container_endpoints(container.id) if e.network_id == network.id
            ]
            if endpoints and container.state.running:
                sandbox = self.sandbox_path(container.id)
                async with await netns.netlink(sandbox) as ipr:
                    published = [p for e in endpoints if e.external for p in e.ports]
                    was_gateway = any(e.external for e in endpoints)
                    for endpoint in endpoints:
                        await self._remove_endpoint(endpoint, ipr)
                    container.networks.pop(network.name, None)
                    if was_gateway:
                        await self._choose_gateway(container, ipr, published)
                if not self._uses_dns(container.id):
                    self.dns.stop(container.id)
                self._rewrite_etc_files(container)
            else:
                for endpoint in endpoints:
                    await self._remove_endpoint(endpoint, None)
                container.networks.pop(network.name, None)
            self.containers.networks_changed(container)
        self.emit(network, "disconnect", container=container.id)

    def _rewrite_etc_files(self, container: Container) -> None:
        """/etc/hosts and resolv.conf of a running container after its networks changed."""
        assert self.containers is not None
        endpoints = self.container_endpoints(container.id)
        try:
            etcfiles.write(
                self.containers.dir(container),
                container.host_config,
                container.config.hostname or container.short_id,
                addresses=[e.ip for e in endpoints if e.ip],
                embedded_dns=self._uses_dns(container.id),
                in_place=True,
                host_gateway=self.host_gateway(),
            )
        except OSError as e:
            log.warning("cannot update /etc files of %s: %s", container.short_id, e)

    # -- DNS answers (dns.Answers) -------------------------------------------

    def lookup(self, container_id: str, name: str) -> list[str] | None:
        assert self.containers is not None
        found: list[str] = []
        for own in self.container_endpoints(container_id):
            network = self.networks.get(own.network_id)
            if network is None or not network.user_defined:
                continue
            # `name` or `name.<network>` (Docker's embedded DNS owns the network domain).
            wanted = {name}
            suffix = "." + network.name.lower()
            if name.endswith(suffix):
                wanted.add(name[: -len(suffix)])
            for endpoint in self.endpoints_of(network):
                if not endpoint.ip:
                    continue
                container = self.find_container(endpoint.container_id)
                if container is None:
                    continue
                names = {
                    container.name.lower(),
                    container.short_id,
                    *map(str.lower, endpoint.aliases),
                }
                if names & wanted and endpoint.ip not in found:
                    found.append(endpoint.ip)
        return found or None

    def reverse(self, container_id: str, address: str) -> str | None:
        networks = {e.network_id for e in self.container_endpoints(container_id)}
        for endpoint in self.endpoints.values():
            if endpoint.network_id in networks and endpoint.ip == address:
                container = self.find_container(endpoint.container_id)
                network = self.networks.get(endpoint.network_id)
                if container and network:
                    return f"{container.name}.{network.name}"
        return None

    def upstreams(self, container_id: str) -> list[str]:
        if not any(
            (network := self.networks.get(e.network_id)) is not None and not network.internal
            for e in self.container_endpoints(container_id)
        ):
            return []  # only on internal networks: no way out, not even through DNS
        container = self.find_container(container_id)
        if container is not None and container.host_config.dns:
            return list(container.host_config.dns)
        try:
            with open("/etc/resolv.conf") as f:
                text = f.read()
        except OSError:
            return []
        return [
            line.split()[1]
            for line in text.splitlines()
            if line.startswith("nameserver") and len(line.split()) > 1
        ]


def _random_mac() -> str:
    """A random unicast, locally administered MAC (for IPAM drivers that require one)."""
    raw = bytearray(secrets.token_bytes(6))
    raw[0] = (raw[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in raw)
