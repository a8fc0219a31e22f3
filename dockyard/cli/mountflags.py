"""`run`/`create` mount flags turned into the Engine API's fields, as docker's CLI does.

`-v DST` becomes an anonymous volume in `Config.Volumes`; `-v SRC:DST[:MODE]`
a `HostConfig.Binds` entry (a relative `./dir` made absolute); `--mount
k=v,...` a `HostConfig.Mounts` object; `--tmpfs DST[:OPTS]` a
`HostConfig.Tmpfs` entry. The daemon checks the rest and answers with
Docker's messages.
"""

from __future__ import annotations

import csv
import os
from typing import Any

from dockyard.units import UnitError, parse_size


class MountFlagError(ValueError):
    pass


def volume_flags(values: tuple[str, ...]) -> tuple[dict[str, Any], list[str]]:
    """`-v` values -> (Config.Volumes, HostConfig.Binds)."""
    volumes: dict[str, Any] = {}
    binds: list[str] = []
    for value in values:
        source, sep, rest = value.partition(":")
        if not sep:
            volumes[value] = {}
            continue
        if source.startswith("."):
            source = os.path.abspath(source)
        binds.append(f"{source}:{rest}")
    return volumes, binds


def tmpfs_flags(values: tuple[str, ...]) -> dict[str, str]:
    tmpfs = {}
    for value in values:
        destination, _, options = value.partition(":")
        tmpfs[destination] = options
    return tmpfs


def _bool(key: str, value: str | None) -> bool:
    if value is None:
        return True
    lowered = value.lower()
    if lowered in ("1", "true", "t", "yes", "y", "on"):
        return True
    if lowered in ("0", "false", "f", "no", "n", "off"):
        return False
    raise MountFlagError(f"invalid value for {key}: {value}")


def mount_flag(value: str) -> dict[str, Any]:
    """One `--mount` value -> a `HostConfig.Mounts` entry."""
    fields = next(csv.reader([value]), [])
    mount: dict[str, Any] = {"Type": "volume"}
    bind: dict[str, Any] = {}
    volume: dict[str, Any] = {}
    tmpfs: dict[str, Any] = {}
    for field in fields:
        key, sep, val = field.partition("=")
        key = key.strip().lower()
        raw: str | None = val if sep else None
        if key in ("readonly", "ro"):
            mount["ReadOnly"] = _bool(key, raw)
            continue
        if key == "volume-nocopy":
            volume["NoCopy"] = _bool(key, raw)
            continue
        if key == "bind-nonrecursive":
            bind["NonRecursive"] = _bool(key, raw)
            continue
        if key == "bind-create-mountpoint":
            bind["CreateMountpoint"] = _bool(key, raw)
            continue
        if raw is None:
            raise MountFlagError(f"invalid field '{field}' must be a key=value pair")
        if key == "type":
            mount["Type"] = raw
        elif key in ("source", "src"):
            mount["Source"] = raw
        elif key in ("target", "dst", "destination"):
            mount["Target"] = raw
        elif key == "consistency":
            mount["Consistency"] = raw
        elif key == "bind-propagation":
            bind["Propagation"] = raw
        elif key == "volume-driver":
            volume.setdefault("DriverConfig", {})["Name"] = raw
        elif key == "volume-label":
            label, _, label_value = raw.partition("=")
            volume.setdefault("Labels", {})[label] = label_value
        elif key == "volume-opt":
            opt, _, opt_value = raw.partition("=")
            volume.setdefault("DriverConfig", {}).setdefault("Options", {})[opt] = opt_value
        elif key == "volume-subpath":
            volume["Subpath"] = raw
        elif key == "tmpfs-size":
            try:
                tmpfs["SizeBytes"] = parse_size(raw)
            except UnitError as e:
                raise MountFlagError(str(e)) from None
        elif key == "tmpfs-mode":
            try:
                tmpfs["Mode"] = int(raw, 8)
            except ValueError:
                raise MountFlagError(f"invalid value for {key}: {raw}") from None
        else:
            raise MountFlagError(f"unexpected key '{key}' in '{field}'")
    if not mount.get("Target"):
        raise MountFlagError("target is required")
    for name, options in (
        ("BindOptions", bind),
        ("VolumeOptions", volume),
        ("TmpfsOptions", tmpfs),
    ):
        if options:
            mount[name] = options
    return mount
