"""The container lifecycle: create, start, stop, kill, wait, remove, restart policies.

A container's record lives in the database; while it runs, its monitor
(conmon) is its parent, and the daemon watches the monitor's pid. When the
monitor exits, `_on_exit` records the exit code, releases the runtime state and
the rootfs mount, wakes waiters, and applies the restart policy and
auto-removal. The same path handles containers that exited while the daemon
was down: at start-up `restore()` adopts live monitors and settles the rest.

Every step of `start` that allocates something (mount, runtime container,
cgroup) is undone if a later step fails, so a failed start leaves nothing
behind but the error text in the container's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dockyard import mount as host_mount
from dockyard.containers import config as cfg
from dockyard.containers import names, schema, signals, spec, users
from dockyard.containers import update as updates
from dockyard.containers.model import (
    CREATED,
    EXITED,
    PAUSED,
    REMOVING,
    RESTARTING,
    RUNNING,
    Container,
    State,
)
from dockyard.containers.networking import ContainerNetworking
from dockyard.containers.schema import ContainerConfig, ContainerCreate, HostConfig
from dockyard.containers.update import ContainerUpdate
from dockyard.errors import (
    Conflict,
    DockyardError,
    InvalidArgument,
    NotFound,
    NotModified,
    Unavailable,
)
from dockyard.events.bus import EventBus
from dockyard.images.oci import now_rfc3339
from dockyard.images.service import Image, ImageService
from dockyard.logs import k8sfile
from dockyard.network.manager import NetworkManager
from dockyard.runtime import cgroups, monitor
from dockyard.runtime.attach import AttachConnection
from dockyard.runtime.monitor import Conmon, Monitor, Paths
from dockyard.runtime.oci import Runtime
from dockyard.snapshots.rootfs import RootfsManager
from dockyard.state.db import Database
from dockyard.volumes.mounts import MountPoint
from dockyard.volumes.service import VolumeService

if TYPE_CHECKING:
    from dockyard.containers.health import HealthMonitor
    from dockyard.logs.plugin import PluginLogging

log = logging.getLogger(__name__)

DEFAULT_STOP_TIMEOUT = 10
KILL_WAIT = 10  # seconds a SIGKILLed container has to exit before the direct kill (Docker's)


@dataclass
class ContainerSettings:
    data_root: str  # <data-root>/containers
    exec_root: str  # <exec-root>/containers
    cgroup_parent: str
    cgroup_layout: cgroups.CgroupLayout
    default_runtime: str
    ncpu: int
    nofile_limit: int
    init_binary: str | None
    seccomp: Any  # callable: capabilities -> OCI seccomp object or None


@dataclass
class _Live:
    """What the daemon keeps in memory about a container while it is alive."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    exit_waiters: list[asyncio.Future[int]] = field(default_factory=list)
    removed_waiters: list[asyncio.Future[int]] = field(default_factory=list)
    attachers: list[asyncio.Future[AttachConnection | None]] = field(default_factory=list)
    watcher: asyncio.Task[None] | None = None
    restart_task: asyncio.Task[None] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    started_mono: float = 0.0
    restart_delay: float = 0.0


