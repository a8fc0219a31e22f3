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


def port_list(container: Container, network: dict[str, Any]) -> list[dict[str, Any]]:
    """`Ports` of the container list: published bindings, then exposed-only ports."""
    result: list[dict[str, Any]] = []
    published = network.get("Ports") or {}
    for key in sorted(set(published) | set(container.config.get("ExposedPorts") or {})):
        number, _, proto = key.partition("/")
        bindings = published.get(key)
        if not bindings:
            result.append({"PrivatePort": int(number), "Type": proto})
        for binding in bindings or []:
            result.append(
                {
                    "IP": binding["HostIp"],
                    "PrivatePort": int(number),
                    "PublicPort": int(binding["HostPort"]),
                    "Type": proto,
                }
            )
    return result


def inspect(
    container: Container, *, paths: Any, exec_ids: list[str], network: dict[str, Any]
) -> dict[str, Any]:
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
        "Mounts": [],
        "Config": container.config,
        "NetworkSettings": network,
    }


def summary(container: Container, image_name: str, network: dict[str, Any]) -> dict[str, Any]:
    return {
        "Id": container.id,
        "Names": ["/" + container.name],
        "Image": image_name,
        "ImageID": container.image_id,
        "Command": command_text(container),
        "Created": int(parse_time(container.created)),
        "Ports": port_list(container, network),
        "Labels": container.labels,
        "State": container.state.status,
        "Status": status_text(container),
        "HostConfig": {"NetworkMode": container.host_config.get("NetworkMode", "bridge")},
        "NetworkSettings": {"Networks": network["Networks"]},
        "Mounts": [],
    }


STATUSES = (CREATED, RESTARTING, RUNNING, REMOVING, PAUSED, EXITED, DEAD)
