"""The container lifecycle: create, start, stop, kill, wait, remove, restart policies.

A container's record lives in the database; while it runs, its monitor
(conmon) is its parent, and the daemon watches the monitor's pid. When the
monitor exits, `_on_exit` records the exit code, releases the runtime state and
the rootfs mount, wakes waiters, and applies the restart policy and
auto-removal.

Every step of `start` that allocates something (mount, runtime container,
cgroup) is undone if a later step fails, so a failed start leaves nothing
behind but the error text in the container's state.

Crashes: each multi-step operation writes its intent to the journal
(`containers/journal.py`) before its first step and ends it with the record of
its outcome. At start-up `restore()` compares every container's record with
what really exists on the host (`containers/footprint.py`: monitor, runtime
state, exit file, mounts, cgroup, files), makes the record tell the truth —
a container found running is adopted, one whose start was cut short is
undone, leftovers of one that is not running are released — and then finishes
or undoes each operation the crash interrupted. A container whose runtime's
binary is gone can still be stopped, killed and removed: its processes are
signalled by pid and through its cgroup (`runtime/processes.py`).
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
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dockyard import mount as host_mount
from dockyard.containers import config as cfg
from dockyard.containers import footprint, journal, names, schema, signals, spec, users
from dockyard.containers import update as updates
from dockyard.containers.journal import Intent, Journal
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
    NotImplementedByEngine,
    NotModified,
    Unavailable,
)
from dockyard.events.bus import EventBus
from dockyard.images.oci import now_rfc3339, rfc3339
from dockyard.images.service import Image, ImageService
from dockyard.logs import k8sfile
from dockyard.network.manager import NetworkManager
from dockyard.runtime import cgroups, monitor, oci, processes
from dockyard.runtime.attach import AttachConnection
from dockyard.runtime.monitor import Conmon, Monitor, Paths
from dockyard.runtime.oci import Runtime
from dockyard.snapshots.rootfs import RootfsManager
from dockyard.state import crashpoints, private
from dockyard.state.db import Database
from dockyard.volumes.mounts import MountPoint
from dockyard.volumes.service import VolumeService

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from dockyard.containers.health import HealthMonitor
    from dockyard.logs.service import LogService

log = logging.getLogger(__name__)

DEFAULT_STOP_TIMEOUT = 10
KILL_WAIT = 10  # seconds a SIGKILLed container has to exit before the direct kill (Docker's)
# The error a start cut short by a daemon crash leaves in the container's state.
START_INTERRUPTED = "start interrupted: the daemon stopped before the container was started"


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
    seccomp: Any  # callable: (capabilities, seccomp= option) -> OCI seccomp object or None
    runtime_root: str = ""  # <exec-root>/runtime: each runtime's state directory is in it
    # Runtimes containers may name that cannot run here now: name -> why (binary gone, ...).
    unavailable_runtimes: dict[str, str] = field(default_factory=dict)


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
        self.journal = Journal(db)
        self._containers: dict[str, Container] = {}
        self._live: dict[str, _Live] = {}
        # Operations a crash interrupted, finished in the background once the engine runs.
        self._follow_ups: list[tuple[str, Intent, Callable[[], Awaitable[None]]]] = []
        # Intents restore found interrupted whose rest runs in the background now.
        self.finishing: set[str] = set()
        self._tasks: set[asyncio.Future[None]] = set()
        # Settles the exec intents a crash left (set by the exec service).
        self.exec_recovery: Callable[[Intent], Awaitable[None]] | None = None
        # Containers' files hold their environments, configurations and logs.
        private.directory(settings.data_root)
        private.directory(settings.exec_root)
        for row in db.all("SELECT record FROM containers"):
            container = Container.from_json(row["record"])
            self._containers[container.id] = container
        # Log files, their bounds and log-driver plugins; set by the engine.
        self.logging: LogService | None = None
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

    @property
    def attach_dir(self) -> str:
        """Where the monitors link each container's directory, for short socket paths."""
        return next(iter(self.monitors.values())).socket_dir

    def runtime_of(self, container: Container) -> Runtime:
        """The container's runtime; `Unavailable`, naming it, when it cannot be used now."""
        runtime = self.runtimes.get(container.runtime)
        if runtime is None:
            raise Unavailable(self._runtime_unavailable(container.runtime))
        return runtime

    def monitor_of(self, container: Container) -> Conmon:
        conmon = self.monitors.get(container.runtime)
        if conmon is None:
            raise Unavailable(self._runtime_unavailable(container.runtime))
        return conmon

    def _runtime_unavailable(self, name: str) -> str:
        why = self.settings.unavailable_runtimes.get(name) or "it is not installed"
        return f'runtime "{name}" is not available: {why}'

    def runtime_state_dir(self, container: Container) -> str:
        """The state directory of the container's runtime (also when the runtime is gone)."""
        runtime = self.runtimes.get(container.runtime)
        if runtime is not None:
            return runtime.state_dir
        return os.path.join(self.settings.runtime_root, container.runtime)

    async def runtime_status(self, container: Container) -> str | None:
        """What the container's runtime says of it: created, running, paused, stopped, or
        "" when it has no such container; None when the runtime cannot be asked."""
        runtime = self.runtimes.get(container.runtime)
        return await runtime.status(container.id) if runtime is not None else None

    def _save(self, container: Container, *, ending: Intent | None = None) -> None:
        """Write the record; `ending`: the intent whose outcome this is, ended with it."""
        with self.db.transaction():
            self.db.execute(
                "UPDATE containers SET name=?, record=? WHERE id=?",
                (container.name, container.to_json(), container.id),
            )
            self.journal.end(ending)
        self.live(container).changed.set()

    def networks_changed(self, container: Container, *, ending: Intent | None = None) -> None:
        """Record a container's network attachments after connect/disconnect (`ending`:
        the intent of that operation, ended with the record)."""
        self._save(container, ending=ending)

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
        log_defaults = self.logging.defaults if self.logging is not None else None
        log_type = cfg.log_config(request.host_config.log_config, log_defaults).type
        if self.logging is not None and self.logging.is_plugin_driver(log_type):
            await self.logging.resolve(log_type)
            log_drivers = (*log_drivers, log_type)
        effective = cfg.effective(
            request,
            schema.decode(ContainerConfig, image.run_config, "image config"),
            image_name=image_name,
            ncpu=self.settings.ncpu,
            runtimes=tuple(self.runtimes),
            default_runtime=self.settings.default_runtime,
            log_drivers=log_drivers,
            log_defaults=log_defaults,
        )
        if name:
            name = names.validate(name)
            self._check_name_free(name)
        else:
            name = self._generate_name()
        container_id = secrets.token_hex(32)
        # Volumes and files are made before the record exists: a crash meanwhile leaves
        # this intent, and restore removes what it names.
        intent = self.journal.begin(container_id, journal.CREATE, name=name)
        try:
            mounts = await self.volumes.prepare(
                effective.config.volumes or {}, effective.host_config, self._volumes_from
            )
        except BaseException:
            self.journal.end(intent)
            raise
        self.journal.update(intent, mounts=[m.to_dict() for m in mounts])
        crashpoints.reached("create:volumes")
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
            crashpoints.reached("create:files")
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
                self.journal.end(intent)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            await self.volumes.release(mounts, remove_anonymous=True)
            self.journal.end(intent)
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
        intent = self.journal.begin(container.id, journal.START)
        # An exit file of the last run would read, after a crash, as this run's exit.
        for stale in (paths.exit_file, paths.oom_file):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stale)
        created_in_runtime = False
        try:
            runtime = self.runtime_of(container)
            conmon = self.monitor_of(container)
            chain = container.chain_id
            if (
                chain
                and not self.images.exists(container.image_id)
                and not self.images.layers.has(chain)
            ):
                raise Unavailable(f"image {container.image_id} of this container is gone")
            rootfs_dir = os.path.join(self.dir(container), "rootfs")
            merged = self.rootfs.mount(rootfs_dir, container.chain_id)
            crashpoints.reached("start:mounted")
            hc = container.host_config
            namespace_paths, ipc_donor = self._joined_namespaces(hc)
            user = users.resolve(merged, container.config.user, list(hc.group_add or []))
            network = await self.networking.setup(container)
            crashpoints.reached("start:network")
            hostname = network.hostname
            files = network.files
            user_mounts = await self.volumes.mount(
                container.id, container.mounts, hc.tmpfs or {}, merged
            )
            user_mounts += self._shm_mounts(container, ipc_donor, user_mounts)
            crashpoints.reached("start:volumes")
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
                    cgroup_v1=self.settings.cgroup_layout.mode != "v2",
                    mounts=user_mounts,
                    netns_path=network.netns_path,
                    namespace_paths=namespace_paths,
                    link_env=network.env,
                ),
            )
            os.makedirs(paths.bundle, exist_ok=True)
            with open(private.create(os.path.join(paths.bundle, "config.json")), "w") as f:
                json.dump(oci_spec, f)
            if runtime.has_state(container.id):
                await runtime.delete(container.id)  # a leftover of an earlier crash
            if self.logging is not None:
                await self.logging.start(container, self.dir(container))
            crashpoints.reached("start:bundle")
            stdin = container.config.open_stdin
            created_in_runtime = True  # from here on the runtime may hold it, even on failure
            mon, pid = await conmon.create(
                container.id,
                container.name,
                paths,
                terminal=container.tty,
                stdin=stdin,
                # A terminal's input is never closed by an attach client leaving (Docker):
                # a detached `run -it` keeps taking input from the next `attach`.
                leave_stdin_open=stdin and (container.tty or not container.config.stdin_once),
                log=self.logging.rotation(container) if self.logging is not None else None,
            )
            crashpoints.reached("start:created")
            self.volumes.release_subpaths(container.id)  # the container holds its own mounts
            await self._connect_attachers(container, conmon)
            live.exited.clear()
            await runtime.start(container.id)
            crashpoints.reached("start:started")
        except Exception as e:  # whatever failed, nothing the start allocated may stay
            message = e.message if isinstance(e, DockyardError) else str(e) or type(e).__name__
            if not isinstance(e, DockyardError | OSError):
                log.exception("starting %s failed", container.short_id)
            await self._undo_start(container, message, intent, in_runtime=created_in_runtime)
            raise _start_error(e, message) from e
        container.state = State(
            status=RUNNING,
            pid=pid,
            pid_start=monitor.process_start_time(pid) or 0,
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
        self._save(container, ending=intent)
        self.emit(container, "start")
        live.watcher = asyncio.ensure_future(self._watch(container, mon))

    async def _release_run(self, container: Container, *, in_runtime: bool, doing: str) -> None:
        """Release what a run holds: runtime state (`in_runtime`), network, mounts and
        volumes, log delivery. Each step is tried even if an earlier one fails: the outcome
        must be recorded whatever the host has left to clean."""
        steps: list[Awaitable[None]] = []
        if in_runtime:
            steps.append(self._delete_in_runtime(container))
        steps += [self.networking.teardown(container), self._release(container)]
        if self.logging is not None:
            steps.append(self.logging.stop(container.id))
        for step in steps:
            try:
                await step
            except Exception:
                log.exception("%s %s", doing, container.short_id)

    async def _undo_start(
        self, container: Container, message: str, intent: Intent | None, *, in_runtime: bool
    ) -> None:
        """Release what a start allocated and record why it failed (lock held); a `--rm`
        container is removed. The state keeps Docker's rule: a container that never ran
        stays `created`."""
        live = self.live(container)
        await self._release_run(container, in_runtime=in_runtime, doing="undoing the start of")
        state = container.state
        state.error = message
        state.exit_code = _start_failure_code(message)
        state.pid = state.pid_start = state.monitor_pid = state.monitor_start = 0
        if state.status != CREATED:
            state.status = EXITED
        self._save(container, ending=intent)
        live.exited.set()
        self._fail_attachers(container)
        if container.host_config.auto_remove:
            await self._remove(container, volumes=True)

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
        monitor.forget_attach_link(self.attach_dir, container.id)

    async def _delete_in_runtime(self, container: Container) -> None:
        """Have the runtime forget the container, killing whatever is left of it; when the
        runtime's binary is gone, kill through the cgroup and drop its state directly."""
        runtime = self.runtimes.get(container.runtime)
        if runtime is not None:
            await runtime.delete(container.id)
            return
        await self._empty_cgroup(container)
        oci.forget_state(self.runtime_state_dir(container), container.id)

    async def _empty_cgroup(self, container: Container) -> None:
        """Kill every process in the container's cgroup and wait (a little) for them to go."""
        layout, path = self.settings.cgroup_layout, self.cgroup_path(container)
        for _ in range(250):
            if not processes.kill_cgroup(layout, path) and not processes.cgroup_pids(layout, path):
                return
            await asyncio.sleep(0.02)
        log.warning("processes of %s outlive SIGKILL", container.short_id)

    async def _signal(self, container: Container, number: int, *, all: bool = False) -> None:
        """Signal the container through its runtime or, when the runtime's binary is gone,
        by its recorded pid (pidfd, start time checked) and, with `all`, its cgroup.
        `Conflict` if it is not running."""
        runtime = self.runtimes.get(container.runtime)
        if runtime is not None:
            await runtime.kill(container.id, number, all=all)
            return
        path = self.cgroup_path(container)
        sent = processes.signal_process(
            container.state.pid, number, start_time=container.state.pid_start, cgroup_path=path
        )
        if all:
            sent = processes.kill_cgroup(self.settings.cgroup_layout, path, number) > 0 or sent
        if not sent:
            raise Conflict(f"container {container.id} is not running")

    async def _thaw(self, container: Container) -> None:
        """Resume a paused container so that a signal lands (runtime, or its freezer)."""
        runtime = self.runtimes.get(container.runtime)
        if runtime is not None:
            await runtime.resume(container.id)
        else:
            processes.thaw(self.settings.cgroup_layout, self.cgroup_path(container))

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
        await self._release_run(container, in_runtime=True, doing="releasing exited container")
        state = container.state
        state.status = EXITED
        state.exit_code = code
        state.error = error
        state.oom_killed = oom
        state.pid = state.pid_start = 0
        state.monitor_pid = 0
        state.monitor_start = 0
        state.finished_at = now_rfc3339()
        with self.db.transaction():
            self._save(container)
            # The stop or kill that waited for this exit is over.
            self.journal.end_actions(container.id, journal.STOP, journal.KILL)
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
        intent = None
        if stops:
            container.state.stopped_by_user = True
            with self.db.transaction():
                self._save(container)
                if number == 9:  # a SIGKILL is finished after a crash; other signals are not
                    intent = self.journal.begin(container.id, journal.KILL)
        try:
            crashpoints.reached("kill:recorded")
            with contextlib.suppress(Conflict):  # exiting already: the wait below sees it
                await self._signal(container, number, all=number == 9)
            crashpoints.reached("kill:signalled")
            if stops and container.state.status == PAUSED:
                # A frozen process takes no signal: thaw it so the kill lands (as Docker).
                with contextlib.suppress(Conflict):
                    await self._thaw(container)
                if container.state.status == PAUSED:
                    container.state.status = RUNNING
                    self._save(container)
            self.emit(container, "kill", signal=str(number))
            if number == 9:
                await self._wait_killed(container)
        finally:
            self.journal.end(intent)  # the exit's record has usually ended it already

    async def _wait_killed(self, container: Container) -> None:
        """Wait for a SIGKILLed container's exit; Docker's fallback if it does not come."""
        live = self.live(container)
        try:
            await asyncio.wait_for(live.exited.wait(), KILL_WAIT)
            return
        except TimeoutError:
            log.warning("%s did not exit within %ss of SIGKILL", container.short_id, KILL_WAIT)
        processes.signal_process(
            container.state.pid,
            9,
            start_time=container.state.pid_start,
            cgroup_path=self.cgroup_path(container),
        )
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
        grace = self._stop_timeout(container, timeout)
        with self.db.transaction():
            self._save(container)
            # After a crash the stop goes on: the rest of the grace period, then SIGKILL.
            intent = self.journal.begin(
                container.id,
                journal.STOP,
                signal=signal or "",
                deadline=time.time() + grace if grace >= 0 else None,
            )
        try:
            crashpoints.reached("stop:recorded")
            await self._stop(container, grace, signal)
        finally:
            self.journal.end(intent)
        self.emit(container, "stop")

    def _stop_timeout(self, container: Container, timeout: int | None) -> int:
        if timeout is None:
            timeout = container.config.stop_timeout
        return DEFAULT_STOP_TIMEOUT if timeout is None else timeout

    async def _stop(self, container: Container, timeout: int | None, signal: str | None) -> None:
        live = self.live(container)
        timeout = self._stop_timeout(container, timeout)
        number = signals.parse(signal or container.config.stop_signal or "SIGTERM")
        if container.state.status == PAUSED:
            with contextlib.suppress(DockyardError):
                await self._thaw(container)
        if number != 9:
            with contextlib.suppress(Conflict):
                await self._signal(container, number)
            self.emit(container, "kill", signal=str(number))
            crashpoints.reached("stop:signalled")
            try:
                if timeout < 0:
                    await live.exited.wait()
                else:
                    await asyncio.wait_for(live.exited.wait(), timeout)
                return
            except TimeoutError:
                pass
        with contextlib.suppress(Conflict):
            await self._signal(container, 9, all=True)
        crashpoints.reached("stop:killed")
        self.emit(container, "kill", signal="9")
        await live.exited.wait()

    async def restart(
        self, ref: str, timeout: int | None = None, signal: str | None = None
    ) -> None:
        container = self.get(ref)
        # After a crash the restart is finished: started if it was stopped, or done again
        # if the run it meant to end still runs.
        intent = self.journal.begin(
            container.id, journal.RESTART, monitor_pid=container.state.monitor_pid
        )
        try:
            if container.state.status in (RUNNING, PAUSED):
                container.state.stopped_by_user = True
                self._save(container)
                await self._stop(container, timeout, signal)
            crashpoints.reached("restart:stopped")
            live = self.live(container)
            async with live.lock:
                if container.state.running:
                    return
                container.state.stopped_by_user = False
                await self._start(container)
        finally:
            self.journal.end(intent)
        self.emit(container, "restart")

    async def pause(self, ref: str) -> None:
        container = self.get(ref)
        if container.state.status == PAUSED:
            raise Conflict(f"Container {container.id} is already paused")
        if container.state.status != RUNNING:
            raise Conflict(f"Container {container.id} is not running")
        await self.runtime_of(container).pause(container.id)
        container.state.status = PAUSED
        if self.health is not None:
            self.health.stopped(container)
        self._save(container)
        self.emit(container, "pause")

    async def unpause(self, ref: str) -> None:
        container = self.get(ref)
        if container.state.status != PAUSED:
            raise Conflict(f"Container {container.id} is not paused")
        await self.runtime_of(container).resume(container.id)
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
        runtime = self.runtime_of(container)
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
        intent = None
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
            with self.db.transaction():
                self._save(container)
                # Begun before the kill: after a crash the whole `rm -f` is finished.
                intent = self.journal.begin(container.id, journal.REMOVE, volumes=volumes)
        try:
            if container.state.status in (RUNNING, PAUSED):
                await self._stop(container, 0, "SIGKILL")
            async with live.lock:
                if container.id not in self._containers:
                    return
                await self._remove(container, volumes=volumes, intent=intent)
        finally:
            self.journal.end(intent)

    async def _remove(
        self, container: Container, *, volumes: bool = False, intent: Intent | None = None
    ) -> None:
        """Delete a stopped container and everything it owns (lock held); with `volumes`,
        its anonymous volumes too. The record goes last, with the intent: a crash on the
        way leaves both, and restore finishes the removal."""
        container.state.status = REMOVING
        live = self.live(container)
        with self.db.transaction():
            self._save(container)
            if intent is None:
                intent = self.journal.begin(container.id, journal.REMOVE, volumes=volumes)
        crashpoints.reached("remove:recorded")
        await self._delete_in_runtime(container)
        await self._release(container)
        crashpoints.reached("remove:released")
        self.rootfs.remove(os.path.join(self.dir(container), "rootfs"))
        shutil.rmtree(self.dir(container), ignore_errors=True)
        crashpoints.reached("remove:files")
        # Out of the engine's view first: the volumes it used are free to go then.
        self._containers.pop(container.id, None)
        self.networking.removed(container)
        await self.volumes.release(container.mounts, remove_anonymous=volumes)
        crashpoints.reached("remove:volumes")
        with self.db.transaction():
            self.db.execute("DELETE FROM containers WHERE id=?", (container.id,))
            self.journal.end(intent)
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
        # Every step is a database write: one transaction makes the rename whole or none.
        try:
            with self.db.transaction():
                container.name = new_name
                self._save(container)
                crashpoints.reached("rename:recorded")
                self.networking.renamed(container, old)
        except BaseException:
            container.name = old
            raise
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
        """The container's log records one by one (attach's replay, the builder); nothing
        for a driver that stores nothing."""
        container = self.get(ref)
        if self.logging is None or container.host_config.log_config.type == "none":
            return
        try:
            batches = await self.log_batches(
                container.id, follow=follow, since_ns=since_ns, until_ns=until_ns, tail=tail
            )
        except NotImplementedByEngine:  # a plugin that cannot read, its cache disabled
            return
        async for batch in batches:
            for entry in batch:
                yield entry

    async def log_batches(
        self,
        ref: str,
        *,
        follow: bool,
        since_ns: int = 0,
        until_ns: int = 0,
        tail: int | None = None,
    ) -> AsyncGenerator[list[k8sfile.LogEntry], None]:
        """The container's log records in batches, read off the event loop (see
        dockyard.logs.reader); raises at once when its driver cannot be read."""
        container = self.get(ref)
        if self.logging is None:
            raise Unavailable("logging is not set up")
        live = self.live(container)

        def finished() -> bool:
            return live.exited.is_set() and container.state.status != CREATED

        async def changed() -> None:
            if live.exited.is_set():  # not started yet: look again in a while
                await asyncio.sleep(0.05)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(live.exited.wait(), 0.05)

        return await self.logging.read(
            container,
            self.dir(container),
            follow=follow,
            since_ns=since_ns,
            until_ns=until_ns,
            tail=tail,
            finished=finished,
            changed=changed,
        )

    async def attach(self, ref: str) -> AttachConnection | None:
        """A connection to the container's stdio; waits for the container to start if needed.

        Returns None if the container goes away (or fails to start) first.
        """
        container = self.get(ref)
        if container.state.status == RUNNING:
            path = monitor.attach_socket(self.attach_dir, container.id)
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
        pids = set(await self.runtime_of(container).processes(container.id))
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
        """Make every record tell the truth about the host, then finish or undo what a
        crash interrupted (docs/design.md, "Crash consistency"). What takes time (the rest
        of a stop's grace period, a restart) is queued for `resume_interrupted()`."""
        self._warn_unavailable_runtimes()
        pending: dict[str, list[Intent]] = {}
        for intent in self.journal.pending():
            pending.setdefault(intent.container_id, []).append(intent)
        mounts = footprint.mount_points()
        for container in list(self._containers.values()):
            intents = pending.pop(container.id, [])
            try:
                await self._reconcile(container, intents, mounts)
            except Exception:
                log.exception("reconciling container %s with the host", container.short_id)
        for container_id, intents in pending.items():
            await self._settle_unrecorded(container_id, intents)
        self._sweep_strays()

    def resume_interrupted(self) -> None:
        """Run, in the background, the rest of the operations restore found interrupted
        (called once the engine serves: they wait on monitors and the network)."""
        queued, self._follow_ups = self._follow_ups, []
        for what, intent, work in queued:
            self.finishing.add(intent.id)
            self._spawn(work(), what, intent)

    def _spawn(self, work: Awaitable[None], what: str, intent: Intent) -> None:
        task = asyncio.ensure_future(work)

        def done(task: asyncio.Future[None]) -> None:
            self._tasks.discard(task)
            self.finishing.discard(intent.id)
            if not task.cancelled() and task.exception() is not None:
                error = task.exception()
                text = error.message if isinstance(error, DockyardError) else repr(error)
                log.warning("finishing %s after the restart: %s", what, text)

        task.add_done_callback(done)
        self._tasks.add(task)

    def _warn_unavailable_runtimes(self) -> None:
        users: dict[str, list[str]] = {}
        for container in self.all():
            if container.runtime not in self.runtimes:
                users.setdefault(container.runtime, []).append(container.name)
        for name, affected in users.items():
            log.warning(
                "%s; its containers can be stopped, killed and removed but not started: %s",
                self._runtime_unavailable(name),
                ", ".join(sorted(affected)),
            )

    async def _reconcile(
        self, container: Container, intents: list[Intent], mounts: set[str]
    ) -> None:
        """One container: its record made true to the host, then its interrupted
        operations finished or undone."""
        state = container.state
        start = next((i for i in intents if i.action == journal.START), None)
        removal = next((i for i in intents if i.action == journal.REMOVE), None)
        recorded_running = state.status in (RUNNING, PAUSED)
        # The usual case after a crash, kept cheap for many containers: recorded running,
        # its monitor alive, nothing in flight; the runtime need not be asked.
        quiet = (
            recorded_running
            and not intents
            and bool(state.monitor_pid)
            and monitor.is_alive(Monitor(state.monitor_pid, state.monitor_start))
        )
        seen = await footprint.observe(self, container, mounts=mounts, ask_runtime=not quiet)
        if start is not None and seen.monitor is not None and seen.runtime_status == "":
            seen = await self._await_creation(container, seen)
        # A live monitor means a running container, unless the runtime says it was never
        # started (created), or, for a start in flight, was never even created.
        unstarted = ("created", "") if start is not None else ("created",)
        if seen.monitor is not None and seen.runtime_status not in unstarted:
            await self._adopt(container, seen, start)
        elif start is not None and seen.exit_code is not None and seen.monitor is None:
            await self._settle_unwatched_run(container, seen, start)
        elif start is not None:
            # Cut short before the runtime started it: undone like a failed start.
            if seen.monitor is not None:  # a monitor that never got the container going
                processes.signal_process(seen.monitor.pid, 9, start_time=seen.monitor.start_time)
            await self._undo_start(container, START_INTERRUPTED, start, in_runtime=True)
        elif recorded_running:
            # It exited while no daemon ran (or its monitor died): its log plugin still
            # gets what it wrote then (in the background, ended by the exit below).
            await self._resume_logging(container)
            async with self.live(container).lock:
                await self._on_exit(container)
            await self._after_exit(container)
        else:
            await self._release_leftovers(container, seen)
            if state.status == RESTARTING:
                state.status = EXITED
                self._save(container)
                if self._should_restart(container):
                    self._schedule_restart(container)
            elif state.status == REMOVING and removal is None:
                async with self.live(container).lock:
                    await self._remove(container, volumes=container.host_config.auto_remove)
        for intent in intents:
            if intent.action == journal.EXEC:
                await self._settle_exec(intent)
            elif intent.action in (journal.START, journal.CREATE):
                self.journal.end(intent)  # settled above
            elif container.id not in self._containers:
                self.journal.end(intent)  # removed meanwhile (`--rm`)
            else:
                await self._roll_forward(container, intent)
        state = container.state
        if (
            container.id in self._containers
            and state.status == EXITED
            and self.live(container).restart_task is None
        ):
            # Docker on daemon start: `always` restarts even manually stopped containers,
            # `unless-stopped` only those that were not.
            policy = container.host_config.restart_policy.name
            if policy == "always" or (policy == "unless-stopped" and not state.stopped_by_user):
                state.stopped_by_user = False
                self._schedule_restart(container)

    async def _await_creation(
        self, container: Container, seen: footprint.Observed
    ) -> footprint.Observed:
        """A monitor the last daemon started may still be having the runtime create the
        container: give it a moment to finish (or fail) before judging."""
        for _ in range(100):
            await asyncio.sleep(0.1)
            seen = await footprint.observe(self, container)
            if seen.monitor is None or seen.runtime_status != "":
                break
        return seen

    async def _adopt(
        self, container: Container, seen: footprint.Observed, start: Intent | None
    ) -> None:
        """Its monitor lives: the container runs (or has just exited and its monitor is
        about to say so). Watched again; a start the crash cut short after the runtime
        had started it is recorded as done."""
        mon = seen.monitor
        assert mon is not None
        state = container.state
        if state.status not in (RUNNING, PAUSED):
            began = rfc3339(int(start.started * 1e9)) if start is not None else now_rfc3339()
            container.state = State(
                status=RUNNING,
                pid=seen.pid,
                pid_start=(monitor.process_start_time(seen.pid) or 0) if seen.pid else 0,
                started_at=began,
                finished_at=state.finished_at,
                monitor_pid=mon.pid,
                monitor_start=mon.start_time,
                restart_count=state.restart_count,
                health=state.health,
            )
            if self.health is not None:
                self.health.started(container)
            self._save(container, ending=start)
            self.emit(container, "start")
        else:
            # The freezer has the last word on paused or running.
            if seen.frozen is True and state.status == RUNNING:
                state.status = PAUSED
                self._save(container)
            elif seen.frozen is False and state.status == PAUSED:
                state.status = RUNNING
                self._save(container)
            if self.health is not None:
                self.health.restored(container)
        live = self.live(container)
        live.exited.clear()
        live.started_mono = time.monotonic()
        live.watcher = asyncio.ensure_future(self._watch(container, mon))
        # Its files kept at once, its plugin's delivery in the background: start-up
        # never waits on a plugin.
        await self._resume_logging(container)

    async def _settle_unwatched_run(
        self, container: Container, seen: footprint.Observed, start: Intent
    ) -> None:
        """Started, ran and exited while no daemon watched: recorded as a run with its
        exit code, then restart policy and `--rm` as for any exit."""
        state = container.state
        container.state = State(
            status=RUNNING,
            pid=seen.pid,
            started_at=rfc3339(int(start.started * 1e9)),
            finished_at=state.finished_at,
            restart_count=state.restart_count,
            health=state.health,
        )
        self._save(container, ending=start)
        self.emit(container, "start")
        await self._resume_logging(container)
        async with self.live(container).lock:
            await self._on_exit(container)
        await self._after_exit(container)

    async def _release_leftovers(self, container: Container, seen: footprint.Observed) -> None:
        """A container that is not running holds nothing on the host: whatever a crash left
        (runtime state, processes, mounts, cgroup, sandbox, bundle, link) is released."""
        found = seen.leftovers()
        if not found:
            return
        log.info(
            "container %s is not running: releasing its %s", container.short_id, ", ".join(found)
        )
        if seen.runtime_state or seen.monitor is not None or seen.cgroup_pids:
            await self._delete_in_runtime(container)
        if seen.cgroup_pids:
            await self._empty_cgroup(container)
        if seen.monitor is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(monitor.wait_exit(seen.monitor), 5)
        if seen.netns_mounted:
            await self.networking.teardown(container)
        await self._release(container)

    async def _roll_forward(self, container: Container, intent: Intent) -> None:
        """Finish an operation the crash interrupted, now that the record is true."""
        running = container.state.status in (RUNNING, PAUSED)
        action = intent.action
        if action in (journal.STOP, journal.KILL) and running:
            self._follow_ups.append(
                (f"stop of {container.name}", intent, lambda: self._finish_stop(container, intent))
            )
        elif action == journal.RESTART and (
            not running or container.state.monitor_pid == intent.detail.get("monitor_pid")
        ):
            self._follow_ups.append(
                (
                    f"restart of {container.name}",
                    intent,
                    lambda: self._finish_restart(container, intent),
                )
            )
        elif action == journal.REMOVE and running:
            volumes = bool(intent.detail.get("volumes"))

            async def remove() -> None:
                await self.remove(container.id, force=True, volumes=volumes)
                self.journal.end(intent)

            self._follow_ups.append((f"removal of {container.name}", intent, remove))
        elif action == journal.REMOVE:
            async with self.live(container).lock:
                await self._remove(
                    container, volumes=bool(intent.detail.get("volumes")), intent=intent
                )
        elif action in (journal.CONNECT, journal.DISCONNECT):
            self.networking.settle(container, intent)
        else:
            self.journal.end(intent)  # nothing is left to do

    async def _finish_stop(self, container: Container, intent: Intent) -> None:
        """The rest of a stop (or SIGKILL) the crash interrupted: what is left of its grace
        period, then SIGKILL."""
        deadline = intent.detail.get("deadline")
        left = 0 if intent.action == journal.KILL else None
        if left is None and deadline is not None:
            left = max(0, int(deadline - time.time()))
        if container.state.status in (RUNNING, PAUSED):
            signal = "SIGKILL" if left == 0 else intent.detail.get("signal") or None
            await self._stop(container, -1 if left is None else left, signal)
        self.journal.end(intent)

    async def _finish_restart(self, container: Container, intent: Intent) -> None:
        try:
            if container.state.status in (RUNNING, PAUSED):
                await self.restart(container.id)  # the run it meant to end still runs
                return
            live = self.live(container)
            async with live.lock:
                if container.id not in self._containers or container.state.status in (
                    RUNNING,
                    PAUSED,
                    REMOVING,
                ):
                    return
                if live.restart_task is not None:
                    live.restart_task.cancel()
                    live.restart_task = None
                container.state.stopped_by_user = False
                await self._start(container)
            self.emit(container, "restart")
        finally:
            self.journal.end(intent)

    async def _settle_exec(self, intent: Intent) -> None:
        if self.exec_recovery is not None:
            await self.exec_recovery(intent)
        else:
            self.journal.end(intent)

    async def _settle_unrecorded(self, container_id: str, intents: list[Intent]) -> None:
        """Intents of a container without a record: a create cut short (its files and the
        volumes it made go), or execs of a container removed since."""
        for intent in intents:
            if intent.action == journal.EXEC:
                await self._settle_exec(intent)
                continue
            if intent.action == journal.CREATE:
                directory = os.path.join(self.settings.data_root, container_id)
                self.rootfs.remove(os.path.join(directory, "rootfs"))
                shutil.rmtree(directory, ignore_errors=True)
                made = [MountPoint.from_dict(m) for m in intent.detail.get("mounts", [])]
                await self.volumes.release(made, remove_anonymous=True)
                log.info("removed what the interrupted create of %s made", container_id[:12])
            self.journal.end(intent)

    def _sweep_strays(self) -> None:
        """Directories and links of containers the daemon has no record of, in the places
        only containers use (a container's own leftovers are its reconcile's)."""
        for entry in _entries(self.settings.data_root):
            if entry not in self._containers and _is_container_id(entry):
                directory = os.path.join(self.settings.data_root, entry)
                self.rootfs.remove(os.path.join(directory, "rootfs"))
                shutil.rmtree(directory, ignore_errors=True)
        for entry in _entries(self.settings.exec_root):
            if entry not in self._containers and _is_container_id(entry):
                shutil.rmtree(os.path.join(self.settings.exec_root, entry), ignore_errors=True)
        # The monitors' links into bundles (containers' and execs') that are gone.
        bundles = os.path.join(self.settings.exec_root, "")
        for entry in _entries(self.attach_dir):
            link = os.path.join(self.attach_dir, entry)
            with contextlib.suppress(OSError):
                if (
                    os.path.islink(link)
                    and os.readlink(link).startswith(bundles)
                    and not os.path.exists(link)
                ):
                    os.unlink(link)

    async def _resume_logging(self, container: Container) -> None:
        """At start-up, for a container recorded running: its log files kept at once, its
        plugin's delivery resumed in the background. If it has exited meanwhile, its exit
        ends that delivery in the background too: start-up never waits on a log plugin."""
        if self.logging is None:
            return
        try:
            await self.logging.resume(container, self.dir(container))
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
        for work in list(self._tasks):
            work.cancel()


def _entries(directory: str) -> list[str]:
    try:
        return os.listdir(directory)
    except OSError:
        return []


def _is_container_id(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


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
