"""The host's cgroup layout, read once at start-up.

Three layouts exist in the wild: pure v1 (one hierarchy per controller),
hybrid (v1 controllers plus a cgroup2 mount, usually `/sys/fs/cgroup/unified`)
and pure v2 (one unified hierarchy). Runtimes differ in what they accept
(crun 1.8 refuses hybrid hosts whose cgroup2 mount has controllers), so the
daemon probes instead of assuming. We never remount the host's cgroups.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

CGROUP_ROOT = "/sys/fs/cgroup"


@dataclass(frozen=True)
class CgroupLayout:
    mode: str  # "v1", "hybrid" or "v2"
    v1: dict[str, str] = field(default_factory=dict)  # controller -> mount point
    v2: str | None = None  # cgroup2 mount point
    v2_controllers: tuple[str, ...] = ()

    @property
    def version(self) -> str:
        return "2" if self.mode == "v2" else "1"

    def dirs(self, path: str) -> list[str]:
        """Every directory a cgroup path occupies on this host."""
        rel = path.lstrip("/")
        roots = set(self.v1.values())
        if self.v2:
            roots.add(self.v2)
        return [os.path.join(root, rel) for root in sorted(roots)]


def detect(mountinfo: str = "/proc/self/mountinfo") -> CgroupLayout:
    v1: dict[str, str] = {}
    v2: str | None = None
    with open(mountinfo) as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            fstype, _source, super_options = right.split()[:3]
            mount_point = fields[4]
            if fstype == "cgroup2":
                v2 = mount_point
            elif fstype == "cgroup":
                for option in super_options.split(","):
                    if option in ("rw", "ro"):
                        continue
                    # Named hierarchies (name=systemd) hold no controller but runtimes
                    # create cgroups in them too, so they are cleaned up like the rest.
                    v1[option] = mount_point
    controllers: tuple[str, ...] = ()
    if v2:
        try:
            with open(os.path.join(v2, "cgroup.controllers")) as f:
                controllers = tuple(f.read().split())
        except OSError:
            pass
    if v1 and v2:
        mode = "hybrid"
    elif v2:
        mode = "v2"
    else:
        mode = "v1"
    return CgroupLayout(mode, v1, v2, controllers)


def blkio_weight_supported(layout: CgroupLayout) -> bool:
    """Whether containers can be given a block I/O weight, as Docker's sysinfo decides it:
    on v2 the io controller, on v1 a weight file (CFQ or BFQ) in the blkio hierarchy."""
    if layout.mode == "v2":
        return "io" in layout.v2_controllers
    root = layout.v1.get("blkio")
    return bool(root) and any(
        os.path.exists(os.path.join(str(root), name))
        for name in ("blkio.weight", "blkio.bfq.weight")
    )


def available_mems(layout: CgroupLayout) -> str:
    """The memory nodes a cpuset may use on this host ("0" when it cannot be read)."""
    candidates = [os.path.join(CGROUP_ROOT, "cpuset", "cpuset.mems")]
    if layout.v2:
        candidates.append(os.path.join(layout.v2, "cpuset.mems.effective"))
    candidates.append("/sys/devices/system/node/online")
    for path in candidates:
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text:
            return text
    return "0"


def remove_empty(layout: CgroupLayout, path: str) -> None:
    """Remove a cgroup (and nothing else) from every hierarchy, if it is empty."""
    for d in layout.dirs(path):
        try:
            os.rmdir(d)
        except OSError:
            pass