class ContainerService:
    def __init__(
        self,
        db: Database,
        images: ImageService,
        rootfs: RootfsManager,
        runtimes: dict[str, Runtime],
        monitors: dict[str, Conmon],
        events: EventBus,
        settings: ContainerSettings,
        volumes: VolumeService,
        network: NetworkManager,
    ) -> None:
        self.db = db
        self.images = images
        self.rootfs = rootfs
        self.runtimes = runtimes
        self.monitors = monitors
        self.events = events
        self.settings = settings
        self.volumes = volumes
        self.network = network
        self.networking = ContainerNetworking(network, self)
        self._containers: dict[str, Container] = {}
        self._live: dict[str, _Live] = {}
        os.makedirs(settings.data_root, exist_ok=True)
        os.makedirs(settings.exec_root, exist_ok=True)
        for row in db.all("SELECT record FROM containers"):
            container = Container.from_json(row["record"])
            self._containers[container.id] = container
        # Delivers output to log-driver plugins; set by the engine.
        self.logging: PluginLogging | None = None
        # Runs healthcheck probes; set by the engine.
        self.health: HealthMonitor | None = None
        images.image_users = self.image_users
        # Asked by the garbage collector on a worker thread: list() copies the records
        # in one step, safe against the loop adding or removing one meanwhile.
        images.container_chains = lambda: {
            c.chain_id for c in list(self._containers.values()) if c.chain_id
        }
        volumes.container_mounts = lambda: {c.id: c.mounts for c in self._containers.values()}

    # -- lookup --------------------------------------------------------------

    def get(self, ref: str) -> Container:
        """Find by full ID, exact name, or unique ID prefix (docker's order)."""
        if ref in self._containers:
            return self._containers[ref]
        name = ref.removeprefix("/")
        for container in self._containers.values():
            if container.name == name:
                return container
        if ref:
            matches = [c for c in self._containers.values() if c.id.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    def all(self) -> list[Container]:
        return sorted(self._containers.values(), key=lambda c: c.created, reverse=True)

    def image_users(self, image_id: str) -> list[tuple[str, bool]]:
        return [
            (c.id, c.state.running) for c in self._containers.values() if c.image_id == image_id
        ]

    def live(self, container: Container) -> _Live:
        live = self._live.get(container.id)
        if live is None:
            live = self._live[container.id] = _Live()
            if not container.state.running:
                live.exited.set()
        return live

    def paths(self, container: Container) -> Paths:
        bundle = os.path.join(self.settings.exec_root, container.id)
        persist = self.dir(container)
        return Paths(
            bundle=bundle,
            persist=persist,
            log=os.path.join(persist, "container.log"),
            pid_file=os.path.join(bundle, "pidfile"),
            monitor_pid_file=os.path.join(bundle, "conmon.pid"),
        )

    def dir(self, container: Container) -> str:
        return os.path.join(self.settings.data_root, container.id)

    def cgroup_path(self, container: Container) -> str:
        parent = container.host_config.cgroup_parent or self.settings.cgroup_parent
        return f"/{parent.strip('/')}/{container.id}"

    def _save(self, container: Container) -> None:
        with self.db.transaction():
            self.db.execute(
                "UPDATE containers SET name=?, record=? WHERE id=?",
                (container.name, container.to_json(), container.id),
            )
        self.live(container).changed.set()

    def networks_changed(self, container: Container) -> None:
        """Record a container's network attachments after connect/disconnect."""
        self._save(container)

    def state_changed(self, container: Container) -> None:
        """Record a change to a running container's state (a health probe's result)."""
        self._save(container)

    def emit(self, container: Container, action: str, **extra: str) -> None:
        attributes = {
            **container.labels,
            "image": container.config.image,
            "name": container.name,
            **extra,
        }
        self.events.emit("container", action, container.id, attributes)

    # -- create --------------------------------------------------------------

    async def create(
        self,
        name: str | None,
        request: ContainerCreate,
        *,
        image: Image | None = None,
        record_also: Callable[[str], None] | None = None,
    ) -> Container:
        """Create a container; `image` is given by the builder for a state that is no image,
        `record_also(id)` writes what must commit with the container's record."""
        image_name = request.image
        if not image_name:
            raise InvalidArgument("config cannot be empty in order to create a container")
        if image is None:
            image = self.images.resolve(image_name)
        log_drivers: tuple[str, ...] = cfg.LOG_DRIVERS
        log_config = request.host_config.log_config
        if self.logging is not None and self.logging.is_plugin_driver(log_config.type):
            await self.logging.resolve(log_config.type)
            self.logging.validate_options(log_config.config or {})
            log_drivers = (*log_drivers, log_config.type)
        effective = cfg.effective(
            request,
            schema.decode(ContainerConfig, image.run_config, "image config"),
            image_name=image_name,
            ncpu=self.settings.ncpu,
            runtimes=tuple(self.runtimes),
            default_runtime=self.settings.default_runtime,
            log_drivers=log_drivers,
        )
        if name:
            name = names.validate(name)
            self._check_name_free(name)
        else:
            name = self._generate_name()
        mounts = await self.volumes.prepare(
            effective.config.volumes or {}, effective.host_config, self._volumes_from
        )
        container_id = secrets.token_hex(32)
        effective.config.hostname = effective.config.hostname or container_id[:12]
        networks = self.networking.requested(name, effective.host_config, request.networking_config)
        container = Container(
            id=container_id,
            name=name,
            image_id=image.id,
            created=now_rfc3339(),
            config=effective.config,
            host_config=effective.host_config,
            chain_id=image.chain_id,
            path=effective.path,
            args=effective.args,
            state=State(),
            runtime=effective.host_config.runtime,
            mounts=mounts,
            networks=networks,
        )
        directory = self.dir(container)
        try:
            self._check_name_free(name)  # again: another create may have taken it meanwhile
            os.makedirs(directory)
            self.rootfs.create(os.path.join(directory, "rootfs"))
            with self.db.transaction():
                self.db.execute(
                    "INSERT INTO containers(id, name, image_id, created, record) "
                    "VALUES (?,?,?,?,?)",
                    (
                        container.id,
                        container.name,
                        container.image_id,
                        time.time(),
                        container.to_json(),
                    ),
                )
                if record_also is not None:
                    record_also(container.id)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            await self.volumes.release(mounts, remove_anonymous=True)
            raise
        self._containers[container.id] = container
        self.emit(container, "create")
        return container

    def _volumes_from(self, ref: str) -> list[MountPoint]:
        """The mount points of the container `--volumes-from` names (copies)."""
        try:
            source = self.get(ref)
        except NotFound as e:
            raise InvalidArgument(e.message) from None
        return [MountPoint.from_dict(point.to_dict()) for point in source.mounts]

    def _check_name_free(self, name: str, exclude: str | None = None) -> None:
        for other in self._containers.values():
            if other.name == name and other.id != exclude:
                raise Conflict(
                    f'Conflict. The container name "/{name}" is already in use by container '
                    f'"{other.id}". You have to remove (or rename) that container to be able to '
                    "reuse that name."
                )

    def _generate_name(self) -> str:
        taken = {c.name for c in self._containers.values()}
        for attempt in range(100):
            candidate = names.generate(attempt // 10)
            if candidate not in taken:
                return candidate
        return "container_" + secrets.token_hex(4)

    # -- start ---------------------------------------------------------------

    async def start(self, ref: str) -> None:
        container = self.get(ref)
        live = self.live(container)
        async with live.lock:
            status = container.state.status
            if status == RUNNING:
                raise NotModified("container already started")
            if status == PAUSED:
                raise Conflict("cannot start a paused container, try unpause instead")
            if status == REMOVING:
                raise Conflict(f"removal of container {container.name} is already in progress")
            if live.restart_task is not None:
                live.restart_task.cancel()
                live.restart_task = None
            container.state.stopped_by_user = False
            container.state.restart_count = 0
            await self._start(container)

    async def _start(self, container: Container) -> None:
        """Start a container whose lock is held; on failure nothing stays allocated."""
        live = self.live(container)
        paths = self.paths(container)
        runtime = self.runtimes[container.runtime]
        conmon = self.monitors[container.runtime]
        created_in_runtime = False
        try:
            chain = container.chain_id
            if (
                chain
                and not self.images.exists(container.image_id)
                and not self.images.layers.has(chain)
            ):
                raise Unavailable(f"image {container.image_id} of this container is gone")
            rootfs_dir = os.path.join(self.dir(container), "rootfs")
            merged = self.rootfs.mount(rootfs_dir, container.chain_id)
            hc = container.host_config
            namespace_paths, ipc_donor = self._joined_namespaces(hc)
            user = users.resolve(merged, container.config.user, list(hc.group_add or []))
            network = await self.networking.setup(container)
            hostname = network.hostname
            files = network.files
            user_mounts = await self.volumes.mount(
                container.id, container.mounts, hc.tmpfs or {}, merged
            )
            user_mounts += self._shm_mounts(container, ipc_donor, user_mounts)
            caps = cfg.capabilities(hc)
            seccomp_profile = None
            if cfg.security_option(hc, "seccomp") != "unconfined" and not hc.privileged:
                seccomp_profile = self.settings.seccomp(caps, cfg.security_option(hc, "seccomp"))
            init = hc.init
            if init and not self.settings.init_binary:
                raise Unavailable("--init requested but no init binary (tini) is installed")
            oci_spec = spec.generate(
                container,
                spec.SpecInputs(
                    rootfs=merged,
                    user=user,
                    hostname=hostname,
                    cgroup_path=self.cgroup_path(container),
                    files=files,
                    seccomp=seccomp_profile,
                    init_binary=self.settings.init_binary if init else None,
                    nofile_limit=self.settings.nofile_limit,
                    cgroup_namespace=self.settings.cgroup_layout.mode == "v2",
                    mounts=user_mounts,
                    netns_path=network.netns_path,
                    namespace_paths=namespace_paths,
                    link_env=network.env,
                ),
            )
            os.makedirs(paths.bundle, exist_ok=True)
            with open(os.path.join(paths.bundle, "config.json"), "w") as f:
                json.dump(oci_spec, f)
            if os.path.exists(os.path.join(runtime.state_dir, container.id)):
                await runtime.delete(container.id)  # a leftover of an earlier crash
            if self.logging is not None:
                await self.logging.start(container, paths.log, self.dir(container))
            stdin = container.config.open_stdin
            mon, pid = await conmon.create(
                container.id,
                container.name,
                paths,
                terminal=container.tty,
                stdin=stdin,
                # A terminal's input is never closed by an attach client leaving (Docker):
                # a detached `run -it` keeps taking input from the next `attach`.
                leave_stdin_open=stdin and (container.tty or not container.config.stdin_once),
            )
            created_in_runtime = True
            self.volumes.release_subpaths(container.id)  # the container holds its own mounts
            await self._connect_attachers(container, conmon)
            live.exited.clear()
            await runtime.start(container.id)
        except Exception as e:  # whatever failed, nothing the start allocated may stay
            message = e.message if isinstance(e, DockyardError) else str(e) or type(e).__name__
            if not isinstance(e, DockyardError | OSError):
                log.exception("starting %s failed", container.short_id)
            if created_in_runtime:
                await runtime.delete(container.id)
            await self.networking.teardown(container)
            await self._release(container)
            if self.logging is not None:
                await self.logging.stop(container.id)
            container.state.error = message
            container.state.exit_code = _start_failure_code(message)
            if container.state.status != CREATED:
                container.state.status = EXITED
            self._save(container)
            live.exited.set()
            self._fail_attachers(container)
            if container.host_config.auto_remove:
                await self._remove(container, volumes=True)
            raise _start_error(e, message) from e
        container.state = State(
            status=RUNNING,
            pid=pid,
            started_at=now_rfc3339(),
            finished_at=container.state.finished_at,  # the last run's, as Docker keeps it
            monitor_pid=mon.pid,
            monitor_start=mon.start_time,
            restart_count=container.state.restart_count,
            health=container.state.health,
        )
        live.started_mono = time.monotonic()
        if self.health is not None:
            self.health.started(container)
        self._save(container)
        self.emit(container, "start")
        live.watcher = asyncio.ensure_future(self._watch(container, mon))

    def _joined_namespaces(self, hc: HostConfig) -> tuple[dict[str, str], Container | None]:
        """`--pid container:<ref>` and `--ipc container:<ref>`: the namespaces to join
        (type -> /proc path) and the container whose IPC (and /dev/shm) is shared."""
        paths: dict[str, str] = {}
        ipc_donor = None
        for kind, mode in (("pid", hc.pid_mode), ("ipc", hc.ipc_mode)):
            if not mode.startswith("container:"):
                continue
            ref = mode.partition(":")[2]
            what = f"failed to join {kind.upper()} namespace"
            try:
                other = self.get(ref)
            except NotFound as e:
                raise InvalidArgument(f"{what}: {e.message}") from None
            if other.state.status == RESTARTING:
                raise Conflict(
                    f"{what}: Container {ref} is restarting, wait until the container is running"
                )
            if other.state.status not in (RUNNING, PAUSED) or not other.state.pid:
                raise Conflict(f"{what}: container {ref} is not running")
            if kind == "ipc":
                if other.host_config.ipc_mode not in ("shareable", "host"):
                    raise InvalidArgument(
                        f"{what}: container {ref}: non-shareable IPC "
                        "(hint: use IpcMode:shareable for the donor container)"
                    )
                ipc_donor = other
            paths[kind] = f"/proc/{other.state.pid}/ns/{kind}"
        return paths, ipc_donor

    def _shm_dir(self, container: Container) -> str:
        """Where a `shareable` container's /dev/shm is mounted on the host, for others to join."""
        return os.path.join(self.dir(container), "shm")

    def _shm_mounts(
        self, container: Container, ipc_donor: Container | None, user_mounts: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The /dev/shm a container gets besides the spec's private tmpfs (as Docker does):
        a shareable one is a tmpfs on the host, bound in; a joiner binds its donor's."""
        if any(m["destination"] == "/dev/shm" for m in user_mounts):
            return []  # the user's own /dev/shm wins
        hc = container.host_config
        if ipc_donor is not None:
            source = (
                "/dev/shm" if ipc_donor.host_config.ipc_mode == "host" else self._shm_dir(ipc_donor)
            )
        elif hc.ipc_mode == "shareable":
            source = self._shm_dir(container)
            os.makedirs(source, mode=0o700, exist_ok=True)
            if not host_mount.is_mountpoint(source):
                host_mount.mount(
                    "shm",
                    source,
                    "tmpfs",
                    host_mount.MS_NOSUID | host_mount.MS_NODEV | host_mount.MS_NOEXEC,
                    f"mode=1777,size={hc.shm_size or cfg.DEFAULT_SHM_SIZE}",
                )
        else:
            return []
        return [
            {
                "destination": "/dev/shm",
                "type": "bind",
                "source": source,
                "options": ["rbind", "rprivate"],
            }
        ]

    async def _connect_attachers(self, container: Container, conmon: Conmon) -> None:
        live = self.live(container)
        pending, live.attachers = live.attachers, []
        path = conmon.attach_socket(container.id)
        for future in pending:
            if future.done():
                continue
            future.set_result(await AttachConnection.open(path))

    def _fail_attachers(self, container: Container) -> None:
        live = self.live(container)
        pending, live.attachers = live.attachers, []
        for future in pending:
            if not future.done():
                future.set_result(None)

    async def _release(self, container: Container) -> None:
        """Free what a started container held on the host (volumes, mounts, cgroup, bundle)."""
        await self.volumes.unmount(container.id)
        shm = self._shm_dir(container)
        if os.path.isdir(shm):
            with contextlib.suppress(OSError):
                if host_mount.is_mountpoint(shm):
                    host_mount.unmount(shm)
                os.rmdir(shm)
        self.rootfs.unmount(os.path.join(self.dir(container), "rootfs"))
        cgroups.remove_empty(self.settings.cgroup_layout, self.cgroup_path(container))
        shutil.rmtree(self.paths(container).bundle, ignore_errors=True)

    # -- exit handling -------------------------------------------------------

    async def _watch(self, container: Container, mon: Monitor) -> None:
        try:
            await monitor.wait_exit(mon)
        except asyncio.CancelledError:
            return
        live = self.live(container)
        async with live.lock:
            if container.state.monitor_pid != mon.pid or container.id not in self._containers:
                return
            await self._on_exit(container)
        await self._after_exit(container)

    async def _on_exit(self, container: Container) -> None:
        """Settle a container whose monitor has exited (lock held)."""
        if self.health is not None:
            self.health.stopped(container)
        paths = self.paths(container)
        code, oom = monitor.read_exit(paths)
        error = ""
        if code is None:
            code, error = 255, "container monitor exited without recording an exit code"
        # Each release is attempted even if an earlier one fails: the exit must be
        # recorded whatever the host has left to clean.
        steps = [
            self.runtimes[container.runtime].delete(container.id),
            self.networking.teardown(container),
            self._release(container),
        ]
        if self.logging is not None:
            steps.append(self.logging.stop(container.id))
        for step in steps:
            try:
                await step
            except Exception:
                log.exception("releasing exited container %s", container.short_id)
        state = container.state
        state.status = EXITED
        state.exit_code = code
        state.error = error
        state.oom_killed = oom
        state.pid = 0
        state.monitor_pid = 0
        state.monitor_start = 0
        state.finished_at = now_rfc3339()
        self._save(container)
        if oom:
            self.emit(container, "oom")
        started = self.live(container).started_mono
        ran = int(time.monotonic() - started) if started else 0  # whole seconds, as Docker's
        self.emit(container, "die", exitCode=str(code), execDuration=str(ran))
        live = self.live(container)
        live.exited.set()
        waiters, live.exit_waiters = live.exit_waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(code)

    async def _after_exit(self, container: Container) -> None:
        """Restart policy and auto-removal, after the exit is recorded."""
        if self._should_restart(container):
            self._schedule_restart(container)
        elif container.host_config.auto_remove:
            live = self.live(container)
            async with live.lock:
                if container.id in self._containers and not container.state.running:
                    await self._remove(container, volumes=True)

    def _should_restart(self, container: Container) -> bool:
        state = container.state
        if state.stopped_by_user:
            return False
        policy = container.host_config.restart_policy
        name = policy.name or "no"
        if name in ("always", "unless-stopped"):
            return True
        if name == "on-failure" and state.exit_code != 0:
            limit = policy.maximum_retry_count
            return not limit or state.restart_count < limit
        return False

    def _schedule_restart(self, container: Container) -> None:
        live = self.live(container)
        ran = time.monotonic() - live.started_mono
        # Docker's back-off: 100 ms doubling per quick failure, reset after 10 s of running.
        live.restart_delay = (
            0.1 if ran >= 10 or not live.restart_delay else min(live.restart_delay * 2, 60)
        )
        container.state.status = RESTARTING
        self._save(container)
        live.restart_task = asyncio.ensure_future(
            self._restart_later(container, live.restart_delay)
        )

    async def _restart_later(self, container: Container, delay: float) -> None:
        await asyncio.sleep(delay)
        live = self.live(container)
        async with live.lock:
            live.restart_task = None
            if container.id not in self._containers or container.state.status != RESTARTING:
                return
            if container.state.stopped_by_user:
                container.state.status = EXITED
                self._save(container)
                return
            container.state.restart_count += 1
            try:
                await self._start(container)
                self.emit(container, "restart")
            except DockyardError as e:
                log.warning("restarting %s failed: %s", container.short_id, e.message)
                return

    # -- stop, kill, restart -------------------------------------------------

    async def kill(self, ref: str, signal: str | int | None = None) -> None:
        """Signal the container, as Docker's kill does: SIGKILL (the default) returns once
        the container is dead and its exit recorded; any other signal once it is sent."""
        container = self.get(ref)
        number = signals.parse(signal) if signal not in (None, "") else 9
        live = self.live(container)
        stop_signal = signals.parse(container.config.stop_signal or "SIGTERM")
        # Docker: killing with SIGKILL or the stop signal counts as a stop for restart policies.
        stops = number in (9, stop_signal)
        if container.state.status == RESTARTING and live.restart_task is not None and stops:
            # Nothing runs between two restarts: the kill just keeps it down.
            live.restart_task.cancel()
            live.restart_task = None
            container.state.status = EXITED
            container.state.stopped_by_user = True
            self._save(container)
            self.emit(container, "kill", signal=str(number))
            return
        if container.state.status == RESTARTING:
            async with live.lock:  # being started right now: signal what it starts
                pass
        if container.state.status not in (RUNNING, PAUSED):
            raise Conflict(f"container {container.id} is not running")
        if stops:
            container.state.stopped_by_user = True
            self._save(container)
        runtime = self.runtimes[container.runtime]
        with contextlib.suppress(Conflict):  # exiting already: the wait below sees it through
            await runtime.kill(container.id, number, all=number == 9)
        if stops and container.state.status == PAUSED:
            # A frozen process takes no signal: thaw it so the kill lands (Docker does too).
            with contextlib.suppress(Conflict):
                await runtime.resume(container.id)
            if container.state.status == PAUSED:
                container.state.status = RUNNING
                self._save(container)
        self.emit(container, "kill", signal=str(number))
        if number == 9:
            await self._wait_killed(container)

    async def _wait_killed(self, container: Container) -> None:
        """Wait for a SIGKILLed container's exit; Docker's fallback if it does not come."""
        live = self.live(container)
        try:
            await asyncio.wait_for(live.exited.wait(), KILL_WAIT)
            return
        except TimeoutError:
            log.warning("%s did not exit within %ss of SIGKILL", container.short_id, KILL_WAIT)
        if container.state.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(container.state.pid, 9)
        try:
            await asyncio.wait_for(live.exited.wait(), 2)
        except TimeoutError:
            raise Unavailable(
                "tried to kill container, but did not receive an exit event"
            ) from None

    async def stop(self, ref: str, timeout: int | None = None, signal: str | None = None) -> None:
        container = self.get(ref)
        live = self.live(container)
        if container.state.status == RESTARTING and live.restart_task is not None:
            live.restart_task.cancel()
            live.restart_task = None
            container.state.status = EXITED
            container.state.stopped_by_user = True
            self._save(container)
            return
        if container.state.status == RESTARTING:
            # A restart is starting it right now (its network set up, ...): let it finish,
            # then stop what it started.
            async with live.lock:
                pass
        if container.state.status not in (RUNNING, PAUSED):
            raise NotModified("container already stopped")
        container.state.stopped_by_user = True
        self._save(container)
        await self._stop(container, timeout, signal)
        self.emit(container, "stop")

    async def _stop(self, container: Container, timeout: int | None, signal: str | None) -> None:
        live = self.live(container)
        runtime = self.runtimes[container.runtime]
        if timeout is None:
            timeout = container.config.stop_timeout
        if timeout is None:
            timeout = DEFAULT_STOP_TIMEOUT
        number = signals.parse(signal or container.config.stop_signal or "SIGTERM")
        if container.state.status == PAUSED:
            with contextlib.suppress(DockyardError):
                await runtime.resume(container.id)
        if number != 9:
            with contextlib.suppress(Conflict):
                await runtime.kill(container.id, number)
            self.emit(container, "kill", signal=str(number))
            try:
                if timeout < 0:
                    await live.exited.wait()
                else:
                    await asyncio.wait_for(live.exited.wait(), timeout)
                return
            except TimeoutError:
                pass
        with contextlib.suppress(Conflict):
            await runtime.kill(container.id, 9, all=True)
        self.emit(container, "kill", signal="9")
        await live.exited.wait()

    async def restart(
        self, ref: str, timeout: int | None = None, signal: str | None = None
    ) -> None:
        container = self.get(ref)
        if container.state.status in (RUNNING, PAUSED):
            container.state.stopped_by_user = True
            self._save(container)
            await self._stop(container, timeout, signal)
        live = self.live(container)
        async with live.lock:
            if container.state.running:
                return
            container.state.stopped_by_user = False
            await self._start(container)
        self.emit(container, "restart")

    async def pause(self, ref: str) -> None:
        container = self.get(ref)
        if container.state.status == PAUSED:
            raise Conflict(f"Container {container.id} is already paused")
        if container.state.status != RUNNING:
            raise Conflict(f"Container {container.id} is not running")
        await self.runtimes[container.runtime].pause(container.id)
        container.state.status = PAUSED
        if self.health is not None:
            self.health.stopped(container)
        self._save(container)
        self.emit(container, "pause")

    async def unpause(self, ref: str) -> None:
        container = self.get(ref)
        if container.state.status != PAUSED:
            raise Conflict(f"Container {container.id} is not paused")
        await self.runtimes[container.runtime].resume(container.id)
        container.state.status = RUNNING
        if self.health is not None:
            self.health.unpaused(container)
        self._save(container)
        self.emit(container, "unpause")

    # -- update --------------------------------------------------------------

    async def update(self, ref: str, request: ContainerUpdate) -> list[str]:
        """New resource limits and restart policy (`docker update`); returns Docker's warnings.

        Stored in the record for the next start; applied at once to a running (or
        paused) container through the runtime. If the kernel refuses a value, the
        container keeps its old limits and record, and the error says why.
        """
        warnings = updates.validate(
            request,
            self.settings.ncpu,
            blkio_weight=cgroups.blkio_weight_supported(self.settings.cgroup_layout),
        )
        container = self.get(ref)
        live = self.live(container)
        async with live.lock:
            if container.state.status == REMOVING or container.id not in self._containers:
                raise Unavailable(
                    f"Cannot update container {container.id}: container is marked for removal "
                    'and cannot be "update"'
                )
            old = container.host_config
            try:
                new = updates.merge(old, request)
            except Conflict as e:
                raise Conflict(f"Cannot update container {container.id}: {e.message}") from None
            if container.state.status in (RUNNING, PAUSED):
                await self._apply_resources(container, old, new, request.pids_limit is not None)
            container.host_config = new
            self._save(container)
        self.emit(container, "update")
        return warnings

    async def _apply_resources(
        self, container: Container, old: HostConfig, new: HostConfig, pids_touched: bool
    ) -> None:
        """Write `new` limits to the running container's cgroup; on refusal restore `old`."""
        runtime = self.runtimes[container.runtime]
        try:
            await runtime.update(
                container.id, updates.runtime_resources(new, pids_touched=pids_touched)
            )
        except Conflict:
            return  # it has just exited: the record alone carries the change to its next start
        except DockyardError as e:
            # The runtime may have written some files before the kernel refused one.
            restore = updates.restore_resources(
                old,
                new,
                cpus=cfg.cpu_ranges(os.sched_getaffinity(0)),
                mems=cgroups.available_mems(self.settings.cgroup_layout),
            )
            try:
                await runtime.update(container.id, restore)
            except DockyardError as again:
                log.warning("restoring the limits of %s: %s", container.short_id, again.message)
            raise Unavailable(f"Cannot update container {container.id}: {e.message}") from None

    # -- wait ----------------------------------------------------------------

    def waiter(self, ref: str, condition: str) -> asyncio.Future[int]:
        """A future resolving to the exit code when `condition` is met (registered now)."""
        if condition not in ("", "not-running", "next-exit", "removed"):
            raise InvalidArgument(f"invalid condition: {condition!r}")
        container = self.get(ref)
        live = self.live(container)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if condition == "removed":
            live.removed_waiters.append(future)
        elif condition in ("", "not-running") and not container.state.running:
            future.set_result(container.state.exit_code)
        else:
            live.exit_waiters.append(future)
        return future

    # -- remove --------------------------------------------------------------

    async def remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> None:
        container = self.get(ref)
        live = self.live(container)
        if container.state.status == REMOVING:
            if not force:
                raise Conflict(f"removal of container {container.name} is already in progress")
            # Racing the removal of an exited `--rm` container (or another rm -f): done
            # when that removal is.
            async with live.lock:
                if container.id not in self._containers:
                    return
        if container.state.running:
            if not force:
                raise Conflict(
                    f'cannot remove container "/{container.name}": container is running: stop the '
                    "container before removing or force remove"
                )
            container.state.stopped_by_user = True
            if live.restart_task is not None:
                live.restart_task.cancel()
                live.restart_task = None
                container.state.status = EXITED
            if container.state.status in (RUNNING, PAUSED):
                await self._stop(container, 0, "SIGKILL")
        async with live.lock:
            if container.id not in self._containers:
                return
            await self._remove(container, volumes=volumes)

    async def _remove(self, container: Container, *, volumes: bool = False) -> None:
        """Delete a stopped container and everything it owns (lock held); with `volumes`,
        its anonymous volumes too."""
        container.state.status = REMOVING
        live = self.live(container)
        await self.runtimes[container.runtime].delete(container.id)
        await self._release(container)
        self.rootfs.remove(os.path.join(self.dir(container), "rootfs"))
        shutil.rmtree(self.dir(container), ignore_errors=True)
        with self.db.transaction():
            self.db.execute("DELETE FROM containers WHERE id=?", (container.id,))
        self._containers.pop(container.id, None)
        self.networking.removed(container)
        await self.volumes.release(container.mounts, remove_anonymous=volumes)
        self.emit(container, "destroy")
        for future in live.removed_waiters + live.exit_waiters:
            if not future.done():
                future.set_result(container.state.exit_code)
        self._fail_attachers(container)
        live.changed.set()
        self._live.pop(container.id, None)
        if not self.images.exists(container.image_id):
            await self.images.collect()

    async def prune(
        self, chosen: Callable[[Container], bool] = lambda container: True
    ) -> tuple[list[str], int]:
        """Docker's `container prune`: remove the containers that are not running and
        are `chosen` (the request's filters). Returns their IDs and the bytes their
        writable layers held, each measured (on a worker thread) just before it goes."""
        from dockyard.usage import tree_size

        removed: list[str] = []
        reclaimed = 0
        for container in list(self._containers.values()):
            if container.state.running or not chosen(container):
                continue
            upper = self.rootfs.upper(os.path.join(self.dir(container), "rootfs"))
            size = await asyncio.to_thread(tree_size, upper)
            try:
                await self.remove(container.id)
            except NotFound:
                continue  # removed meanwhile by someone else
            except DockyardError as e:
                # Docker's rule: one container that cannot go does not stop the prune
                log.warning("prune: cannot remove container %s: %s", container.short_id, e.message)
                continue
            removed.append(container.id)
            reclaimed += size
        self.events.emit("container", "prune", "", {"reclaimed": str(reclaimed)})
        return removed, reclaimed

    # -- rename --------------------------------------------------------------

    def rename(self, ref: str, new_name: str) -> None:
        container = self.get(ref)
        if not new_name:
            raise InvalidArgument("Neither old nor new names may be empty")
        new_name = names.validate(new_name)
        if new_name == container.name:
            raise Conflict("Renaming a container with the same name as its current name")
        self._check_name_free(new_name, exclude=container.id)
        old = container.name
        container.name = new_name
        self._save(container)
        self.networking.renamed(container, old)
        self.emit(container, "rename", oldName="/" + old)

    # -- logs and attach -----------------------------------------------------

    async def logs(
        self,
        ref: str,
        *,
        follow: bool,
        since_ns: int = 0,
        until_ns: int = 0,
        tail: int | None = None,
    ) -> AsyncIterator[k8sfile.LogEntry]:
        container = self.get(ref)
        reader = await self.logging.reader(container) if self.logging is not None else None
        if reader is not None and self.logging is not None:
            async for plugin_entry in self.logging.read(
                reader, container, follow=follow, since_ns=since_ns, until_ns=until_ns, tail=tail
            ):
                yield plugin_entry
            return
        path = self.paths(container).log
        live = self.live(container)
        if not os.path.exists(path) and (not follow or not container.state.running):
            return
        f = None
        try:
            while f is None:
                try:
                    f = open(path, "rb")  # noqa: SIM115 - held across awaits
                except FileNotFoundError:
                    if live.exited.is_set() and container.state.status != CREATED:
                        return
                    await asyncio.sleep(0.05)
            entries = k8sfile.tail(k8sfile.read_entries(f), tail)
            for entry in entries:
                if entry.time_ns < since_ns or (until_ns and entry.time_ns > until_ns):
                    continue
                yield entry
            if not follow:
                return
            while True:
                finished = live.exited.is_set() and container.state.status != CREATED
                got = False
                for entry in k8sfile.read_entries(f):
                    got = True
                    if entry.time_ns < since_ns:
                        continue
                    if until_ns and entry.time_ns > until_ns:
                        return
                    yield entry
                if finished and not got:
                    return
                if not got:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(live.exited.wait(), 0.05)
        finally:
            if f is not None:
                f.close()

    async def attach(self, ref: str) -> AttachConnection | None:
        """A connection to the container's stdio; waits for the container to start if needed.

        Returns None if the container goes away (or fails to start) first.
        """
        container = self.get(ref)
        if container.state.status == RUNNING:
            path = self.monitors[container.runtime].attach_socket(container.id)
            try:
                return await AttachConnection.open(path)
            except OSError as e:
                raise Unavailable(f"cannot attach to container {container.id}: {e}") from e
        if container.state.status == PAUSED:
            raise Conflict(f"Container {container.id} is paused, unpause the container first")
        future: asyncio.Future[AttachConnection | None] = asyncio.get_running_loop().create_future()
        self.live(container).attachers.append(future)
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.result() is not None:
                conn = future.result()
                if conn is not None:
                    conn.close()
            raise

    def resize(self, ref: str, height: int, width: int) -> None:
        container = self.get(ref)
        if container.state.status not in (RUNNING, PAUSED):
            raise Conflict(f"Container {container.id} is not running")
        if not container.tty:
            return
        ctl = self.paths(container).ctl
        try:
            fd = os.open(ctl, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            raise Unavailable(f"cannot resize: {e}") from e
        try:
            os.write(fd, f"1 {height} {width}\n".encode())
        finally:
            os.close(fd)
        self.emit(container, "resize", height=str(height), width=str(width))

    # -- processes -----------------------------------------------------------

    async def top(self, ref: str, ps_args: str = "-ef") -> tuple[list[str], list[list[str]]]:
        container = self.get(ref)
        if container.state.status not in (RUNNING, PAUSED):
            raise Conflict(f"Container {container.id} is not running")
        pids = set(await self.runtimes[container.runtime].processes(container.id))
        if "\0" in ps_args:
            raise InvalidArgument("Error running ps: the ps arguments contain a NUL byte")
        proc = await asyncio.create_subprocess_exec(
            "ps",
            *(ps_args.split() if ps_args else ["-ef"]),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            # Without a terminal, ps cuts lines at 80 columns unless told otherwise.
            env={**os.environ, "COLUMNS": "4096"},
        )
        out, err = await proc.communicate()
        # ps fails, or prints no PID column, only for the arguments the client chose:
        # its request is at fault (Docker answers 500)
        if proc.returncode:
            raise InvalidArgument(f"Error running ps: {err.decode(errors='replace').strip()}")
        lines = out.decode(errors="replace").splitlines()
        if not lines:
            return [], []
        titles = lines[0].split()
        if "PID" not in titles:
            raise InvalidArgument("Couldn't find PID field in ps output")
        pid_index = titles.index("PID")
        processes = []
        for line in lines[1:]:
            fields = line.split(None, len(titles) - 1)
            if (
                len(fields) > pid_index
                and fields[pid_index].isdigit()
                and int(fields[pid_index]) in pids
            ):
                processes.append(fields)
        self.emit(container, "top")
        return titles, processes

    # -- daemon start-up and shutdown ----------------------------------------

    async def restore(self) -> None:
        """Adopt containers still running under their monitors; settle the others."""
        for container in list(self._containers.values()):
            state = container.state
            if state.status in (RUNNING, PAUSED):
                mon = Monitor(state.monitor_pid, state.monitor_start)
                if state.monitor_pid and monitor.is_alive(mon):
                    live = self.live(container)
                    live.exited.clear()
                    live.started_mono = time.monotonic()
                    live.watcher = asyncio.ensure_future(self._watch(container, mon))
                    await self._resume_logging(container)
                    if self.health is not None:
                        self.health.restored(container)
                    continue
                # It exited while no daemon ran: its log plugin still gets what it wrote
                # then (the exit below delivers the rest and ends the session).
                await self._resume_logging(container)
                async with self.live(container).lock:
                    await self._on_exit(container)
                await self._after_exit(container)
            elif state.status == RESTARTING:
                state.status = EXITED
                self._save(container)
                if self._should_restart(container):
                    self._schedule_restart(container)
            elif state.status == REMOVING:
                async with self.live(container).lock:
                    await self._remove(container, volumes=container.host_config.auto_remove)
            elif state.status == EXITED:
                # Docker on daemon start: `always` restarts even manually stopped
                # containers, `unless-stopped` only those that were not.
                policy = container.host_config.restart_policy.name
                if policy == "always" or (policy == "unless-stopped" and not state.stopped_by_user):
                    state.stopped_by_user = False
                    self._schedule_restart(container)

    async def _resume_logging(self, container: Container) -> None:
        if self.logging is None:
            return
        try:
            await self.logging.start(container, self.paths(container).log, self.dir(container))
        except DockyardError as e:
            log.warning("log driver of %s: %s", container.short_id, e.message)

    async def shutdown(self) -> None:
        """Stop watching; containers keep running under their monitors."""
        if self.logging is not None:
            await self.logging.shutdown()
        if self.health is not None:
            self.health.shutdown()
        for live in self._live.values():
            for task in (live.watcher, live.restart_task):
                if task is not None:
                    task.cancel()


def _start_error(error: Exception, message: str) -> DockyardError:
    """What a failed start answers: a refusal of the request's own (4xx) stays one; a
    command that is not there or may not be run is the container's configuration at fault,
    a 400 as Docker's (moby's startInvalidConfigError); anything else is the runtime's
    failure, a 500."""
    if isinstance(error, DockyardError) and 400 <= error.status < 500:
        return error
    lowered = message.lower()
    if _start_failure_code(message) == 127 or "permission denied" in lowered:
        return InvalidArgument(message)
    return Unavailable(message)


def _start_failure_code(message: str) -> int:
    lowered = message.lower()
    if "executable file not found" in lowered or "no such file or directory" in lowered:
        return 127
    if "permission denied" in lowered or "is a directory" in lowered:
        return 126
    return 128
