"""Read-only views of the kernel objects the daemon makes, for `system check`.

Mounts (from `/proc/self/mountinfo`), cgroups (directories of every
hierarchy under the daemon's cgroup parent), network devices (rtnetlink) and
the processes in a cgroup. Everything here blocks except `links()`; callers
run the rest on a worker thread. The only changes made here are the repairs'
last steps: killing the processes of a cgroup nothing owns and removing an
empty cgroup.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

from dockyard.network import netns
from dockyard.runtime.cgroups import CgroupLayout


@dataclass(frozen=True)
class MountEntry:
    point: str
    fstype: str
    source: str


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def mounts_below(*roots: str) -> list[MountEntry]:
    """Every mount whose mount point is inside one of `roots` (not a root itself)."""
    prefixes = tuple(root.rstrip("/") + "/" for root in roots)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            if len(fields) < 5:
                continue
            point = _unescape(fields[4])
            if not point.startswith(prefixes):
                continue
            parts = right.split()
            fstype = parts[0] if parts else ""
            source = _unescape(parts[1]) if len(parts) > 1 else ""
            found.append(MountEntry(point, fstype, source))
    return found


def is_mounted(path: str) -> bool:
    return any(m.point == path for m in mounts_below(os.path.dirname(path)))


def cgroup_children(layout: CgroupLayout, parent: str) -> set[str]:
    """Names of the cgroups directly below `parent`, in any hierarchy."""
    names: set[str] = set()
    for directory in layout.dirs(parent):
        try:
            entries = os.scandir(directory)
        except OSError:
            continue
        with entries:
            names.update(e.name for e in entries if e.is_dir(follow_symlinks=False))
    return names


def cgroup_processes(layout: CgroupLayout, path: str) -> set[int]:
    """The processes in a cgroup (and the cgroups below it), from every hierarchy."""
    pids: set[int] = set()
    for directory in layout.dirs(path):
        for top, _dirs, files in os.walk(directory):
            if "cgroup.procs" not in files:
                continue
            try:
                with open(os.path.join(top, "cgroup.procs")) as f:
                    pids.update(int(word) for word in f.read().split())
            except (OSError, ValueError):
                continue
    return pids


def cgroup_exists(layout: CgroupLayout, path: str) -> bool:
    return any(os.path.isdir(d) for d in layout.dirs(path))


def kill_cgroup(layout: CgroupLayout, path: str) -> int:
    """SIGKILL every process in a cgroup; returns how many were signalled."""
    pids = cgroup_processes(layout, path)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(pids)


def remove_cgroup(layout: CgroupLayout, path: str) -> bool:
    """Remove an empty cgroup, deepest directories first, from every hierarchy; whether
    it is gone everywhere."""
    gone = True
    for directory in layout.dirs(path):
        if not os.path.isdir(directory):
            continue
        below = [top for top, _dirs, _files in os.walk(directory)]
        for top in sorted(below, key=len, reverse=True):
            try:
                os.rmdir(top)
            except FileNotFoundError:
                pass
            except OSError:
                gone = False
    return gone


@dataclass(frozen=True)
class Link:
    name: str
    kind: str  # bridge, veth, ...
    index: int


async def links(prefixes: tuple[str, ...]) -> list[Link]:
    """The host's network devices whose name starts with one of `prefixes`."""
    found = []
    async with await netns.netlink() as ipr:
        async for link in await ipr.get_links():
            name = link.get("ifname") or ""
            if name.startswith(prefixes):
                kind = link.get(("linkinfo", "kind")) or ""
                found.append(Link(name, str(kind), int(link["index"])))
    return found


async def delete_link(name: str) -> bool:
    """Delete a network device by name; whether it existed."""
    async with await netns.netlink() as ipr:
        indexes = await ipr.link_lookup(ifname=name)
        if not indexes:
            return False
        await ipr.link("del", index=indexes[0])
        return True
