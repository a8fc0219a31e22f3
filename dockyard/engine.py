"""The engine: one object composed of Dockyard's services. It knows nothing of HTTP.

Start-up order matters: the database and stores first, then a probe of the
host (cgroup layout, which OCI runtimes really work here), then the services,
and last `restore()`, which adopts the containers that kept running while the
daemon was away. Nothing at start-up waits for a plugin: managed plugins found
dead and the volumes' check with their drivers run in the background while the
daemon serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import shutil
import socket
import tempfile
import uuid
from dataclasses import dataclass
from typing import Any

from dockyard import __version__
from dockyard.build.bootstrap import Bootstrapper
from dockyard.build.builder import Builder
from dockyard.buildkit.jobs import Jobs
from dockyard.buildkit.session import SessionManager
from dockyard.config import DaemonConfig
from dockyard.containers import config as container_config
from dockyard.containers.archive import ArchiveService
from dockyard.containers.execs import ExecService
from dockyard.containers.health import HealthMonitor
from dockyard.containers.schema import LogConfig
from dockyard.containers.service import ContainerService, ContainerSettings
from dockyard.containers.stats import StatsService
from dockyard.content.store import ContentStore
from dockyard.errors import InvalidArgument, Unavailable
from dockyard.events.bus import EventBus
from dockyard.images.archive import Archives
from dockyard.images.committer import Committer
from dockyard.images.platform import Platform
from dockyard.images.reference import Reference
from dockyard.images.service import Image, ImageService
from dockyard.logs.plugin import PluginLogging
from dockyard.logs.service import LogService
from dockyard.network.manager import NetworkConfig, NetworkManager
from dockyard.plugins import check, inprocess, protocol, runspec
from dockyard.plugins.authorization import Authorization
from dockyard.plugins.check import CheckReport
from dockyard.plugins.distribution import PluginDistribution
from dockyard.plugins.managed import ManagedPlugins, ManagedSettings
from dockyard.plugins.service import PluginService, PluginSettings
from dockyard.registry.auth import Credentials
from dockyard.registry.client import RegistryService, RegistrySettings
from dockyard.registry.pull import Puller
from dockyard.registry.push import Pusher
from dockyard.runtime import cgroups, oci, seccomp
from dockyard.runtime.monitor import Conmon
from dockyard.snapshots.layers import LayerStore
from dockyard.snapshots.rootfs import RootfsManager
from dockyard.state import private
from dockyard.state.db import Database
from dockyard.volumes.local import NAME as LOCAL_DRIVER
from dockyard.volumes.local import LocalDriver
from dockyard.volumes.remote import PluginDrivers
from dockyard.volumes.service import VolumeReconciliation, VolumeService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostFacts:
    cgroups: cgroups.CgroupLayout
    runtimes: dict[str, oci.RuntimeInfo]
    unusable: dict[str, str]  # runtime name -> why it cannot run here
    default_runtime: str
    conmon: str
    seccomp_supported: bool  # the kernel filters system calls
    init_binary: str | None
    nofile_limit: int


def _hard_nofile() -> int:
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Never ask the runtime for more than this process may have (setrlimit would fail).
    return min(hard if hard != resource.RLIM_INFINITY else 1 << 20, 1 << 20)


def probe_host(config: DaemonConfig) -> HostFacts:
    layout = cgroups.detect()
    candidates = {"crun": "crun", "runc": "runc", **config.runtimes}
    found: dict[str, oci.RuntimeInfo] = {}
    unusable: dict[str, str] = {}
    for name, path in candidates.items():
        info = oci.find(path)
        if info is None:
            if name in config.runtimes:  # configured, so containers may name it: say why
                unusable[name] = f"its binary {path} is missing"
            continue
        info = oci.RuntimeInfo(name, info.path, info.version)
        problem = oci.probe(info, config.cgroup_parent)
        if problem:
            unusable[name] = problem
            log.warning("runtime %s cannot run containers on this host: %s", name, problem)
        else:
            found[name] = info
    cgroups.remove_empty(layout, "/" + config.cgroup_parent)
    if not found:
        raise Unavailable(
            "no working OCI runtime (install crun or runc): "
            + "; ".join(f"{k}: {v}" for k, v in unusable.items())
        )
    default = config.default_runtime
    if default is None:
        default = next(name for name in ("crun", "runc", *found) if name in found)
    elif default not in found:
        if default not in candidates:
            raise InvalidArgument(f"default runtime {default!r} is not configured")
        raise Unavailable(
            f"runtime {default} cannot run containers on this host: "
            f"{unusable.get(default, 'not installed')}"
        )
    conmon = Conmon.find(config.conmon_path)
    if conmon is None:
        if config.conmon_path:
            raise Unavailable(f"conmon-path {config.conmon_path} is not an executable")
        raise Unavailable("conmon (the container monitor) is not installed")
    init = config.init_path or shutil.which("tini-static") or shutil.which("docker-init")
    return HostFacts(
        layout,
        found,
        unusable,
        default,
        conmon,
        seccomp.kernel_supports_seccomp(),
        init,
        _hard_nofile(),
    )


# The subtrees of the data root and exec root private to root: containers' configurations,
# environments and logs, images and build contexts, plugins' settings, monitors' sockets.
PRIVATE_DATA = ("build", "check", "containers", "content", "layers", "plugins")
PRIVATE_EXEC = ("attach", "containers", "logging", "plugins", "runtime")


class Engine:
    def __init__(self, config: DaemonConfig, facts: HostFacts | None = None) -> None:
        self.config = config
        self.facts = facts or probe_host(config)
        # The daemon's seccomp choice is checked before anything is made on disk.
        self.seccomp = seccomp.SeccompPolicy(
            config.seccomp_profile, supported=self.facts.seccomp_supported
        )
        root = config.data_root
        os.makedirs(root, mode=0o711, exist_ok=True)
        os.makedirs(config.exec_root, mode=0o711, exist_ok=True)
        # Everything but volumes' data is root's alone (`state/private.py`).
        for tree in PRIVATE_DATA:
            private.directory(os.path.join(root, tree))
        for tree in PRIVATE_EXEC:
            private.directory(os.path.join(config.exec_root, tree))
        self.id = self._engine_id()
        self.db = Database(os.path.join(root, "dockyard.db"))
        self.events = EventBus()
        self.content = ContentStore(os.path.join(root, "content"))
        self.layers = LayerStore(os.path.join(root, "layers"), self.db)
        self.rootfs = RootfsManager(self.layers)
        self.images = ImageService(self.db, self.content, self.layers, self.events)
        self.volumes = VolumeService(
            self.db, [LocalDriver(os.path.join(root, "volumes"))], self.events
        )
        self.volumes.subpath_root = os.path.join(config.exec_root, "subpaths")
        self.registry = RegistryService(
            RegistrySettings(
                insecure=list(config.insecure_registries),
                certs_dirs=tuple(config.registry_certs_dirs),
                max_concurrent_downloads=max(1, config.max_concurrent_downloads),
                max_concurrent_uploads=max(1, config.max_concurrent_uploads),
                upload_chunk_size=max(1 << 16, config.registry_chunk_size),
            )
        )
        self.puller = Puller(self.registry, self.images, self.events)
        self.pusher = Pusher(self.registry, self.images, self.events)
        self.archives = Archives(self.images, self.events)
        runtime_state = os.path.join(config.exec_root, "runtime")
        self.runtimes = {
            name: oci.Runtime(info, os.path.join(runtime_state, name))
            for name, info in self.facts.runtimes.items()
        }
        socket_dir = os.path.join(config.exec_root, "attach")
        self.monitors = {
            name: Conmon(self.facts.conmon, runtime, socket_dir)
            for name, runtime in self.runtimes.items()
        }
        self.network = NetworkManager(self.db, self.events, network_config(config, self.id))
        self.containers = ContainerService(
            self.db,
            self.images,
            self.rootfs,
            self.runtimes,
            self.monitors,
            self.events,
            ContainerSettings(
                data_root=os.path.join(root, "containers"),
                exec_root=os.path.join(config.exec_root, "containers"),
                cgroup_parent=config.cgroup_parent,
                cgroup_layout=self.facts.cgroups,
                default_runtime=self.facts.default_runtime,
                ncpu=os.cpu_count() or 1,
                nofile_limit=self.facts.nofile_limit,
                init_binary=self.facts.init_binary,
                seccomp=self.seccomp.for_container,
                runtime_root=runtime_state,
                unavailable_runtimes=dict(self.facts.unusable),
            ),
            self.volumes,
            self.network,
        )
        self.execs = ExecService(self.containers)
        self.containers.health = HealthMonitor(self.containers, self.execs)
        self.stats = StatsService(self.containers, self.network, self.facts.cgroups)
        self.container_archive = ArchiveService(self.containers)
        managed = ManagedPlugins(
            self.db,
            self.events,
            self.runtimes,
            self.monitors,
            self.facts.default_runtime,
            ManagedSettings(
                data_root=os.path.join(root, "plugins"),
                exec_root=os.path.join(config.exec_root, "plugins"),
                cgroup_parent=config.cgroup_parent,
                cgroup_layout=self.facts.cgroups,
                nofile_limit=self.facts.nofile_limit,
                timeout_cap=config.plugin_call_timeout,
                start_window=config.plugin_retry_timeout,
            ),
        )
        self.plugins = PluginService(
            PluginSettings(
                socket_dirs=tuple(config.plugin_socket_dirs),
                spec_dirs=tuple(config.plugin_spec_dirs),
                retry_window=config.plugin_retry_timeout,
                timeout_cap=config.plugin_call_timeout,
            ),
            managed,
        )
        self.authorization = Authorization(self.plugins, list(config.authorization_plugins))
        managed.on_disable.append(lambda plugin: self.authorization.drop(plugin.id))
        self.network.plugins = self.plugins
        managed.on_disable.append(lambda plugin: self.network.forget_plugin(plugin.name))
        self.containers.logging = LogService(
            PluginLogging(self.plugins, os.path.join(config.exec_root, "logging")),
            LogConfig(type=config.log_driver, config=dict(config.log_opts)),
        )
        self.committer = Committer(self.content, self.layers)
        self.builder = Builder(
            self.db,
            self.images,
            self.containers,
            self.rootfs,
            self.committer,
            os.path.join(root, "build"),
        )
        self.images.extra_roots = self.builder.roots
        self.builder.pull = self._pull_for_build
        self.buildkit_sessions = SessionManager()  # clients' /session connections
        self.buildkit_jobs = Jobs(
            self.builder, self.buildkit_sessions, os.path.join(root, "buildkit")
        )
        self.bootstrapper = Bootstrapper(self.db, self.images, os.path.join(root, "build"))
        self.volumes.plugins = PluginDrivers(self.plugins)
        self.plugin_distribution = PluginDistribution(self.registry, managed)
        self._reconciling: asyncio.Future[None] | None = None

    async def _pull_for_build(self, ref: Reference, platform: str) -> Image:
        """`FROM` an image that is not here (or `--pull`): pull it anonymously, quietly."""
        return await self.puller.pull(
            ref,
            platform=Platform.parse(platform) if platform else None,
            credentials=Credentials(),
            report=lambda event: None,
        )

    def _engine_id(self) -> str:
        path = os.path.join(self.config.data_root, "engine-id")
        try:
            with open(path) as f:
                return f.read().strip()
        except FileNotFoundError:
            engine_id = str(uuid.uuid4())
            with open(path, "w") as f:
                f.write(engine_id)
            return engine_id

    async def start(self) -> None:
        # Plugins first: containers' log drivers and the authorization chain use them.
        # Managed plugins found dead are started in the background (calls wait for them).
        await self.plugins.managed.restore()
        await self.network.start()
        await self.containers.restore()
        await self.containers.networking.reconcile()
        # Volumes are reconciled with their plugins in the background: the daemon serves
        # at once, whatever state its volume plugins are in. What to reconcile (the mounts
        # of containers not running) is read now, before interrupted operations go on.
        running = {c.id for c in self.containers.all() if c.state.status in ("running", "paused")}
        plan = self.volumes.reconciliation(running)
        self._reconciling = asyncio.ensure_future(self._reconcile_volumes(plan))
        # Operations a crash interrupted go on now that the network is reconciled too.
        self.containers.resume_interrupted()
        await self.authorization.start()
        await self.builder.recover()
        # Blobs and layers of pulls and loads cut short by a crash were never recorded.
        await self.images.collect()

    async def _reconcile_volumes(self, plan: VolumeReconciliation) -> None:
        try:
            await self.volumes.restore(plan)
        except Exception:
            log.exception("reconciling volumes")
        log.info("done reconciling volumes")

    async def close(self) -> None:
        if self._reconciling is not None:
            self._reconciling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconciling
        await self.stats.close()
        await self.builder.close()
        await self.registry.close()
        await self.containers.shutdown()
        await self.plugins.close()
        await self.network.close()
        cgroups.remove_empty(self.facts.cgroups, "/" + self.config.cgroup_parent)
        self.db.close()

    def info(self) -> dict[str, Any]:
        """Facts about this engine and host, for `/info` and `/version`."""
        containers = self.containers.all()
        network_plugins, ipam_plugins = self.network.plugin_names()
        return {
            "id": self.id,
            "name": socket.gethostname(),
            "version": __version__,
            "containers": len(containers),
            "running": sum(1 for c in containers if c.state.status == "running"),
            "paused": sum(1 for c in containers if c.state.status == "paused"),
            "images": len(self.images.all()),
            "kernel": platform.release(),
            "cgroup_mode": self.facts.cgroups.mode,
            "cgroup_version": self.facts.cgroups.version,
            "runtimes": {name: rt.path for name, rt in self.runtimes.items()},
            "unusable_runtimes": dict(self.facts.unusable),
            "withheld_capabilities": container_config.withheld(),
            "default_runtime": self.facts.default_runtime,
            # dockerd shows its setting (builtin, unconfined or a path) when the kernel has seccomp.
            "seccomp_profile": self.seccomp.name if self.facts.seccomp_supported else None,
            "init_binary": self.facts.init_binary,
            "data_root": self.config.data_root,
            "plugins": {
                "Volume": self.plugins.names(protocol.VOLUME),
                "Network": _merged(self.plugins.names(protocol.NETWORK), network_plugins),
                "IPAM": _merged(self.plugins.names(protocol.IPAM), ipam_plugins),
                "Authorization": list(self.authorization.names),
                "Log": self.plugins.names(protocol.LOG),
            },
        }

    async def check_plugin(self, name: str, options: dict[str, str] | None = None) -> CheckReport:
        """Run the conformance checker against the plugin `name` as the engine sees it, or
        against a built-in driver: `local` (volumes), `bridge` (networks), `default` (IPAM).
        `options`: driver options for the volumes the check creates."""
        if name == LOCAL_DRIVER:
            return await self._check_local_driver(options)
        if name in ("bridge", "host", "null", "default"):
            return await self.network.check_builtin(name)
        managed = self.plugins.managed.lookup(name)
        if managed is not None:
            plugin = self.plugins.managed.plugin(managed)
            fifo_dirs = (self.plugins.managed.logging_dir(managed), runspec.LOGGING_DIR)
            return await check.run(
                plugin.client, kinds=list(plugin.implements), fifo_dirs=fifo_dirs, options=options
            )
        plugin = await self.plugins.legacy.get(name)
        return await check.run(plugin.client, options=options)

    async def _check_local_driver(self, options: dict[str, str] | None = None) -> CheckReport:
        """The built-in `local` driver's code, served on a private socket and checked like
        any plugin. It runs on a scratch directory: the check creates and removes volumes
        of its own, and the daemon's volumes are never touched."""
        scratch = tempfile.mkdtemp(prefix="check-", dir=self.config.data_root)
        try:
            driver = LocalDriver(scratch)
            scope = (await driver.capabilities()).scope
            served = inprocess.ServedVolumeDriver(driver, scope)
            return await inprocess.check_served(driver.name, served, options=options)
        finally:
            await asyncio.to_thread(shutil.rmtree, scratch, True)


def _merged(*names: list[str]) -> list[str]:
    return list(dict.fromkeys(n for group in names for n in group))


def network_config(config: DaemonConfig, engine_id: str = "") -> NetworkConfig:
    return NetworkConfig(
        exec_root=config.exec_root,
        bridge=config.bridge,
        bip=config.bip,
        default_address_pools=config.default_address_pools,
        mtu=config.mtu,
        ip_forward=config.ip_forward,
        ip_masq=config.ip_masq,
        nftables_table=config.nftables_table,
        bridge_prefix=config.bridge_prefix,
        veth_prefix=config.veth_prefix,
        host_id=engine_id,
    )
