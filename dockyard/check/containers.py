"""`system check` of containers: records against their files, the runtime and the cgroups.

For each container record: its directory is there; its image's layers are
unpacked; its runtime is configured. A running one has a live monitor and a
runtime that knows it; a stopped one has no runtime state, bundle, attach
entry or cgroup left. Then the other way round: container directories,
bundles, runtime states, attach entries and cgroups under the daemon's
cgroup parent that no record (container or managed plugin) owns.

An intent in the operation journal (`containers/journal.py`) older than the
daemon process is an operation a crash cut short that restore did not settle
(one whose rest restore left to run in the background, a stop waiting out its
grace period say, is not: it is being settled): reported, with what to do; it
is not dropped, since it says what to undo.

Repairs never touch a container's data: a missing directory is made again
(empty) so that the container can start; leftovers are removed; a container
directory without a record is moved to `lost+found` unless it holds no
changes. A running container that the runtime has lost can be neither
stopped nor removed: its processes are killed through its cgroup, its
monitor records the exit, and the daemon settles it as it does any exit.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dockyard import mount
from dockyard.check import kernel
from dockyard.check.owners import Owners, settle, snapshot
from dockyard.check.report import ERROR, WARNING, Finding, Report
from dockyard.check.store import old_enough
from dockyard.containers.model import Container
from dockyard.errors import DockyardError, NotFound
from dockyard.runtime import monitor
from dockyard.runtime.monitor import Monitor

if TYPE_CHECKING:
    from dockyard.engine import Engine

AREA = "containers"
SETTLE_WAIT = 10.0  # seconds a repaired container has to be recorded as exited
PLUGIN_PREFIX = "plugin-"  # + short ID: a managed plugin's cgroup (plugins/managed.py)
PROBE_PREFIX = "dockyard-probe-"  # the runtime probe's throw-away containers (runtime/oci.py)


def shown(container: Container) -> str:
    return f"container {container.name} ({container.short_id})"


def lost_and_found(engine: Engine) -> str:
    return os.path.join(engine.config.data_root, "check", "lost+found")


async def check(engine: Engine, report: Report) -> None:
    owners = snapshot(engine)
    report.count("containers", len(owners.containers))
    for container in owners.containers.values():
        if container.id in owners.busy:
            continue
        report.add(await _record(engine, container, owners))
    report.add(await _unowned(engine, owners))
    report.add(_unsettled_intents(engine, owners))


# -- the journal ---------------------------------------------------------------------


def daemon_started() -> float:
    """When this daemon process started, in Unix seconds (from /proc: boot time plus the
    process's start in clock ticks)."""
    with open("/proc/self/stat") as f:
        stat = f.read()
    ticks = int(stat[stat.rfind(")") + 2 :].split()[19])  # field 22, starttime
    with open("/proc/stat") as f:
        boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def _unsettled_intents(engine: Engine, owners: Owners) -> list[Finding]:
    """Intents written before this daemon started: restore settles every one it finds, so
    one still there is an operation whose outcome nobody recorded."""
    started = daemon_started()
    findings = []
    for intent in engine.containers.journal.pending():
        if intent.started >= started - 1:  # in flight now (the clock's tick is coarse)
            continue
        if intent.id in engine.containers.finishing:  # restore found it; its rest runs now
            continue
        container = owners.containers.get(intent.container_id)
        subject = shown(container) if container else f"container {intent.container_id[:12]}"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(intent.started))
        findings.append(
            Finding(
                AREA,
                WARNING,
                subject,
                f"a {intent.action} begun at {when}, before the daemon started, was never "
                "settled: what it changed may be half made. Restart the daemon to have it "
                "settled again (its log says why when it cannot)"
                + ("" if container else "; no container record has this ID"),
            )
        )
    return findings


# -- records -----------------------------------------------------------------------


async def _record(engine: Engine, container: Container, owners: Owners) -> list[Finding]:
    service = engine.containers
    findings = []
    directory = service.dir(container)
    if not await asyncio.to_thread(os.path.isdir, directory):
        findings.append(_missing_dir(engine, container, directory))
    chain = container.chain_id
    if chain and not engine.layers.has(chain):
        findings.append(
            Finding(
                AREA,
                ERROR,
                shown(container),
                f"the layers of its image are not unpacked ({chain}): it cannot start; "
                "load or pull its image again, or remove the container",
            )
        )
    runtime = engine.runtimes.get(container.runtime)
    if runtime is None:
        findings.append(
            Finding(
                AREA,
                ERROR,
                shown(container),
                f"its runtime {container.runtime!r} is not available on this daemon (not "
                "configured, or its binary is missing or does not work here; see `info`)",
            )
        )
        return findings
    if container.id in owners.running:
        findings += await _running(engine, container)
    else:
        findings += await _stopped(engine, container)
    return findings


