"""A container's footprint on the host: what it owns there, and what of it really exists.

A started container holds, outside the database: its overlay root mount, a
`/dev/shm` mount when its IPC is shareable, a cgroup in every hierarchy, a
network namespace (bind-mounted file), the runtime's state for it, the bundle
directory the monitor works in, the monitor's link in the attach socket
directory, and a live monitor process. A container that is not running holds
none of these.

`of(containers, container)` names those places (whether they exist or not);
`observe(...)` looks at what is really there and what the monitor and the
runtime say. Start-up (`ContainerService.restore`) compares the two with the
record; `system check` can ask the same questions:

    footprint.of(containers, container)     -> Footprint (paths, cgroup dirs)
    footprint.owned(containers)             -> {container ID: Footprint}
    await footprint.observe(containers, container) -> Observed
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dockyard.containers.model import Container
from dockyard.runtime import monitor, processes
from dockyard.runtime.monitor import Monitor

if TYPE_CHECKING:
    from dockyard.containers.service import ContainerService


@dataclass(frozen=True)
class Footprint:
    """Where one container's pieces live on the host."""

    container_id: str
    rootfs: str  # the overlay mount point (`<data-root>/containers/<id>/rootfs/merged`)
    shm: str  # mount point of a shareable /dev/shm
    cgroup_path: str  # "/<parent>/<id>"
    cgroup_dirs: tuple[str, ...]  # that cgroup in every hierarchy of this host
    netns: str  # the network namespace's bind-mount file
    runtime: str  # the runtime's name
    runtime_state: str  # the runtime's state directory for the container
    bundle: str  # config.json, pid files, the attach socket, exec directories
    attach_link: str  # the monitor's link to the bundle in the attach socket directory
    persist: str  # the container's own directory (log, exit file, /etc files, rootfs)

    @property
    def mounts(self) -> tuple[str, str]:
        return (self.rootfs, self.shm)


@dataclass
class Observed:
    """What exists for one container right now, whatever its record says."""

    monitor: Monitor | None  # its live monitor: the recorded one, or one its bundle names
    runtime_status: str | None  # created/running/paused/stopped, "" none; None: not asked
    pid: int  # the container's init as the monitor wrote it (0: none)
    exit_code: int | None  # as the monitor recorded it in the exit file
    oom: bool
    rootfs_mounted: bool
    shm_mounted: bool
    cgroup_dirs: list[str] = field(default_factory=list)  # that exist
    cgroup_pids: set[int] = field(default_factory=set)
    frozen: bool | None = None  # the freezer's word (paused); None: no freezer to ask
    netns_mounted: bool = False
    runtime_state: bool = False
    bundle: bool = False
    attach_link: bool = False

    def leftovers(self) -> list[str]:
        """What a container that is not running must not hold, found here."""
        found = [
            name
            for name, present in (
                ("monitor", self.monitor is not None),
                ("processes", bool(self.cgroup_pids)),
                ("runtime state", self.runtime_state),
                ("root filesystem mount", self.rootfs_mounted),
                ("/dev/shm mount", self.shm_mounted),
                ("cgroup", bool(self.cgroup_dirs)),
                ("network namespace", self.netns_mounted),
                ("bundle", self.bundle),
                ("attach link", self.attach_link),
            )
            if present
        ]
        return found


def of(containers: ContainerService, container: Container) -> Footprint:
    paths = containers.paths(container)
    directory = containers.dir(container)
    cgroup_path = containers.cgroup_path(container)
    return Footprint(
        container_id=container.id,
        rootfs=os.path.join(directory, "rootfs", "merged"),
        shm=os.path.join(directory, "shm"),
        cgroup_path=cgroup_path,
        cgroup_dirs=tuple(containers.settings.cgroup_layout.dirs(cgroup_path)),
        netns=containers.network.sandbox_path(container.id),
        runtime=container.runtime,
        runtime_state=os.path.join(containers.runtime_state_dir(container), container.id),
        bundle=paths.bundle,
        attach_link=os.path.join(containers.attach_dir, container.id),
        persist=directory,
    )


def owned(containers: ContainerService) -> dict[str, Footprint]:
    """The footprint of every container the daemon has a record of."""
    return {c.id: of(containers, c) for c in containers.all()}


def mount_points() -> set[str]:
    """Every mount point of the daemon's mount namespace (read once for many checks)."""
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4].replace("\\040", " ") for line in f}


async def observe(
    containers: ContainerService,
    container: Container,
    *,
    mounts: set[str] | None = None,
    ask_runtime: bool = True,
) -> Observed:
    """Look at the host: the monitor (recorded, or found through the bundle's pid file),
    the runtime (`runtime state`, only if the runtime keeps state for the container and
    `ask_runtime`), exit file, mounts, cgroup, network namespace and files."""
    place = of(containers, container)
    paths = containers.paths(container)
    state = container.state
    found: Monitor | None = None
    if state.monitor_pid:
        recorded = Monitor(state.monitor_pid, state.monitor_start)
        if monitor.is_alive(recorded):
            found = recorded
    if found is None:
        found = monitor.find_monitor(paths.monitor_pid_file, container.id)
    runtime = containers.runtimes.get(container.runtime)
    has_state = os.path.isdir(place.runtime_state)
    status: str | None = None
    if runtime is not None and ask_runtime:
        status = await runtime.status(container.id) if has_state else ""
    code, oom = monitor.read_exit(paths)
    if mounts is None:
        mounts = mount_points()
    layout = containers.settings.cgroup_layout
    cgroup_dirs = [d for d in place.cgroup_dirs if os.path.isdir(d)]
    return Observed(
        monitor=found,
        runtime_status=status,
        pid=monitor.read_pid(paths.pid_file) or state.pid,
        exit_code=code,
        oom=oom,
        rootfs_mounted=place.rootfs in mounts,
        shm_mounted=place.shm in mounts,
        cgroup_dirs=cgroup_dirs,
        cgroup_pids=processes.cgroup_pids(layout, place.cgroup_path) if cgroup_dirs else set(),
        frozen=processes.frozen(layout, place.cgroup_path) if cgroup_dirs else None,
        netns_mounted=place.netns in mounts,
        runtime_state=has_state,
        bundle=os.path.isdir(place.bundle),
        attach_link=os.path.islink(place.attach_link),
    )
