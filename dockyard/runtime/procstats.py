"""Kernel counters that live outside cgroups: the host's CPU time and memory, and a
network namespace's interface counters.

Docker's stats put the host's CPU time beside the container's (`system_cpu_usage`,
from the `cpu` line of /proc/stat, in nanoseconds) so that clients can turn two
samples into a percentage, and report each of a container's interfaces from its
network namespace, which /proc/<pid>/net/dev shows for any process in it.
These functions read files: call them off the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.runtime.cgroupstats import NS_PER_SECOND, USER_HZ


@dataclass(frozen=True)
class HostCpu:
    usage: int  # ns of CPU time the host has spent, all CPUs, idle included
    online: int  # CPUs the host has online


@dataclass(frozen=True)
class InterfaceCounters:
    rx_bytes: int = 0
    rx_packets: int = 0
    rx_errors: int = 0
    rx_dropped: int = 0
    tx_bytes: int = 0
    tx_packets: int = 0
    tx_errors: int = 0
    tx_dropped: int = 0


def host_cpu(path: str = "/proc/stat") -> HostCpu:
    with open(path) as f:
        return parse_proc_stat(f.read())


def parse_proc_stat(text: str) -> HostCpu:
    """The first seven fields of the `cpu` line (user nice system idle iowait irq
    softirq; steal and guests are left out, as Docker does) in ns, and the number
    of `cpuN` lines."""
    usage = online = 0
    for line in text.splitlines():
        if not line.startswith("cpu"):
            break  # the cpu lines come first
        fields = line.split()
        if fields[0] == "cpu":
            ticks = sum(int(v) for v in fields[1:8])
            usage = ticks * NS_PER_SECOND // USER_HZ
        elif fields[0][3:].isdigit():
            online += 1
    return HostCpu(usage, online)


def host_memory(path: str = "/proc/meminfo") -> int:
    """The host's memory in bytes (MemTotal); 0 if unknown."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def interfaces(pid: int) -> dict[str, InterfaceCounters]:
    """Every interface of `pid`'s network namespace; {} if the process is gone."""
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            return parse_net_dev(f.read())
    except (FileNotFoundError, ProcessLookupError):
        return {}


def parse_net_dev(text: str) -> dict[str, InterfaceCounters]:
    """/proc/net/dev: two heading lines, then `name: ` and 8 receive and 8 transmit
    columns (bytes packets errs drop fifo frame compressed multicast / bytes packets
    errs drop fifo colls carrier compressed)."""
    found = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        values = rest.split()
        if not sep or len(values) < 16:
            continue
        try:
            n = [int(v) for v in values[:16]]
        except ValueError:
            continue
        found[name.strip()] = InterfaceCounters(n[0], n[1], n[2], n[3], n[8], n[9], n[10], n[11])
    return found
