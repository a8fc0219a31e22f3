"""Managed (v2) plugins: a rootfs and a config.json the engine stores and runs.

Lifecycle: `create` (from a tar of `config.json` + `rootfs/`) leaves a
disabled plugin; `enable` runs it as a container under the same OCI runtime
and monitor (conmon) as containers and waits for its socket; `disable` stops
it; `remove` deletes it. While enabled, a plugin that dies is started again
(with a growing delay). Plugins keep running across daemon restarts like
containers do: at start-up a live monitor is adopted, a dead one restarted.
What a plugin mounted in its propagated mount (volumes in use) stays mounted
while it is started again; only a stop for good (disable, remove) unmounts it.

References: volumes, networks and running loggers that use a plugin hold a
reference (`acquire`/`release`); `disable` and `remove` refuse an in-use
plugin (409) unless forced, and `remove` refuses an enabled one.

On disk (Docker's layout under Dockyard's roots):

    <data-root>/plugins/<id>/rootfs            the plugin's root, writable
    <data-root>/plugins/<id>/propagated-mount  host side of PropagatedMount
    <data-root>/plugins/<id>/plugin.log        the plugin's stdout and stderr
    <data-root>/plugins/storage/               blobs: gzip layer, config, manifest
    <exec-root>/plugins/<id12>/sock/           host side of /run/docker/plugins
    <exec-root>/plugins/<id12>/logging/        host side of /run/docker/logging
    <exec-root>/plugins/<id12>/bundle/         the OCI bundle
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import json
import logging
import os
import posixpath
import secrets
import shutil
import socket
import tarfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from dockyard import mount
from dockyard.content.store import ContentStore, DigestingReader
from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound, Unavailable
from dockyard.events.bus import EventBus
from dockyard.images import oci, reference
from dockyard.layers.apply import apply_layer
from dockyard.layers.compression import open_decompressed
from dockyard.plugins import config as plugin_config
from dockyard.plugins import runspec
from dockyard.plugins.client import QUICK_RETRY_WINDOW, PluginClient
from dockyard.plugins.config import PluginConfig, Settings
from dockyard.plugins.legacy import Plugin
from dockyard.runtime import cgroups, monitor
from dockyard.runtime.monitor import Conmon, Monitor, Paths
from dockyard.runtime.oci import Runtime
from dockyard.state import crashpoints
from dockyard.state.db import Database
from dockyard.streams import consume_in_thread

log = logging.getLogger(__name__)

PLUGIN_CONFIG = "application/vnd.docker.plugin.v1+json"
SOCKET_WAIT = 10.0  # Docker: 0.5 s, then 3 retries 3 s apart
STOP_WAIT = 10.0


@dataclass
class ManagedPlugin:
    id: str
    name: str  # familiar reference with tag: "acme/vol:latest"
    config: PluginConfig
    settings: Settings
    enabled: bool = False
    reference: str = ""
    manifest: str = ""  # digest of the schema-2 manifest in the plugin blob store
    created: str = ""
    timeout: float = 0.0  # per-call timeout given at enable; 0: none
    runtime: str = ""
    monitor_pid: int = 0
    monitor_start: int = 0

    def to_json(self) -> str:
        return json.dumps(
            {
                "Id": self.id,
                "Name": self.name,
                "Config": self.config.to_wire(),
                "Settings": self.settings.to_wire(),
                "Enabled": self.enabled,
                "PluginReference": self.reference,
                "Manifest": self.manifest,
                "Created": self.created,
                "Timeout": self.timeout,
                "Runtime": self.runtime,
                "MonitorPid": self.monitor_pid,
                "MonitorStart": self.monitor_start,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ManagedPlugin:
        d = json.loads(text)
        return cls(
            d["Id"],
            d["Name"],
            PluginConfig.decode(d["Config"]),
            Settings.decode(d["Settings"]),
            d["Enabled"],
            d.get("PluginReference", ""),
            d.get("Manifest", ""),
            d.get("Created", ""),
            d.get("Timeout", 0.0),
            d.get("Runtime", ""),
            d.get("MonitorPid", 0),
            d.get("MonitorStart", 0),
        )

    @property
    def kinds(self) -> list[str]:
        return self.config.kinds()


@dataclass(frozen=True)
class PluginImage:
    """A plugin image in the plugin blob store: what install and upgrade unpack."""

    manifest: str  # digest of its schema-2 manifest
    config: PluginConfig
    layers: list[str]  # blob digests (gzip or plain tars), base first
    diff_ids: list[str]  # from the config; each layer is checked against its own


@dataclass
class _Live:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    watcher: asyncio.Task[None] | None = None
    client: PluginClient | None = None
    started: float = 0.0
    delay: float = 0.0
    # The engine is starting it (again): calls wait for its socket rather than fail.
    starting: bool = False


@dataclass(frozen=True)
class ManagedSettings:
    data_root: str  # <data-root>/plugins
    exec_root: str  # <exec-root>/plugins
    cgroup_parent: str
    cgroup_layout: cgroups.CgroupLayout
    nofile_limit: int
    timeout_cap: float
    start_window: float = 30.0  # how long a call waits for a plugin that is starting


class ManagedPlugins:
    def __init__(
        self,
        db: Database,
        events: EventBus,
        runtimes: dict[str, Runtime],
        monitors: dict[str, Conmon],
        default_runtime: str,
        settings: ManagedSettings,
    ) -> None:
        self.db = db
        self.events = events
        self.runtimes = runtimes
        self.monitors = monitors
        self.default_runtime = default_runtime
        self.settings = settings
        os.makedirs(settings.data_root, mode=0o700, exist_ok=True)
        os.makedirs(settings.exec_root, mode=0o700, exist_ok=True)
        for name in os.listdir(settings.data_root):
            if name.startswith("tmp-"):  # a create or install interrupted by a crash
                shutil.rmtree(os.path.join(settings.data_root, name), ignore_errors=True)
            else:
                _finish_upgrade(os.path.join(settings.data_root, name))
        self.blobs = ContentStore(os.path.join(settings.data_root, "storage"))
        self._plugins: dict[str, ManagedPlugin] = {}
        self._live: dict[str, _Live] = {}
        self._refs: dict[str, int] = {}
        self._pinned: Counter[str] = Counter()  # blobs of pulls in progress
        self._closing: asyncio.Future[None] | None = None
        # Called with a plugin that stops serving (disabled or removed).
        self.on_disable: list[Callable[[ManagedPlugin], None]] = []
        for row in db.all("SELECT record FROM plugins"):
            plugin = ManagedPlugin.from_json(row["record"])
            self._plugins[plugin.id] = plugin

    # -- lookup --------------------------------------------------------------

    def all(self) -> list[ManagedPlugin]:
        return sorted(self._plugins.values(), key=lambda p: p.name)

    def find(self, ref: str) -> ManagedPlugin:
        """By full ID, name (with or without `:latest`) or unique ID prefix."""
        if ref in self._plugins:
            return self._plugins[ref]
        name = _normalise(ref)
        for plugin in self._plugins.values():
            if plugin.name == name:
                return plugin
        if ref and all(c in "0123456789abcdef" for c in ref):
            matches = [p for p in self._plugins.values() if p.id.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
        raise NotFound(f'plugin "{ref}" not found')

    def lookup(self, ref: str) -> ManagedPlugin | None:
        try:
            return self.find(ref)
        except NotFound:
            return None
        except InvalidArgument:
            return None

    def plugin(self, managed: ManagedPlugin) -> Plugin:
        """The callable plugin of an enabled managed plugin."""
        live = self._live_of(managed)
        if live.client is None:
            timeout_cap = self.settings.timeout_cap
            if managed.timeout > 0:
                timeout_cap = managed.timeout
            from dockyard.plugins.discovery import Endpoint

            live.client = PluginClient(
                managed.name,
                Endpoint("unix", self.socket_path(managed)),
                retry_window=QUICK_RETRY_WINDOW,
                timeout_cap=timeout_cap,
                starting=lambda: self.starting(managed),
                start_window=self.settings.start_window,
            )
        return Plugin(managed.name, live.client, tuple(managed.kinds), managed.id)

    def starting(self, plugin: ManagedPlugin) -> bool:
        """Whether the engine is starting the plugin (again), so that its socket will
        come: it is enabled, and being started or its monitor has just died (the watcher
        starts it again)."""
        if not plugin.enabled:
            return False
        live = self._live_of(plugin)
        if live.starting:
            return True
        return not monitor.is_alive(Monitor(plugin.monitor_pid, plugin.monitor_start))

    # -- paths ---------------------------------------------------------------

    def dir(self, plugin: ManagedPlugin) -> str:
        return os.path.join(self.settings.data_root, plugin.id)

    def run_dir(self, plugin: ManagedPlugin) -> str:
        # Short: socket paths below it must fit in sun_path (108 bytes).
        return os.path.join(self.settings.exec_root, plugin.id[:12])

    def socket_path(self, plugin: ManagedPlugin) -> str:
        return os.path.join(self.run_dir(plugin), "sock", plugin.config.interface.socket)

    def logging_dir(self, plugin: ManagedPlugin) -> str:
        """Host side of the plugin's /run/docker/logging (log-driver FIFOs)."""
        return os.path.join(self.run_dir(plugin), "logging")

    def host_path(self, plugin: ManagedPlugin, path: str) -> str:
        """A path inside the plugin (a volume's Mountpoint) as the host sees it."""
        return host_path(self.dir(plugin), plugin.config.propagated_mount, path)

    def _paths(self, plugin: ManagedPlugin) -> Paths:
        bundle = os.path.join(self.run_dir(plugin), "bundle")
        return Paths(
            bundle=bundle,
            persist=self.dir(plugin),
            log=os.path.join(self.dir(plugin), "plugin.log"),
            pid_file=os.path.join(bundle, "pidfile"),
            monitor_pid_file=os.path.join(bundle, "conmon.pid"),
        )

    def _cgroup_path(self, plugin: ManagedPlugin) -> str:
        return f"/{self.settings.cgroup_parent.strip('/')}/plugin-{plugin.id[:12]}"

    def _live_of(self, plugin: ManagedPlugin) -> _Live:
        live = self._live.get(plugin.id)
        if live is None:
            live = self._live[plugin.id] = _Live()
        return live

    def _save(self, plugin: ManagedPlugin) -> None:
        with self.db.transaction():
            self.db.execute(
                "UPDATE plugins SET name=?, record=? WHERE id=?",
                (plugin.name, plugin.to_json(), plugin.id),
            )

    def _emit(self, plugin: ManagedPlugin, action: str) -> None:
        self.events.emit("plugin", action, plugin.id, {"name": plugin.name})

    # -- references ----------------------------------------------------------

    def acquire(self, plugin_id: str) -> None:
        self._refs[plugin_id] = self._refs.get(plugin_id, 0) + 1

    def release(self, plugin_id: str) -> None:
        count = self._refs.get(plugin_id, 0) - 1
        if count > 0:
            self._refs[plugin_id] = count
        else:
            self._refs.pop(plugin_id, None)

    def references(self, plugin: ManagedPlugin) -> int:
        return self._refs.get(plugin.id, 0)

    # -- create --------------------------------------------------------------

    def _new_id(self) -> str:
        plugin_id = secrets.token_hex(32)
        while any(p.id[:12] == plugin_id[:12] for p in self._plugins.values()):
            plugin_id = secrets.token_hex(32)
        return plugin_id

    def check_available(self, name: str) -> None:
        """A Conflict if a plugin is named `name` already."""
        if self.lookup(name) is not None:
            raise Conflict(f'plugin "{name}" already exists')

    async def create(self, name: str, body: AsyncIterator[bytes]) -> ManagedPlugin:
        """A disabled plugin from a tar (optionally compressed) of config.json + rootfs/."""
        full = _normalise(name, strict=True)
        self.check_available(full)
        plugin_id = self._new_id()
        tmp = os.path.join(self.settings.data_root, "tmp-" + plugin_id)
        os.makedirs(tmp, mode=0o700)
        try:
            ingested = await consume_in_thread(body, lambda raw: _ingest(raw, tmp, self.blobs))
            plugin = self._register(tmp, plugin_id, full, ingested.config, ingested.manifest, full)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._emit(plugin, "create")
        return plugin

    def _register(
        self,
        tmp: str,
        plugin_id: str,
        name: str,
        config: PluginConfig,
        manifest: str,
        reference: str,
    ) -> ManagedPlugin:
        """Record a new, disabled plugin whose rootfs is ready in `tmp`."""
        self.check_available(name)
        plugin = ManagedPlugin(
            id=plugin_id,
            name=name,
            config=config,
            settings=plugin_config.initial_settings(config),
            reference=reference,
            manifest=manifest,
            created=oci.now_rfc3339(),
            runtime=self.default_runtime,
        )
        os.makedirs(os.path.join(tmp, "propagated-mount"))
        final = self.dir(plugin)
        os.rename(tmp, final)
        try:
            with self.db.transaction():
                self.db.execute(
                    "INSERT INTO plugins(id, name, record) VALUES (?,?,?)",
                    (plugin.id, plugin.name, plugin.to_json()),
                )
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)
            raise
        self._plugins[plugin.id] = plugin
        return plugin

    # -- from a registry: install and upgrade ----------------------------------

    def pin(self, digests: list[str]) -> None:
        """Keep blobs of a pull in progress from being collected."""
        self._pinned.update(digests)

    def unpin(self, digests: list[str]) -> None:
        """Release pinned blobs; those no plugin uses (a pull that failed) are collected."""
        self._pinned.subtract(digests)
        self._pinned += Counter()  # drop what reached zero
        self._collect_blobs()

    async def install(
        self, name: str, image: PluginImage, granted: Any, reference: str
    ) -> ManagedPlugin:
        """A disabled plugin named `name` from an image in the blob store (`plugin
        install`), if `granted` are exactly the privileges its config asks for."""
        plugin_config.check_privileges(image.config, granted)
        full = _normalise(name, strict=True)
        self.check_available(full)
        plugin_id = self._new_id()
        tmp = os.path.join(self.settings.data_root, "tmp-" + plugin_id)
        os.makedirs(tmp, mode=0o700)
        try:
            await asyncio.to_thread(_unpack, self.blobs, image, os.path.join(tmp, "rootfs"))
            return self._register(tmp, plugin_id, full, image.config, image.manifest, reference)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    async def upgrade(
        self, ref: str, image: PluginImage, granted: Any, reference: str
    ) -> ManagedPlugin:
        """Replace a disabled plugin's rootfs and config with an image's; its ID, name,
        settings and propagated-mount content stay. The old rootfs is kept until the new
        one is in place and recorded."""
        plugin = self.find(ref)
        live = self._live_of(plugin)
        async with live.lock:
            if plugin.enabled:
                raise Conflict(
                    f"plugin must be disabled before upgrading: plugin {plugin.name} is enabled"
                )
            plugin_config.check_privileges(image.config, granted)
            rootfs = os.path.join(self.dir(plugin), "rootfs")
            new, old = rootfs + "-new", rootfs + "-old"
            shutil.rmtree(new, ignore_errors=True)
            try:
                await asyncio.to_thread(_unpack, self.blobs, image, new)
                _unmount_below(rootfs)  # a plugin disabled by force may have left mounts
                os.rename(rootfs, old)
                os.rename(new, rootfs)
            except BaseException:
                shutil.rmtree(new, ignore_errors=True)
                if not os.path.exists(rootfs) and os.path.exists(old):
                    os.rename(old, rootfs)
                raise
            previous = (plugin.config, plugin.manifest, plugin.reference)
            plugin.config, plugin.manifest, plugin.reference = (
                image.config,
                image.manifest,
                reference,
            )
            try:
                self._save(plugin)
            except BaseException:
                plugin.config, plugin.manifest, plugin.reference = previous
                os.rename(rootfs, new)
                os.rename(old, rootfs)
                shutil.rmtree(new, ignore_errors=True)
                raise
            await asyncio.to_thread(shutil.rmtree, old, True)
            self._collect_blobs()
        return plugin

    def emit_pull(self, remote: str, name: str) -> None:
        """Docker's event for a plugin pulled (install or upgrade): the remote reference as
        the actor, the local name as attribute."""
        self.events.emit("plugin", "pull", remote, {"name": name})

    # -- settings ------------------------------------------------------------

    def set(self, ref: str, items: list[str]) -> None:
        plugin = self.find(ref)
        if plugin.enabled:
            raise Conflict("cannot set on an active plugin, disable plugin before setting")
        plugin.settings = plugin_config.apply_settings(plugin.config, plugin.settings, items)
        self._save(plugin)

    # -- enable / disable ----------------------------------------------------

    async def enable(self, ref: str, timeout: float = 0.0) -> None:
        plugin = self.find(ref)
        live = self._live_of(plugin)
        async with live.lock:
            if plugin.enabled:
                raise Conflict(f"plugin {plugin.name} is already enabled")
            plugin.timeout = max(0.0, timeout)
            live.client = None
            await self._start(plugin)
            crashpoints.reached("plugin:started")
            plugin.enabled = True
            self._save(plugin)
        self._emit(plugin, "enable")

    async def disable(self, ref: str, *, force: bool = False) -> None:
        plugin = self.find(ref)
        live = self._live_of(plugin)
        async with live.lock:
            if not plugin.enabled:
                raise Conflict(f"plugin {plugin.name} is already disabled")
            if self.references(plugin) and not force:
                raise Conflict(f"plugin {plugin.name} is in use")
            plugin.enabled = False
            self._save(plugin)
            crashpoints.reached("plugin:disabled")
            await self._stop(plugin)
        self._stopped_serving(plugin)
        self._emit(plugin, "disable")

    def _stopped_serving(self, plugin: ManagedPlugin) -> None:
        live = self._live_of(plugin)
        if live.client is not None:
            client, live.client = live.client, None
            self._closing = asyncio.ensure_future(client.close())
        for hook in self.on_disable:
            hook(plugin)

    async def remove(self, ref: str, *, force: bool = False) -> None:
        plugin = self.find(ref)
        live = self._live_of(plugin)
        async with live.lock:
            if not force:
                if self.references(plugin):
                    raise Conflict(f"plugin {plugin.name} is in use")
                if plugin.enabled:
                    raise Conflict(
                        f"plugin {plugin.name} is enabled: disable it first or use force"
                    )
            if plugin.enabled:
                plugin.enabled = False
                self._save(plugin)
                await self._stop(plugin)
                self._stopped_serving(plugin)
            with self.db.transaction():
                self.db.execute("DELETE FROM plugins WHERE id=?", (plugin.id,))
            self._plugins.pop(plugin.id, None)
            self._refs.pop(plugin.id, None)
            for conmon in self.monitors.values():  # the monitor's link to the bundle
                conmon.forget(plugin.id)
            directory = self.dir(plugin)
            _unmount_below(directory)
            await asyncio.to_thread(shutil.rmtree, directory, True)
            shutil.rmtree(self.run_dir(plugin), ignore_errors=True)
            self._collect_blobs()
        self._live.pop(plugin.id, None)
        self._emit(plugin, "remove")

    def _collect_blobs(self) -> None:
        live: set[str] = set()
        for plugin in self._plugins.values():
            if not plugin.manifest:
                continue
            live.add(plugin.manifest)
            with contextlib.suppress(DockyardError, ValueError):
                manifest = json.loads(self.blobs.read(plugin.manifest))
                live.add(manifest["config"]["digest"])
                live.update(layer["digest"] for layer in manifest["layers"])
        for digest in list(self.blobs.digests()):
            if digest not in live and not self._pinned[digest]:
                self.blobs.delete(digest)

    # -- running -------------------------------------------------------------

    async def _start(self, plugin: ManagedPlugin, *, restart: bool = False) -> None:
        """Run the plugin and wait for its socket; on failure nothing keeps running.

        `restart`: it ran before and may have mounts in its propagated mount that
        containers still use (a crash, a daemon restart): a failed start keeps them,
        as Docker does; only a stop (disable, remove) unmounts them."""
        runtime = self.runtimes.get(plugin.runtime) or self.runtimes[self.default_runtime]
        conmon = self.monitors[runtime.name]
        plugin.runtime = runtime.name
        paths = self._paths(plugin)
        run_dir = self.run_dir(plugin)
        sockets = os.path.join(run_dir, "sock")
        shutil.rmtree(sockets, ignore_errors=True)
        for d in (paths.bundle, sockets, self.logging_dir(plugin)):
            os.makedirs(d, mode=0o700, exist_ok=True)
        propagated = os.path.join(self.dir(plugin), "propagated-mount")
        created = False
        try:
            if plugin.config.propagated_mount:
                _make_shared(propagated)
            spec = runspec.generate(
                plugin.id,
                plugin.config,
                plugin.settings,
                runspec.HostPaths(
                    rootfs=os.path.join(self.dir(plugin), "rootfs"),
                    propagated=propagated,
                    sockets=sockets,
                    logging=self.logging_dir(plugin),
                    cgroup_path=self._cgroup_path(plugin),
                ),
                nofile_limit=self.settings.nofile_limit,
                cgroup_namespace=self.settings.cgroup_layout.mode == "v2",
            )
            with open(os.path.join(paths.bundle, "config.json"), "w") as f:
                json.dump(spec, f)
            if os.path.exists(os.path.join(runtime.state_dir, plugin.id)):
                await runtime.delete(plugin.id)
            mon, _pid = await conmon.create(
                plugin.id,
                "plugin-" + plugin.id[:12],
                paths,
                terminal=False,
                stdin=False,
                leave_stdin_open=False,
            )
            created = True
            # Recorded at once: a daemon stopped from here on adopts this monitor.
            plugin.monitor_pid, plugin.monitor_start = mon.pid, mon.start_time
            self._save(plugin)
            await runtime.start(plugin.id)
            await self._wait_for_socket(plugin, mon)
        except (DockyardError, OSError) as e:
            if created:
                with contextlib.suppress(DockyardError):
                    await runtime.kill(plugin.id, 9, all=True)
                await runtime.delete(plugin.id)
            self._release(plugin, unmount=not restart)
            plugin.monitor_pid = plugin.monitor_start = 0
            self._save(plugin)
            message = e.message if isinstance(e, DockyardError) else str(e)
            raise Unavailable(f"plugin {plugin.name} failed to start: {message}") from e
        live = self._live_of(plugin)
        live.started = time.monotonic()
        live.starting = False
        live.watcher = asyncio.ensure_future(self._watch(plugin, mon))

    async def _wait_for_socket(self, plugin: ManagedPlugin, mon: Monitor) -> None:
        path = self.socket_path(plugin)
        deadline = time.monotonic() + SOCKET_WAIT
        while True:
            if not monitor.is_alive(mon):
                raise Unavailable(f"the plugin exited; see {self._paths(plugin).log}")
            with socket.socket(socket.AF_UNIX) as s:
                s.setblocking(False)
                try:
                    s.connect(path)
                    return
                except OSError:
                    pass
            if time.monotonic() >= deadline:
                raise Unavailable(
                    f"no socket {plugin.config.interface.socket} after {SOCKET_WAIT:g}s"
                )
            await asyncio.sleep(0.1)

    def _release(self, plugin: ManagedPlugin, *, unmount: bool) -> None:
        """What a plugin process that ended leaves: its cgroup and bundle, and (when it
        stops for good, not when it is started again) the mounts it made."""
        if unmount:
            _unmount_below(os.path.join(self.dir(plugin), "propagated-mount"))
        cgroups.remove_empty(self.settings.cgroup_layout, self._cgroup_path(plugin))
        shutil.rmtree(self._paths(plugin).bundle, ignore_errors=True)

    async def _stop(self, plugin: ManagedPlugin) -> None:
        live = self._live_of(plugin)
        live.starting = False
        if live.watcher is not None:
            live.watcher.cancel()
            live.watcher = None
        runtime = self.runtimes.get(plugin.runtime) or self.runtimes[self.default_runtime]
        mon = Monitor(plugin.monitor_pid, plugin.monitor_start)
        if plugin.monitor_pid and monitor.is_alive(mon):
            for signal, everything in ((15, False), (9, True)):
                with contextlib.suppress(DockyardError):
                    await runtime.kill(plugin.id, signal, all=everything)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(monitor.wait_exit(mon), STOP_WAIT)
                    break
        await runtime.delete(plugin.id)
        self._release(plugin, unmount=True)
        shutil.rmtree(os.path.join(self.run_dir(plugin), "sock"), ignore_errors=True)
        plugin.monitor_pid = plugin.monitor_start = 0
        self._save(plugin)

    async def _watch(self, plugin: ManagedPlugin, mon: Monitor, *, at_once: bool = False) -> None:
        """Start the plugin again whenever it dies while enabled (`at_once`: the first
        time without a delay, for a plugin found dead at daemon start)."""
        live = self._live_of(plugin)
        while True:
            try:
                await monitor.wait_exit(mon)
            except asyncio.CancelledError:
                return
            async with live.lock:
                if not plugin.enabled or plugin.monitor_pid != mon.pid:
                    return
                live.starting = True
                code, _ = monitor.read_exit(self._paths(plugin))
                ran = time.monotonic() - live.started
                live.delay = 0.5 if ran >= 10 or not live.delay else min(live.delay * 2, 30.0)
                if at_once:
                    live.delay, at_once = 0.0, False
                log.warning(
                    "plugin %s exited (code %s); starting it again in %gs",
                    plugin.name,
                    code,
                    live.delay,
                )
                runtime = self.runtimes.get(plugin.runtime) or self.runtimes[self.default_runtime]
                await runtime.delete(plugin.id)
                # Volumes it mounted stay mounted for the containers using them, and for
                # the plugin started again (Docker unmounts only when it will not restart).
                self._release(plugin, unmount=False)
            await asyncio.sleep(live.delay)
            async with live.lock:
                if not plugin.enabled:
                    live.starting = False
                    return
                live.watcher = None
                try:
                    await self._start(plugin, restart=True)
                    self._save(plugin)
                    return  # _start watches the new monitor
                except DockyardError as e:
                    log.warning("%s", e.message)
                    mon = Monitor(0, 0)
                    live.started = time.monotonic()

    async def restore(self) -> None:
        """At daemon start: adopt enabled plugins still running, start the others in the
        background (the daemon serves meanwhile; calls to them wait for their socket),
        and stop what runs of a disabled one.

        A disabled plugin with a recorded monitor is an enable or a disable that a
        crash cut short (the monitor is recorded before `enabled` is, and `enabled`
        cleared before the stop): either way it ends disabled and stopped, as an
        enable that never answered has not happened."""
        for plugin in list(self._plugins.values()):
            if not plugin.enabled:
                runtime = self.runtimes.get(plugin.runtime) or self.runtimes[self.default_runtime]
                if plugin.monitor_pid or runtime.has_state(plugin.id):
                    log.warning(
                        "plugin %s: stopping what an interrupted enable or disable left running",
                        plugin.name,
                    )
                    async with self._live_of(plugin).lock:
                        await self._stop(plugin)
                continue
            mon = Monitor(plugin.monitor_pid, plugin.monitor_start)
            live = self._live_of(plugin)
            live.started = time.monotonic()
            if not (plugin.monitor_pid and monitor.is_alive(mon)):
                live.starting = True
                plugin.monitor_pid = plugin.monitor_start = 0
                mon = Monitor(0, 0)  # found dead: the watcher starts it at once
            live.watcher = asyncio.ensure_future(self._watch(plugin, mon, at_once=live.starting))

    async def shutdown(self) -> None:
        """Stop watching; plugins keep running under their monitors (like containers)."""
        for live in self._live.values():
            if live.watcher is not None:
                live.watcher.cancel()
            if live.client is not None:
                await live.client.close()


