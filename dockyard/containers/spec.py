"""OCI runtime `config.json` for a container, with Docker's defaults.

Everything a container gets by default matches what Docker gives it (see the
runtime digest §6.3): the 14 default capabilities, masked and read-only /proc
and /sys paths, the device cgroup allow-list, the system seccomp profile, a
private mount/pid/ipc/uts/network namespace set. HostConfig options loosen or
tighten that as docker's flags do.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import Any

from dockyard.containers import config as cfg
from dockyard.containers.model import Container
from dockyard.containers.users import User

OCI_VERSION = "1.0.2"
INIT_PATH = "/sbin/docker-init"

MASKED_PATHS = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

DEFAULT_DEVICE_RULES: list[dict[str, Any]] = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},  # pty slaves
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},  # ptmx
    {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
]


@dataclass
class SpecInputs:
    """What the spec needs besides the container record."""

    rootfs: str
    user: User
    hostname: str
    cgroup_path: str
    files: dict[str, str] = field(default_factory=dict)  # container path -> host file (hosts, ...)
    seccomp: dict[str, Any] | None = None
    init_binary: str | None = None
    netns_path: str | None = None
    nofile_limit: int = 1 << 20
    cgroup_namespace: bool = False
    # The user's volumes, binds and tmpfs mounts as OCI entries, parents first.
    mounts: list[dict[str, Any]] = field(default_factory=list)


def _env(container: Container, hostname: str) -> list[str]:
    env = list(container.config.get("Env") or [])
    names = {e.partition("=")[0] for e in env}
    extra = [f"HOSTNAME={hostname}"] if "HOSTNAME" not in names else []
    if container.tty and "TERM" not in names:
        extra.append("TERM=xterm")
    return [*extra, *env]


def _rlimits(container: Container, nofile_limit: int) -> list[dict[str, Any]]:
    limits = {
        "RLIMIT_NOFILE": {"type": "RLIMIT_NOFILE", "soft": nofile_limit, "hard": nofile_limit}
    }
    for ulimit in container.host_config.get("Ulimits") or []:
        kind = cfg.ULIMITS[ulimit["Name"]]
        limits[kind] = {"type": kind, "soft": ulimit["Soft"], "hard": ulimit["Hard"]}
    return list(limits.values())


def _resources(hc: dict[str, Any]) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if hc.get("Privileged"):
        resources["devices"] = [{"allow": True, "access": "rwm"}]
    else:
        resources["devices"] = [*DEFAULT_DEVICE_RULES, *_device_rules(hc)]
    memory: dict[str, Any] = {}
    if hc.get("Memory"):
        memory["limit"] = hc["Memory"]
        swap = hc.get("MemorySwap") or 0
        if swap == 0:
            swap = hc["Memory"] * 2  # docker's default: as much swap as memory
        memory["swap"] = swap
    if hc.get("MemoryReservation"):
        memory["reservation"] = hc["MemoryReservation"]
    if hc.get("MemorySwappiness") is not None:
        memory["swappiness"] = hc["MemorySwappiness"]
    if hc.get("OomKillDisable"):
        memory["disableOOMKiller"] = True
    if memory:
        resources["memory"] = memory
    cpu: dict[str, Any] = {}
    if hc.get("NanoCpus"):
        cpu["period"] = 100_000
        cpu["quota"] = hc["NanoCpus"] * 100_000 // 1_000_000_000
    if hc.get("CpuQuota"):
        cpu["quota"] = hc["CpuQuota"]
    if hc.get("CpuPeriod"):
        cpu["period"] = hc["CpuPeriod"]
    if hc.get("CpuShares"):
        cpu["shares"] = hc["CpuShares"]
    if hc.get("CpusetCpus"):
        cpu["cpus"] = hc["CpusetCpus"]
    if hc.get("CpusetMems"):
        cpu["mems"] = hc["CpusetMems"]
    if cpu:
        resources["cpu"] = cpu
    if hc.get("PidsLimit"):
        resources["pids"] = {"limit": hc["PidsLimit"]}
    if hc.get("BlkioWeight"):
        resources["blockIO"] = {"weight": hc["BlkioWeight"]}
    return resources


def _device(entry: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    host = entry["PathOnHost"]
    st = os.stat(host)
    kind = "c" if stat.S_ISCHR(st.st_mode) else "b"
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    device = {
        "path": entry.get("PathInContainer") or host,
        "type": kind,
        "major": major,
        "minor": minor,
        "fileMode": stat.S_IMODE(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
    }
    rule = {
        "allow": True,
        "type": kind,
        "major": major,
        "minor": minor,
        "access": entry.get("CgroupPermissions") or "rwm",
    }
    return device, rule


def _device_rules(hc: dict[str, Any]) -> list[dict[str, Any]]:
    return [_device(entry)[1] for entry in hc.get("Devices") or []]


def _mounts(container: Container, inputs: SpecInputs) -> list[dict[str, Any]]:
    hc = container.host_config
    privileged = bool(hc.get("Privileged"))
    mounts: list[dict[str, Any]] = [
        {
            "destination": "/proc",
            "type": "proc",
            "source": "proc",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "rw" if privileged else "ro"],
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "rw" if privileged else "ro"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
    ]
    if hc.get("IpcMode") == "host":
        mounts.append(
            {
                "destination": "/dev/shm",
                "type": "bind",
                "source": "/dev/shm",
                "options": ["rbind", "rprivate"],
            }
        )
    else:
        mounts.append(
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": [
                    "nosuid",
                    "noexec",
                    "nodev",
                    "mode=1777",
                    f"size={hc.get('ShmSize') or cfg.DEFAULT_SHM_SIZE}",
                ],
            }
        )
    for destination, source in inputs.files.items():
        mounts.append(
            {
                "destination": destination,
                "type": "bind",
                "source": source,
                "options": ["rbind", "rprivate"],
            }
        )
    if inputs.init_binary:
        mounts.append(
            {
                "destination": INIT_PATH,
                "type": "bind",
                "source": inputs.init_binary,
                "options": ["bind", "ro", "rprivate"],
            }
        )
    # A user mount replaces the default at its destination (and /dev replaces all under it).
    user = {m["destination"] for m in inputs.mounts}
    mounts = [
        m
        for m in mounts
        if m["destination"] not in user
        and not ("/dev" in user and m["destination"].startswith("/dev/"))
    ]
    return mounts + inputs.mounts


def _rootfs_propagation(mounts: list[dict[str, Any]]) -> str | None:
    """Shared or slave bind mounts need the container's root to propagate too (as Docker)."""
    options = {o for m in mounts for o in m.get("options", [])}
    if options & {"shared", "rshared"}:
        return "shared"
    if options & {"slave", "rslave"}:
        return "rslave"
    return None


