"""OCI runtime `config.json` for a container, with Docker's defaults.

Everything a container gets by default matches what Docker gives it (see the
runtime digest §6.3): the 14 default capabilities, masked and read-only /proc
and /sys paths, the device cgroup allow-list, the seccomp policy, a
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
from dockyard.containers.schema import DeviceMapping, HostConfig
from dockyard.containers.users import User
from dockyard.errors import InvalidArgument

OCI_VERSION = "1.0.2"
INIT_PATH = "/sbin/docker-init"
CGROUP_MOUNT = "/sys/fs/cgroup"

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
    # The host has cgroup v1 controllers: the runtime builds /sys/fs/cgroup as a tmpfs
    # holding one mount per controller, and runc leaves that tmpfs writable.
    cgroup_v1: bool = False
    # The user's volumes, binds and tmpfs mounts as OCI entries, parents first.
    mounts: list[dict[str, Any]] = field(default_factory=list)
    # Namespaces joined rather than made (`--pid container:x`, `--ipc container:x`): type -> path.
    namespace_paths: dict[str, str] = field(default_factory=dict)
    # Legacy links' variables; the container's own environment overrides them (Docker's order).
    link_env: list[str] = field(default_factory=list)


def _env(container: Container, hostname: str, link_env: list[str] | None = None) -> list[str]:
    env = list(container.config.env or [])
    env = cfg.process_env(cfg.merge_env(link_env, env) if link_env else env)
    names = {e.partition("=")[0] for e in env}
    extra = [f"HOSTNAME={hostname}"] if "HOSTNAME" not in names else []
    if container.tty and "TERM" not in names:
        extra.append("TERM=xterm")
    return [*extra, *env]


def _rlimits(container: Container, nofile_limit: int) -> list[dict[str, Any]]:
    limits = {
        "RLIMIT_NOFILE": {"type": "RLIMIT_NOFILE", "soft": nofile_limit, "hard": nofile_limit}
    }
    for ulimit in container.host_config.ulimits or []:
        kind = cfg.ULIMITS[ulimit.name]
        limits[kind] = {"type": kind, "soft": ulimit.soft, "hard": ulimit.hard}
    return list(limits.values())


def resources(hc: HostConfig) -> dict[str, Any]:
    """`linux.resources` of the spec: devices, memory, cpu, pids and block I/O limits."""
    result: dict[str, Any] = {}
    if hc.privileged:
        result["devices"] = [{"allow": True, "access": "rwm"}]
    else:
        result["devices"] = [*DEFAULT_DEVICE_RULES, *_device_rules(hc)]
    memory: dict[str, Any] = {}
    if hc.memory:
        memory["limit"] = hc.memory
        # Docker's default: as much swap as memory; -1 unlimited swap.
        memory["swap"] = hc.memory_swap or hc.memory * 2
    if hc.memory_reservation:
        memory["reservation"] = hc.memory_reservation
    if hc.memory_swappiness is not None:
        memory["swappiness"] = hc.memory_swappiness
    if hc.oom_kill_disable:
        memory["disableOOMKiller"] = True
    if memory:
        result["memory"] = memory
    cpu: dict[str, Any] = {}
    if hc.nano_cpus:
        cpu["period"] = 100_000
        cpu["quota"] = hc.nano_cpus * 100_000 // 1_000_000_000
    if hc.cpu_quota:
        cpu["quota"] = hc.cpu_quota
    if hc.cpu_period:
        cpu["period"] = hc.cpu_period
    if hc.cpu_shares:
        cpu["shares"] = hc.cpu_shares
    if hc.cpu_realtime_period:
        cpu["realtimePeriod"] = hc.cpu_realtime_period
    if hc.cpu_realtime_runtime:
        cpu["realtimeRuntime"] = hc.cpu_realtime_runtime
    if hc.cpuset_cpus:
        cpu["cpus"] = hc.cpuset_cpus
    if hc.cpuset_mems:
        cpu["mems"] = hc.cpuset_mems
    if cpu:
        result["cpu"] = cpu
    if hc.pids_limit:
        result["pids"] = {"limit": hc.pids_limit}
    block_io = _block_io(hc)
    if block_io:
        result["blockIO"] = block_io
    return result


def _block_io(hc: HostConfig) -> dict[str, Any]:
    block_io: dict[str, Any] = {}
    if hc.blkio_weight:
        block_io["weight"] = hc.blkio_weight
    weights = [{**_major_minor(d.path), "weight": d.weight} for d in hc.blkio_weight_device or []]
    if weights:
        block_io["weightDevice"] = weights
    for key, devices in (
        ("throttleReadBpsDevice", hc.blkio_device_read_bps),
        ("throttleWriteBpsDevice", hc.blkio_device_write_bps),
        ("throttleReadIOPSDevice", hc.blkio_device_read_i_ops),
        ("throttleWriteIOPSDevice", hc.blkio_device_write_i_ops),
    ):
        if devices:
            block_io[key] = [{**_major_minor(d.path), "rate": d.rate} for d in devices]
    return block_io


def _major_minor(path: str) -> dict[str, int]:
    try:
        st = os.stat(path)
    except OSError as e:
        raise InvalidArgument(f"error getting device info for {path}: {e.strerror}") from None
    if not stat.S_ISBLK(st.st_mode):
        raise InvalidArgument(f"{path} is not a block device")
    return {"major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev)}


def _device(entry: DeviceMapping) -> tuple[dict[str, Any], dict[str, Any]]:
    host = entry.path_on_host
    st = os.stat(host)
    kind = "c" if stat.S_ISCHR(st.st_mode) else "b"
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    device = {
        "path": entry.path_in_container or host,
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
        "access": entry.cgroup_permissions or "rwm",
    }
    return device, rule


def _device_rules(hc: HostConfig) -> list[dict[str, Any]]:
    return [_device(entry)[1] for entry in hc.devices or []]


def _mounts(container: Container, inputs: SpecInputs) -> list[dict[str, Any]]:
    hc = container.host_config
    privileged = hc.privileged
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
            "destination": CGROUP_MOUNT,
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
    if hc.ipc_mode == "host":
        mounts.append(
            {
                "destination": "/dev/shm",
                "type": "bind",
                "source": "/dev/shm",
                "options": ["rbind", "rprivate"],
            }
        )
    elif hc.ipc_mode != "none":  # `--ipc none`: no /dev/shm at all, as Docker
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
                    f"size={hc.shm_size or cfg.DEFAULT_SHM_SIZE}",
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
    privileged = hc.privileged
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
        "env": _env(container, inputs.hostname, inputs.link_env),
        "cwd": container.config.working_dir or "/",
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "rlimits": _rlimits(container, inputs.nofile_limit),
        "noNewPrivileges": cfg.no_new_privileges(hc),
        "oomScoreAdj": hc.oom_score_adj,
    }
    namespaces: list[dict[str, Any]] = [{"type": "mount"}]
    for kind, mode in (("pid", hc.pid_mode), ("ipc", hc.ipc_mode), ("uts", hc.uts_mode)):
        if mode != "host":
            namespace = {"type": kind}
            if kind in inputs.namespace_paths:
                namespace["path"] = inputs.namespace_paths[kind]
            namespaces.append(namespace)
    if hc.network_mode != "host":
        network: dict[str, Any] = {"type": "network"}
        if inputs.netns_path:
            network["path"] = inputs.netns_path
        namespaces.append(network)
    if inputs.cgroup_namespace:
        namespaces.append({"type": "cgroup"})
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "cgroupsPath": inputs.cgroup_path,
        "resources": resources(hc),
    }
    devices = [_device(entry)[0] for entry in hc.devices or []]
    if devices:
        linux["devices"] = devices
    if not privileged:
        masked, readonly = hc.masked_paths, hc.readonly_paths
        linux["maskedPaths"] = list(MASKED_PATHS if masked is None else masked)
        linux["readonlyPaths"] = list(READONLY_PATHS if readonly is None else readonly)
        if inputs.cgroup_v1 and CGROUP_MOUNT not in {m["destination"] for m in inputs.mounts}:
            # Docker's spec asks for /sys/fs/cgroup read-only, but under cgroup v1 runc
            # applies that to the controller mounts only: remounting the tmpfs above
            # them read-only too is what keeps the whole tree read-only, as crun does.
            # It is the default mount's own setting, so `systempaths=unconfined` keeps
            # it; a user's mount at /sys/fs/cgroup replaces the default and is left alone.
            linux["readonlyPaths"].append(CGROUP_MOUNT)
        if inputs.seccomp is not None:
            linux["seccomp"] = inputs.seccomp
    if hc.sysctls:
        linux["sysctl"] = dict(hc.sysctls)
    propagation = _rootfs_propagation(inputs.mounts)
    if propagation:
        linux["rootfsPropagation"] = propagation
    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": inputs.rootfs, "readonly": hc.readonly_rootfs},
        "mounts": _mounts(container, inputs),
        "linux": linux,
    }
    if hc.uts_mode != "host":
        spec["hostname"] = inputs.hostname
        if container.config.domainname:
            spec["domainname"] = container.config.domainname
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
    caps = list(cfg.grantable()) if privileged else cfg.capabilities(container.host_config)
    process: dict[str, Any] = {
        "terminal": tty,
        "user": {
            "uid": user.uid,
            "gid": user.gid,
            "additionalGids": user.additional_gids or [user.gid],
        },
        "args": cmd,
        "env": cfg.process_env(
            cfg.merge_env(_env(container, hostname), env, ["TERM=xterm"] if tty else None)
        ),
        "cwd": cwd or "/",
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "rlimits": _rlimits(container, nofile_limit),
        "noNewPrivileges": cfg.no_new_privileges(container.host_config),
    }
    if tty and console_size:
        process["consoleSize"] = {"height": console_size[0], "width": console_size[1]}
    return process