def _missing_dir(engine: Engine, container: Container, directory: str) -> Finding:
    service = engine.containers

    async def fix() -> str:
        if container.id not in snapshot(engine).containers or os.path.isdir(directory):
            return "nothing to do any more"

        def make() -> None:
            os.makedirs(directory)
            service.rootfs.create(os.path.join(directory, "rootfs"))

        await asyncio.to_thread(make)
        return "made an empty directory: it can start again (its earlier changes are lost)"

    return Finding(
        AREA,
        ERROR,
        shown(container),
        f"its directory {directory} (writable layer and log) is gone: it cannot start",
        repair="make an empty one so that it can start again",
        fix=fix,
    )


async def _running(engine: Engine, container: Container) -> list[Finding]:
    state = container.state
    runtime = engine.runtimes[container.runtime]
    mon = Monitor(state.monitor_pid, state.monitor_start)
    if not state.monitor_pid or not monitor.is_alive(mon):
        owners = await settle(engine)
        if container.id not in owners.running or container.id in owners.busy:
            return []  # settled meanwhile
        return [
            Finding(
                AREA,
                ERROR,
                shown(container),
                f"it is recorded as {state.status}, but its monitor (pid {state.monitor_pid}) "
                "has exited; the daemon settles such a container when it starts: restart "
                "the daemon",
            )
        ]
    try:
        runtime_state = await runtime.state(container.id)
    except NotFound:
        runtime_state = None
    if runtime_state is not None:
        return []
    owners = await settle(engine)
    if container.id not in owners.running or container.id in owners.busy:
        return []
    try:
        await runtime.state(container.id)
        return []
    except NotFound:
        pass
    return [_lost_by_runtime(engine, container)]


def _lost_by_runtime(engine: Engine, container: Container) -> Finding:
    service = engine.containers
    layout = service.settings.cgroup_layout
    cgroup = service.cgroup_path(container)

    async def fix() -> str:
        owners = snapshot(engine)
        if container.id not in owners.running or container.id in owners.busy:
            return "it is no longer running: nothing to do"
        killed = await asyncio.to_thread(kernel.kill_cgroup, layout, cgroup)
        if not killed and container.state.pid:
            try:
                os.kill(container.state.pid, 9)
                killed = 1
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + SETTLE_WAIT
        while container.state.running and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if container.state.running:
            raise DockyardError(
                f"killed {killed} process(es), but its exit was not recorded within "
                f"{SETTLE_WAIT:g}s"
            )
        return (
            f"killed its {killed} process(es); it is recorded as exited "
            f"({container.state.exit_code}) and can be started or removed again"
        )

    return Finding(
        AREA,
        ERROR,
        shown(container),
        f"it runs (pid {container.state.pid}), but runtime {container.runtime} has no state "
        "for it: stop, kill and rm cannot reach it",
        repair="kill its processes through its cgroup; the daemon then records its exit",
        fix=fix,
    )


async def _stopped(engine: Engine, container: Container) -> list[Finding]:
    service = engine.containers
    runtime = engine.runtimes[container.runtime]
    layout = service.settings.cgroup_layout
    findings = []
    if os.path.exists(os.path.join(runtime.state_dir, container.id)):
        findings.append(await _runtime_leftover(engine, container))
    cgroup = service.cgroup_path(container)
    if await asyncio.to_thread(kernel.cgroup_exists, layout, cgroup):
        findings.append(await _cgroup_leftover(engine, container, cgroup))
    bundle = service.paths(container).bundle
    if os.path.isdir(bundle):
        findings.append(_leftover_path(engine, container, bundle, "its runtime bundle"))
    attach = os.path.join(engine.monitors[container.runtime].socket_dir, container.id)
    if os.path.lexists(attach):
        findings.append(_leftover_path(engine, container, attach, "its attach socket entry"))
    if not findings:
        return []
    owners = await settle(engine)
    return findings if owners.stopped(container.id) else []


