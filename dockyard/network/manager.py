"""The network manager: networks, endpoints and container sandboxes over the driver interfaces.

It holds the records (`model`), talks to drivers only through `NetworkDriver`
and to IPAM only through `IpamDriver`, and does the engine's share of the
protocol: the sandbox (a network namespace per container), moving and
configuring interfaces in it (IPv4 and IPv6 addresses, link-local addresses,
MAC, routes, the default gateways) and the embedded DNS server.

It knows containers only as the plain data containers/ gives it (a
`SandboxConfig`: ID, name, hostname, networks and their settings, ports, DNS
servers) and never calls into the container service: a container's network
attachments belong to `dockyard.containers.networking`, which calls these
hooks with the container's lock held:

    setup(sandbox)                before the runtime creates the container: sandbox,
                                  an endpoint per network (IPAM addresses,
                                  CreateEndpoint, Join, interface configured),
                                  gateway and published ports, DNS. Any failure
                                  undoes everything.
    connect(id, network, settings), disconnect(id, network)
                                  one more or one fewer endpoint of a running one
    teardown(id)                  after it stopped: endpoints removed, addresses
                                  released, sandbox unmounted. Never fails.
    renamed(id, name)             its endpoints answer to the new name

What the DNS server answers (names, aliases, link aliases) comes from the
endpoint records, which carry the container's name; where its other queries
go comes from the `SandboxConfig` kept while its sandbox exists.

Start-up: `start()` replays every network to its driver before containers are
restored; `reconcile(running)` afterwards is given the sandboxes of the
containers still running, replays their endpoints, removes the others'
endpoints, and deletes sandboxes, devices and addresses that no record owns.
Start-up never waits for a plugin: IPAM plugins are registered in the
background (registration replays their allocations first, see below, and
whatever needs the plugin waits for it), and the stale endpoints whose removal
needs a plugin are removed in the background too; that container's next
start, connect or disconnect and the removal of the network wait for it.

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
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyroute2 import NetlinkError

from dockyard.containers.schema import EndpointSettings
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
from dockyard.network import netns, requests
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
from dockyard.network.drivers.bridge import (
    BRIDGE_NAME,
    IFA_F_NODAD,
    MASQUERADE,
    MTU,
    BridgeDriver,
)
from dockyard.network.drivers.host import NoInterfaceDriver
from dockyard.network.drivers.remote import RemoteNetworkDriver
from dockyard.network.firewall import Firewall
from dockyard.network.ipam import GATEWAY_DATA, GATEWAY_REQUEST, IpamDriver
from dockyard.network.ipam_default import DefaultIpam, parse_pools
from dockyard.network.ipam_remote import RemoteIpam
from dockyard.network.model import Endpoint, Network, PoolLease, Sandbox, SandboxConfig
from dockyard.network.requests import SubnetConfig
from dockyard.plugins import inprocess
from dockyard.plugins.check import CheckReport
from dockyard.plugins.managed import ManagedPlugin
from dockyard.plugins.protocol import IPAM, NETWORK
from dockyard.state.db import Database

if TYPE_CHECKING:
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
    # IPv4 and IPv6 bases (default-address-pools); without an IPv6 base, a ULA /48 derived
    # from `host_id` is cut into /64s, as Docker does.
    default_address_pools: list[dict[str, Any]] | None = None
    mtu: int = 1500  # (mtu)
    ip_forward: bool = True  # switch on the host's IPv4 (and, with IPv6 networks, IPv6) forwarding
    ip_masq: bool = True  # (ip-masq)
    nftables_table: str = "dockyard"  # Dockyard: the nftables table owned by this daemon
    # Dockyard's own prefixes differ from Docker's and Podman's ("br-", "veth"): the daemon
    # deletes devices with its prefixes that it does not own at start-up.
    bridge_prefix: str = "dy-"  # Dockyard: user-defined network bridges
    veth_prefix: str = "dyv"  # Dockyard: host ends of veth pairs
    host_id: str = ""  # the daemon's ID (its IPv6 ULA pool derives from it)


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
        self.ipam = DefaultIpam(db, parse_pools(config.default_address_pools, config.host_id))
        self.ipams: dict[str, IpamDriver] = {"default": self.ipam}
        self.plugins: PluginService | None = None  # set by the engine
        self._registering: dict[str, asyncio.Lock] = {}
        self._creating: set[str] = set()  # names of networks being created
        self._background: set[asyncio.Task[None]] = set()
        # container id -> the removal of its endpoints left from before start-up that
        # needs a plugin (done in the background; its next use of them waits for it)
        self._stale: dict[str, asyncio.Task[None]] = {}
        self.dns = EmbeddedDNS(self)
        # The containers whose sandbox exists (or is being made), as containers/ described them.
        self.sandboxes: dict[str, SandboxConfig] = {}
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
        """A network event with Docker's attributes (`container` for connect/disconnect)."""
        attributes = {**extra, "name": network.name, "type": network.driver}
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

    def find(self, ref: str) -> Network | None:
        try:
            return self.get(ref)
        except NotFound:
            return None

    def all(self) -> list[Network]:
        return sorted(self.networks.values(), key=lambda n: n.created)

    def endpoints_of(self, network: Network) -> list[Endpoint]:
        return [e for e in self.endpoints.values() if e.network_id == network.id]

    def container_endpoints(self, container_id: str) -> list[Endpoint]:
        return [e for e in self.endpoints.values() if e.container_id == container_id]

    def endpoint_on(self, container_id: str, network: Network) -> Endpoint | None:
        for endpoint in self.container_endpoints(container_id):
            if endpoint.network_id == network.id:
                return endpoint
        return None

    def sandbox_path(self, container_id: str) -> str:
        return os.path.join(self.sandbox_dir, container_id)

    def addresses(self, container_id: str) -> list[str]:
        """A container's own addresses on its networks, IPv4 then IPv6 (for /etc/hosts)."""
        endpoints = self.container_endpoints(container_id)
        return [e.ip for e in endpoints if e.ip] + [e.ip6 for e in endpoints if e.ip6]

    def endpoint_settings(
        self, key: str, network: Network | None, settings: EndpointSettings
    ) -> EndpointSettings:
        """`settings` for network `key` checked as Docker checks them (see `requests`)."""
        return requests.endpoint_settings(key, network, settings)

    # -- start-up ------------------------------------------------------------

    async def start(self) -> None:
        """Make sure the predefined networks exist and replay every network to its driver."""
        if self.config.ip_forward:
            _forwarding("ipv4")
            if any(n.enable_ipv6 for n in self.networks.values()):
                _forwarding("ipv6")
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
                    network.id,
                    self._driver_options(network),
                    self._ipam_data(network.pools),
                    self._ipam_data(network.pools6),
                )
            except DockyardError as e:
                log.error("network %s cannot be restored: %s", network.name, e.message)
        self._register_ipams_in_background()

    def _register_ipams_in_background(self) -> None:
        """Register the IPAM plugins the networks use, in the background: start-up never
        waits for a plugin. Registration replays a plugin's allocations when it asks for
        that (`ipam_driver`), and everything that needs the plugin waits for it there."""
        names = {
            network.ipam_driver
            for network in self.all()
            if network.ipam_driver != BUILTIN_IPAM and (network.pools or network.pools6)
        }

        async def register(name: str) -> None:
            try:
                await self.ipam_driver(name)
            except DockyardError as e:
                log.error("IPAM driver %s cannot be registered: %s", name, e.message)

        for name in names:
            self._in_background(register(name))

    async def _replay_allocations(self, name: str, ipam: IpamDriver) -> None:
        """Pools, gateways, aux and endpoint addresses of IPAM plugin `name`'s networks
        requested again when it keeps no state of its own (`RequiresRequestReplay`), as
        Docker does at start-up; pool IDs may change."""
        if not (await ipam.get_capabilities()).requires_request_replay:
            return
        for network in self.all():
            if network.ipam_driver != name or not (network.pools or network.pools6):
                continue
            try:
                await self._replay_pools(ipam, network)
            except DockyardError as e:
                log.error("allocations of network %s: %s", network.name, e.message)

    async def _replay_pools(self, ipam: IpamDriver, network: Network) -> None:
        renamed: dict[str, str] = {}
        for leases, v6 in ((network.pools, False), (network.pools6, True)):
            for lease in leases:
                space = lease.address_space or (await ipam.get_default_address_spaces()).local
                pool = await ipam.request_pool(
                    space, lease.subnet, lease.ip_range, dict(network.ipam_options), v6
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
            changed = False
            if endpoint.address and endpoint.pool_id in renamed:
                endpoint.pool_id = renamed[endpoint.pool_id]
                await ipam.request_address(endpoint.pool_id, endpoint.ip)
                changed = True
            if endpoint.address6 and endpoint.pool6_id in renamed:
                endpoint.pool6_id = renamed[endpoint.pool6_id]
                await ipam.request_address(endpoint.pool6_id, endpoint.ip6)
                changed = True
            if changed:
                self._save_endpoint(endpoint)

    async def _create_default_bridge(self) -> None:
        config = [SubnetConfig()]
        if self.config.bip:
            try:
                interface = ipaddress.ip_interface(self.config.bip)
            except ValueError:
                raise InvalidArgument(f"invalid bip {self.config.bip!r}") from None
            config = [SubnetConfig(str(interface.network), str(interface.ip))]
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

    async def reconcile(self, running: list[SandboxConfig]) -> None:
        """After containers are restored, given the running ones: keep what runs, remove
        what no record owns."""
        live: set[str] = set()
        for sandbox in running:
            self.sandboxes[sandbox.container_id] = sandbox
            endpoints = self.container_endpoints(sandbox.container_id)
            path = self.sandbox_path(sandbox.container_id)
            if not netns.is_mounted(path) and any(e.address for e in endpoints):
                log.warning("sandbox of running container %s is gone", sandbox.short_id)
                continue
            for endpoint in endpoints:
                if not endpoint.container_name:  # a record from before names were kept
                    endpoint.container_name = sandbox.name
                    self._save_endpoint(endpoint)
                if not endpoint.joined:
                    continue
                try:
                    network = self.networks.get(endpoint.network_id)
                    if network is not None and network.driver in BUILTIN_DRIVERS:
                        await self._replay(endpoint, path, sandbox)
                    live.add(endpoint.id)
                except DockyardError as e:
                    log.error("endpoint %s cannot be restored: %s", endpoint.id[:12], e.message)
            if self.uses_dns(sandbox.container_id) and netns.is_mounted(path):
                try:
                    await self.dns.serve(sandbox.container_id, path)
                except OSError as e:
                    log.error("DNS for %s cannot be restored: %s", sandbox.short_id, e)
        stale: dict[str, list[Endpoint]] = {}
        for endpoint in list(self.endpoints.values()):
            if endpoint.id in live:
                continue
            if self._needs_plugin(endpoint):  # start-up never waits for a plugin
                stale.setdefault(endpoint.container_id, []).append(endpoint)
            else:
                await self._remove_endpoint(endpoint, None)
        for container_id, endpoints in stale.items():
            self._stale[container_id] = self._in_background(
                self._remove_stale(container_id, endpoints)
            )
        ids = {sandbox.container_id for sandbox in running}
        for entry in os.listdir(self.sandbox_dir):
            if entry not in ids:
                netns.destroy(os.path.join(self.sandbox_dir, entry))
        await self._release_orphan_addresses()
        await self._delete_stray_links()
        await self.bridge.resume()

    def _needs_plugin(self, endpoint: Endpoint) -> bool:
        network = self.networks.get(endpoint.network_id)
        return network is not None and (
            network.driver not in BUILTIN_DRIVERS or network.ipam_driver != BUILTIN_IPAM
        )

    async def _remove_stale(self, container_id: str, endpoints: list[Endpoint]) -> None:
        try:
            for endpoint in endpoints:
                try:
                    await self._remove_endpoint(endpoint, None)
                except Exception:
                    log.exception("removing endpoint %s", endpoint.id[:12])
        finally:
            self._stale.pop(container_id, None)

    async def _stale_removed(self, container_ids: list[str]) -> None:
        """Wait until the endpoints these containers left from before start-up are gone."""
        tasks = [self._stale[c] for c in container_ids if c in self._stale]
        if tasks:
            await asyncio.wait([asyncio.shield(t) for t in tasks])

    def _in_background(self, work: Any) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _replay(self, endpoint: Endpoint, path: str, sandbox: SandboxConfig) -> None:
        network = self.networks[endpoint.network_id]
        driver = await self._driver(network)
        await driver.create_endpoint(
            network.id,
            endpoint.id,
            EndpointInterface(endpoint.address, endpoint.address6, endpoint.mac),
            self._endpoint_options(sandbox),
        )
        if endpoint.address:
            await driver.join(network.id, endpoint.id, path, {})
        if endpoint.external and endpoint.ports:
            await driver.program_external_connectivity(
                network.id, endpoint.id, {PORT_MAP: endpoint.ports}
            )

    async def _release_orphan_addresses(self) -> None:
        owned: dict[str, set[str]] = {}
        for network in self.networks.values():
            for pool in [*network.pools, *network.pools6]:
                kept = owned.setdefault(pool.pool_id, set())
                if pool.gateway:
                    kept.add(pool.gateway.split("/")[0])
                kept.update(pool.aux.values())
        for endpoint in self.endpoints.values():
            if endpoint.pool_id:
                owned.setdefault(endpoint.pool_id, set()).add(endpoint.ip)
            if endpoint.pool6_id:
                owned.setdefault(endpoint.pool6_id, set()).add(endpoint.ip6)
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
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
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
                    ipam = await RemoteIpam.activate(plugin)
                    # Before anyone else uses it: the addresses its networks hold.
                    await self._replay_allocations(name, ipam)
                    self.ipams[name] = ipam
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

    def _ipam_data(self, leases: list[PoolLease]) -> list[IPAMData]:
        data = []
        for pool in leases:
            prefix = pool.subnet.split("/")[1]
            aux = {name: f"{address}/{prefix}" for name, address in pool.aux.items()}
            data.append(
                IPAMData(pool.address_space or "LocalDefault", pool.subnet, pool.gateway, aux)
            )
        return data

    async def _allocate_pools(
        self,
        network: Network,
        configs: list[SubnetConfig],
        *,
        explicit: bool,
        skip_gateway: bool = False,
        v6: bool = False,
    ) -> None:
        """IPAM pools, gateway and aux addresses for every subnet of one family (spec §5.3);
        all or nothing. Sets `network.pools` (or `pools6`) and adds to what inspect shows.

        `skip_gateway`: the network driver said it needs no gateway address (GwAllocCheck);
        one the user asked for is still requested."""
        ipam = await self.ipam_driver(network.ipam_driver)
        await ipam.get_default_address_spaces()  # the network's space (always local here)
        leases: list[PoolLease] = []
        shown_before = len(network.ipam_config)
        try:
            for config in configs:
                space = (await ipam.get_default_address_spaces()).local
                rejected = []
                try:
                    while True:
                        pool = await ipam.request_pool(
                            space, config.subnet, config.ip_range, dict(network.ipam_options), v6
                        )
                        if config.subnet or explicit or not _overlaps_host_route(pool.pool):
                            break
                        rejected.append(pool.pool_id)  # kept until the end: asked again, IPAM
                        # must hand out another one
                finally:
                    for pool_id in rejected:
                        await ipam.release_pool(pool_id)
                lease = PoolLease(
                    pool.pool_id,
                    pool.pool,
                    ip_range=config.ip_range,
                    address_space=space,
                    configured=bool(config.subnet),
                )
                leases.append(lease)
                if config.gateway:
                    lease.gateway, _ = await ipam.request_address(
                        pool.pool_id, config.gateway, dict(GATEWAY_REQUEST)
                    )
                elif pool.data.get(GATEWAY_DATA):
                    lease.gateway = pool.data[GATEWAY_DATA]
                elif not skip_gateway:
                    lease.gateway, _ = await ipam.request_address(
                        pool.pool_id, "", dict(GATEWAY_REQUEST)
                    )
                for name, address in config.aux.items():
                    await ipam.request_address(pool.pool_id, address)
                    lease.aux[name] = address
                shown: dict[str, Any] = {"Subnet": pool.pool}
                if config.ip_range:
                    shown["IPRange"] = config.ip_range
                if lease.gateway:
                    shown["Gateway"] = lease.gateway.split("/")[0]
                if lease.aux:
                    shown["AuxiliaryAddresses"] = dict(lease.aux)
                network.ipam_config.append(shown)
        except BaseException:
            await self._release_pools(network.ipam_driver, leases)
            del network.ipam_config[shown_before:]
            raise
        if v6:
            network.pools6 = leases
        else:
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

    # -- network create / remove / prune ---------------------------------------

    async def create(self, request: requests.NetworkCreateRequest) -> Network:
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
            enable_ipv6=wanted.enable_ipv6,
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
            skip_ipv4 = skip_ipv6 = False
            if isinstance(driver, RemoteNetworkDriver):
                skip_ipv4, skip_ipv6 = await driver.gw_alloc_check(options)
            await self._allocate_pools(
                network,
                wanted.subnets or [SubnetConfig()],
                explicit=bool(wanted.subnets),
                skip_gateway=skip_ipv4,
            )
            if wanted.enable_ipv6:
                try:
                    await self._allocate_pools(
                        network,
                        wanted.subnets6 or [SubnetConfig()],
                        explicit=bool(wanted.subnets6),
                        skip_gateway=skip_ipv6,
                        v6=True,
                    )
                except BaseException:
                    await self._release_pools(network.ipam_driver, network.pools)
                    raise
            try:
                await driver.create_network(
                    network.id,
                    options,
                    self._ipam_data(network.pools),
                    self._ipam_data(network.pools6),
                )
            except BaseException:
                if network.driver not in BUILTIN_DRIVERS:
                    # A plugin that timed out or died may have made it anyway.
                    with contextlib.suppress(DockyardError):
                        await driver.delete_network(network.id)
                await self._release_pools(network.ipam_driver, network.pools)
                await self._release_pools(network.ipam_driver, network.pools6)
                raise
            self._save_network(network)
        except BaseException:
            self._hold(network, -1)
            raise
        if network.enable_ipv6 and self.config.ip_forward:
            _forwarding("ipv6")
        self.emit(network, "create")
        return network

    async def remove(self, ref: str) -> None:
        network = self.get(ref)
        if network.predefined:
            raise Forbidden(f"{network.name} is a pre-defined network and cannot be removed")
        await self._stale_removed([e.container_id for e in self.endpoints_of(network)])
        active = self.endpoints_of(network)
        if active:
            names = [e.container_name or e.container_id[:12] for e in active]
            raise Conflict(
                f"error while removing network: network {network.name} has active endpoints "
                f"({', '.join(names)})"
            )
        await (await self._driver(network)).delete_network(network.id)
        await self._release_pools(network.ipam_driver, network.pools)
        await self._release_pools(network.ipam_driver, network.pools6)
        with self.db.transaction():
            self.db.execute("DELETE FROM networks WHERE id=?", (network.id,))
        self.networks.pop(network.id, None)
        self._hold(network, -1)
        self.emit(network, "destroy")

    def in_use(self, network: Network) -> bool:
        """Whether any container is attached (Docker's rule: endpoints, so only running
        containers count; a stopped one whose network is gone fails its next start)."""
        return bool(self.endpoints_of(network))

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

    # -- container start / stop hooks ----------------------------------------

    async def setup(self, sandbox: SandboxConfig) -> Sandbox:
        started = time.perf_counter()
        result = await self._setup(sandbox)
        log.debug(
            "network setup of %s (%s): %.2f ms",
            sandbox.short_id,
            next(iter(sandbox.networks), ""),  # the network mode: what the benchmarks group by
            (time.perf_counter() - started) * 1e3,
        )
        return result

    async def _setup(self, sandbox: SandboxConfig) -> Sandbox:
        await self._stale_removed([sandbox.container_id])
        networks = [
            (self._network_for(name, settings), settings)
            for name, settings in sandbox.networks.items()
        ]
        self.sandboxes[sandbox.container_id] = sandbox
        if any(network.driver in ("host", "null") for network, _ in networks):
            # host and none: the container appears on the network, with no interface.
            for network, _ in networks:
                endpoint = Endpoint(
                    secrets.token_hex(32),
                    network.id,
                    sandbox.container_id,
                    joined=True,
                    container_name=sandbox.name,
                )
                self._save_endpoint(endpoint)
                self.emit(network, "connect", container=sandbox.container_id)
            return Sandbox(None)
        path = self.sandbox_path(sandbox.container_id)
        try:
            async with await netns.create(path) as ipr:
                for network, settings in networks:
                    await self._attach(sandbox, network, settings, path, ipr)
                await self._choose_gateway(sandbox, ipr)
            if self.uses_dns(sandbox.container_id):
                await self.dns.serve(sandbox.container_id, path)
        except BaseException:
            await self.teardown(sandbox.container_id)
            raise
        return Sandbox(
            path,
            addresses=self.addresses(sandbox.container_id),
            embedded_dns=self.uses_dns(sandbox.container_id),
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

    def uses_dns(self, container_id: str) -> bool:
        """Whether the container is on a user-defined network (and so gets 127.0.0.11)."""
        for endpoint in self.container_endpoints(container_id):
            network = self.networks.get(endpoint.network_id)
            if network and network.user_defined and (endpoint.address or endpoint.address6):
                return True
        return False

    async def _attach(
        self,
        sandbox: SandboxConfig,
        network: Network,
        settings: EndpointSettings,
        path: str,
        ipr: Any,
    ) -> Endpoint:
        """One endpoint of a container, its interface configured in the sandbox (spec §4.10:
        IPAM addresses, CreateEndpoint, Join, the interface moved in and configured). A
        failure at any step undoes the steps before it: Leave after a Join, DeleteEndpoint
        once CreateEndpoint was sent (a plugin that timed out may have done it), the
        addresses."""
        driver = await self._driver(network)
        ipam = await self.ipam_driver(network.ipam_driver)
        ipam_config = settings.ipam_config
        endpoint = Endpoint(
            secrets.token_hex(32),
            network.id,
            sandbox.container_id,
            aliases=list(settings.aliases or []),
            settings=settings.to_wire(),
            mac=_mac_text(settings.mac_address),
            pending=True,
            link_local=[_link_local(address) for address in (ipam_config.link_local_ips or [])]
            if ipam_config
            else [],
            container_name=sandbox.name,
            dns_names=_dns_names(sandbox, settings) if network.user_defined else [],
            links=_links(settings),
        )
        try:
            address_options: dict[str, str] = {}
            if (await ipam.get_capabilities()).requires_mac_address:
                endpoint.mac = endpoint.mac or _random_mac()
                address_options[MAC_ADDRESS] = endpoint.mac
            if network.pools:
                lease = network.pools[0]
                static = ipam_config.ipv4_address if ipam_config else ""
                endpoint.address, _ = await ipam.request_address(
                    lease.pool_id, static, address_options
                )
                endpoint.pool_id = lease.pool_id
            if network.pools6:
                lease = network.pools6[0]
                static = ipam_config.ipv6_address if ipam_config else ""
                endpoint.address6, _ = await ipam.request_address(
                    lease.pool_id, static, address_options
                )
                endpoint.pool6_id = lease.pool_id
            endpoint.pending = False
            self._save_endpoint(endpoint)
            options = self._endpoint_options(sandbox)
            reply = await driver.create_endpoint(
                network.id,
                endpoint.id,
                EndpointInterface(endpoint.address, endpoint.address6, endpoint.mac),
                {**options, **(settings.driver_opts or {})},
            )
            endpoint.mac = endpoint.mac or (reply.mac_address if reply else "")
            joined = await driver.join(network.id, endpoint.id, path, options)
            endpoint.joined = True  # from here on a failure needs a Leave
            if joined.src_name:
                endpoint.ifname = self._next_ifname(sandbox.container_id, joined.dst_prefix)
                await self._configure(ipr, joined, endpoint)
            endpoint.gateway = joined.gateway
            endpoint.gateway6 = joined.gateway_ipv6 if endpoint.address6 else ""
            self._save_endpoint(endpoint)
        except BaseException:
            await self._remove_endpoint(endpoint, None, quiet=True)
            raise
        self.emit(network, "connect", container=sandbox.container_id)
        return endpoint

    def _endpoint_options(self, sandbox: SandboxConfig | None) -> dict[str, Any]:
        """CreateEndpoint's options: the container's exposed and published ports."""
        if sandbox is None:
            return {EXPOSED_PORTS: [], PORT_MAP: []}
        exposed = []
        for key in sandbox.exposed_ports:
            number, _, proto = key.partition("/")
            exposed.append({"Proto": PROTOCOLS.get(proto, PROTOCOLS["tcp"]), "Port": int(number)})
        return {EXPOSED_PORTS: exposed, PORT_MAP: [r.to_wire() for r in sandbox.ports]}

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
        try:
            await ipr.link("set", index=index, **link)
        except NetlinkError as e:
            if endpoint.mac:
                raise Unavailable(f"cannot set MAC address {endpoint.mac}: {e}") from e
            raise
        if endpoint.address:
            await ipr.addr("add", index=index, address=endpoint.ip, prefixlen=endpoint.prefix_len)
        # IPv6 addresses skip duplicate address detection, as Docker's do: the address
        # would otherwise stay unusable (tentative) for a second or more after start.
        if endpoint.address6:
            await ipr.addr(
                "add",
                index=index,
                address=endpoint.ip6,
                prefixlen=endpoint.prefix6_len,
                flags=IFA_F_NODAD,
            )
        for address in endpoint.link_local:
            interface = ipaddress.ip_interface(address)
            extra = {"flags": IFA_F_NODAD} if interface.version == 6 else {}
            await ipr.addr(
                "add",
                index=index,
                address=str(interface.ip),
                prefixlen=interface.network.prefixlen,
                **extra,
            )
        for route in joined.static_routes:
            if route.route_type == 1:
                await ipr.route("add", dst=route.destination, oif=index)
            else:
                await ipr.route("add", dst=route.destination, gateway=route.next_hop)

    async def _choose_gateway(
        self, sandbox: SandboxConfig, ipr: Any, previous: list[dict[str, Any]] | None = None
    ) -> None:
        """Give the container default routes and publish its ports through one endpoint.

        The IPv4 gateway endpoint is the first non-internal network in the container's
        order and publishes the ports; the IPv6 default route goes through the first such
        network with IPv6. `previous`: the ports the former gateway endpoint published;
        the same host ports are asked for again, so a moved gateway keeps its ports."""
        endpoints = self.container_endpoints(sandbox.container_id)
        order = list(sandbox.networks)

        def rank(endpoint: Endpoint) -> int:
            name = self.networks[endpoint.network_id].name
            return order.index(name) if name in order else len(order)

        await self._route6(endpoints, ipr, rank)
        if any(e.external for e in endpoints):
            return
        candidates = sorted((e for e in endpoints if e.gateway and e.joined), key=rank)
        if not candidates:
            return
        endpoint = candidates[0]
        network = self.networks[endpoint.network_id]
        with contextlib.suppress(NetlinkError):
            await ipr.route("del", dst="0.0.0.0/0")
        await ipr.route("add", dst="0.0.0.0/0", gateway=endpoint.gateway)
        wanted = list(sandbox.ports)
        if previous:
            wanted = [PortBinding.from_wire(p) for p in previous]
            for request in wanted:
                request.ip = ""
        endpoint.external = True
        self._save_endpoint(endpoint)
        driver = await self._driver(network)
        # The gateway endpoint is always programmed (Docker does; a plugin may answer 404);
        # the built-in bridge has nothing to do without ports.
        if wanted or network.driver not in BUILTIN_DRIVERS:
            options = {**self._endpoint_options(sandbox)}
            options[PORT_MAP] = [r.to_wire() for r in wanted]
            try:
                await driver.program_external_connectivity(network.id, endpoint.id, options)
            except DockyardError as e:
                raise Unavailable(
                    f"driver failed programming external connectivity on endpoint "
                    f"{sandbox.name} ({endpoint.id}): {e.message}"
                ) from e
        if wanted:
            info = await driver.endpoint_oper_info(network.id, endpoint.id)
            endpoint.ports = list(info.get(PORT_MAP) or [])
            self._save_endpoint(endpoint)

    async def _route6(self, endpoints: list[Endpoint], ipr: Any, rank: Any) -> None:
        """The IPv6 default route through the best endpoint with an IPv6 gateway (if any)."""
        candidates = sorted((e for e in endpoints if e.gateway6 and e.joined), key=rank)
        with contextlib.suppress(NetlinkError):
            await ipr.route("del", dst="::/0", family=socket.AF_INET6)
        if candidates:
            await ipr.route(
                "add", dst="::/0", gateway=candidates[0].gateway6, family=socket.AF_INET6
            )

    async def teardown(self, container_id: str) -> None:
        """Undo `setup` (or what a failed setup got to); never raises."""
        started = time.perf_counter()
        self.dns.stop(container_id)
        for endpoint in self.container_endpoints(container_id):
            await self._remove_endpoint(endpoint, None)
        with contextlib.suppress(OSError):
            netns.destroy(self.sandbox_path(container_id))
        sandbox = self.sandboxes.pop(container_id, None)
        log.debug(
            "network teardown of %s (%s): %.2f ms",
            container_id[:12],
            next(iter(sandbox.networks), "") if sandbox else "",
            (time.perf_counter() - started) * 1e3,
        )

    async def _remove_endpoint(self, endpoint: Endpoint, ipr: Any, *, quiet: bool = False) -> None:
        """Revoke, leave, delete, release (with `ipr`: take the interface out of the sandbox).
        `quiet`: an endpoint that never finished (no disconnect event)."""
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
            for address, pool_id in (
                (endpoint.ip, endpoint.pool_id),
                (endpoint.ip6, endpoint.pool6_id),
            ):
                if address and pool_id:
                    try:
                        ipam = await self.ipam_driver(network.ipam_driver)
                        await ipam.release_address(pool_id, address)
                    except DockyardError as e:
                        log.warning("endpoint %s: %s", endpoint.id[:12], e.message)
        self._forget_endpoint(endpoint)
        if network is not None and not quiet:
            self.emit(network, "disconnect", container=endpoint.container_id)

    # -- connect / disconnect of a running container ---------------------------

    async def connect(
        self, container_id: str, network: Network, settings: EndpointSettings
    ) -> None:
        """One more endpoint for a running container (its lock held by the caller)."""
        sandbox = self.sandboxes.get(container_id)
        if sandbox is None:
            raise Conflict(f"container {container_id} has no network sandbox")
        path = self.sandbox_path(container_id)
        async with await netns.netlink(path) as ipr:
            endpoint = await self._attach(sandbox, network, settings, path, ipr)
            sandbox.networks[network.name] = settings
            try:
                await self._choose_gateway(sandbox, ipr)
            except BaseException:
                sandbox.networks.pop(network.name, None)
                await self._remove_endpoint(endpoint, ipr)
                raise
        if self.uses_dns(container_id):
            await self.dns.serve(container_id, path)

    async def disconnect(self, container_id: str, network: Network) -> None:
        """Remove a container's endpoint on `network` (its lock held by the caller)."""
        await self._stale_removed([container_id])
        endpoints = [
            e for e in self.container_endpoints(container_id) if e.network_id == network.id
        ]
        sandbox = self.sandboxes.get(container_id)
        path = self.sandbox_path(container_id)
        if endpoints and sandbox is not None and netns.is_mounted(path):
            async with await netns.netlink(path) as ipr:
                published = [p for e in endpoints if e.external for p in e.ports]
                was_gateway = any(e.external for e in endpoints)
                for endpoint in endpoints:
                    await self._remove_endpoint(endpoint, ipr)
                sandbox.networks.pop(network.name, None)
                await self._choose_gateway(sandbox, ipr, published if was_gateway else None)
            if not self.uses_dns(container_id):
                self.dns.stop(container_id)
            return
        for endpoint in endpoints:
            await self._remove_endpoint(endpoint, None)
        if sandbox is not None:
            sandbox.networks.pop(network.name, None)

    def renamed(self, container_id: str, name: str) -> None:
        """A container's new name: what its endpoints answer to and are shown as."""
        sandbox = self.sandboxes.get(container_id)
        if sandbox is not None:
            sandbox.name = name
        for endpoint in self.container_endpoints(container_id):
            old = endpoint.container_name
            endpoint.container_name = name
            endpoint.dns_names = list(
                dict.fromkeys(name if n == old else n for n in endpoint.dns_names)
            )
            self._save_endpoint(endpoint)

    # -- DNS answers (dns.Answers) -------------------------------------------

    def lookup(self, container_id: str, name: str) -> list[str] | None:
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
            # A link's alias on this network means the container it names.
            wanted |= {own.links[w] for w in list(wanted) if w in own.links}
            for endpoint in self.endpoints_of(network):
                if not (endpoint.ip or endpoint.ip6):
                    continue
                if {n.lower() for n in _names(endpoint)} & wanted:
                    for address in (endpoint.ip, endpoint.ip6):
                        if address and address not in found:
                            found.append(address)
        return found or None

    def reverse(self, container_id: str, address: str) -> str | None:
        networks = {e.network_id for e in self.container_endpoints(container_id)}
        for endpoint in self.endpoints.values():
            if endpoint.network_id in networks and address in (endpoint.ip, endpoint.ip6):
                network = self.networks.get(endpoint.network_id)
                if network and endpoint.container_name:
                    return f"{endpoint.container_name}.{network.name}"
        return None

    def upstreams(self, container_id: str) -> list[str]:
        if not any(
            (network := self.networks.get(e.network_id)) is not None and not network.internal
            for e in self.container_endpoints(container_id)
        ):
            return []  # only on internal networks: no way out, not even through DNS
        sandbox = self.sandboxes.get(container_id)
        if sandbox is not None and sandbox.dns:
            return list(sandbox.dns)
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


def _forwarding(family: str) -> None:
    """Switch on the host's forwarding for `family` (only with `ip-forward`, Docker's default)."""
    path = (
        f"/proc/sys/net/{family}/ip_forward"
        if family == "ipv4"
        else ("/proc/sys/net/ipv6/conf/all/forwarding")
    )
    try:
        with open(path, "w") as f:
            f.write("1")
    except OSError as e:
        log.warning("cannot enable %s forwarding: %s", family, e)


def _overlaps_host_route(cidr: str) -> bool:
    """Whether a subnet IPAM chose overlaps a route of the host (then another is asked for)."""
    candidate = ipaddress.ip_network(cidr)
    return any(candidate.overlaps(r) for r in _host_routes(candidate.version))


def _host_routes(version: int) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    routes: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    try:
        with open("/proc/net/route" if version == 4 else "/proc/net/ipv6_route") as f:
            lines = f.read().splitlines()
    except OSError:
        return routes
    for line in lines[1:] if version == 4 else lines:
        fields = line.split()
        if version == 4:
            if len(fields) < 8 or fields[1] == "00000000":
                continue
            dest = ipaddress.IPv4Address(int(fields[1], 16).to_bytes(4, "little"))
            mask = ipaddress.IPv4Address(int(fields[7], 16).to_bytes(4, "little"))
            routes.append(ipaddress.ip_network(f"{dest}/{mask}", strict=False))
        else:
            if len(fields) < 10 or int(fields[1], 16) == 0:
                continue
            dest6 = ipaddress.IPv6Address(int(fields[0], 16))
            routes.append(ipaddress.IPv6Network((dest6, int(fields[1], 16)), strict=False))
    return routes


def _names(endpoint: Endpoint) -> list[str]:
    """What an endpoint answers to in DNS (records from before DNS names were kept: name,
    short ID and aliases)."""
    if endpoint.dns_names:
        return endpoint.dns_names
    names = [endpoint.container_id[:12], *endpoint.aliases]
    return [endpoint.container_name, *names] if endpoint.container_name else names


def _dns_names(sandbox: SandboxConfig, settings: EndpointSettings) -> list[str]:
    """Docker's DNSNames: name, aliases, short ID, hostname (first is the PTR name)."""
    names = [sandbox.name, *(settings.aliases or []), sandbox.short_id, sandbox.hostname]
    return list(dict.fromkeys(n for n in names if n))


def _links(settings: EndpointSettings) -> dict[str, str]:
    """EndpointSettings.Links as alias -> container name, lower case (DNS is case-blind)."""
    result = {}
    for link in settings.links or []:
        name, alias = requests.parse_link(link)
        result[alias.lower()] = name.lower()
    return result


def _mac_text(text: str) -> str:
    """A MAC address as netlink takes it (aa:bb:cc:dd:ee:ff); "" for none."""
    raw = requests.parse_mac(text) if text else None
    if raw is None:
        return ""
    return ":".join(f"{b:02x}" for b in raw)


def _link_local(address: str) -> str:
    """A LinkLocalIPs entry with Docker's prefix length (/16 for IPv4, /64 for IPv6)."""
    ip = ipaddress.ip_address(address)
    return f"{ip}/{16 if ip.version == 4 else 64}"


def _random_mac() -> str:
    """A random unicast, locally administered MAC (for IPAM drivers that require one)."""
    raw = bytearray(secrets.token_bytes(6))
    raw[0] = (raw[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in raw)
