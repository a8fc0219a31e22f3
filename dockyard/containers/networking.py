"""A container's network attachments: the container side of networking.

A container's networks are part of the container: which ones it joins and
with which settings (`Container.networks`, chosen at create by `requested`,
changed by `connect`/`disconnect`), its legacy links (`HostConfig.Links`), its
`/etc/hosts` and `resolv.conf`. This module owns them and calls the network
manager downwards with plain data (a `SandboxConfig`: ID, name, hostname,
networks, ports, DNS servers); the manager never calls back.

    requested(name, host_config, networking_config)   create: networks checked,
                                                      links resolved to Docker's form
    setup(container) -> NetworkSetup    start: links checked, sandbox and endpoints
                                        (manager.setup), /etc files, link variables;
                                        parents linking to it see its new address
    teardown(container)                 stop: the sandbox and endpoints go
    connect / disconnect                `network connect|disconnect`, running or not
    remove_link(name)                   `rm --link /parent/alias`
    renamed / removed                   links and DNS names follow the container
    settle(container, intent)           daemon start-up: a connect or disconnect a crash
                                        cut short settles on what the manager has
    reconcile()                         daemon start-up: the running containers'
                                        sandboxes handed to the manager

The caller holds the container's lock for `setup` and `teardown`; `connect`,
`disconnect` and `remove_link` take it themselves.

Connecting or disconnecting a running container is two writes, the manager's
endpoint record (with the interface it moves into the sandbox) and the
container's record, so it is journaled (`journal.CONNECT`/`DISCONNECT`): after a
crash between them, the container's record follows the manager's endpoints,
which are what the container really has.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dockyard.containers import etcfiles, journal, links
from dockyard.containers.journal import Intent
from dockyard.containers.model import Container
from dockyard.containers.schema import EndpointSettings, HostConfig, NetworkingConfig
from dockyard.errors import Conflict, Forbidden, InvalidArgument, NotFound, Unavailable
from dockyard.network import netns, ports
from dockyard.network.manager import NetworkManager
from dockyard.network.model import SandboxConfig
from dockyard.network.requests import is_user_defined
from dockyard.state import crashpoints

if TYPE_CHECKING:
    from dockyard.containers.service import ContainerService

log = logging.getLogger(__name__)

_SHARED = (
    "container sharing network namespace with another container or host cannot be "
    "connected to any other network"
)
_HOST_NETWORK = "container cannot be disconnected from host network or connected to host network"


@dataclass
class NetworkSetup:
    """What a container's spec needs from its networking."""

    netns_path: str | None  # None: the runtime makes (none) or skips (host) a namespace
    hostname: str
    files: dict[str, str] = field(default_factory=dict)  # /etc/... -> host file to bind
    env: list[str] = field(default_factory=list)  # legacy links' variables


