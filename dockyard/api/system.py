"""System routes: ping, version, info, events, disk usage, Dockyard's `system check`, and
the swarm stubs clients probe."""

from __future__ import annotations

import asyncio
import os
import platform
import socket
import time
from typing import Any

from aiohttp import web

from dockyard import __version__, check
from dockyard.api import filters
from dockyard.api.app import (
    API_VERSION,
    ENGINE_VERSION,
    MIN_API_VERSION,
    Routes,
    engine,
    error_response,
    json_response,
    query_bool,
)
from dockyard.api.streams import JSONStream
from dockyard.errors import InvalidArgument
from dockyard.events.bus import Event
from dockyard.events.filter import EventFilter
from dockyard.images.oci import host_arch, now_rfc3339, rfc3339

routes = Routes()


def _ping_headers(request: web.Request, resp: web.StreamResponse) -> None:
    resp.headers["Builder-Version"] = engine(request).config.builder_version()
    resp.headers["Swarm"] = "inactive"
    resp.headers["Cache-Control"] = "no-cache, no-store, must-revalidate"
    resp.headers["Pragma"] = "no-cache"


@routes.get("/_ping")
async def ping(request: web.Request) -> web.StreamResponse:
    resp = web.Response(text="OK", content_type="text/plain")
    _ping_headers(request, resp)
    return resp


@routes.head("/_ping")
async def ping_head(request: web.Request) -> web.StreamResponse:
    resp = web.Response(status=200, content_type="text/plain")
    _ping_headers(request, resp)
    return resp


@routes.get("/version")
async def version(request: web.Request) -> web.StreamResponse:
    details = {
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "Os": "linux",
        "Arch": host_arch(),
        "GitCommit": __version__,
        "GoVersion": _python(),
        "KernelVersion": platform.release(),
        "BuildTime": "",
        "Experimental": "false",
    }
    return json_response(
        {
            "Platform": {"Name": f"Dockyard Engine {__version__}"},
            "Components": [{"Name": "Engine", "Version": ENGINE_VERSION, "Details": details}],
            "Version": ENGINE_VERSION,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": __version__,
            "GoVersion": _python(),
            "Os": "linux",
            "Arch": host_arch(),
            "KernelVersion": platform.release(),
            "BuildTime": "",
        }
    )


def _python() -> str:
    return "python" + ".".join(platform.python_version_tuple()[:2])


def _os_release() -> tuple[str, str]:
    fields = {}
    try:
        with open("/etc/os-release") as f:
            for line in f:
                key, _, value = line.strip().partition("=")
                fields[key] = value.strip('"')
    except OSError:
        pass
    return fields.get("PRETTY_NAME", "Linux"), fields.get("VERSION_ID", "")


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@routes.get("/info")
async def info(request: web.Request) -> web.StreamResponse:
    eng = engine(request)
    facts = eng.info()
    os_name, os_version = _os_release()
    runtimes = {name: {"path": path} for name, path in facts["runtimes"].items()}
    warnings = [
        f"WARNING: runtime {name} cannot run containers on this host: {why}"
        for name, why in facts["unusable_runtimes"].items()
    ]
    withheld = facts["withheld_capabilities"]
    if withheld:
        warnings.append(
            "WARNING: this host withholds capabilities from the daemon, so privileged "
            f"containers run without them: {', '.join(withheld)}"
        )
    if facts["seccomp_profile"] not in (None, "builtin"):
        warnings.append("WARNING: daemon is not using the default seccomp profile")
    last = check.last_summary(eng.config.data_root)
    if last is not None and not last.get("Ok", True):
        warnings.append(
            f"WARNING: the last `dockyard system check` found {last.get('Errors', 0)} error(s) "
            f"and {last.get('Warnings', 0)} warning(s); run it again for details"
        )
    return json_response(
        {
            "ID": facts["id"],
            "Name": socket.gethostname(),
            "ServerVersion": ENGINE_VERSION,
            "Containers": facts["containers"],
            "ContainersRunning": facts["running"],
            "ContainersPaused": facts["paused"],
            "ContainersStopped": facts["containers"] - facts["running"] - facts["paused"],
            "Images": facts["images"],
            "Driver": "overlay2",
            "DriverStatus": [["Backing Filesystem", "overlayfs"], ["Engine", "Dockyard"]],
            "DockerRootDir": facts["data_root"],
            "Plugins": {
                "Volume": [*eng.volumes.driver_names(), *facts["plugins"]["Volume"]],
                "Network": ["bridge", "host", "null", *facts["plugins"]["Network"]],
                "IPAM": ["default", *facts["plugins"]["IPAM"]],  # Dockyard's own key
                "Authorization": facts["plugins"]["Authorization"] or None,
                # Docker lists its logging drivers, not "none" (no driver at all).
                "Log": ["json-file", "local", *facts["plugins"]["Log"]],
            },
            "MemoryLimit": True,
            "SwapLimit": True,
            "CpuCfsPeriod": True,
            "CpuCfsQuota": True,
            "CPUShares": True,
            "CPUSet": True,
            "PidsLimit": True,
            "OomKillDisable": True,
            "IPv4Forwarding": True,
            "Debug": eng.config.debug,
            "NFd": len(os.listdir("/proc/self/fd")),
            "NGoroutines": len(asyncio.all_tasks()),
            "SystemTime": now_rfc3339(),
            "LoggingDriver": eng.config.log_driver,
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": facts["cgroup_version"],
            "NEventsListener": eng.events.listeners,
            "KernelVersion": facts["kernel"],
            "OperatingSystem": os_name,
            "OSVersion": os_version,
            "OSType": "linux",
            "Architecture": platform.machine(),
            "NCPU": os.cpu_count() or 1,
            "MemTotal": _mem_total(),
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": _registry_config(eng.config.insecure_registries),
            "HttpProxy": os.environ.get("HTTP_PROXY", ""),
            "HttpsProxy": os.environ.get("HTTPS_PROXY", ""),
            "NoProxy": os.environ.get("NO_PROXY", ""),
            "Labels": [],
            "ExperimentalBuild": False,
            "Runtimes": runtimes,
            "DefaultRuntime": facts["default_runtime"],
            "Swarm": {
                "NodeID": "",
                "NodeAddr": "",
                "LocalNodeState": "inactive",
                "ControlAvailable": False,
                "Error": "",
                "RemoteManagers": None,
            },
            "LiveRestoreEnabled": True,
            "Isolation": "",
            "InitBinary": facts["init_binary"] or "",
            "ContainerdCommit": {"ID": ""},
            "RuncCommit": {"ID": ""},
            "InitCommit": {"ID": ""},
            "SecurityOptions": [
                *(
                    ["name=seccomp,profile=" + facts["seccomp_profile"]]
                    if facts["seccomp_profile"]
                    else []
                ),
                f"name=cgroupns,mode={facts['cgroup_mode']}",
            ],
            "CgroupMode": facts["cgroup_mode"],
            "Warnings": warnings,
        }
    )


