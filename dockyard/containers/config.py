"""Validation and normalisation of a container-create request.

Takes the decoded create request (`schema.ContainerCreate`: Docker's model,
typed) and the image's run configuration, and returns the container's
effective configuration: image defaults merged in (Env, Cmd/Entrypoint, Labels, ...),
every HostConfig default filled as moby fills it, and anything invalid refused
with Docker's wording before a single resource is allocated.
"""

from __future__ import annotations

import os
import re
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

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHM_SIZE = 64 << 20
MIN_MEMORY = 6 << 20
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


def capabilities(host_config: HostConfig) -> list[str]:
    """The container's final capability set (Docker's defaults adjusted by add/drop)."""
    if host_config.privileged:
        return list(ALL_CAPABILITIES)
    add = [capability(c) for c in host_config.cap_add or []]
    drop = [capability(c) for c in host_config.cap_drop or []]
    caps = [] if "ALL" in drop else list(DEFAULT_CAPABILITIES)
    caps = [c for c in caps if c not in drop]
    for c in ALL_CAPABILITIES if "ALL" in add else add:
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
    hc.memory = max(hc.memory, 0)
    if 0 < hc.memory < MIN_MEMORY:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
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
    if hc.memory_swappiness is not None:
        if hc.memory_swappiness == -1:
            hc.memory_swappiness = None
        elif not 0 <= hc.memory_swappiness <= 100:
            raise InvalidArgument(
                f"Invalid value: {hc.memory_swappiness}, valid memory swappiness range is 0-100"
            )
    for value in (hc.cpuset_cpus, hc.cpuset_mems):
        if value and not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", value):
            raise InvalidArgument(f"Invalid value {value} for cpuset cpus")
    if hc.cpuset_cpus:
        available = os.sched_getaffinity(0)
        if not cpu_list(hc.cpuset_cpus) <= available:
            raise InvalidArgument(
                f"Requested CPUs are not available - requested {hc.cpuset_cpus}, "
                f"available: {cpu_ranges(available)}"
            )


def cpu_list(text: str) -> set[int]:
    """The CPUs a cpuset list ("0-2,5") names."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


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
    return ulimits


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
    if host_config.network_mode.startswith("container:") and request.hostname:
        raise InvalidArgument("conflicting options: hostname and the network mode")
    if host_config.uts_mode == "host" and (request.hostname or request.domainname):
        raise InvalidArgument("Conflicting options: hostname and the UTS mode")
    return Effective(config, host_config, argv[0], argv[1:])
