"""A container's mount points: Docker's Binds, Mounts, Tmpfs and VolumesFrom, parsed and checked.

Pure logic with moby's grammar and error texts (its `volume/mounts` Linux
parser): `-v SRC:DST[:MODE]` where SRC absolute means a bind mount and
anything else a named volume, `HostConfig.Mounts` entries of type bind,
volume or tmpfs, `--tmpfs DST[:OPTIONS]` and `--volumes-from CTR[:MODE]`.
The result is a list of `MountPoint`s kept in the container's record; the
volume service turns them into real mounts at start.
"""

from __future__ import annotations

import json
import os
import posixpath
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from dockyard.containers.schema import BindOptions, Driver, Mount, TmpfsOptions, VolumeOptions
from dockyard.errors import InvalidArgument, NotImplementedByEngine

BIND = "bind"
VOLUME = "volume"
TMPFS = "tmpfs"

PROPAGATIONS = ("private", "rprivate", "slave", "rslave", "shared", "rshared")
DEFAULT_PROPAGATION = "rprivate"
_RW_MODES = ("rw", "ro", "ro-non-recursive", "ro-force-recursive", "rro")
_READ_ONLY = ("ro", "ro-non-recursive", "ro-force-recursive", "rro")
_LABEL_MODES = ("z", "Z")
_COPY_MODES = ("nocopy",)
_CONSISTENCY = ("consistent", "cached", "delegated", "default")
# Data options a tmpfs takes besides flags (moby/sys/mount validFlags).
_TMPFS_DATA = ("size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol")
# Flags a tmpfs may carry, grouped so that later words replace earlier ones.
_TMPFS_FLAGS = {
    "ro": "rw",
    "rw": "rw",
    "suid": "suid",
    "nosuid": "suid",
    "dev": "dev",
    "nodev": "dev",
    "exec": "exec",
    "noexec": "exec",
    "sync": "sync",
    "async": "sync",
    "dirsync": "dirsync",
    "atime": "atime",
    "noatime": "atime",
    "diratime": "diratime",
    "nodiratime": "diratime",
    "relatime": "relatime",
    "norelatime": "relatime",
    "strictatime": "strictatime",
    "nostrictatime": "strictatime",
    "mand": "mand",
    "nomand": "mand",
    **{p: "propagation" for p in PROPAGATIONS},
    "unbindable": "propagation",
    "runbindable": "propagation",
}
TMPFS_DEFAULTS = ["noexec", "nosuid", "nodev", DEFAULT_PROPAGATION]


@dataclass
class MountPoint:
    """One mount of a container, as inspect shows it and start needs it."""

    type: str  # bind | volume | tmpfs
    destination: str
    source: str = ""  # bind: the host path; volume: its mountpoint when last known
    name: str = ""  # volume name
    driver: str = ""  # volume driver
    mode: str = ""  # the mode text as given ("ro,z"); "z" for named local volumes
    rw: bool = True
    propagation: str = ""
    copy_data: bool = False  # volume: fill a new volume with the image's content
    anonymous: bool = False  # volume created for this container only (`rm -v` removes it)
    create_source: bool = False  # bind from `-v`: create a missing host directory
    non_recursive: bool = False  # bind: do not bind the mounts below the source
    tmpfs_options: str = ""  # tmpfs: data such as "size=1m,mode=1777"
    volume_options: dict[str, str] = field(default_factory=dict)  # to create the volume
    volume_labels: dict[str, str] = field(default_factory=dict)
    subpath: str = ""  # volume: mount only this directory of it (relative, inside)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MountPoint:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _invalid_spec(raw: str) -> InvalidArgument:
    return InvalidArgument(f"invalid volume specification: '{raw}'")


def _config_error(kind: str, message: str) -> InvalidArgument:
    return InvalidArgument(f"invalid mount config for type {json.dumps(kind)}: {message}")


def valid_mode(mode: str) -> bool:
    if mode == "":
        return True
    counts = {"rw": 0, "label": 0, "propagation": 0, "copy": 0, "consistency": 0}
    for option in mode.split(","):
        if option in _RW_MODES:
            counts["rw"] += 1
        elif option in _LABEL_MODES:
            counts["label"] += 1
        elif option in PROPAGATIONS:
            counts["propagation"] += 1
        elif option in _COPY_MODES:
            counts["copy"] += 1
        elif option in _CONSISTENCY:
            counts["consistency"] += 1
        else:
            return False
    return all(n <= 1 for n in counts.values())


