"""A managed plugin's `config.json`: schema, validation, settings and privileges.

The file is decoded with Go's rules (keys in any case; see `dockyard.wire`)
and kept in Docker's shape, every key present and Go-cased, which is what
`plugin inspect` shows as `Config`. Validation refuses what Docker would
refuse and what could escape the plugin's own directories (a socket path with
`..`, relative mount destinations, unknown capabilities).

Settings (`Env`, `Args`, `Mounts`, `Devices`) start as the config's defaults
and change with `plugin set name[.field]=value` while the plugin is disabled;
privileges are what a user grants at install.
"""

from __future__ import annotations

import json
import re
from typing import Any

from dockyard.containers import config as container_config
from dockyard.errors import InvalidArgument
from dockyard.plugins.protocol import kind_of_capability
from dockyard.wire import Message, WireError, wire

PROTOCOL_SCHEME = "moby.plugins.http/v1"
MAX_CONFIG_SIZE = 1 << 20
_INTERFACE_TYPE = re.compile(r"^([a-z0-9_-]+)\.([a-z0-9_-]+)/([A-Za-z0-9._-]+)$")


class Interface(Message):
    types: list[str] = wire(default_factory=list)
    socket: str = wire(default="")
    protocol_scheme: str = wire(default="", omitempty=True)


class Network(Message):
    type: str = wire(default="")


class User(Message):
    uid: int = wire("UID", default=0, omitempty=True)
    gid: int = wire("GID", default=0, omitempty=True)


class Mount(Message):
    name: str = wire(default="")
    description: str = wire(default="")
    settable: list[str] | None = wire(default=None)
    source: str | None = wire(default=None)
    destination: str = wire(default="")
    type: str = wire(default="")
    options: list[str] | None = wire(default=None)


class Env(Message):
    name: str = wire(default="")
    description: str = wire(default="")
    settable: list[str] | None = wire(default=None)
    value: str | None = wire(default=None)


class Args(Message):
    name: str = wire(default="")
    description: str = wire(default="")
    settable: list[str] | None = wire(default=None)
    value: list[str] = wire(default_factory=list)


class Device(Message):
    name: str = wire(default="")
    description: str = wire(default="")
    settable: list[str] | None = wire(default=None)
    path: str | None = wire(default=None)


class Linux(Message):
    capabilities: list[str] = wire(default_factory=list)
    allow_all_devices: bool = wire(default=False)
    devices: list[Device] = wire(default_factory=list)


class RootFS(Message):
    type: str = wire(default="", omitempty=True)
    diff_ids: list[str] = wire("diff_ids", default_factory=list, omitempty=True)


class PluginConfig(Message):
    docker_version: str = wire(default="", omitempty=True)
    description: str = wire(default="")
    documentation: str = wire(default="")
    interface: Interface = wire(default_factory=Interface)
    entrypoint: list[str] = wire(default_factory=list)
    work_dir: str = wire("WorkDir", default="")
    user: User = wire(default_factory=User)
    network: Network = wire(default_factory=Network)
    linux: Linux = wire(default_factory=Linux)
    propagated_mount: str = wire(default="")
    ipc_host: bool = wire(default=False)
    pid_host: bool = wire(default=False)
    mounts: list[Mount] = wire(default_factory=list)
    env: list[Env] = wire(default_factory=list)
    args: Args = wire(default_factory=Args)
    rootfs: RootFS | None = wire("rootfs", default=None, omitempty=True)

    def kinds(self) -> list[str]:
        """The plugin kinds its interface types declare (`docker.volumedriver/1.0` ->
        `VolumeDriver`); types of other prefixes or unknown capabilities are skipped."""
        kinds = []
        for text in self.interface.types:
            match = _INTERFACE_TYPE.match(text)
            if match and match.group(1) == "docker":
                kind = kind_of_capability(match.group(2))
                if kind:
                    kinds.append(kind)
        return kinds


