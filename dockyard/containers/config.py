"""Validation and normalisation of a container-create request.

Takes the decoded create request (`schema.ContainerCreate`: Docker's model,
typed) and the image's run configuration, and returns the container's
effective configuration: image defaults merged in (Env, Cmd/Entrypoint, Labels, ...),
every HostConfig default filled as moby fills it, and anything invalid refused
with Docker's wording before a single resource is allocated.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import stat
from dataclasses import dataclass
from typing import Any

from dockyard.containers import health, schema, signals
from dockyard.containers.schema import (
    ContainerConfig,
    ContainerCreate,
    HostConfig,
    LogConfig,
    RestartPolicy,
    StrSlice,
    Ulimit,
)
from dockyard.errors import InvalidArgument
from dockyard.logs import options as log_options
from dockyard.network import ports
from dockyard.runtime import seccomp

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHM_SIZE = 64 << 20
MIN_MEMORY = 6 << 20
MAX_HOSTNAME = 64  # HOST_NAME_MAX; moby's limit too
MAX_CPU_SHARES = 262144  # the kernel's MAX_SHARES (cgroup v2 weights are mapped from it)
MAX_PIDS = 4 << 20  # PID_MAX_LIMIT: pids.max takes nothing larger
MAX_CPUSET = 8192  # moby: "the normal maximum number of CPUs in Linux"
PATH_MAX = 4095  # bytes, without the NUL
NAME_MAX = 255
MAX_ARG_STRLEN = 32 * 4096  # one argument or environment string, with its NUL
# Sysctls of the IPC namespace (runc's list); `fs.mqueue.*` too; `net.*` is the network's.
IPC_SYSCTLS = frozenset(
    {
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    }
)
RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")
LOG_DRIVERS = log_options.BUILTIN

# Docker's default capability set (moby oci/caps/defaults.go).
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
ALL_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
ULIMITS = {
    "as": "RLIMIT_AS",
    "core": "RLIMIT_CORE",
    "cpu": "RLIMIT_CPU",
    "data": "RLIMIT_DATA",
    "fsize": "RLIMIT_FSIZE",
    "locks": "RLIMIT_LOCKS",
    "memlock": "RLIMIT_MEMLOCK",
    "msgqueue": "RLIMIT_MSGQUEUE",
    "nice": "RLIMIT_NICE",
    "nofile": "RLIMIT_NOFILE",
    "nproc": "RLIMIT_NPROC",
    "rss": "RLIMIT_RSS",
    "rtprio": "RLIMIT_RTPRIO",
    "rttime": "RLIMIT_RTTIME",
    "sigpending": "RLIMIT_SIGPENDING",
    "stack": "RLIMIT_STACK",
}


@dataclass
class Effective:
    config: ContainerConfig
    host_config: HostConfig
    path: str
    args: list[str]


def port_key(port: str) -> str:
    number, _, proto = str(port).partition("/")
    if not number.isdigit() or not 0 < int(number) < 65536:
        raise InvalidArgument(f"invalid port: {port}")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"invalid proto: {proto}")
    return f"{int(number)}/{proto}"


def merge_env(*lists: list[str] | None) -> list[str]:
    merged: dict[str, str] = {}
    for env in lists:
        for entry in env or []:
            if not isinstance(entry, str):
                raise InvalidArgument("invalid JSON: Env entries must be strings")
            merged[entry.partition("=")[0]] = entry
    return list(merged.values())


def process_env(env: list[str]) -> list[str]:
    """What the process gets: entries without `=` name nothing to set (Docker drops them)."""
    return [entry for entry in env if "=" in entry]


def capability(name: str) -> str:
    upper = name.upper()
    if upper == "ALL":
        return upper
    if not upper.startswith("CAP_"):
        upper = "CAP_" + upper
    if upper not in ALL_CAPABILITIES:
        raise InvalidArgument(f'unknown capability: "{name}"')
    return upper


@functools.cache
def grantable() -> tuple[str, ...]:
    """The capabilities the daemon can give: those in its own bounding set (a CI sandbox,
    a nested engine or a restricted host withholds some; `CapBnd` numbers them in
    `ALL_CAPABILITIES`' order)."""
    try:
        with open("/proc/self/status") as f:
            bounding = next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))
    except (OSError, StopIteration, ValueError):
        return ALL_CAPABILITIES
    return tuple(c for i, c in enumerate(ALL_CAPABILITIES) if bounding >> i & 1)