async def _runtime_leftover(engine: Engine, container: Container) -> Finding:
    runtime = engine.runtimes[container.runtime]
    try:
        status = str((await runtime.state(container.id)).get("status", ""))
    except NotFound:
        status = "unknown"
    alive = status in ("running", "paused", "created", "creating")

    async def fix() -> str:
        if not snapshot(engine).stopped(container.id):
            return "it is in use again: left alone"
        if alive:
            try:
                await runtime.kill(container.id, 9, all=True)
            except DockyardError:
                pass
            await asyncio.sleep(0.2)
        await runtime.delete(container.id)
        if os.path.exists(os.path.join(runtime.state_dir, container.id)):
            raise DockyardError(f"{runtime.name} did not delete it")
        return "killed what ran and deleted its runtime state" if alive else "deleted it"

    if alive:
        return Finding(
            AREA,
            ERROR,
            shown(container),
            f"it is recorded as {container.state.status}, but runtime {runtime.name} has it "
            f"{status}: its processes run outside the daemon's control (no network, no log)",
            repair="kill it through the runtime and delete its runtime state",
            fix=fix,
        )
    return Finding(
        AREA,
        WARNING,
        shown(container),
        f"runtime {runtime.name} still keeps its state ({status}) though it is "
        f"{container.state.status}",
        repair="delete the runtime state",
        fix=fix,
    )


async def _cgroup_leftover(engine: Engine, container: Container, cgroup: str) -> Finding:
    layout = engine.containers.settings.cgroup_layout
    pids = await asyncio.to_thread(kernel.cgroup_processes, layout, cgroup)

    async def fix() -> str:
        if not snapshot(engine).stopped(container.id):
            return "it is in use again: left alone"
        killed = 0
        for _ in range(50):
            killed += await asyncio.to_thread(kernel.kill_cgroup, layout, cgroup)
            if await asyncio.to_thread(kernel.remove_cgroup, layout, cgroup):
                break
            await asyncio.sleep(0.1)
        else:
            raise DockyardError(f"the cgroup {cgroup} cannot be removed")
        return f"killed {killed} process(es) and removed it" if killed else "removed it"

    if pids:
        shown_pids = ", ".join(str(p) for p in sorted(pids)[:10])
        return Finding(
            AREA,
            ERROR,
            shown(container),
            f"processes still run in its cgroup {cgroup} though it is "
            f"{container.state.status} (pids {shown_pids})",
            repair="kill them and remove the cgroup",
            fix=fix,
        )
    return Finding(
        AREA,
        WARNING,
        shown(container),
        f"its cgroup {cgroup} is left though it is {container.state.status}",
        repair="remove it",
        fix=fix,
    )


def _leftover_path(engine: Engine, container: Container, path: str, what: str) -> Finding:
    async def fix() -> str:
        if not snapshot(engine).stopped(container.id):
            return "it is in use again: left alone"
        await asyncio.to_thread(_remove_path, path)
        return "removed it"

    return Finding(
        AREA,
        WARNING,
        shown(container),
        f"{what} {path} is left though it is {container.state.status}",
        repair="remove it",
        fix=fix,
    )