class Settings(Message):
    mounts: list[Mount] = wire(default_factory=list)
    env: list[str] = wire(default_factory=list)
    args: list[str] = wire(default_factory=list)
    devices: list[Device] = wire(default_factory=list)


def parse(raw: bytes) -> PluginConfig:
    """Decode and validate a `config.json`; InvalidArgument says what is wrong."""
    if len(raw) > MAX_CONFIG_SIZE:
        raise InvalidArgument("plugin config.json is larger than 1 MiB")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"invalid plugin config.json: {e}") from None
    if not isinstance(data, dict):
        raise InvalidArgument("invalid plugin config.json: not a JSON object")
    try:
        config = PluginConfig.decode(data)
    except WireError as e:
        raise InvalidArgument(f"invalid plugin config.json: {e}") from None
    validate(config)
    config.rootfs = None  # filled in by the engine, never taken from the user
    return config


def _bad(message: str) -> InvalidArgument:
    return InvalidArgument(f"invalid plugin config.json: {message}")


def _absolute(path: str, what: str) -> None:
    if not path.startswith("/") or "\0" in path or ".." in path.split("/"):
        raise _bad(f"{what} must be an absolute path without '..': {path!r}")


def _settable(values: list[str] | None, allowed: str, what: str) -> None:
    for value in values or []:
        if value != allowed:
            raise _bad(f"{what}: {value!r} is not settable (only {allowed!r} is)")


def validate(config: PluginConfig) -> None:
    iface = config.interface
    if not iface.types:
        raise _bad("Interface.Types is empty: the plugin implements nothing")
    for text in iface.types:
        if not _INTERFACE_TYPE.match(text):
            raise _bad(f"{text!r} is not a plugin interface type (prefix.capability/version)")
    if not iface.socket:
        raise _bad("Interface.Socket is empty")
    parts = iface.socket.split("/")
    if iface.socket.startswith("/") or ".." in parts or "\0" in iface.socket:
        raise _bad(f"Interface.Socket must be a name under /run/docker/plugins: {iface.socket!r}")
    if iface.protocol_scheme not in ("", PROTOCOL_SCHEME):
        raise _bad(f"unsupported protocol scheme {iface.protocol_scheme!r}")
    if not config.entrypoint and not config.args.value:
        raise _bad("Entrypoint is empty")
    if config.work_dir:
        _absolute(config.work_dir, "WorkDir")
    if config.propagated_mount:
        _absolute(config.propagated_mount, "PropagatedMount")
    if config.network.type not in ("", "host", "none", "bridge"):
        raise _bad(f"unsupported network type {config.network.type!r}")
    for mount in config.mounts:
        if not mount.destination:
            raise _bad(f"mount {mount.name or '?'} has no Destination")
        _absolute(mount.destination, f"mount {mount.name or mount.destination} Destination")
        if mount.source:
            _absolute(mount.source, f"mount {mount.name or mount.destination} Source")
        _settable(mount.settable, "source", f"mount {mount.name}")
    names = set()
    for env in config.env:
        if not env.name or "=" in env.name or "\0" in env.name:
            raise _bad(f"invalid Env name {env.name!r}")
        if env.name in names:
            raise _bad(f"Env {env.name} is declared twice")
        names.add(env.name)
        _settable(env.settable, "value", f"env {env.name}")
    _settable(config.args.settable, "value", "args")
    for device in config.linux.devices:
        if device.path:
            _absolute(device.path, f"device {device.name} Path")
        _settable(device.settable, "path", f"device {device.name}")
    for cap in config.linux.capabilities:
        try:
            container_config.capability(cap)
        except InvalidArgument as e:
            raise _bad(e.message) from None


def initial_settings(config: PluginConfig) -> Settings:
    return Settings(
        mounts=[Mount.decode(m.to_wire()) for m in config.mounts],
        env=[f"{e.name}={e.value}" for e in config.env if e.value is not None],
        args=list(config.args.value),
        devices=[Device.decode(d.to_wire()) for d in config.linux.devices],
    )