def withheld() -> list[str]:
    """Capabilities this host keeps from the daemon (and so from privileged containers)."""
    return [c for c in ALL_CAPABILITIES if c not in grantable()]


def capabilities(host_config: HostConfig) -> list[str]:
    """The container's final capability set (Docker's defaults adjusted by add/drop).

    "All" (`--privileged`, `--cap-add ALL`) is every capability the daemon holds, as
    Podman grants it: asking the runtime for one the host withholds fails the start.
    A capability named explicitly that the host withholds is refused with its name."""
    if host_config.privileged:
        return list(grantable())
    add = [capability(c) for c in host_config.cap_add or []]
    drop = [capability(c) for c in host_config.cap_drop or []]
    missing = [c for c in add if c != "ALL" and c not in grantable()]
    if missing:
        raise InvalidArgument(
            f"capability {', '.join(missing)} is not available: this host withholds it from "
            "the daemon (not in its bounding set)"
        )
    caps = [] if "ALL" in drop else [c for c in DEFAULT_CAPABILITIES if c in grantable()]
    caps = [c for c in caps if c not in drop]
    for c in grantable() if "ALL" in add else add:
        if c not in caps:
            caps.append(c)
    return caps


def _security_options(options: list[str]) -> None:
    for option in options:
        key, sep, value = option.partition("=")
        if not sep:
            key, sep, value = option.partition(":")
        if key == "no-new-privileges" and value in ("", "true", "false"):
            continue
        if key in ("seccomp", "apparmor", "label", "systempaths", "mask", "unmask") and sep:
            continue
        raise InvalidArgument(f'invalid --security-opt 2: "{option}"')


def no_new_privileges(host_config: HostConfig) -> bool:
    result = False
    for option in host_config.security_opt or []:
        key, _, value = option.replace(":", "=", 1).partition("=")
        if key == "no-new-privileges":
            result = value in ("", "true")
    return result


def security_option(host_config: HostConfig, key: str) -> str | None:
    for option in host_config.security_opt or []:
        k, sep, value = option.partition("=")
        if not sep:
            k, sep, value = option.partition(":")
        if k == key and sep:
            return value
    return None


def restart_policy(policy: RestartPolicy, auto_remove: bool) -> RestartPolicy:
    """A restart policy checked as moby checks it, in its normal form."""
    name = policy.name or "no"
    count = policy.maximum_retry_count
    if name not in RESTART_POLICIES:
        raise InvalidArgument(
            f"invalid restart policy: unknown policy '{name}'; use one of 'no', 'always', "
            "'on-failure', or 'unless-stopped'"
        )
    if count < 0:
        raise InvalidArgument("invalid restart policy: maximum retry count cannot be negative")
    if count and name != "on-failure":
        raise InvalidArgument(
            "invalid restart policy: maximum retry count can only be used with 'on-failure'"
        )
    if auto_remove and name != "no":
        raise InvalidArgument("can't create 'AutoRemove' container with restart policy")
    return RestartPolicy(name=name, maximum_retry_count=count)