def generate(container: Container, inputs: SpecInputs) -> dict[str, Any]:
    hc = container.host_config
    privileged = bool(hc.get("Privileged"))
    caps = cfg.capabilities(hc)
    argv = [container.path, *container.args]
    if inputs.init_binary:
        argv = [INIT_PATH, "--", *argv]
    process: dict[str, Any] = {
        "terminal": container.tty,
        "user": {
            "uid": inputs.user.uid,
            "gid": inputs.user.gid,
            "additionalGids": inputs.user.additional_gids or [inputs.user.gid],
        },
        "args": argv,
        "env": _env(container, inputs.hostname),
        "cwd": container.config.get("WorkingDir") or "/",
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "rlimits": _rlimits(container, inputs.nofile_limit),
        "noNewPrivileges": cfg.no_new_privileges(hc),
        "oomScoreAdj": hc.get("OomScoreAdj") or 0,
    }
    namespaces: list[dict[str, Any]] = [{"type": "mount"}]
    if hc.get("PidMode") != "host":
        namespaces.append({"type": "pid"})
    if hc.get("IpcMode") != "host":
        namespaces.append({"type": "ipc"})
    if hc.get("UTSMode") != "host":
        namespaces.append({"type": "uts"})
    if hc.get("NetworkMode") != "host":
        network: dict[str, Any] = {"type": "network"}
        if inputs.netns_path:
            network["path"] = inputs.netns_path
        namespaces.append(network)
    if inputs.cgroup_namespace:
        namespaces.append({"type": "cgroup"})
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "cgroupsPath": inputs.cgroup_path,
        "resources": _resources(hc),
    }
    devices = [_device(entry)[0] for entry in hc.get("Devices") or []]
    if devices:
        linux["devices"] = devices
    if not privileged:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
        if inputs.seccomp is not None:
            linux["seccomp"] = inputs.seccomp
    if hc.get("Sysctls"):
        linux["sysctl"] = dict(hc["Sysctls"])
    propagation = _rootfs_propagation(inputs.mounts)
    if propagation:
        linux["rootfsPropagation"] = propagation
    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": inputs.rootfs, "readonly": bool(hc.get("ReadonlyRootfs"))},
        "mounts": _mounts(container, inputs),
        "linux": linux,
    }
    if hc.get("UTSMode") != "host":
        spec["hostname"] = inputs.hostname
        if container.config.get("Domainname"):
            spec["domainname"] = container.config["Domainname"]
    return spec


def exec_process(
    container: Container,
    *,
    cmd: list[str],
    env: list[str],
    user: User,
    cwd: str,
    tty: bool,
    privileged: bool,
    hostname: str,
    nofile_limit: int,
    console_size: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """The `process` object for `runtime exec --process` (same caps and limits as the container)."""
    caps = list(cfg.ALL_CAPABILITIES) if privileged else cfg.capabilities(container.host_config)
    process: dict[str, Any] = {
        "terminal": tty,
        "user": {
            "uid": user.uid,
            "gid": user.gid,
            "additionalGids": user.additional_gids or [user.gid],
        },
        "args": cmd,
        "env": cfg.merge_env(_env(container, hostname), env, ["TERM=xterm"] if tty else None),
        "cwd": cwd or "/",
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "rlimits": _rlimits(container, nofile_limit),
        "noNewPrivileges": cfg.no_new_privileges(container.host_config),
    }
    if tty and console_size:
        process["consoleSize"] = {"height": console_size[0], "width": console_size[1]}
    return process