def _normalise(ref: str, *, strict: bool = False) -> str:
    """`name` -> `name:latest` in Docker's familiar form; digests are refused."""
    try:
        parsed = reference.parse(ref)
    except InvalidArgument:
        if strict:
            raise
        return ref
    if parsed.digest:
        raise InvalidArgument(f"invalid plugin name {ref!r}: a digest is not allowed")
    return parsed.familiar()


def host_path(plugin_dir: str, propagated_mount: str, path: str) -> str:
    """A path inside a plugin as the host sees it: under `<plugin dir>/propagated-mount`
    when it lies in the plugin's PropagatedMount (mounts the plugin makes there reach the
    host), else under its rootfs; never outside both. "" stays ""."""
    if not path:
        return ""
    inside = posixpath.normpath("/" + path)
    if propagated_mount:
        base = posixpath.normpath("/" + propagated_mount)
        if inside == base or inside.startswith(base.rstrip("/") + "/"):
            rest = inside[len(base) :].lstrip("/")
            return os.path.join(plugin_dir, "propagated-mount", rest).rstrip("/")
    return os.path.join(plugin_dir, "rootfs", inside.lstrip("/")).rstrip("/")


def _finish_upgrade(plugin_dir: str) -> None:
    """Settle an upgrade a crash interrupted: the old rootfs comes back unless the new one
    was already in place."""
    rootfs = os.path.join(plugin_dir, "rootfs")
    shutil.rmtree(rootfs + "-new", ignore_errors=True)
    if os.path.isdir(rootfs + "-old"):
        if os.path.isdir(rootfs):
            shutil.rmtree(rootfs + "-old", ignore_errors=True)
        else:
            os.rename(rootfs + "-old", rootfs)