class ContainerNetworking:
    def __init__(self, manager: NetworkManager, containers: ContainerService) -> None:
        self.manager = manager
        self.containers = containers

    # -- create --------------------------------------------------------------

    def requested(
        self, name: str, host_config: HostConfig, networking_config: NetworkingConfig
    ) -> dict[str, EndpointSettings]:
        """The container's networks, name -> EndpointSettings, checked (at create); the
        legacy links of `host_config` are checked and stored in Docker's form."""
        mode = host_config.network_mode or "bridge"
        self._check_links(name, mode, host_config)
        endpoints_config = dict(networking_config.endpoints_config or {})
        if mode in ("host", "none"):
            return {mode: EndpointSettings(network_id=self.manager.get(mode).id)}
        if mode.startswith("container:"):
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
        primary = self.manager.find(mode)  # unknown: fails the start, not the create (moby)
        if primary is not None and primary.driver in ("host", "null"):
            return {primary.name: EndpointSettings(network_id=primary.id)}
        primary_key, primary_settings = mode, None
        keys = [mode, "default", *((primary.name, primary.id) if primary else ())]
        for key in keys:
            if key in endpoints_config:
                found = endpoints_config.pop(key)
                if found is not None:
                    primary_key, primary_settings = key, found
        result: dict[str, EndpointSettings] = {}
        for key, ref, settings in [
            (primary_key, mode, primary_settings),
            *((k, k, s) for k, s in endpoints_config.items()),
        ]:
            network = self.manager.find(ref)
            if network is not None and network.driver in ("host", "null"):
                raise InvalidArgument(
                    "container cannot be connected to host or none networks and other networks"
                )
            try:
                checked = self.manager.endpoint_settings(
                    ref, network, settings or EndpointSettings()
                )
            except InvalidArgument as e:
                raise InvalidArgument(f"invalid config for network {key}: {e.message}") from None
            result[network.name if network else ref] = checked
        return result

    def _check_links(self, name: str, mode: str, host_config: HostConfig) -> None:
        """HostConfig.Links as Docker registers them: on a user-defined network they do
        nothing (the client puts them in EndpointSettings.Links) and inspect shows none;
        otherwise each must name an existing container not on the host's network."""
        if not host_config.links:
            return
        if mode == "host":
            raise InvalidArgument(
                "conflicting options: host type networking can't be used with links. "
                "This would result in undefined behavior"
            )
        if mode.startswith("container:"):
            raise InvalidArgument(
                "conflicting options: container type network can't be used with links. "
                "This would result in undefined behavior"
            )
        if is_user_defined(mode):
            host_config.links = None
            return
        stored: dict[str, str] = {}
        for text in host_config.links:
            link = links.parse(text, name)
            child = self._linkable(link.child)
            if link.alias not in stored:  # Docker keeps the first link of an alias
                stored[link.alias] = links.Link(child.name, name, link.alias).stored()
        host_config.links = list(stored.values())

    def _linkable(self, ref: str) -> Container:
        """The container a link names (through `container:` network modes), or a 400."""
        try:
            child = self.containers.get(ref)
            while (child.host_config.network_mode or "").startswith("container:"):
                ref = child.host_config.network_mode.split(":", 1)[1]
                child = self.containers.get(ref)
        except NotFound as e:
            raise InvalidArgument(f"could not get container for {ref}: {e.message}") from None
        if child.host_config.network_mode == "host":
            raise InvalidArgument(
                "conflicting options: host type networking can't be used with links. "
                "This would result in undefined behavior"
            )
        return child

    # -- start / stop --------------------------------------------------------

    async def setup(self, container: Container) -> NetworkSetup:
        """The container's sandbox, endpoints and /etc files (its lock held)."""
        hc = container.host_config
        mode = hc.network_mode or "bridge"
        hostname = container.config.hostname or container.short_id
        if mode.startswith("container:"):
            return self._shared(container, mode.split(":", 1)[1])
        if not container.networks:  # a container created before networks existed
            container.networks = self.requested(container.name, hc, NetworkingConfig())
        children = self._children(container)
        sandbox = await self.manager.setup(self._sandbox_config(container))
        env: list[str] = []
        if children:
            bridge = self.manager.get("bridge")
            own = self.manager.endpoint_on(container.id, bridge)
            for link, child in children:
                endpoint = self.manager.endpoint_on(child.id, bridge)
                env += links.env_vars(
                    own.ip if own else "",
                    endpoint.ip if endpoint else "",
                    link.name,
                    child.config.env,
                    child.config.exposed_ports,
                )
        files = self._write_etc_files(
            container, hostname, sandbox.addresses, sandbox.embedded_dns, in_place=False
        )
        self._refresh_parents(container)
        return NetworkSetup(sandbox.path, hostname, files, env)

    async def teardown(self, container: Container) -> None:
        """Undo `setup`; never raises (the container's lock held)."""
        await self.manager.teardown(container.id)

    def _sandbox_config(self, container: Container) -> SandboxConfig:
        hc = container.host_config
        exposed = container.config.exposed_ports
        return SandboxConfig(
            container_id=container.id,
            name=container.name,
            hostname=container.config.hostname or container.short_id,
            networks=dict(container.networks),
            exposed_ports=list(exposed or {}),
            ports=ports.requested(hc.port_bindings, exposed, hc.publish_all_ports),
            dns=list(hc.dns or []),
        )

    def _shared(self, container: Container, ref: str) -> NetworkSetup:
        """`--network container:<ref>`: that container's namespace and /etc files."""
        other = self.containers.get(ref)
        if not other.state.running or not other.state.pid:
            raise Conflict(f"cannot join network namespace of a non running container: {ref}")
        sandbox = self.manager.sandbox_path(other.id)
        if other.host_config.network_mode == "host" or not netns.is_mounted(sandbox):
            path = f"/proc/{other.state.pid}/ns/net"
        else:
            path = sandbox
        hostname = other.config.hostname or other.short_id
        files = self._write_etc_files(container, hostname, [], False, in_place=False)
        shared = self.containers.dir(other)
        for name in ("hosts", "resolv.conf"):
            files[f"/etc/{name}"] = os.path.join(shared, name)
        return NetworkSetup(path, hostname, files)

    # -- /etc files ----------------------------------------------------------

    def _write_etc_files(
        self,
        container: Container,
        hostname: str,
        addresses: list[str],
        embedded_dns: bool,
        *,
        in_place: bool,
    ) -> dict[str, str]:
        return etcfiles.write(
            self.containers.dir(container),
            container.host_config,
            hostname,
            addresses=addresses,
            embedded_dns=embedded_dns,
            in_place=in_place,
            host_gateway=self.manager.host_gateway(),
            linked=self._hosts_entries(container),
        )

    def _rewrite_etc_files(self, container: Container) -> None:
        """/etc/hosts and resolv.conf of a running container after its networks or links
        changed (in place: its bind mounts pin the inodes)."""
        if (container.host_config.network_mode or "").startswith("container:"):
            return  # it uses the other container's files
        try:
            self._write_etc_files(
                container,
                container.config.hostname or container.short_id,
                self.manager.addresses(container.id),
                self.manager.uses_dns(container.id),
                in_place=True,
            )
        except OSError as e:
            log.warning("cannot update /etc files of %s: %s", container.short_id, e)

    def _hosts_entries(self, container: Container) -> list[tuple[str, str]]:
        """/etc/hosts lines for the container's legacy links: each running child's
        addresses on the default bridge with the alias, its hostname and its name."""
        if (container.host_config.network_mode or "bridge") != "bridge":
            return []
        bridge = self.manager.find("bridge")
        entries: list[tuple[str, str]] = []
        for link in links.stored(container.host_config.links, container.name):
            child = self._find(link.child)
            endpoint = self.manager.endpoint_on(child.id, bridge) if child and bridge else None
            if child is None or endpoint is None:
                continue
            names = [link.alias, child.config.hostname or child.short_id]
            if link.alias != child.name:
                names.append(child.name)
            for address in (endpoint.ip, endpoint.ip6):
                if address:
                    entries.append((address, " ".join(names)))
        return entries

    # -- legacy links --------------------------------------------------------

    def _children(self, container: Container) -> list[tuple[links.Link, Container]]:
        """The containers a starting container links to, checked as Docker checks them:
        each on the default bridge, then each running. A child removed since is no link."""
        if (container.host_config.network_mode or "bridge") != "bridge":
            return []
        found = []
        for link in links.stored(container.host_config.links, container.name):
            child = self._find(link.child)
            if child is None:
                continue
            if "bridge" not in child.networks:
                raise Unavailable(
                    f"Cannot link to /{child.name}, as it does not belong to the default network"
                )
            found.append((link, child))
        for link, child in found:
            if not child.state.running:
                raise Unavailable(
                    f"Cannot link to a non running container: /{child.name} AS {link.name}"
                )
        return found

    def _find(self, ref: str) -> Container | None:
        try:
            return self.containers.get(ref)
        except NotFound:
            return None

    def _refresh_parents(self, child: Container) -> None:
        """Running containers linking to `child` see its new address in their /etc/hosts."""
        for parent in self.containers.all():
            if parent.id == child.id or not parent.state.running:
                continue
            if any(
                link.child == child.name
                for link in links.stored(parent.host_config.links, parent.name)
            ):
                self._rewrite_etc_files(parent)

    async def remove_link(self, ref: str) -> None:
        """`DELETE /containers/<parent>/<alias>?link=1`: the parent loses the link (and, if
        it runs, its /etc/hosts line); both containers stay."""
        name = ref.strip("/")
        parent_name, _, alias = name.rpartition("/")
        if not parent_name:
            self.containers.get(name)  # 404 if it is no container at all
            # Docker's words; its 500 here is an untyped error, the request's own conflict
            raise Conflict("Conflict, cannot remove the default link name of the container")
        parent = self._find(parent_name)
        kept = links.stored(parent.host_config.links, parent.name) if parent else []
        if parent is None or not any(link.alias == alias for link in kept):
            raise NotFound(f"No such container: {ref}")
        async with self.containers.live(parent).lock:
            remaining = [link.stored() for link in kept if link.alias != alias]
            parent.host_config.links = remaining or None
            self.containers.networks_changed(parent)
            if parent.state.running:
                self._rewrite_etc_files(parent)

    def renamed(self, container: Container, old: str) -> None:
        """The container's endpoints answer to its new name; links to and from it follow."""
        self.manager.renamed(container.id, container.name)
        for other in self.containers.all():
            stored = links.stored(other.host_config.links, other.name)
            if not stored:
                continue
            changed = [
                links.Link(
                    container.name if link.child == old else link.child, other.name, link.alias
                )
                for link in stored
            ]
            texts = [link.stored() for link in changed]
            if texts != other.host_config.links:
                other.host_config.links = texts
                self.containers.networks_changed(other)

    def removed(self, container: Container) -> None:
        """A removed container is no longer the child of any link (Docker drops them)."""
        for other in self.containers.all():
            stored = links.stored(other.host_config.links, other.name)
            kept = [link.stored() for link in stored if link.child != container.name]
            if len(kept) != len(stored):
                other.host_config.links = kept or None
                self.containers.networks_changed(other)

    def link_names(self) -> dict[str, list[str]]:
        """Container ID -> the link names it is known by (`/parent/alias`), as `ps` lists."""
        everyone = self.containers.all()
        by_name = {c.name: c for c in everyone}
        names: dict[str, list[str]] = {}
        for parent in everyone:
            for link in links.stored(parent.host_config.links, parent.name):
                child = by_name.get(link.child)
                if child is not None:
                    names.setdefault(child.id, []).append(link.name)
        return names

    # -- connect / disconnect ------------------------------------------------

    async def connect(
        self, network_ref: str, container_ref: str, settings: EndpointSettings
    ) -> None:
        """`network connect`: a running container gets the endpoint now, a stopped one at
        its next start."""
        container = self.containers.get(container_ref)
        network = self.manager.get(network_ref)
        mode = container.host_config.network_mode or "bridge"
        if network.driver in ("host", "null") or mode in ("host", "none"):
            raise Forbidden(_HOST_NETWORK if "host" in (network.name, mode) else _SHARED)
        if mode.startswith("container:"):
            raise Forbidden(_SHARED)
        if network.name in container.networks:
            raise Forbidden(
                f"endpoint with name {container.name} already exists in network {network.name}"
            )
        checked = self.manager.endpoint_settings(network.name, network, settings)
        async with self.containers.live(container).lock:
            if not container.state.running:
                container.networks[network.name] = checked  # one write: nothing to journal
                self.containers.networks_changed(container)
                return
            intent = self.containers.journal.begin(
                container.id, journal.CONNECT, network=network.name, settings=checked.to_wire()
            )
            try:
                await self.manager.connect(container.id, network, checked)
                crashpoints.reached("connect:endpoint")
                container.networks[network.name] = checked
                self._rewrite_etc_files(container)
                self.containers.networks_changed(container, ending=intent)
            finally:
                self.containers.journal.end(intent)

    async def disconnect(self, network_ref: str, container_ref: str, force: bool = False) -> None:
        """`network disconnect`; `force` changes nothing for a local network."""
        container = self.containers.get(container_ref)
        network = self.manager.get(network_ref)
        if network.name not in container.networks:
            raise Forbidden(f"container {container.id} is not connected to network {network.name}")
        if network.driver in ("host", "null"):
            raise Forbidden(_HOST_NETWORK)
        async with self.containers.live(container).lock:
            intent = self.containers.journal.begin(
                container.id, journal.DISCONNECT, network=network.name
            )
            try:
                await self.manager.disconnect(container.id, network)
                crashpoints.reached("disconnect:endpoint")
                container.networks.pop(network.name, None)
                if container.state.running:
                    self._rewrite_etc_files(container)
                self.containers.networks_changed(container, ending=intent)
            finally:
                self.containers.journal.end(intent)

    # -- daemon start-up -----------------------------------------------------

    def settle(self, container: Container, intent: Intent) -> None:
        """A connect or disconnect a crash cut short: the container is on the network if
        and only if the manager has its endpoint there (a container that is not running
        has none, and keeps what its record says)."""
        name = str(intent.detail.get("network", ""))
        network = self.manager.find(name)
        if container.state.running:
            # Only a joined endpoint is one (the manager's reconcile removes the others).
            endpoint = self.manager.endpoint_on(container.id, network) if network else None
            attached = endpoint is not None and endpoint.joined
            if attached and name not in container.networks:
                settings = intent.detail.get("settings")
                container.networks[name] = (
                    EndpointSettings.decode(settings) if settings else EndpointSettings()
                )
            elif not attached and intent.action == journal.DISCONNECT:
                container.networks.pop(name, None)
        elif intent.action == journal.DISCONNECT:
            container.networks.pop(name, None)  # what is left of it is the record alone
        self.containers.networks_changed(container, ending=intent)

    async def reconcile(self) -> None:
        """Hand the manager the sandboxes of the containers still running (after restore)."""
        running = [c for c in self.containers.all() if c.state.running]
        await self.manager.reconcile([self._sandbox_config(c) for c in running])
