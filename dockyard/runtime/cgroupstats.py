"""What a cgroup's files say about its CPU, memory, block I/O and process use.

One reader per cgroup version; both return the same typed figures, in the units
and with the conventions Docker's stats use (nanoseconds, bytes, Docker's key
sets for `memory.stat`), so the layer above never asks which version it reads.

cgroup v1 (and hybrid hosts, whose controllers are all v1) — one directory per
controller:

    cpuacct  cpuacct.usage (ns), cpuacct.stat (user/system in USER_HZ ticks),
             cpuacct.usage_percpu
    cpu      cpu.stat: nr_periods, nr_throttled, throttled_time (ns)
    memory   memory.stat, memory.{usage,max_usage,limit}_in_bytes, memory.failcnt
    blkio    the CFQ `blkio.*_recursive` files when the kernel has them and they
             hold entries, else blkio.throttle.io_service_bytes and io_serviced
    pids     pids.current, pids.max ("max" reads as 0: no limit)

cgroup v2 — one directory:

    cpu.stat     usage_usec, user_usec, system_usec, nr_periods, nr_throttled,
                 throttled_usec (converted to ns)
    memory.stat, memory.current, memory.max ("max" reads as 2**64-1),
    memory.events (its `oom` count is Docker's failcnt)
    io.stat      rbytes/wbytes per device, as "read"/"write" entries; v2 has no
                 counterpart of v1's other block I/O lists, so they stay None
    pids.current, pids.max ("max" reads as 2**64-1, as Docker reports it)

A missing file means the controller is not there (zeros); a missing cgroup
directory means the container is gone, and the readers raise `CgroupGone`.
These readers do blocking file I/O: call them off the event loop.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from dockyard.runtime.cgroups import CgroupLayout

USER_HZ = 100  # the unit of cpuacct.stat; a constant on Linux (sysconf(_SC_CLK_TCK))
NS_PER_SECOND = 1_000_000_000
MAX_UINT64 = (1 << 64) - 1

# The memory.stat keys Docker reports, per version; absent ones read as 0.
V1_MEMORY_KEYS = (
    "cache",
    "rss",
    "rss_huge",
    "mapped_file",
    "dirty",
    "writeback",
    "pgpgin",
    "pgpgout",
    "pgfault",
    "pgmajfault",
    "inactive_anon",
    "active_anon",
    "inactive_file",
    "active_file",
    "unevictable",
    "hierarchical_memory_limit",
    "hierarchical_memsw_limit",
    "total_cache",
    "total_rss",
    "total_rss_huge",
    "total_mapped_file",
    "total_dirty",
    "total_writeback",
    "total_pgpgin",
    "total_pgpgout",
    "total_pgfault",
    "total_pgmajfault",
    "total_inactive_anon",
    "total_active_anon",
    "total_inactive_file",
    "total_active_file",
    "total_unevictable",
)
V2_MEMORY_KEYS = (
    "anon",
    "file",
    "kernel_stack",
    "slab",
    "sock",
    "shmem",
    "file_mapped",
    "file_dirty",
    "file_writeback",
    "anon_thp",
    "inactive_anon",
    "active_anon",
    "inactive_file",
    "active_file",
    "unevictable",
    "slab_reclaimable",
    "slab_unreclaimable",
    "pgfault",
    "pgmajfault",
    "workingset_refault",
    "workingset_activate",
    "workingset_nodereclaim",
    "pgrefill",
    "pgscan",
    "pgsteal",
    "pgactivate",
    "pgdeactivate",
    "pglazyfree",
    "pglazyfreed",
    "thp_fault_alloc",
    "thp_collapse_alloc",
)
# v1 block I/O lists: Docker's field, the CFQ file it comes from.
_CFQ_FILES = (
    ("service_bytes", "io_service_bytes_recursive"),
    ("serviced", "io_serviced_recursive"),
    ("queued", "io_queued_recursive"),
    ("service_time", "io_service_time_recursive"),
    ("wait_time", "io_wait_time_recursive"),
    ("merged", "io_merged_recursive"),
    ("time", "time_recursive"),
    ("sectors", "sectors_recursive"),
)
V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "blkio", "pids")


class CgroupGone(FileNotFoundError):
    """The cgroup does not exist (any more): its container is not running."""


@dataclass(frozen=True)
class CpuFigures:
    total: int = 0  # ns of CPU time, user and kernel
    kernel: int = 0  # ns
    user: int = 0  # ns
    percpu: tuple[int, ...] = ()  # ns per CPU; v1 only
    periods: int = 0  # CFS enforcement periods that elapsed
    throttled_periods: int = 0
    throttled_time: int = 0  # ns


@dataclass(frozen=True)
class MemoryFigures:
    usage: int = 0  # bytes
    max_usage: int = 0  # bytes, the high-water mark; v1 only (0: not known)
    limit: int = 0  # bytes, as the cgroup says: a huge number when there is none
    failcnt: int = 0  # v1: times the limit was hit; v2: OOM events
    stats: dict[str, int] = field(default_factory=dict)  # Docker's memory.stat keys


@dataclass(frozen=True)
class BlkioEntry:
    major: int
    minor: int
    op: str  # "Read", "Write", "Sync", "Async", "Discard", "Total" (v1); "read"/"write" (v2)
    value: int


Entries = tuple[BlkioEntry, ...]


@dataclass(frozen=True)
class BlkioFigures:
    """Docker's eight block I/O lists; None where the cgroup version has no such list."""

    service_bytes: Entries | None = None
    serviced: Entries | None = None
    queued: Entries | None = None
    service_time: Entries | None = None
    wait_time: Entries | None = None
    merged: Entries | None = None
    time: Entries | None = None
    sectors: Entries | None = None