def _registry_config(insecure: list[str]) -> dict[str, Any]:
    """Docker's RegistryConfig: loopback and CIDR entries as CIDRs, host names as indexes."""
    cidrs = ["::1/128", "127.0.0.0/8"]
    indexes: dict[str, Any] = {}
    for entry in insecure:
        if "/" in entry:
            cidrs.append(entry)
        else:
            indexes[entry] = {"Name": entry, "Mirrors": [], "Secure": False, "Official": False}
    indexes["docker.io"] = {"Name": "docker.io", "Mirrors": [], "Secure": True, "Official": True}
    return {"IndexConfigs": indexes, "InsecureRegistryCIDRs": cidrs, "Mirrors": []}


def _parse_time(value: str | None, name: str) -> int | None:
    """Unix seconds (fractions allowed) or RFC 3339, as nanoseconds."""
    if value is None or value == "":
        return None
    seconds, dot, fraction = value.partition(".")
    if seconds.lstrip("-").isdigit() and (not dot or fraction.isdigit()):
        # Exactly, as moby's timetypes reads it: a float would round the nanoseconds, and
        # `logs --since` of a record's own time would then skip that record.
        ns = int(seconds) * 1_000_000_000
        nanos = int((fraction + "000000000")[:9]) if dot else 0
        return ns - nanos if seconds.startswith("-") else ns + nanos
    try:
        return int(float(value) * 1_000_000_000)
    except ValueError:
        pass
    from datetime import datetime

    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(f"invalid value for {name}: {value!r}") from None
    return int(parsed.timestamp() * 1_000_000_000)


def _event_time(value: str | None) -> int | None:
    """`since`/`until` as Docker reads them: Unix seconds (fractions allowed), an RFC 3339
    time or date, or a Go duration before now (`10m`); as nanoseconds."""
    return filters.until([value]) if value else None


def event_json(event: Event) -> dict[str, Any]:
    """An event in Docker's shape, the deprecated `status`/`id`/`from` fields included
    for container and image events (left out when empty, as Go's omitempty does)."""
    message: dict[str, Any] = {}
    if event.type in ("container", "image"):
        legacy = {"status": event.action, "id": event.actor_id}
        if event.type == "container":
            legacy["from"] = event.attributes.get("image", "")
        message.update((k, v) for k, v in legacy.items() if v)
    message.update(
        {
            "Type": event.type,
            "Action": event.action,
            # Go writes map keys sorted
            "Actor": {"ID": event.actor_id, "Attributes": dict(sorted(event.attributes.items()))},
            "scope": event.scope,
            "time": event.time_nano // 1_000_000_000,
            "timeNano": event.time_nano,
        }
    )
    return message


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


