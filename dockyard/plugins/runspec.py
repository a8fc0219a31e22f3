"""The OCI runtime spec of a managed plugin, from its config.json and settings.

A plugin runs like a container with Docker's defaults (the same generator,
`containers.spec`, builds the spec), adjusted as Docker adjusts it for
plugins: the root is the plugin's own writable rootfs directory; the
capabilities of `Linux.Capabilities` come on top of the defaults in every set;
no seccomp profile; namespaces are shared with the host for `Network.Type:
host`, `PidHost` and `IpcHost`; and these mounts are added in order: the
propagated mount (rshared, so mounts the plugin makes there are visible on the
host), the config's mounts (with their current sources), the plugin's socket
directory at `/run/docker/plugins`, the host's `/etc/hosts` and
`/etc/resolv.conf` when a network type is declared, and for log drivers the
FIFO directory at `/run/docker/logging`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dockyard.containers import spec
from dockyard.containers.config import DEFAULT_PATH, capability
from dockyard.containers.model import Container
from dockyard.containers.schema import ContainerConfig, DeviceMapping, HostConfig, StrSlice
from dockyard.containers.users import User
from dockyard.errors import InvalidArgument
from dockyard.plugins.config import PluginConfig, Settings
from dockyard.plugins.protocol import LOG

SOCKET_DIR = "/run/docker/plugins"
LOGGING_DIR = "/run/docker/logging"


@dataclass(frozen=True)
class HostPaths:
    rootfs: str
    propagated: str  # host side of the propagated mount
    sockets: str  # host side of /run/docker/plugins
    logging: str  # host side of /run/docker/logging
    cgroup_path: str


def generate(
    plugin_id: str,
    config: PluginConfig,
    settings: Settings,
    paths: HostPaths,
    *,
    nofile_limit: int,
    cgroup_namespace: bool,
) -> dict[str, Any]:
    argv = [*config.entrypoint, *settings.args]
    if not argv:
        raise InvalidArgument("plugin has no entrypoint")
    caps = [capability(c) for c in config.linux.capabilities]
    host_config = HostConfig(
        cap_add=StrSlice(caps),
        network_mode="host" if config.network.type == "host" else "none",
        pid_mode="host" if config.pid_host else "",
        ipc_mode="host" if config.ipc_host else "private",
        devices=[
            DeviceMapping(path_on_host=d.path, path_in_container=d.path, cgroup_permissions="rwm")
            for d in settings.devices
            if d.path
        ],
    )
    container = Container(
        id=plugin_id,
        name="plugin-" + plugin_id[:12],
        image_id="",
        created="",
        config=ContainerConfig(
            env=[f"PATH={DEFAULT_PATH}", *settings.env], working_dir=config.work_dir or "/"
        ),
        host_config=host_config,
        chain_id=None,
        path=argv[0],
        args=argv[1:],
    )
    oci = spec.generate(
        container,
        spec.SpecInputs(
            rootfs=paths.rootfs,
            user=User(0, 0, []),
            hostname=plugin_id[:12],
            cgroup_path=paths.cgroup_path,
            nofile_limit=nofile_limit,
            cgroup_namespace=cgroup_namespace,
        ),
    )
    oci["process"]["capabilities"]["inheritable"] = list(oci["process"]["capabilities"]["bounding"])
    oci["process"]["noNewPrivileges"] = False
    mounts: list[dict[str, Any]] = oci["mounts"]
    if config.propagated_mount:
        mounts.append(_bind(paths.propagated, config.propagated_mount, ["rbind", "rw", "rshared"]))
        oci["linux"]["rootfsPropagation"] = "rshared"
    for mount in settings.mounts:
        if not mount.source:
            raise InvalidArgument(f"plugin mount {mount.name or mount.destination} has no source")
        options = list(mount.options or [])
        kind = mount.type or "bind"
        if kind == "bind" and not {"bind", "rbind"} & set(options):
            options.append("rbind")
        entry: dict[str, Any] = {
            "destination": mount.destination,
            "type": kind,
            "source": mount.source,
            "options": options,
        }
        # A mount on a /dev path replaces the default one there (Docker's rule).
        mounts[:] = [m for m in mounts if m["destination"] != mount.destination]
        mounts.append(entry)
    mounts.append(_bind(paths.sockets, SOCKET_DIR, ["rbind", "rshared"]))
    if config.network.type:
        mounts.append(_bind("/etc/hosts", "/etc/hosts", ["rbind", "ro"]))
        mounts.append(_bind("/etc/resolv.conf", "/etc/resolv.conf", ["rbind", "ro"]))
    if LOG in config.kinds():
        mounts.append(_bind(paths.logging, LOGGING_DIR, ["rbind", "rw"]))
    if config.linux.allow_all_devices:
        oci["linux"]["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
    oci["linux"].pop("seccomp", None)
    return oci


def _bind(source: str, destination: str, options: list[str]) -> dict[str, Any]:
    return {"destination": destination, "type": "bind", "source": source, "options": options}
