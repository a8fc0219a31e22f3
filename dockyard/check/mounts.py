"""`system check` of the mounts under the daemon's data and exec roots, and who owns each.

    <data-root>/containers/<id>/rootfs/merged   a running container's root filesystem
    <data-root>/containers/<id>/shm             a running `shareable` container's /dev/shm
    <exec-root>/netns/<id>                      a running container's network namespace
    <exec-root>/subpaths/<id>/...               volume subpaths pinned while <id> starts
    <data-root>/volumes/<name>/_data            a local volume with device options, mounted
                                                while a container holds a Mount of it
    <data-root>/plugins/<id>/...                an enabled managed plugin's mounts
    <exec-root>/plugins/<short id>/...          (and its run directory's)
    <data-root>/build/...                       the builder's (not judged here)

Anything else under those roots, or one of these whose owner does not hold it
any more, is stray. The repair is a lazy unmount (the namespace file is also
removed): unmounting loses no data, and a mount still in use by a process
stays reachable to it until it lets go.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

from dockyard import mount
from dockyard.check import kernel
from dockyard.check.owners import Owners, settle, snapshot
from dockyard.check.report import WARNING, Finding, Report
from dockyard.network import netns
from dockyard.volumes.local import NAME as LOCAL
from dockyard.volumes.local import LocalDriver

if TYPE_CHECKING:
    from dockyard.engine import Engine

AREA = "mounts"


def _roots(engine: Engine) -> dict[str, str]:
    return {
        "container": engine.containers.settings.data_root,
        "netns": engine.network.sandbox_dir,
        "subpath": engine.volumes.subpath_root,
        "volume": local_volume_root(engine),
        "plugin": engine.plugins.managed.settings.data_root,
        "plugin-run": engine.plugins.managed.settings.exec_root,
        "build": os.path.join(engine.config.data_root, "build"),
    }


def local_volume_root(engine: Engine) -> str:
    driver = engine.volumes.drivers[LOCAL]
    assert isinstance(driver, LocalDriver)
    return driver.root


def _classify(roots: dict[str, str], point: str) -> tuple[str, str]:
    """(kind, owner) of a mount point: the owner is a container ID, a volume name or a
    plugin ID; kind "other" for a mount nothing here makes."""
    for kind, root in roots.items():
        if not root:
            continue
        prefix = root.rstrip("/") + "/"
        if not point.startswith(prefix):
            continue
        parts = point[len(prefix) :].split("/")
        owner = parts[0]
        if kind == "container":
            return ("shm" if parts[1:] == ["shm"] else "rootfs"), owner
        return kind, owner
    return "other", ""


def _owned(engine: Engine, owners: Owners, kind: str, owner: str) -> bool:
    if kind in ("rootfs", "shm"):
        return owner in owners.running or owner in owners.busy
    if kind == "netns":
        return owner in owners.running or owner in owners.busy or owner in engine.network.sandboxes
    if kind == "subpath":
        return owner in owners.busy
    if kind == "volume":
        return bool(_listdir(os.path.join(local_volume_root(engine), owner, "mounts")))
    if kind == "plugin":
        return owners.plugin_enabled(owner)
    if kind == "plugin-run":
        return any(owners.plugin_enabled(p) for p in owners.plugins if p.startswith(owner))
    return kind == "build"


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


async def check(engine: Engine, report: Report) -> None:
    roots = _roots(engine)
    data_root, exec_root = engine.config.data_root, engine.config.exec_root
    entries = await asyncio.to_thread(kernel.mounts_below, data_root, exec_root)
    report.count("mounts", len(entries))
    owners = snapshot(engine)
    stray = [e for e in entries if not _owned(engine, owners, *_classify(roots, e.point))]
    if not stray:
        return
    owners = await settle(engine)
    now = {e.point for e in await asyncio.to_thread(kernel.mounts_below, data_root, exec_root)}
    for entry in stray:
        kind, owner = _classify(roots, entry.point)
        if entry.point in now and not _owned(engine, owners, kind, owner):
            report.add([_stray(engine, roots, entry, kind, owner)])


_WHAT = {
    "rootfs": "the root filesystem of container {owner} (which does not run)",
    "shm": "the /dev/shm of container {owner} (which does not run)",
    "netns": "the network namespace of {owner}, which has no sandbox",
    "subpath": "a volume subpath pinned for container {owner}, which is not starting",
    "volume": "the data of local volume {owner}, which no container has mounted",
    "plugin": "a mount of managed plugin {owner}, which is not enabled",
    "plugin-run": "a mount of managed plugin {owner}, which is not enabled",
    "other": "a mount the daemon does not make",
}


def _stray(
    engine: Engine, roots: dict[str, str], entry: kernel.MountEntry, kind: str, owner: str
) -> Finding:
    async def fix() -> str:
        if _owned(engine, snapshot(engine), kind, owner):
            return "its owner holds it again: left alone"
        if kind == "netns":
            await asyncio.to_thread(netns.destroy, entry.point)
            return "unmounted and removed it"
        await asyncio.to_thread(mount.unmount, entry.point)
        return "unmounted it"

    short = (
        owner[:12]
        if kind in ("rootfs", "shm", "netns", "subpath", "plugin", "plugin-run")
        else owner
    )
    return Finding(
        AREA,
        WARNING,
        f"mount {entry.point} ({entry.fstype})",
        _WHAT[kind].format(owner=short),
        repair="unmount it" + (" and remove the file" if kind == "netns" else ""),
        fix=fix,
    )