def validate_resources(hc: HostConfig, ncpu: int, *, update: bool = False) -> None:
    """Resource limits as moby checks them, at create and at update; fills normal forms.

    An update may change the swap limit alone (the memory limit is the container's).
    """
    if hc.memory != 0 and hc.memory < MIN_MEMORY:  # negative too: moby's rule
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if hc.memory_reservation != 0 and hc.memory_reservation < MIN_MEMORY:
        raise InvalidArgument("Minimum memory reservation allowed is 6MB")
    if hc.memory_swap < -1:  # the kernel refuses it at start; -1 is "unlimited"
        raise InvalidArgument(
            f"invalid MemorySwap {hc.memory_swap}: -1 (unlimited) is the only negative "
            "value allowed"
        )
    swap = hc.memory_swap
    if swap > 0 and hc.memory and swap < hc.memory:
        raise InvalidArgument(
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        )
    if swap > 0 and not hc.memory and not update:
        raise InvalidArgument("You should always set the Memory limit when using Memoryswap limit")
    if hc.memory_reservation and hc.memory and hc.memory_reservation > hc.memory:
        raise InvalidArgument(
            "Minimum memory limit can not be less than memory reservation limit, see usage"
        )
    if hc.nano_cpus < 0 or hc.nano_cpus > ncpu * 1_000_000_000:
        raise InvalidArgument(
            f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
        )
    if hc.nano_cpus and (hc.cpu_quota or hc.cpu_period):
        raise InvalidArgument(
            "Conflicting options: Nano CPUs and CPU Period cannot both be set"
            if hc.cpu_period
            else "Conflicting options: Nano CPUs and CPU Quota cannot both be set"
        )
    if hc.cpu_shares < 0:
        raise InvalidArgument("invalid CPU shares: must be a positive value")
    if hc.cpu_shares > MAX_CPU_SHARES:
        raise InvalidArgument(
            f"invalid CPU shares ({hc.cpu_shares}): the kernel allows at most {MAX_CPU_SHARES}"
        )
    if hc.cpu_period and not 1000 <= hc.cpu_period <= 1_000_000:
        raise InvalidArgument(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
        )
    if hc.cpu_quota and 0 < hc.cpu_quota < 1000:
        raise InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    if hc.cpu_realtime_period < 0 or hc.cpu_realtime_runtime < 0:
        raise InvalidArgument("CPU real-time period and runtime can not be negative")
    if (
        hc.cpu_realtime_period
        and hc.cpu_realtime_runtime
        and hc.cpu_realtime_runtime > hc.cpu_realtime_period
    ):
        raise InvalidArgument("cpu-rt-runtime cannot be higher than cpu-rt-period")
    if not 0 <= hc.blkio_weight <= 1000 or 0 < hc.blkio_weight < 10:
        raise InvalidArgument("Range of blkio weight is from 10 to 1000")
    if hc.pids_limit is not None and hc.pids_limit <= 0:
        hc.pids_limit = None  # 0 and -1 mean unlimited
    if hc.pids_limit is not None and hc.pids_limit > MAX_PIDS:
        raise InvalidArgument(
            f"invalid PidsLimit {hc.pids_limit}: the kernel allows at most {MAX_PIDS}"
        )
    if hc.io_maximum_bandwidth or hc.io_maximum_i_ops:
        raise InvalidArgument(
            "Invalid QoS settings: linux does not support Maximum IO Bandwidth or Maximum IO IOps"
        )
    if hc.memory_swappiness is not None:
        if hc.memory_swappiness == -1:
            hc.memory_swappiness = None
        elif not 0 <= hc.memory_swappiness <= 100:
            raise InvalidArgument(
                f"Invalid value: {hc.memory_swappiness}, valid memory swappiness range is 0-100"
            )
    if hc.cpuset_cpus:
        available = os.sched_getaffinity(0)
        wanted = _cpuset(hc.cpuset_cpus, "cpus", available)
        if not wanted <= available:
            raise InvalidArgument(
                f"Requested CPUs are not available - requested {hc.cpuset_cpus}, "
                f"available: {cpu_ranges(available)}"
            )
    if hc.cpuset_mems:
        nodes = memory_nodes()
        if not _cpuset(hc.cpuset_mems, "mems", nodes) <= nodes:
            raise InvalidArgument(
                f"Requested memory nodes are not available - requested {hc.cpuset_mems}, "
                f"available: {cpu_ranges(nodes)}"
            )


