"""Validation and normalisation of a container-create request.

Takes the request's `Config` and `HostConfig` (Docker's model, as any client
sends them) and the image, and returns the container's effective
configuration: image defaults merged in (Env, Cmd/Entrypoint, Labels, ...),
every HostConfig default filled as moby fills it, and anything invalid refused
with Docker's wording before a single resource is allocated.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from dockyard.containers import health, signals
from dockyard.errors import InvalidArgument, NotImplementedByEngine
from dockyard.network import ports

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHM_SIZE = 64 << 20
MIN_MEMORY = 6 << 20
RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")
LOG_DRIVERS = ("json-file", "k8s-file", "local", "none")

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

_INT_FIELDS = (
    "Memory",
    "MemorySwap",
    "MemoryReservation",
    "NanoCpus",
    "CpuShares",
    "CpuPeriod",
    "CpuQuota",
    "CpuRealtimePeriod",
    "CpuRealtimeRuntime",
    "BlkioWeight",
    "ShmSize",
    "OomScoreAdj",
    "KernelMemory",
    "CpuCount",
    "CpuPercent",
)


@dataclass
class Effective:
    config: dict[str, Any]
    host_config: dict[str, Any]
    path: str
    args: list[str]


def _strslice(value: Any, field: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidArgument(f"invalid JSON: {field} must be a string or a list of strings")


def _dict(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"invalid JSON: {field} must be an object")
    return value


def _int(value: Any, field: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        kind = type(value).__name__
        raise InvalidArgument(
            f"invalid JSON: cannot unmarshal {kind} into field {field} of type int64"
        )
    return value


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


def capability(name: str) -> str:
    upper = name.upper()
    if upper == "ALL":
        return upper
    if not upper.startswith("CAP_"):
        upper = "CAP_" + upper
    if upper not in ALL_CAPABILITIES:
        raise InvalidArgument(f'unknown capability: "{name}"')
    return upper


def capabilities(host_config: dict[str, Any]) -> list[str]:
    """The container's final capability set (Docker's defaults adjusted by add/drop)."""
    if host_config.get("Privileged"):
        return list(ALL_CAPABILITIES)
    add = [capability(c) for c in host_config.get("CapAdd") or []]
    drop = [capability(c) for c in host_config.get("CapDrop") or []]
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


def no_new_privileges(host_config: dict[str, Any]) -> bool:
    result = False
    for option in host_config.get("SecurityOpt") or []:
        key, _, value = option.replace(":", "=", 1).partition("=")
        if key == "no-new-privileges":
            result = value in ("", "true")
    return result


def security_option(host_config: dict[str, Any], key: str) -> str | None:
    for option in host_config.get("SecurityOpt") or []:
        k, sep, value = option.partition("=")
        if not sep:
            k, sep, value = option.partition(":")
        if k == key and sep:
            return value
    return None


def _restart_policy(policy: dict[str, Any], auto_remove: bool) -> dict[str, Any]:
    name = policy.get("Name") or "no"
    count = _int(policy.get("MaximumRetryCount"), "MaximumRetryCount")
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
    return {"Name": name, "MaximumRetryCount": count}


def _resources(hc: dict[str, Any], ncpu: int) -> None:
    for key in _INT_FIELDS:
        hc[key] = _int(hc.get(key), key)
    if hc["Memory"] < 0:
        hc["Memory"] = 0
    if 0 < hc["Memory"] < MIN_MEMORY:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    swap = hc["MemorySwap"]
    if swap > 0 and hc["Memory"] and swap < hc["Memory"]:
        raise InvalidArgument(
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        )
    if swap > 0 and not hc["Memory"]:
        raise InvalidArgument("You should always set the Memory limit when using Memoryswap limit")
    if hc["MemoryReservation"] and hc["Memory"] and hc["MemoryReservation"] > hc["Memory"]:
        raise InvalidArgument(
            "Minimum memory limit can not be less than memory reservation limit, see usage"
        )
    if hc["NanoCpus"] < 0 or hc["NanoCpus"] > ncpu * 1_000_000_000:
        raise InvalidArgument(
            f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
        )
    if hc["NanoCpus"] and (hc["CpuQuota"] or hc["CpuPeriod"]):
        raise InvalidArgument(
            "Conflicting options: Nano CPUs and CPU Period cannot both be set"
            if hc["CpuPeriod"]
            else "Conflicting options: Nano CPUs and CPU Quota cannot both be set"
        )
    if hc["CpuShares"] < 0:
        raise InvalidArgument("invalid CPU shares: must be a positive value")
    if hc["CpuPeriod"] and not 1000 <= hc["CpuPeriod"] <= 1_000_000:
        raise InvalidArgument(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
        )
    if hc["CpuQuota"] and 0 < hc["CpuQuota"] < 1000:
        raise InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    if not 0 <= hc["BlkioWeight"] <= 1000 or 0 < hc["BlkioWeight"] < 10:
        raise InvalidArgument("Range of blkio weight is from 10 to 1000")
    if hc["ShmSize"] < 0:
        raise InvalidArgument("SHM size can not be less than 0")
    if not hc["ShmSize"]:
        hc["ShmSize"] = DEFAULT_SHM_SIZE
    if not -1000 <= hc["OomScoreAdj"] <= 1000:
        raise InvalidArgument(
            f"Invalid value {hc['OomScoreAdj']}, range for oom score adj is [-1000, 1000]"
        )
    pids = hc.get("PidsLimit")
    if pids is not None:
        pids = _int(pids, "PidsLimit")
        hc["PidsLimit"] = pids if pids > 0 else None
    swappiness = hc.get("MemorySwappiness")
    if swappiness is not None:
        swappiness = _int(swappiness, "MemorySwappiness")
        if swappiness == -1:
            hc["MemorySwappiness"] = None
        elif not 0 <= swappiness <= 100:
            raise InvalidArgument(
                f"Invalid value: {swappiness}, valid memory swappiness range is 0-100"
            )
    for cpuset in ("CpusetCpus", "CpusetMems"):
        value = hc.get(cpuset) or ""
        if value and not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", value):
            raise InvalidArgument(f"Invalid value {value} for cpuset cpus")
        hc[cpuset] = value


def _ulimits(ulimits: Any) -> list[dict[str, Any]]:
    result = []
    for entry in ulimits or []:
        entry = _dict(entry, "Ulimits")
        name = entry.get("Name", "")
        if name not in ULIMITS:
            raise InvalidArgument(f"invalid ulimit type: {name}")
        soft, hard = _int(entry.get("Soft"), "Soft"), _int(entry.get("Hard"), "Hard")
        if soft > hard:
            raise InvalidArgument(
                f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
            )
        result.append({"Name": name, "Soft": soft, "Hard": hard})
    return result


def normalise_host_config(
    raw: dict[str, Any],
    *,
    ncpu: int,
    runtimes: tuple[str, ...],
    default_runtime: str,
    log_drivers: tuple[str, ...] = LOG_DRIVERS,
) -> dict[str, Any]:
    hc = dict(raw)
    for unsupported in ("Links",):
        if hc.get(unsupported):
            raise NotImplementedByEngine(f"{unsupported} is not supported by Dockyard yet")
    hc["PortBindings"] = ports.validate(hc.get("PortBindings"))
    hc["PublishAllPorts"] = bool(hc.get("PublishAllPorts"))
    log = _dict(hc.get("LogConfig"), "LogConfig")
    log_type = log.get("Type") or "json-file"
    if log_type not in log_drivers:  # plugin drivers are resolved by the caller
        raise InvalidArgument(f"logger: no log driver named '{log_type}' is registered")
    hc["LogConfig"] = {"Type": log_type, "Config": _dict(log.get("Config"), "LogConfig.Config")}
    mode = hc.get("NetworkMode") or "default"
    if not isinstance(mode, str):
        raise InvalidArgument("invalid JSON: NetworkMode must be a string")
    hc["NetworkMode"] = "bridge" if mode == "default" else mode  # checked by the network manager
    hc["AutoRemove"] = bool(hc.get("AutoRemove"))
    hc["RestartPolicy"] = _restart_policy(
        _dict(hc.get("RestartPolicy"), "RestartPolicy"), hc["AutoRemove"]
    )
    _resources(hc, ncpu)
    for key in ("CapAdd", "CapDrop"):
        value = hc.get(key)
        if value is not None:
            hc[key] = [capability(c) if c.upper() != "ALL" else "ALL" for c in value]
    _security_options(list(hc.get("SecurityOpt") or []))
    hc["Ulimits"] = _ulimits(hc.get("Ulimits"))
    runtime = hc.get("Runtime") or default_runtime
    if runtime not in runtimes:
        raise InvalidArgument(f"unknown or invalid runtime name: {runtime}")
    hc["Runtime"] = runtime
    for mode_key in ("PidMode", "IpcMode", "UTSMode"):
        value = hc.get(mode_key) or ""
        if value not in ("", "host", "private", "shareable"):
            raise InvalidArgument(f"invalid {mode_key}: {value}")
        hc[mode_key] = value
    if not hc["IpcMode"]:
        hc["IpcMode"] = "private"
    for listed in ("Dns", "DnsOptions", "DnsSearch"):
        hc[listed] = list(hc.get(listed) or [])
    for entry in hc.get("ExtraHosts") or []:
        host, sep, address = entry.partition(":")
        if not sep or not host or not address:
            raise InvalidArgument(f"invalid IP address in add-host: {address!r}")
    defaults: dict[str, Any] = {
        "Binds": None,
        "ContainerIDFile": "",
        "PortBindings": {},
        "VolumeDriver": "",
        "VolumesFrom": None,
        "ConsoleSize": [0, 0],
        "CgroupnsMode": "private",
        "ExtraHosts": None,
        "GroupAdd": None,
        "Cgroup": "",
        "Links": None,
        "Privileged": False,
        "PublishAllPorts": False,
        "ReadonlyRootfs": False,
        "SecurityOpt": None,
        "UsernsMode": "",
        "Isolation": "",
        "CgroupParent": "",
        "Devices": [],
        "OomKillDisable": None,
        "Init": None,
        "Mounts": None,
        "Tmpfs": None,
        "Sysctls": None,
        "MaskedPaths": None,
        "ReadonlyPaths": None,
        "CapAdd": None,
        "CapDrop": None,
        "MemorySwappiness": None,
        "PidsLimit": None,
        "DeviceCgroupRules": None,
        "BlkioDeviceReadBps": None,
        "BlkioDeviceWriteBps": None,
        "BlkioDeviceReadIOps": None,
        "BlkioDeviceWriteIOps": None,
        "BlkioWeightDevice": None,
    }
    for key, value in defaults.items():
        if hc.get(key) is None:
            hc[key] = value
    # Mount specs are parsed by the volume service at create; only their JSON shape here.
    for listed in ("Binds", "VolumesFrom", "Mounts"):
        if hc[listed] is not None and not isinstance(hc[listed], list):
            raise InvalidArgument(f"invalid JSON: {listed} must be a list")
    hc["Tmpfs"] = _dict(hc["Tmpfs"], "Tmpfs") or None
    for entry in hc.get("Devices") or []:
        entry = _dict(entry, "Devices")
        if not entry.get("PathOnHost"):
            raise InvalidArgument("invalid device: PathOnHost is required")
        if not os.path.exists(entry["PathOnHost"]):
            raise InvalidArgument(
                f"error gathering device information while adding custom device "
                f'"{entry["PathOnHost"]}": no such file or directory'
            )
    capabilities(hc)  # validates the final set
    return hc


def effective(
    request: dict[str, Any],
    image_config: dict[str, Any],
    *,
    image_name: str,
    ncpu: int,
    runtimes: tuple[str, ...],
    default_runtime: str,
    log_drivers: tuple[str, ...] = LOG_DRIVERS,
) -> Effective:
    """The container's configuration: request merged over image, defaults filled, validated."""
    host_config = normalise_host_config(
        _dict(request.get("HostConfig"), "HostConfig"),
        ncpu=ncpu,
        runtimes=runtimes,
        default_runtime=default_runtime,
        log_drivers=log_drivers,
    )
    entrypoint = _strslice(request.get("Entrypoint"), "Entrypoint")
    cmd = _strslice(request.get("Cmd"), "Cmd")
    if not entrypoint:
        if not cmd:
            cmd = _strslice(image_config.get("Cmd"), "Cmd")
        if entrypoint is None:
            entrypoint = _strslice(image_config.get("Entrypoint"), "Entrypoint")
    argv = [*(entrypoint or []), *(cmd or [])]
    if not argv:
        raise InvalidArgument("No command specified")

    working_dir = request.get("WorkingDir") or image_config.get("WorkingDir") or ""
    if working_dir and not working_dir.startswith("/"):
        raise InvalidArgument(
            f"the working directory '{working_dir}' is invalid, it needs to be an absolute path"
        )
    exposed: dict[str, dict[str, Any]] = {}
    for source in (
        image_config.get("ExposedPorts"),
        request.get("ExposedPorts"),
        host_config["PortBindings"],  # a published port is an exposed one, as in Docker
    ):
        for port in _dict(source, "ExposedPorts"):
            exposed[port_key(port)] = {}
    labels = {
        **_dict(image_config.get("Labels"), "Labels"),
        **_dict(request.get("Labels"), "Labels"),
    }
    for key, value in labels.items():
        if not isinstance(value, str):
            raise InvalidArgument(f"invalid JSON: label {key} must be a string")
    stop_signal = request.get("StopSignal") or image_config.get("StopSignal") or None
    if stop_signal:
        signals.parse(stop_signal)
    stop_timeout = request.get("StopTimeout")
    if stop_timeout is not None:
        stop_timeout = _int(stop_timeout, "StopTimeout")
    healthcheck = health.container_healthcheck(
        request.get("Healthcheck"), image_config.get("Healthcheck")
    )
    volumes = {
        **_dict(image_config.get("Volumes"), "Volumes"),
        **_dict(request.get("Volumes"), "Volumes"),
    }
    user = request.get("User") or image_config.get("User") or ""
    config: dict[str, Any] = {
        "Hostname": request.get("Hostname") or "",
        "Domainname": request.get("Domainname") or "",
        "User": user,
        "AttachStdin": bool(request.get("AttachStdin")),
        "AttachStdout": bool(request.get("AttachStdout")),
        "AttachStderr": bool(request.get("AttachStderr")),
        "ExposedPorts": exposed or None,
        "Tty": bool(request.get("Tty")),
        "OpenStdin": bool(request.get("OpenStdin")),
        "StdinOnce": bool(request.get("StdinOnce")),
        "Env": merge_env(
            [f"PATH={DEFAULT_PATH}"]
            if not any(e.startswith("PATH=") for e in image_config.get("Env") or [])
            else [],
            image_config.get("Env"),
            request.get("Env"),
        ),
        "Cmd": cmd,
        "Image": image_name,
        "Volumes": volumes or None,
        "WorkingDir": working_dir,
        "Entrypoint": entrypoint,
        "OnBuild": image_config.get("OnBuild"),
        "Labels": labels,
    }
    if stop_signal:
        config["StopSignal"] = stop_signal
    if stop_timeout is not None:
        config["StopTimeout"] = stop_timeout
    if healthcheck is not None:
        config["Healthcheck"] = healthcheck
    if host_config["NetworkMode"].startswith("container:") and request.get("Hostname"):
        raise InvalidArgument("conflicting options: hostname and the network mode")
    if host_config["UTSMode"] == "host" and (request.get("Hostname") or request.get("Domainname")):
        raise InvalidArgument("Conflicting options: hostname and the UTS mode")
    return Effective(config, host_config, argv[0], argv[1:])
