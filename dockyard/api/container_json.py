"""Docker's JSON shapes for containers: inspect, list summary, and the `Status` text."""

from __future__ import annotations

import os
import shlex
import time
from datetime import datetime
from typing import Any

from dockyard.containers import health
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
from dockyard.network.driver import PROTOCOL_NAMES, PortBinding
from dockyard.network.manager import NetworkManager
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
            return text + " (Paused)"
        return text + health.status_suffix(state.health)
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
    for key in sorted(set(published) | set(container.config.exposed_ports or {})):
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


def network_settings(container: Container, manager: NetworkManager) -> dict[str, Any]:
    """`NetworkSettings` of container inspect, as docker fills it."""
    running = container.state.running
    by_network = {e.network_id: e for e in manager.container_endpoints(container.id)}
    networks: dict[str, Any] = {}
    top: dict[str, Any] = {}
    for name, requested in container.networks.items():
        network = manager.networks.get(requested.network_id)
        endpoint = by_network.get(network.id) if network else None
        dns_names = None
        if network is not None and network.user_defined:
            # Docker's DNSNames: name, aliases, short ID, hostname (no duplicates).
            names = [container.name, *(requested.aliases or []), container.short_id]
            names.append(container.config.hostname or container.short_id)
            dns_names = list(dict.fromkeys(names))
        entry = {
            "IPAMConfig": requested.ipam_config.to_wire() if requested.ipam_config else None,
            "Links": requested.links,
            "Aliases": requested.aliases,
            "MacAddress": endpoint.mac if endpoint else requested.mac_address,
            "DriverOpts": requested.driver_opts,
            "GwPriority": requested.gw_priority,
            "NetworkID": network.id if network else requested.network_id,
            "EndpointID": endpoint.id if endpoint else "",
            "Gateway": endpoint.gateway if endpoint else "",
            "IPAddress": endpoint.ip if endpoint else "",
            "IPPrefixLen": endpoint.prefix_len if endpoint else 0,
            "IPv6Gateway": endpoint.gateway6 if endpoint else "",
            "GlobalIPv6Address": endpoint.ip6 if endpoint else "",
            "GlobalIPv6PrefixLen": endpoint.prefix6_len if endpoint else 0,
            "DNSNames": dns_names,
        }
        networks[name] = entry
        if name == "bridge" and endpoint is not None:
            top = {
                "EndpointID": endpoint.id,
                "Gateway": endpoint.gateway,
                "IPAddress": endpoint.ip,
                "IPPrefixLen": endpoint.prefix_len,
                "MacAddress": endpoint.mac,
                "IPv6Gateway": endpoint.gateway6,
                "GlobalIPv6Address": endpoint.ip6,
                "GlobalIPv6PrefixLen": endpoint.prefix6_len,
            }
    port_map: dict[str, Any] = {}
    published = [
        PortBinding.from_wire(p)
        for e in manager.container_endpoints(container.id)
        if e.external
        for p in e.ports
    ]
    if running:
        for key in container.config.exposed_ports or {}:
            port_map[key] = None
        for binding in published:
            key = f"{binding.port}/{PROTOCOL_NAMES.get(binding.proto, 'tcp')}"
            port_map.setdefault(key, None)
            port_map[key] = [
                *(port_map[key] or []),
                {"HostIp": binding.host_ip or "0.0.0.0", "HostPort": str(binding.host_port)},
            ]
    sandbox = manager.sandbox_path(container.id)
    has_sandbox = running and os.path.ismount(sandbox)
    return {
        "Bridge": "",
        "SandboxID": container.id if has_sandbox else "",
        "SandboxKey": sandbox if has_sandbox else "",
        "HairpinMode": False,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Ports": port_map,
        "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None,
        "EndpointID": top.get("EndpointID", ""),
        "Gateway": top.get("Gateway", ""),
        "GlobalIPv6Address": top.get("GlobalIPv6Address", ""),
        "GlobalIPv6PrefixLen": top.get("GlobalIPv6PrefixLen", 0),
        "IPAddress": top.get("IPAddress", ""),
        "IPPrefixLen": top.get("IPPrefixLen", 0),
        "IPv6Gateway": top.get("IPv6Gateway", ""),
        "MacAddress": top.get("MacAddress", ""),
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
            **({"Health": state.health} if state.health is not None else {}),
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
        "HostConfig": container.host_config.to_wire(),
        "GraphDriver": {
            "Name": "overlay2",
            "Data": {
                "UpperDir": f"{paths.persist}/rootfs/upper",
                "WorkDir": f"{paths.persist}/rootfs/work",
                "MergedDir": f"{paths.persist}/rootfs/merged",
            },
        },
        "Mounts": mount_points(container),
        "Config": container.config.to_wire(),
        "NetworkSettings": network,
    }


def summary(
    container: Container,
    image_name: str,
    network: dict[str, Any],
    link_names: list[str] | None = None,
) -> dict[str, Any]:
    """`link_names`: the `/parent/alias` names other containers' links give it (Docker lists
    them after the container's own name)."""
    return {
        "Id": container.id,
        "Names": ["/" + container.name, *(link_names or [])],
        "Image": image_name,
        "ImageID": container.image_id,
        "Command": command_text(container),
        "Created": int(parse_time(container.created)),
        "Ports": port_list(container, network),
        "Labels": container.labels,
        "State": container.state.status,
        "Status": status_text(container),
        "HostConfig": {"NetworkMode": container.host_config.network_mode or "bridge"},
        "NetworkSettings": {"Networks": network["Networks"]},
        "Mounts": mount_points(container),
    }


STATUSES = (CREATED, RESTARTING, RUNNING, REMOVING, PAUSED, EXITED, DEAD)
