"""`RUN --mount=...`: BuildKit's mount specifications, parsed and checked.

A specification is one CSV record of `key=value` fields (`type=cache,target=/root/.cache`).
The keys, their defaults and the refusals are BuildKit's Dockerfile frontend's:
the type is `bind` unless given; `ro`/`rw` may stand alone; bind and secret mounts are
read-only unless `rw` is given, cache and tmpfs mounts writable; `mode`, `uid` and `gid`
only for cache, secret and ssh mounts; `sharing` only for cache mounts; `required` only
for secrets and ssh; `size` only for tmpfs. Values expand with the stage's variables
when the step runs, except `from`, which names a stage or image and never expands.

Pure: the builder (`builder.py`) gives the mounts their meaning.
"""

from __future__ import annotations

import csv
import dataclasses
import posixpath
from collections.abc import Callable
from dataclasses import dataclass

from dockyard import units
from dockyard.errors import InvalidArgument

Expander = Callable[[str], str]

BIND = "bind"
CACHE = "cache"
TMPFS = "tmpfs"
SECRET = "secret"
SSH = "ssh"
TYPES = (BIND, CACHE, TMPFS, SECRET, SSH)
SHARING = ("shared", "private", "locked")
SECRETS_DIR = "/run/secrets"

_KEYS = (
    "type from source target readonly id sharing required mode uid gid src dst ro rw "
    "readwrite size env destination"
).split()
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


@dataclass(frozen=True)
class RunMount:
    type: str = BIND
    from_: str = ""
    source: str = ""
    target: str = ""
    read_only: bool = True
    id: str = ""
    sharing: str = ""
    required: bool = False
    size: int = 0
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    env: str = ""

    @property
    def cache_id(self) -> str:
        """A cache mount's ID: `id`, else its target."""
        return self.id or self.target

    @property
    def secret_id(self) -> str:
        """A secret mount's secret: `id` (or `source`), else the target's base name."""
        return self.id or self.source or posixpath.basename(self.target)

    def secret_target(self) -> str:
        """Where a secret appears: its target, else `/run/secrets/<id>`; "" when it is
        only given as an environment variable."""
        if self.target:
            return self.target
        if self.env:
            return ""
        return posixpath.join(SECRETS_DIR, posixpath.basename(self.secret_id))

    def describe(self) -> str:
        """The mount as a cache key part: what it is, never what a secret holds."""
        return "|".join(str(v) for v in dataclasses.astuple(self))


def parse(text: str, expand: Expander | None = None) -> RunMount:
    """One `--mount` value; without `expand`, values are checked but taken as written."""
    try:
        fields = next(csv.reader([text]), [])
    except csv.Error as e:
        raise InvalidArgument(f"failed to parse csv mounts: {e}") from None
    kind = BIND
    values: dict[str, object] = {}
    ro_auto = True
    read_only = False
    for item in fields:
        key, has_value, value = item.partition("=")
        key = key.lower()
        if not has_value:
            if key in ("readonly", "ro"):
                read_only, ro_auto = True, False
            elif key in ("readwrite", "rw"):
                read_only, ro_auto = False, False
            elif key == "required":
                if kind not in (SECRET, SSH):
                    raise InvalidArgument(f"unexpected key '{key}' for mount type '{kind}'")
                values["required"] = True
            else:
                raise InvalidArgument(f"invalid field '{item}' must be a key=value pair")
            continue
        if key == "from":
            if "$" in value[:-1]:
                raise InvalidArgument(
                    f"'{key}' doesn't support variable expansion, define alias stage instead"
                )
        elif expand is not None:
            value = expand(value)
        if key == "type":
            if value.lower() not in TYPES:
                raise InvalidArgument(f'unsupported mount type "{value}"')
            kind = value.lower()
        elif key == "from":
            values["from_"] = value
        elif key in ("source", "src"):
            values["source"] = value
        elif key in ("target", "dst", "destination"):
            values["target"] = value
        elif key in ("readonly", "ro"):
            read_only, ro_auto = _bool(key, value), False
        elif key in ("readwrite", "rw"):
            read_only, ro_auto = not _bool(key, value), False
        elif key == "required":
            if kind not in (SECRET, SSH):
                raise InvalidArgument(f"unexpected key '{key}' for mount type '{kind}'")
            values["required"] = _bool(key, value)
        elif key == "size":
            if kind != TMPFS:
                raise InvalidArgument(f"unexpected key '{key}' for mount type '{kind}'")
            try:
                values["size"] = units.parse_size(value)
            except (ValueError, InvalidArgument):
                raise InvalidArgument(f"invalid value for {key}: {value}") from None
        elif key == "id":
            values["id"] = value
        elif key == "sharing":
            if value.lower() not in SHARING:
                raise InvalidArgument(f'unsupported sharing value "{value}"')
            values["sharing"] = value.lower()
        elif key == "mode":
            values["mode"] = _number(value, 8, "mode")
        elif key in ("uid", "gid"):
            values[key] = _number(value, 10, key)
        elif key == "env":
            if kind != SECRET:
                raise InvalidArgument(f"unexpected key '{key}' for mount type '{kind}'")
            values["env"] = value
        else:
            raise InvalidArgument(f"unexpected key '{key}' in '{item}'")
    if ro_auto:
        read_only = kind not in (CACHE, TMPFS)
    mount = RunMount(type=kind, read_only=read_only, **values)  # type: ignore[arg-type]
    _validate(mount)
    return mount


def _validate(mount: RunMount) -> None:
    if mount.type not in (SECRET, SSH, CACHE):
        for name in ("mode", "uid", "gid"):
            if getattr(mount, name) is not None:
                raise InvalidArgument(f'{name} not allowed for "{mount.type}" type mounts')
    if mount.type == SECRET:
        if mount.from_:
            raise InvalidArgument("secret mount should not have a from")
        if mount.sharing:
            raise InvalidArgument("secret mount should not define sharing")
        if not (mount.source or mount.target or mount.id or mount.env):
            raise InvalidArgument("invalid secret mount. one of source, target required")
        if mount.source and mount.id:
            raise InvalidArgument("both source and id can't be set")
    if mount.sharing and mount.type != CACHE:
        raise InvalidArgument(f"invalid cache sharing set for {mount.type} mount")
    if mount.type == SSH:
        raise InvalidArgument(
            "RUN --mount=type=ssh is not supported by Dockyard yet (SSH agent forwarding)"
        )


def _bool(key: str, value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidArgument(f"invalid value for {key}: {value}")


def _number(value: str, base: int, name: str) -> int:
    try:
        number = int(value, base)
    except ValueError:
        raise InvalidArgument(f"invalid value {value} for {name}") from None
    if not 0 <= number < 1 << 32:
        raise InvalidArgument(f"invalid value {value} for {name}")
    return number