@routes.get("/events")
async def events(request: web.Request) -> web.StreamResponse:
    eng = engine(request)
    since = _event_time(request.query.get("since"))
    until = _event_time(request.query.get("until"))
    if until is not None and since is not None and until < since:
        raise InvalidArgument(
            f"`since` time ({request.query['since']}) cannot be after "
            f"`until` time ({request.query['until']})"
        )
    wanted = EventFilter(filters.parse(request.query.get("filters")))
    stream = JSONStream(request)
    await stream.start()
    # Docker replays its buffer only when a window is asked for (`since` or `until`).
    replay_from = since if since is not None else (0 if until is not None else None)
    try:
        with eng.events.subscribe(replay_from) as (past, queue):
            for event in past:
                if until is not None and event.time_nano > until:
                    continue
                if wanted.include(event):
                    await stream.send(event_json(event))
            if until is not None and until <= time.time_ns():
                return await stream.finish()
            while True:
                # Wake up now and then: a client that went away while nothing it wants
                # happened must not hold its subscription for ever.
                timeout = (
                    1.0 if until is None else min(1.0, max(0.0, (until - time.time_ns()) / 1e9))
                )
                try:
                    event = await asyncio.wait_for(queue.get(), timeout)
                except TimeoutError:
                    if until is not None and time.time_ns() >= until:
                        return await stream.finish()
                    if _client_gone(request):
                        return stream.resp
                    continue
                if until is not None and event.time_nano > until:
                    return await stream.finish()
                if wanted.include(event):
                    await stream.send(event_json(event))
    except ConnectionError:  # aiohttp's ClientConnectionResetError among them
        return stream.resp  # the client closed the stream: the normal way for it to end


SWARM_MESSAGE = (
    'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to '
    "connect this node to swarm and try again."
)


async def _swarm(request: web.Request) -> web.StreamResponse:
    return error_response(503, SWARM_MESSAGE)


for _prefix in ("/swarm", "/services", "/tasks", "/nodes", "/secrets", "/configs"):
    for _method in ("GET", "POST", "DELETE"):
        routes.add(_method, _prefix, _swarm)
        routes.add(_method, _prefix + "/{rest:.*}", _swarm)


@routes.get("/system/df")
async def disk_usage(request: web.Request) -> web.StreamResponse:
    from dockyard.api import container_json
    from dockyard.api.images import summary_json
    from dockyard.usage import disk_usage as usage

    kinds = set(request.query.getall("type", ())) or {"container", "image", "volume", "build-cache"}
    for kind in kinds:
        if kind not in ("container", "image", "volume", "build-cache"):
            raise InvalidArgument(f"unknown object type: {kind}")
    found = await usage(engine(request), images="image" in kinds, containers="container" in kinds)
    images = []
    for row in found.images:
        summary = summary_json(row.image, row.containers)
        summary["SharedSize"] = row.shared
        images.append(summary)
    containers = []
    for usage_row in found.containers:
        container = usage_row.container
        summary = container_json.summary(
            container,
            container.config.image,
            container_json.network_settings(container, engine(request).network),
        )
        summary["SizeRw"] = usage_row.size_rw
        summary["SizeRootFs"] = usage_row.size_root_fs
        containers.append(summary)
    volumes = []
    if "volume" in kinds:
        from dockyard.api.volumes import volume_json

        volumes = [volume_json(row.volume, row) for row in await engine(request).volumes.usage()]
    build_cache = []
    if "build-cache" in kinds:
        # the records `docker buildx du` lists: one cache behind both front doors
        build_cache = [
            {
                "ID": record.key,
                "Parents": None,
                "Type": "regular",
                "Description": record.description,
                "InUse": False,
                "Shared": False,
                "Size": record.size,
                "CreatedAt": rfc3339(int(record.created * 1e9)),
                "LastUsedAt": rfc3339(int(record.last_used * 1e9)),
                "UsageCount": 0,
            }
            for record in engine(request).builder.cache.records()
        ]
    return json_response(
        {
            "LayersSize": found.layers_size,
            "Images": images if "image" in kinds else None,
            "Containers": containers if "container" in kinds else None,
            "Volumes": volumes if "volume" in kinds else None,
            "BuildCache": build_cache if "build-cache" in kinds else None,
        }
    )


@routes.get("/system/check")
async def system_check(request: web.Request) -> web.StreamResponse:
    """Dockyard's own: diagnose the store, the state and the host (changes nothing)."""
    report = await check.run(engine(request), repair=False)
    return json_response(report.to_json())


@routes.post("/system/check")
async def system_repair(request: web.Request) -> web.StreamResponse:
    """Dockyard's own: diagnose, then repair what can be repaired without losing data
    (`repair=0`: diagnose only, as GET)."""
    report = await check.run(engine(request), repair=query_bool(request, "repair", True))
    return json_response(report.to_json())