def read_write(mode: str) -> bool:
    return valid_mode(mode) and not any(o in _READ_ONLY for o in mode.split(","))


def _propagation(mode: str) -> str:
    for option in mode.split(","):
        if option in PROPAGATIONS:
            return option
    return ""


def _check_target(kind: str, target: str) -> None:
    if not target:
        raise _config_error(kind, "field Target must not be empty")
    if posixpath.normpath(target) == "/":
        raise _config_error(kind, "invalid specification: destination can't be '/'")
    if not target.startswith("/"):
        raise _config_error(kind, f"invalid mount path: '{target}' mount path must be absolute")


def clean(path: str) -> str:
    """An absolute, normalised container path."""
    return "/" + posixpath.normpath(path).lstrip("/")


def parse_bind(raw: str, volume_driver: str = "") -> MountPoint:
    """One `Binds` entry (`-v SRC:DST[:MODE]`, or just `DST` for an anonymous volume)."""
    parts = raw.split(":", 3)
    if parts[0] == "" or len(parts) > 3:
        raise _invalid_spec(raw)
    source, mode = "", ""
    if len(parts) == 1:
        target = parts[0]
    elif len(parts) == 2:
        if valid_mode(parts[1]):
            raise _invalid_spec(raw)  # "/foo:rw": a mode without a destination
        source, target = parts
    else:
        source, target, mode = parts
    if not valid_mode(mode):
        raise InvalidArgument(f"invalid mode: {mode}")
    kind = BIND if source.startswith("/") else VOLUME
    try:
        _check_target(kind, target)
        if kind == BIND and not source.startswith("/"):
            raise _config_error(kind, f"invalid mount path: '{source}' mount path must be absolute")
    except InvalidArgument as e:
        raise InvalidArgument(f"invalid volume specification: '{raw}': {e.message}") from None
    point = MountPoint(type=kind, destination=clean(target), mode=mode, rw=read_write(mode))
    if kind == BIND:
        point.source = clean(source)
        point.propagation = _propagation(mode) or DEFAULT_PROPAGATION
        point.create_source = True
    else:
        point.name = source
        point.anonymous = not source
        point.driver = volume_driver
        point.copy_data = "nocopy" not in mode.split(",")
    return point


def parse_mount(spec: Mount, *, source_exists: Any = os.path.exists) -> MountPoint:
    """One `HostConfig.Mounts` entry (`--mount type=...`)."""
    kind = spec.type
    target = spec.target
    source = spec.source
    read_only = spec.read_only
    if kind not in (BIND, VOLUME, TMPFS):
        if kind in ("image", "npipe", "cluster"):
            raise NotImplementedByEngine(f"mounts of type {kind!r} are not supported by Dockyard")
        raise _config_error(kind, "mount type unknown")
    _check_target(kind, target)
    point = MountPoint(type=kind, destination=clean(target), rw=not read_only)
    if kind == BIND:
        if not source:
            raise _config_error(kind, "field Source must not be empty")
        bind = spec.bind_options or BindOptions()
        propagation = bind.propagation
        if propagation and propagation not in PROPAGATIONS:
            raise _config_error(kind, f"invalid propagation mode: {propagation}")
        if spec.volume_options:
            raise _config_error(kind, "field VolumeOptions must not be specified")
        if not source.startswith("/"):
            raise _config_error(kind, f"invalid mount path: '{source}' mount path must be absolute")
        if not source_exists(source) and not bind.create_mountpoint:
            raise _config_error(kind, f"bind source path does not exist: {source}")
        point.source = clean(source)
        point.propagation = propagation or DEFAULT_PROPAGATION
        point.create_source = bind.create_mountpoint
        point.non_recursive = bind.non_recursive
    elif kind == VOLUME:
        if spec.bind_options:
            raise _config_error(kind, "field BindOptions must not be specified")
        if read_only and not source:
            raise _config_error(kind, "must not set ReadOnly mode when using anonymous volumes")
        options = spec.volume_options or VolumeOptions()
        driver = options.driver_config or Driver()
        point.name = source
        point.anonymous = not source
        point.driver = driver.name
        point.copy_data = not options.no_copy
        point.volume_options = dict(driver.options or {})
        point.volume_labels = dict(options.labels or {})
        if options.subpath:
            point.subpath = _subpath(kind, options.subpath)
            point.copy_data = False  # Docker copies the image's content only to a whole volume
    else:
        if spec.bind_options:
            raise _config_error(kind, "field BindOptions must not be specified")
        if source:
            raise _config_error(kind, "field Source must not be specified")
        try:
            point.tmpfs_options = tmpfs_data(spec.tmpfs_options or TmpfsOptions(), read_only)
        except InvalidArgument as e:
            raise _config_error(kind, e.message) from None
    return point