def _cpuset(text: str, what: str, available: set[int]) -> set[int]:
    """A cpuset list checked as moby checks it (numbers up to 8192, or the highest one
    this host has if more), so a list is never expanded past what a machine can have."""
    try:
        return cpu_list(text, max(MAX_CPUSET, *available))
    except ValueError as e:
        raise InvalidArgument(f"Invalid value {text} for cpuset {what}: {e}") from None


def cpu_list(text: str, maximum: int = MAX_CPUSET) -> set[int]:
    """The CPUs (or memory nodes) a cpuset list ("0-2,5") names; ValueError if it is
    malformed or names a number above `maximum`."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise ValueError(f"invalid format: {text}")
        low, high = int(first), int(last or first)
        if high < low:
            raise ValueError(f"invalid format: {text}")
        if high > maximum:
            raise ValueError(f"value of out range, maximum is {maximum}")  # sic, moby's words
        cpus.update(range(low, high + 1))
    return cpus


def memory_nodes() -> set[int]:
    """The host's NUMA memory nodes (node 0 alone where the kernel lists none)."""
    try:
        with open("/sys/devices/system/node/online") as f:
            return cpu_list(f.read().strip(), 1 << 20)
    except (OSError, ValueError):
        return {0}


def cpu_ranges(cpus: set[int]) -> str:
    """`cpus` in the kernel's list form ("0-3,6"), as Docker prints what is available."""
    ranges: list[str] = []
    for cpu in sorted(cpus):
        if ranges and cpu == int(ranges[-1].rpartition("-")[2]) + 1:
            ranges[-1] = f"{ranges[-1].partition('-')[0]}-{cpu}"
        else:
            ranges.append(str(cpu))
    return ",".join(ranges)


def _ulimits(ulimits: list[Ulimit] | None) -> list[Ulimit] | None:
    for entry in ulimits or []:
        if entry.name not in ULIMITS:
            raise InvalidArgument(f"invalid ulimit type: {entry.name}")
        if entry.soft > entry.hard:
            raise InvalidArgument(
                "ulimit soft limit must be less than or equal to hard limit: "
                f"{entry.soft} > {entry.hard}"
            )
        if entry.name == "nofile":
            # Even root cannot raise it past fs.nr_open (-1, "unlimited", is past it too).
            most = _nr_open()
            for value in (entry.hard, entry.soft):
                if value < 0 or value > most:
                    raise InvalidArgument(
                        f"ulimit nofile: {value} is more than the kernel allows "
                        f"(fs.nr_open = {most})"
                    )
    return ulimits


def _nr_open() -> int:
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20  # the kernel's default


def _sysctls(hc: HostConfig) -> None:
    """Only sysctls of the namespaces the container has of its own: the runtime's rules
    (runc's validator), checked before anything is made rather than at start."""
    for key in hc.sysctls or {}:
        if key in IPC_SYSCTLS or key.startswith("fs.mqueue."):
            if hc.ipc_mode == "host":
                raise InvalidArgument(f'sysctl "{key}" is not allowed in the hosts ipc namespace')
            continue
        if key.startswith("net."):
            if hc.network_mode == "host":
                raise InvalidArgument(f'sysctl "{key}" not allowed in host network namespace')
            continue
        if hc.uts_mode != "host":
            if key == "kernel.domainname":
                continue
            if key == "kernel.hostname":
                raise InvalidArgument(
                    'sysctl "kernel.hostname" is not allowed; the hostname is set via the '
                    "OCI hostname field"
                )
        raise InvalidArgument(f'sysctl "{key}" is not in a separate kernel namespace')


