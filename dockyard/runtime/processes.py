"""A container's processes reached without its runtime: by pid, and through its cgroup.

Used when the runtime cannot be asked (its binary is gone) and to clear out
processes a crash left in the cgroup of a container that is not running. A pid
is only signalled through a pidfd opened first and then checked to be the
process meant (its start time, or membership of the container's cgroup), so a
pid the kernel has reused for another process is never hit.
"""

from __future__ import annotations

import contextlib
import os
import signal

from dockyard.runtime.cgroups import CgroupLayout
from dockyard.runtime.monitor import process_start_time


def in_cgroup(pid: int, cgroup_path: str) -> bool:
    """Whether `pid` is in the cgroup `cgroup_path` (in any hierarchy)."""
    wanted = "/" + cgroup_path.strip("/")
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return False
    return any(line.split(":", 2)[-1] == wanted for line in lines)


def signal_process(
    pid: int, number: int, *, start_time: int = 0, cgroup_path: str | None = None
) -> bool:
    """Send `number` to `pid` if it is still the process meant: the one started at
    `start_time` (clock ticks after boot), or one in `cgroup_path`. True if sent."""
    if pid <= 0:
        return False
    try:
        pidfd = os.pidfd_open(pid)
    except (ProcessLookupError, OSError):
        return False
    try:
        # Checked after the pidfd is open: from here on it names this process or none.
        if start_time and process_start_time(pid) != start_time:
            return False
        if not start_time and (cgroup_path is None or not in_cgroup(pid, cgroup_path)):
            return False
        try:
            signal.pidfd_send_signal(pidfd, number)
        except ProcessLookupError:
            return False
        return True
    finally:
        os.close(pidfd)


def cgroup_pids(layout: CgroupLayout, cgroup_path: str) -> set[int]:
    """Every process in the cgroup, from each hierarchy it is in."""
    pids: set[int] = set()
    for directory in layout.dirs(cgroup_path):
        try:
            with open(os.path.join(directory, "cgroup.procs")) as f:
                pids.update(int(p) for p in f.read().split())
        except (OSError, ValueError):
            continue
    return pids


def frozen(layout: CgroupLayout, cgroup_path: str) -> bool | None:
    """Whether the cgroup's freezer holds it (paused); None if there is no freezer."""
    rel = cgroup_path.strip("/")
    if layout.mode == "v2" and layout.v2:
        try:
            with open(os.path.join(layout.v2, rel, "cgroup.freeze")) as f:
                return f.read().strip() == "1"
        except OSError:
            return None
    root = layout.v1.get("freezer")
    if not root:
        return None
    try:
        with open(os.path.join(root, rel, "freezer.state")) as f:
            return f.read().strip() != "THAWED"
    except OSError:
        return None


def thaw(layout: CgroupLayout, cgroup_path: str) -> None:
    """Let a frozen (paused) cgroup run again, so that its processes can take a signal."""
    rel = cgroup_path.strip("/")
    with contextlib.suppress(OSError):
        if layout.mode == "v2" and layout.v2:
            with open(os.path.join(layout.v2, rel, "cgroup.freeze"), "w") as f:
                f.write("0")
        elif layout.v1.get("freezer"):
            with open(os.path.join(layout.v1["freezer"], rel, "freezer.state"), "w") as f:
                f.write("THAWED")


def kill_cgroup(layout: CgroupLayout, cgroup_path: str, number: int = signal.SIGKILL) -> int:
    """Signal every process in the cgroup (thawed first); returns how many were signalled."""
    pids = cgroup_pids(layout, cgroup_path)
    if not pids:
        return 0
    thaw(layout, cgroup_path)
    return sum(signal_process(pid, number, cgroup_path=cgroup_path) for pid in pids)