@dataclass(frozen=True)
class PidsFigures:
    current: int = 0
    limit: int = 0  # 0: none (v1); v2 reports an unlimited cgroup as 2**64-1


@dataclass(frozen=True)
class CgroupFigures:
    cpu: CpuFigures
    memory: MemoryFigures | None  # None: no memory controller
    blkio: BlkioFigures | None  # None: no block I/O controller
    pids: PidsFigures


def read(layout: CgroupLayout, path: str) -> CgroupFigures:
    """The figures of the cgroup at `path` (relative to the hierarchy roots) on this host."""
    rel = path.lstrip("/")
    if layout.mode == "v2" and layout.v2:
        return read_v2(os.path.join(layout.v2, rel))
    return read_v1(
        {c: os.path.join(root, rel) for c, root in layout.v1.items() if c in V1_CONTROLLERS}
    )


# -- cgroup v1 -------------------------------------------------------------------------


def read_v1(dirs: Mapping[str, str]) -> CgroupFigures:
    """Read a v1 cgroup given its directory in each controller's hierarchy."""
    # The memory (else cpuacct) directory tells whether the cgroup exists at all.
    anchor = dirs.get("memory") or dirs.get("cpuacct")
    if anchor is None or not os.path.isdir(anchor):
        raise CgroupGone(anchor or "no memory or cpuacct hierarchy")
    return CgroupFigures(
        cpu=_v1_cpu(dirs.get("cpuacct"), dirs.get("cpu")),
        memory=_v1_memory(dirs["memory"]) if "memory" in dirs else None,
        blkio=_v1_blkio(dirs["blkio"]) if "blkio" in dirs else None,
        pids=_pids(dirs.get("pids"), unlimited=0),
    )


def _v1_cpu(cpuacct: str | None, cpu: str | None) -> CpuFigures:
    total = user = kernel = 0
    percpu: tuple[int, ...] = ()
    if cpuacct is not None:
        total = _int_file(os.path.join(cpuacct, "cpuacct.usage"))
        ticks = _key_values(os.path.join(cpuacct, "cpuacct.stat"))
        user = ticks.get("user", 0) * NS_PER_SECOND // USER_HZ
        kernel = ticks.get("system", 0) * NS_PER_SECOND // USER_HZ
        text = _text(os.path.join(cpuacct, "cpuacct.usage_percpu"))
        percpu = tuple(_uint(v) for v in text.split()) if text else ()
    throttling = _key_values(os.path.join(cpu, "cpu.stat")) if cpu is not None else {}
    return CpuFigures(
        total=total,
        kernel=kernel,
        user=user,
        percpu=percpu,
        periods=throttling.get("nr_periods", 0),
        throttled_periods=throttling.get("nr_throttled", 0),
        throttled_time=throttling.get("throttled_time", 0),
    )


def _v1_memory(d: str) -> MemoryFigures:
    raw = _key_values(os.path.join(d, "memory.stat"))
    return MemoryFigures(
        usage=_int_file(os.path.join(d, "memory.usage_in_bytes")),
        max_usage=_int_file(os.path.join(d, "memory.max_usage_in_bytes")),
        limit=_int_file(os.path.join(d, "memory.limit_in_bytes")),
        failcnt=_int_file(os.path.join(d, "memory.failcnt")),
        stats={key: raw.get(key, 0) for key in V1_MEMORY_KEYS},
    )