def _subpath(kind: str, subpath: str) -> str:
    """A volume subpath: relative, and never climbing out of the volume."""
    cleaned = os.path.normpath(subpath)
    if cleaned.startswith("/"):
        raise _config_error(kind, f"subpath must be a relative path within the volume: {subpath}")
    if cleaned == ".." or cleaned.startswith("../"):
        raise _config_error(kind, f"subpath must not escape the volume: {subpath}")
    return cleaned


def tmpfs_data(options: TmpfsOptions, read_only: bool) -> str:
    """`TmpfsOptions` as mount data, as moby's ConvertTmpfsOptions writes it."""
    words = ["ro"] if read_only else []
    if options.mode:
        words.append(f"mode={options.mode:o}")
    size = options.size_bytes
    if size:
        for suffix, divisor in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
            if size % divisor == 0:
                words.append(f"size={size // divisor}{suffix}")
                break
        else:
            words.append(f"size={size}")
    for option in options.options or []:
        if not 1 <= len(option) <= 2:
            raise InvalidArgument("invalid option array length")
        if option[0] not in ("exec", "noexec"):
            raise InvalidArgument(f"invalid option: {option[0]}")
        words.append("=".join(option))
    return ",".join(words)


def merge_tmpfs_options(options: list[str]) -> list[str]:
    """Deduplicate tmpfs options, the last word of a kind winning (moby's MergeTmpfsOptions)."""
    seen: set[str] = set()
    merged: list[str] = []
    for option in reversed(options):
        if option == "defaults" or option == "":
            continue
        if option in _TMPFS_FLAGS:
            key = "flag:" + _TMPFS_FLAGS[option]
        else:
            parts = option.split("=", 1)
            if len(parts) != 2 or parts[0] not in _TMPFS_DATA:
                quoted = " ".join(json.dumps(p) for p in parts)
                raise InvalidArgument(f"invalid tmpfs option [{quoted}]")
            key = "data:" + parts[0]
        if key not in seen:
            seen.add(key)
            merged.insert(0, option)
    return merged


def parse_tmpfs(destination: str, data: str) -> list[str]:
    """A `HostConfig.Tmpfs` entry (`--tmpfs DST:OPTIONS`): its checked mount options."""
    if posixpath.normpath(destination) == "/":
        raise InvalidArgument("invalid specification: destination can't be '/'")
    if not destination.startswith("/"):
        raise InvalidArgument(f"invalid mount path: '{destination}' mount path must be absolute")
    return merge_tmpfs_options([*TMPFS_DEFAULTS, *(data.split(",") if data else [])])


def parse_volumes_from(spec: str) -> tuple[str, str]:
    """`CTR[:MODE]` -> (container, mode); only rw/ro and label modes are allowed."""
    if not spec:
        raise InvalidArgument("volumes-from specification cannot be an empty string")
    container, _, mode = spec.partition(":")
    if not mode:
        return container, "rw"
    if not valid_mode(mode) or _propagation(mode) or "nocopy" in mode.split(","):
        raise InvalidArgument(f"invalid mode: {mode}")
    return container, mode


def duplicate(destination: str) -> InvalidArgument:
    return InvalidArgument(f"Duplicate mount point: {destination}")


def sort_for_mounting(points: list[Any], key: Any) -> list[Any]:
    """Parents before children: fewer path components first (a stable sort, as moby's)."""
    return sorted(points, key=lambda p: posixpath.normpath(key(p)).count("/"))