def _host_path(path: str, what: str) -> None:
    """A path the kernel can take: at most PATH_MAX bytes, each name at most NAME_MAX."""
    size = len(path.encode())
    if size > PATH_MAX:
        raise InvalidArgument(
            f"{what} is {size} bytes long, which is longer than the kernel allows for a path "
            f"({PATH_MAX})"
        )
    for part in path.split("/"):
        if len(part.encode()) > NAME_MAX:
            raise InvalidArgument(
                f"{what} has a name of {len(part.encode())} bytes, which is longer than the "
                f"kernel allows for a file name ({NAME_MAX})"
            )


def _process_size(argv: list[str], env: list[str], ulimits: list[Ulimit] | None) -> None:
    """What execve(2) would refuse with E2BIG (or ENAMETOOLONG for the program), refused
    here: found out at start, the runtime's error (which repeats the program name) can be
    too large for the monitor to pass on."""
    if argv and len(argv[0].encode()) > PATH_MAX:
        raise InvalidArgument(
            f"invalid command: its program ({len(argv[0].encode())} bytes) is longer than "
            f"the kernel allows for a program path ({PATH_MAX})"
        )
    for kind, strings in (("argument", argv), ("environment variable", env)):
        for text in strings:
            if len(text.encode()) >= MAX_ARG_STRLEN:
                raise InvalidArgument(
                    f"invalid command: an {kind} of {len(text.encode())} bytes is longer than "
                    f"the kernel allows for one argument ({MAX_ARG_STRLEN - 1})"
                )
    stack = next((u.soft for u in ulimits or [] if u.name == "stack"), None)
    if stack is None or stack < 0:
        stack = resource.getrlimit(resource.RLIMIT_STACK)[0]  # what the container inherits
    if stack == resource.RLIM_INFINITY or stack < 0:
        stack = 1 << 62
    # The kernel's bound (fs/exec.c): a quarter of the stack limit, at most 6 MiB, at
    # least 32 pages; strings with their NUL and one pointer each count against it.
    limit = max(min(stack // 4, 6 << 20), MAX_ARG_STRLEN)
    used = sum(len(s.encode()) + 1 + 8 for s in (*argv, *env))
    if used > limit:
        raise InvalidArgument(
            f"invalid command: its arguments and environment take {used} bytes, more than "
            f"the kernel allows ({limit}; argument list too long)"
        )


def _namespace_mode(value: str, key: str) -> None:
    """PidMode, IpcMode, UTSMode: moby's forms (`container:<ref>` for pid and ipc)."""
    if value in ("", "host", "private") or (key != "UTSMode" and value.startswith("container:")):
        if value == "container:":
            raise InvalidArgument(f"invalid {key}: {value}")
        return
    if key == "IpcMode" and value in ("shareable", "none"):
        return
    raise InvalidArgument(f"invalid {key}: {value}")


def normalise_host_config(
    raw: HostConfig,
    *,
    ncpu: int,
    runtimes: tuple[str, ...],
    default_runtime: str,
    log_drivers: tuple[str, ...] = LOG_DRIVERS,
    log_defaults: LogConfig | None = None,
) -> HostConfig:
    """A copy of `raw` validated, with the defaults moby fills at create."""
    hc = schema.copy(raw)
    hc.port_bindings = ports.validate(hc.port_bindings)
    hc.log_config = log_config(hc.log_config, log_defaults)
    if hc.log_config.type not in log_drivers:  # plugin drivers are resolved by the caller
        raise InvalidArgument(f"logger: no log driver named '{hc.log_config.type}' is registered")
    log_options.validate(hc.log_config.type, hc.log_config.config or {})
    mode = hc.network_mode or "default"
    hc.network_mode = "bridge" if mode == "default" else mode  # checked by the network manager
    hc.restart_policy = restart_policy(hc.restart_policy, hc.auto_remove)
    validate_resources(hc, ncpu)
    if hc.shm_size < 0:
        raise InvalidArgument("SHM size can not be less than 0")
    hc.shm_size = hc.shm_size or DEFAULT_SHM_SIZE
    if not -1000 <= hc.oom_score_adj <= 1000:
        raise InvalidArgument(
            f"Invalid value {hc.oom_score_adj}, range for oom score adj is [-1000, 1000]"
        )
    for caps in (hc.cap_add, hc.cap_drop):
        for name in caps or []:
            capability(name)  # spelled as given in inspect, as Docker keeps them
    _security_options(list(hc.security_opt or []))
    hc.ulimits = _ulimits(hc.ulimits)
    hc.runtime = hc.runtime or default_runtime
    if hc.runtime not in runtimes:
        raise InvalidArgument(f"unknown or invalid runtime name: {hc.runtime}")
    _namespace_mode(hc.pid_mode, "PidMode")
    _namespace_mode(hc.ipc_mode, "IpcMode")
    _namespace_mode(hc.uts_mode, "UTSMode")
    hc.ipc_mode = hc.ipc_mode or "private"
    if hc.isolation not in ("", "default"):
        raise InvalidArgument(f"invalid isolation: {hc.isolation} on linux")
    if hc.cgroupns_mode not in ("", "host", "private"):
        raise InvalidArgument(f"invalid cgroup namespace mode: {hc.cgroupns_mode}")
    hc.cgroupns_mode = hc.cgroupns_mode or "private"
    _sysctls(hc)
    if hc.cgroup_parent:
        try:
            _host_path(hc.cgroup_parent, "the cgroup parent")
        except InvalidArgument as e:
            raise InvalidArgument(f"invalid cgroup parent {hc.cgroup_parent!r}: {e}") from None
    seccomp_profile = security_option(hc, "seccomp")
    if seccomp_profile and seccomp_profile not in (seccomp.UNCONFINED, seccomp.BUILTIN):
        seccomp.check_profile(seccomp_profile)  # Docker finds a bad profile only at start
    throttled = (
        hc.blkio_device_read_bps,
        hc.blkio_device_write_bps,
        hc.blkio_device_read_i_ops,
        hc.blkio_device_write_i_ops,
    )
    for path in [d.path for d in hc.blkio_weight_device or []] + [
        d.path for devices in throttled for d in devices or []
    ]:
        _block_device(path)  # Docker finds out at start
    for entry in hc.extra_hosts or []:
        host, sep, address = entry.partition(":")
        if not sep or not host or not address:
            raise InvalidArgument(f"invalid IP address in add-host: {address!r}")
    hc.console_size = hc.console_size or [0, 0]
    for device in hc.devices or []:
        if not device.path_on_host:
            raise InvalidArgument("invalid device: PathOnHost is required")
        if not os.path.exists(device.path_on_host):
            raise InvalidArgument(
                f"error gathering device information while adding custom device "
                f'"{device.path_on_host}": no such file or directory'
            )
    for request in hc.device_requests or []:
        # No device driver (nvidia, CDI) serves this host: refuse rather than run without
        # the devices asked for. Docker finds out at start; at create nothing is left behind.
        wanted = " ".join("[" + " ".join(c) + "]" for c in request.capabilities or [])
        raise InvalidArgument(
            f'could not select device driver "{request.driver}" with capabilities: [{wanted}]'
        )
    capabilities(hc)  # validates the final set
    return hc


def log_config(requested: LogConfig, defaults: LogConfig | None = None) -> LogConfig:
    """The driver and options a container gets: the request's, merged with the daemon's
    defaults (`log-driver`, `log-opts`) as moby merges them."""
    defaults = defaults or LogConfig(type=log_options.JSON_FILE, config={})
    driver, merged = log_options.merge_defaults(
        requested.type,
        requested.config,
        defaults.type or log_options.JSON_FILE,
        dict(defaults.config or {}),
    )
    return LogConfig(type=driver, config=merged)


def _block_device(path: str) -> None:
    try:
        st = os.stat(path)
    except OSError as e:
        raise InvalidArgument(f"error getting device info for {path}: {e.strerror}") from None
    if not stat.S_ISBLK(st.st_mode):
        raise InvalidArgument(f"{path} is not a block device")


def _strslice(value: list[str] | None) -> list[str] | None:
    return None if value is None else list(value)


def effective(
    request: ContainerCreate,
    image_config: ContainerConfig,
    *,
    image_name: str,
    ncpu: int,
    runtimes: tuple[str, ...],
    default_runtime: str,
    log_drivers: tuple[str, ...] = LOG_DRIVERS,
    log_defaults: LogConfig | None = None,
) -> Effective:
    """The container's configuration: request merged over image, defaults filled, validated."""
    host_config = normalise_host_config(
        request.host_config,
        ncpu=ncpu,
        runtimes=runtimes,
        default_runtime=default_runtime,
        log_drivers=log_drivers,
        log_defaults=log_defaults,
    )
    entrypoint = _strslice(request.entrypoint)
    if entrypoint == [""]:
        entrypoint = []  # `--entrypoint ""`: no entrypoint, not the image's
    cmd = _strslice(request.cmd)
    if not entrypoint:
        if not cmd:
            cmd = _strslice(image_config.cmd)
        if entrypoint is None:
            entrypoint = _strslice(image_config.entrypoint)
    argv = [*(entrypoint or []), *(cmd or [])]
    if not argv:
        raise InvalidArgument("No command specified")

    working_dir = request.working_dir or image_config.working_dir
    if working_dir and not working_dir.startswith("/"):
        raise InvalidArgument(
            f"the working directory '{working_dir}' is invalid, it needs to be an absolute path"
        )
    if working_dir:
        _host_path(working_dir, "the working directory")
    if len(request.hostname.encode()) > MAX_HOSTNAME:
        raise InvalidArgument(
            f"hostname {json.dumps(request.hostname)} is too long (maximum {MAX_HOSTNAME} bytes)"
        )
    exposed: dict[str, Any] = {}
    for source in (
        image_config.exposed_ports,
        request.exposed_ports,
        host_config.port_bindings,  # a published port is an exposed one, as in Docker
    ):
        for port in source or {}:
            exposed[port_key(port)] = {}
    labels = {**(image_config.labels or {}), **(request.labels or {})}
    stop_signal = request.stop_signal or image_config.stop_signal
    if stop_signal:
        signals.parse(stop_signal)
    volumes = {**(image_config.volumes or {}), **(request.volumes or {})}
    config = ContainerConfig(
        hostname=request.hostname,
        domainname=request.domainname,
        user=request.user or image_config.user,
        attach_stdin=request.attach_stdin,
        attach_stdout=request.attach_stdout,
        attach_stderr=request.attach_stderr,
        exposed_ports=exposed or None,
        tty=request.tty,
        open_stdin=request.open_stdin,
        stdin_once=request.stdin_once,
        env=merge_env(
            [f"PATH={DEFAULT_PATH}"]
            if not any(e.startswith("PATH=") for e in image_config.env or [])
            else [],
            image_config.env,
            request.env,
        ),
        cmd=StrSlice(cmd) if cmd is not None else None,
        healthcheck=health.container_healthcheck(request.healthcheck, image_config.healthcheck),
        args_escaped=request.args_escaped,
        image=image_name,
        volumes=volumes or None,
        working_dir=working_dir,
        entrypoint=StrSlice(entrypoint) if entrypoint else None,
        network_disabled=request.network_disabled,
        mac_address=request.mac_address,
        on_build=image_config.on_build,
        labels=labels,
        stop_signal=stop_signal,
        stop_timeout=request.stop_timeout,
        shell=request.shell,
    )
    _process_size(argv, process_env(config.env or []), host_config.ulimits)
    if host_config.network_mode.startswith("container:") and request.hostname:
        raise InvalidArgument("conflicting options: hostname and the network mode")
    if host_config.uts_mode == "host" and (request.hostname or request.domainname):
        raise InvalidArgument("Conflicting options: hostname and the UTS mode")
    return Effective(config, host_config, argv[0], argv[1:])