def _remove_path(path: str) -> None:
    if os.path.islink(path) or not os.path.isdir(path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    else:
        shutil.rmtree(path, ignore_errors=True)


# -- files no record owns ----------------------------------------------------------


def _is_id(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


async def _unowned(engine: Engine, owners: Owners) -> list[Finding]:
    service = engine.containers
    settings = service.settings
    plugin_ids = set(owners.plugins)

    def listing() -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for kind, root in (("dir", settings.data_root), ("bundle", settings.exec_root)):
            found[kind] = [
                os.path.join(root, name)
                for name in _listdir(root)
                if _is_id(name) and old_enough(os.path.join(root, name))
            ]
        found["state"] = [
            os.path.join(runtime.state_dir, name)
            for runtime in engine.runtimes.values()
            for name in _listdir(runtime.state_dir)
            if _is_id(name) and name not in plugin_ids
        ]
        found["attach"] = [
            os.path.join(socket_dir, name)
            for socket_dir in {m.socket_dir for m in engine.monitors.values()}
            for name in _listdir(socket_dir)
            if name not in plugin_ids
        ]
        parent = "/" + settings.cgroup_parent.strip("/")
        found["cgroup"] = [
            f"{parent}/{name}"
            for name in sorted(kernel.cgroup_children(settings.cgroup_layout, parent))
            if not name.startswith(PROBE_PREFIX)  # the host probe's, gone when it ends
        ]
        return found

    found = await asyncio.to_thread(listing)
    if not any(found.values()):
        return []

    def candidates(now: Owners) -> dict[str, list[str]]:
        return {
            kind: [p for p in paths if _unowned_name(now, os.path.basename(p))]
            for kind, paths in found.items()
        }

    first = candidates(owners)
    if not any(first.values()):
        return []
    later = candidates(await settle(engine))
    findings = []
    for kind, paths in first.items():
        for path in paths:
            if path in later[kind]:
                findings.append(await _unowned_finding(engine, kind, path))
    return findings


def _unowned_name(now: Owners, name: str) -> bool:
    """Whether no record owns a container ID (or a managed plugin's cgroup name)."""
    if name.startswith(PLUGIN_PREFIX):  # a managed plugin's cgroup, while it runs
        short = name.removeprefix(PLUGIN_PREFIX)
        return not any(now.plugin_enabled(p) for p in now.plugins if p.startswith(short))
    return now.unowned(name)


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


async def _unowned_finding(engine: Engine, kind: str, path: str) -> Finding:
    cid = os.path.basename(path)

    def still_unowned() -> bool:
        return _unowned_name(snapshot(engine), cid)

    if kind == "dir":
        return _unowned_dir(engine, path, still_unowned)
    if kind == "state":
        runtime = next(r for r in engine.runtimes.values() if path.startswith(r.state_dir + "/"))
        try:
            status = str((await runtime.state(cid)).get("status", ""))
        except NotFound:
            status = "unknown"
        alive = status in ("running", "paused", "created", "creating")

        async def delete_state() -> str:
            if not still_unowned():
                return "a container owns it now: left alone"
            if alive:
                try:
                    await runtime.kill(cid, 9, all=True)
                except DockyardError:
                    pass
                await asyncio.sleep(0.2)
            await runtime.delete(cid)
            return "killed what ran and deleted it" if alive else "deleted it"

        return Finding(
            AREA,
            ERROR if alive else WARNING,
            f"runtime state {path}",
            f"runtime {runtime.name} has a container ({status}) that no record owns"
            + (": its processes run outside the daemon's control" if alive else ""),
            repair="kill it and delete its state" if alive else "delete it",
            fix=delete_state,
        )
    if kind == "cgroup":
        layout = engine.containers.settings.cgroup_layout
        pids = await asyncio.to_thread(kernel.cgroup_processes, layout, path)
        if pids:
            shown_pids = ", ".join(str(p) for p in sorted(pids)[:10])
            return Finding(
                AREA,
                ERROR,
                f"cgroup {path}",
                f"processes run in a cgroup under the daemon's cgroup parent that no "
                f"container owns (pids {shown_pids}): find out what they are before "
                "killing them",
            )

        async def remove_cgroup() -> str:
            if not still_unowned():
                return "a container owns it now: left alone"
            if not await asyncio.to_thread(kernel.remove_cgroup, layout, path):
                raise DockyardError("it is not empty any more")
            return "removed it"

        return Finding(
            AREA,
            WARNING,
            f"cgroup {path}",
            "an empty cgroup under the daemon's cgroup parent that no container owns",
            repair="remove it",
            fix=remove_cgroup,
        )
    what = {"bundle": "a runtime bundle", "attach": "an attach socket entry"}[kind]

    async def remove() -> str:
        if not still_unowned():
            return "a container owns it now: left alone"
        await asyncio.to_thread(_remove_path, path)
        return "removed it"

    return Finding(
        AREA, WARNING, path, f"{what} that no container owns", repair="remove it", fix=remove
    )


def _unowned_dir(engine: Engine, path: str, still_unowned: Callable[[], bool]) -> Finding:
    upper = os.path.join(path, "rootfs", "upper")
    has_changes = bool(_listdir(upper)) or os.path.exists(os.path.join(path, "container.log"))
    keep = os.path.join(lost_and_found(engine), "containers", os.path.basename(path))

    async def fix() -> str:
        if not still_unowned():
            return "a container owns it now: left alone"

        def move() -> str:
            for entry in reversed(kernel.mounts_below(path)):
                mount.unmount(entry.point)
            if not has_changes:
                shutil.rmtree(path, ignore_errors=True)
                return "removed it (it held no changes)"
            os.makedirs(os.path.dirname(keep), mode=0o700, exist_ok=True)
            os.rename(path, keep)
            return f"moved it to {keep}"

        return await asyncio.to_thread(move)

    return Finding(
        AREA,
        WARNING,
        f"directory {path}",
        "a container directory that no container record owns"
        + (" (it holds a writable layer or a log)" if has_changes else ""),
        repair=f"move it to {keep}" if has_changes else "remove it (it holds no changes)",
        fix=fix,
    )