def _make_shared(path: str) -> None:
    """Bind `path` onto itself and make it rshared, so the plugin's mounts there are seen."""
    os.makedirs(path, exist_ok=True)
    if not mount.is_mountpoint(path):
        mount.mount(path, path, None, mount.MS_BIND | mount.MS_REC)
    mount.mount("none", path, None, mount.MS_SHARED | mount.MS_REC)


def _unmount_below(path: str) -> None:
    prefix = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        targets = [line.split()[1] for line in f]
    for target in reversed(targets):
        target = target.replace("\\040", " ")
        if target == prefix or target.startswith(prefix + "/"):
            with contextlib.suppress(OSError):
                mount.unmount(target)


# -- install and upgrade: unpacking an image ------------------------------------


def _unpack(blobs: ContentStore, image: PluginImage, target: str) -> None:
    """The image's rootfs in `target` (created here), each layer checked against its DiffID.
    Layers are hostile input: the layer applier refuses anything that would escape."""
    if len(image.layers) != 1:
        raise InvalidArgument(
            f"plugin images of {len(image.layers)} layers are not supported (plugin create, "
            "Dockyard's and Docker's, makes one)"
        )
    os.makedirs(target)
    digest = image.layers[0]
    with blobs.open(digest) as raw, open_decompressed(raw) as tar:
        reader = DigestingReader(tar)
        apply_layer(reader, target)  # type: ignore[arg-type]
    expected = image.diff_ids[0] if len(image.diff_ids) == 1 else ""
    # Docker records the compressed blob's digest as the DiffID of plugins it creates.
    if expected and expected not in (reader.digest, digest):
        raise InvalidArgument(
            f"plugin layer {digest}: its content has DiffID {reader.digest}, but the plugin "
            f"config says {expected}"
        )
    os.chmod(target, 0o755)