def _v1_blkio(d: str) -> BlkioFigures:
    # Every list is present (empty rather than None) once the controller is: Docker's.
    lists: dict[str, Entries] = {name: () for name, _ in _CFQ_FILES}
    if os.path.exists(os.path.join(d, "blkio.io_serviced_recursive")):
        for name, filename in _CFQ_FILES:
            lists[name] = _blkio_entries(os.path.join(d, "blkio." + filename))
    if not any(lists.values()):
        # No CFQ scheduler on the cgroup's devices (multi-queue kernels): the
        # throttling layer still counts what went through it.
        lists["serviced"] = _blkio_entries(os.path.join(d, "blkio.throttle.io_serviced"))
        lists["service_bytes"] = _blkio_entries(os.path.join(d, "blkio.throttle.io_service_bytes"))
    return BlkioFigures(**lists)


def _blkio_entries(path: str) -> Entries:
    """Lines of `MAJ:MIN [Op] VALUE`; the closing `Total N` line is not an entry."""
    entries = []
    for line in (_text(path) or "").splitlines():
        fields = line.replace(":", " ").split()
        if len(fields) < 3:
            continue
        op, value = (fields[2], fields[3]) if len(fields) >= 4 else ("", fields[2])
        try:
            entries.append(BlkioEntry(int(fields[0]), int(fields[1]), op, _uint(value)))
        except ValueError:
            continue
    return tuple(entries)


# -- cgroup v2 -------------------------------------------------------------------------


def read_v2(d: str) -> CgroupFigures:
    """Read a v2 cgroup given its directory in the unified hierarchy."""
    if not os.path.isdir(d):
        raise CgroupGone(d)
    cpu = _key_values(os.path.join(d, "cpu.stat"))
    raw = _key_values(os.path.join(d, "memory.stat"))
    # Without the memory controller these files are absent and everything reads 0, as
    # in Docker, which reports the figures of v2 cgroups whether or not it is enabled.
    memory = MemoryFigures(
        usage=_int_file(os.path.join(d, "memory.current")),
        limit=_int_file(os.path.join(d, "memory.max"), unlimited=MAX_UINT64),
        failcnt=_key_values(os.path.join(d, "memory.events")).get("oom", 0),
        stats={key: raw.get(key, 0) for key in V2_MEMORY_KEYS},
    )
    return CgroupFigures(
        cpu=CpuFigures(
            total=cpu.get("usage_usec", 0) * 1000,
            kernel=cpu.get("system_usec", 0) * 1000,
            user=cpu.get("user_usec", 0) * 1000,
            periods=cpu.get("nr_periods", 0),
            throttled_periods=cpu.get("nr_throttled", 0),
            throttled_time=cpu.get("throttled_usec", 0) * 1000,
        ),
        memory=memory,
        blkio=BlkioFigures(service_bytes=_io_stat(os.path.join(d, "io.stat"))),
        pids=_pids(d, unlimited=MAX_UINT64),
    )


def _io_stat(path: str) -> Entries | None:
    """`MAJ:MIN rbytes=N wbytes=N rios=N ...` per device -> a read and a write entry each;
    None (Docker's null) when no device has been used."""
    entries: list[BlkioEntry] = []
    for line in (_text(path) or "").splitlines():
        if not line.strip():
            continue
        device, *pairs = line.split()
        major, sep, minor = device.partition(":")
        if not sep:
            continue
        counters = {}
        for pair in pairs:
            key, _, value = pair.partition("=")
            try:
                counters[key] = _uint(value)
            except ValueError:
                continue
        try:
            entries += [
                BlkioEntry(int(major), int(minor), "read", counters.get("rbytes", 0)),
                BlkioEntry(int(major), int(minor), "write", counters.get("wbytes", 0)),
            ]
        except ValueError:
            continue
    return tuple(entries) or None


# -- both ------------------------------------------------------------------------------


def _pids(d: str | None, *, unlimited: int) -> PidsFigures:
    if d is None:
        return PidsFigures()
    return PidsFigures(
        current=_int_file(os.path.join(d, "pids.current")),
        limit=_int_file(os.path.join(d, "pids.max"), unlimited=unlimited),
    )


def _text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError, ProcessLookupError):
        return None


def _uint(text: str) -> int:
    """A counter; negative values (v1 writes -1 for "none" in places) read as 0."""
    return max(int(text), 0)


def _int_file(path: str, *, unlimited: int = 0) -> int:
    """A file of one number, or "max" (which reads as `unlimited`); 0 when missing."""
    text = (_text(path) or "").strip()
    if text == "max":
        return unlimited
    try:
        return _uint(text)
    except ValueError:
        return 0


def _key_values(path: str) -> dict[str, int]:
    """A flat-keyed file (`key value` per line); lines that are not that are skipped."""
    values = {}
    for line in (_text(path) or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                values[parts[0]] = _uint(parts[1])
            except ValueError:
                continue
    return values