def apply_settings(config: PluginConfig, settings: Settings, items: list[str]) -> Settings:
    """Docker's `plugin set`: each item is `name[.field]=value`; returns new settings."""
    new = Settings.decode(settings.to_wire())
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"invalid setting {item!r}: expected name[.field]=value")
        name, _, field = key.partition(".")
        env = next((e for e in config.env if e.name == name), None)
        if env is not None:
            _check_field(name, field, env.settable, "value")
            new.env = [e for e in new.env if e.partition("=")[0] != name] + [f"{name}={value}"]
            continue
        mount = next((m for m in config.mounts if m.name == name), None)
        if mount is not None:
            _check_field(name, field, mount.settable, "source")
            for m in new.mounts:
                if m.name == name:
                    m.source = value
            continue
        device = next((d for d in config.linux.devices if d.name == name), None)
        if device is not None:
            _check_field(name, field, device.settable, "path")
            for d in new.devices:
                if d.name == name:
                    d.path = value
            continue
        if config.args.name and config.args.name == name:
            _check_field(name, field, config.args.settable, "value")
            new.args = value.split()
            continue
        raise InvalidArgument(f"setting {name!r} not found in the plugin configuration")
    return new


def _check_field(name: str, field: str, settable: list[str] | None, allowed: str) -> None:
    settable = settable or []
    if not field:
        if len(settable) > 1:
            raise InvalidArgument(f"multiple fields are settable for {name}, one must be specified")
        field = settable[0] if settable else allowed
    if field != allowed or field not in settable:
        raise InvalidArgument(f"{name}.{field} is not settable")


def privileges(config: PluginConfig) -> list[dict[str, Any]]:
    """What the plugin asks of the host, in Docker's order and words."""
    out: list[dict[str, Any]] = []
    if config.network.type not in ("", "bridge"):
        out.append(
            {
                "Name": "network",
                "Description": "permissions to access a network",
                "Value": [config.network.type],
            }
        )
    if config.ipc_host:
        out.append(
            {
                "Name": "host ipc namespace",
                "Description": "allow access to host ipc namespace",
                "Value": ["true"],
            }
        )
    if config.pid_host:
        out.append(
            {
                "Name": "host pid namespace",
                "Description": "allow access to host pid namespace",
                "Value": ["true"],
            }
        )
    for mount in config.mounts:
        if mount.source:
            out.append(
                {"Name": "mount", "Description": "host path to mount", "Value": [mount.source]}
            )
    for device in config.linux.devices:
        if device.path:
            out.append(
                {"Name": "device", "Description": "host device to access", "Value": [device.path]}
            )
    if config.linux.allow_all_devices:
        out.append(
            {
                "Name": "allow-all-devices",
                "Description": "allow 'rwm' access to all devices",
                "Value": ["true"],
            }
        )
    if config.linux.capabilities:
        out.append(
            {
                "Name": "capabilities",
                "Description": "list of additional capabilities required",
                "Value": list(config.linux.capabilities),
            }
        )
    return out


def check_privileges(config: PluginConfig, granted: Any) -> None:
    """`granted` (what the user accepted, Docker's privilege list) must be exactly what the
    config asks for, names and values compared in any order."""

    def normal(items: Any) -> list[tuple[str, list[str]]]:
        if not isinstance(items, list):
            raise InvalidArgument("invalid privileges: expected a list")
        out = []
        for item in items:
            value = item.get("Value") if isinstance(item, dict) else None
            name = item.get("Name") if isinstance(item, dict) else None
            if not isinstance(name, str) or not isinstance(value, list | type(None)):
                raise InvalidArgument(f"invalid privilege {item!r}")
            out.append((name, sorted(str(v) for v in value or [])))
        return sorted(out)

    if normal(privileges(config)) != normal(granted if granted is not None else []):
        raise InvalidArgument("incorrect privileges")