# -- create: reading the upload -----------------------------------------------


@dataclass
class _Ingested:
    config: PluginConfig
    manifest: str


class _HashingFile:
    """A write-only file that hashes what goes through it."""

    def __init__(self, target: BinaryIO) -> None:
        self.target = target
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.target.write(data)

    def flush(self) -> None:
        self.target.flush()


def _clean(name: str) -> str:
    cleaned = posixpath.normpath("/" + name).lstrip("/")
    if posixpath.normpath(name.lstrip("/")).startswith("../"):
        raise InvalidArgument(f"plugin archive entry {name!r} points outside the archive")
    return cleaned


def _ingest(raw: BinaryIO, tmp: str, blobs: ContentStore) -> _Ingested:
    """Split the upload into config.json and a rootfs layer; unpack and store both."""
    layer_path = os.path.join(tmp, "layer.tar")
    config_bytes: bytes | None = None
    entries = 0
    try:
        with (
            tarfile.open(fileobj=open_decompressed(raw), mode="r|") as src,
            open(layer_path, "wb") as layer_file,
        ):
            hashing = _HashingFile(layer_file)
            with tarfile.open(fileobj=hashing, mode="w|", format=tarfile.PAX_FORMAT) as out:  # type: ignore[call-overload]
                for member in src:
                    name = _clean(member.name)
                    if name == "config.json":
                        if not member.isreg():
                            raise InvalidArgument("plugin config.json is not a regular file")
                        if member.size > plugin_config.MAX_CONFIG_SIZE:
                            raise InvalidArgument("plugin config.json is larger than 1 MiB")
                        reader = src.extractfile(member)
                        config_bytes = reader.read() if reader else b""
                    elif name.startswith("rootfs/"):
                        member.name = name[len("rootfs/") :]
                        member.pax_headers = {
                            k: v for k, v in member.pax_headers.items() if k != "path"
                        }
                        if member.islnk():
                            target = _clean(member.linkname)
                            if not target.startswith("rootfs/"):
                                raise InvalidArgument(
                                    f"plugin archive entry {name!r} links outside rootfs/"
                                )
                            member.linkname = target[len("rootfs/") :]
                            member.pax_headers = {
                                k: v for k, v in member.pax_headers.items() if k != "linkpath"
                            }
                        out.addfile(member, src.extractfile(member) if member.isreg() else None)
                        entries += 1
                    src.members.clear()  # type: ignore[attr-defined]
    except tarfile.TarError as e:
        raise InvalidArgument(f"invalid plugin archive: {e}") from e
    if config_bytes is None:
        raise InvalidArgument("config not found")
    if not entries:
        raise InvalidArgument("no rootfs found")
    config = plugin_config.parse(config_bytes)
    diff_id = "sha256:" + hashing.hash.hexdigest()
    rootfs = os.path.join(tmp, "rootfs")
    os.makedirs(rootfs)
    with open(layer_path, "rb") as f:
        apply_layer(f, rootfs)
    os.chmod(rootfs, 0o755)
    with blobs.writer() as writer, open(layer_path, "rb") as f:
        with gzip.GzipFile(fileobj=writer, mode="wb", mtime=0) as gz:  # type: ignore[call-overload]
            shutil.copyfileobj(f, gz, 1 << 20)
        layer_size = writer.size
        layer_digest = writer.commit()
    os.unlink(layer_path)
    config.rootfs = plugin_config.RootFS("layers", [diff_id])
    config_blob = oci.canonical_json(config.to_wire())
    config_digest = blobs.put(config_blob)
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": oci.DOCKER_MANIFEST,
        "config": {"mediaType": PLUGIN_CONFIG, "digest": config_digest, "size": len(config_blob)},
        "layers": [
            {"mediaType": oci.DOCKER_LAYER_GZIP, "digest": layer_digest, "size": layer_size}
        ],
    }
    return _Ingested(config, blobs.put(oci.canonical_json(manifest)))
