"""Docker's JSON shapes for containers: inspect, list summary, and the `Status` text."""

from __future__ import annotations

import shlex
import time
from datetime import datetime
from typing import Any

from dockyard.containers.model import (
    CREATED,
    DEAD,
    EXITED,
    PAUSED,
    REMOVING,
    RESTARTING,
    RUNNING,
    Container,
)
from dockyard.images.oci import ZERO_TIME
from dockyard.units import human_duration
from dockyard.volumes.mounts import MountPoint


def parse_time(text: str) -> float:
    if not text or text == ZERO_TIME:
        return 0.0
    base, _, frac = text.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(base + "+00:00").timestamp()
    return seconds + (float("0." + frac) if frac else 0.0)


def status_text(container: Container) -> str:
    state = container.state
    now = time.time()
    if state.status in (RUNNING, PAUSED):
        text = "Up " + human_duration(now - parse_time(state.started_at))
        if state.status == PAUSED:
            text += " (Paused)"
        return text
    since_exit = human_duration(now - parse_time(state.finished_at))
    if state.status == RESTARTING:
        return f"Restarting ({state.exit_code}) {since_exit} ago"
    if state.status == REMOVING:
        return "Removal In Progress"
    if state.status == DEAD:
        return "Dead"
    if state.status == EXITED and state.finished_at != ZERO_TIME:
        return (
            f"Exited ({state.exit_code}) {human_duration(now - parse_time(state.finished_at))} ago"
        )
    return "Created"


def command_text(container: Container) -> str:
    return " ".join(
        shlex.quote(a) if (" " in a or not a) else a for a in [container.path, *container.args]
    )


def ports(container: Container) -> dict[str, Any]:
    exposed = container.config.get("ExposedPorts") or {}
    if container.state.status not in (RUNNING, PAUSED):
        return {}
    return {port: None for port in exposed}


def network_settings(container: Container, *, summary: bool = False) -> dict[str, Any]:
    mode = container.host_config.get("NetworkMode", "bridge")
    endpoint = {
        "IPAMConfig": None,
        "Links": None,
        "Aliases": None,
        "MacAddress": "",
        "DriverOpts": None,
        "NetworkID": "",
        "EndpointID": "",
        "Gateway": "",
        "IPAddress": "",
        "IPPrefixLen": 0,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "DNSNames": None,
    }
    networks = {mode: endpoint} if mode in ("bridge", "host", "none") else {}
    if summary:
        return {"Networks": networks}
    return {
        "Bridge": "",
        "SandboxID": "",
        "SandboxKey": "",
        "HairpinMode": False,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Ports": ports(container),
        "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None,
        "EndpointID": "",
        "Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "IPAddress": "",
        "IPPrefixLen": 0,
        "IPv6Gateway": "",
        "MacAddress": "",
        "Networks": networks,
    }


def mount_points(container: Container) -> list[dict[str, Any]]:
    """`Mounts`: the container's volumes, binds and `--mount` tmpfs (not `--tmpfs`)."""
    return [_mount_point(point) for point in container.mounts]


def _mount_point(point: MountPoint) -> dict[str, Any]:
    data: dict[str, Any] = {"Type": point.type}
    if point.name:
        data["Name"] = point.name
    data["Source"] = point.source
    data["Destination"] = point.destination
    if point.driver:
        data["Driver"] = point.driver
    data["Mode"] = point.mode
    data["RW"] = point.rw
    data["Propagation"] = point.propagation
    return data


def inspect(container: Container, *, paths: Any, exec_ids: list[str]) -> dict[str, Any]:
    state = container.state
    status = state.status
    return {
        "Id": container.id,
        "Created": container.created,
        "Path": container.path,
        "Args": container.args,
        "State": {
            "Status": status,
            "Running": status in (RUNNING, PAUSED),
            "Paused": status == PAUSED,
            "Restarting": status == RESTARTING,
            "OOMKilled": state.oom_killed,
            "Dead": status == DEAD,
            "Pid": state.pid,
            "ExitCode": state.exit_code,
            "Error": state.error,
            "StartedAt": state.started_at,
            "FinishedAt": state.finished_at,
        },
        "Image": container.image_id,
        "ResolvConfPath": f"{paths.persist}/resolv.conf",
        "HostnamePath": f"{paths.persist}/hostname",
        "HostsPath": f"{paths.persist}/hosts",
        "LogPath": paths.log,
        "Name": "/" + container.name,
        "RestartCount": state.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": exec_ids or None,
        "HostConfig": container.host_config,
        "GraphDriver": {
            "Name": "overlay2",
            "Data": {
                "UpperDir": f"{paths.persist}/rootfs/upper",
                "WorkDir": f"{paths.persist}/rootfs/work",
                "MergedDir": f"{paths.persist}/rootfs/merged",
            },
        },
        "Mounts": mount_points(container),
        "Config": container.config,
        "NetworkSettings": network_settings(container),
    }


def summary(container: Container, image_name: str) -> dict[str, Any]:
    exposed = container.config.get("ExposedPorts") or {}
    port_list = [
        {"PrivatePort": int(port.split("/")[0]), "Type": port.split("/")[1]} for port in exposed
    ]
    return {
        "Id": container.id,
        "Names": ["/" + container.name],
        "Image": image_name,
        "ImageID": container.image_id,
        "Command": command_text(container),
        "Created": int(parse_time(container.created)),
        "Ports": port_list,
        "Labels": container.labels,
        "State": container.state.status,
        "Status": status_text(container),
        "HostConfig": {"NetworkMode": container.host_config.get("NetworkMode", "bridge")},
        "NetworkSettings": network_settings(container, summary=True),
        "Mounts": mount_points(container),
    }


STATUSES = (CREATED, RESTARTING, RUNNING, REMOVING, PAUSED, EXITED, DEAD)
