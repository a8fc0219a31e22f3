"""The rules of `docker cp` that client and daemon share, and the stat they exchange.

`docker cp` is mostly path arithmetic, done the way Go's `path/filepath` does
it (moby's go-archive builds on it on both sides of the API):

* A path ending in `/` or `/.` asserts a directory; `/.` means "the contents of
  the directory" rather than the directory itself. Cleaning a path must keep
  that suffix (`preserve_trailing_dot_or_separator`).
* The archive of a resource names its top entry after the resource's base name
  (`dir/` + `dir/file`; for `dir/.` the entries are `./` + `./file`). When the
  destination does not exist, or names a file, the entries are renamed so that
  the top entry takes the destination's base name (`rebase_name`).
* `X-Docker-Container-Path-Stat` carries a `PathStat` whose `mode` uses Go's
  `os.FileMode` bits, not `st_mode`: the docker CLI tests bit 31 for "is a
  directory" and bit 27 for "is a symlink".
* Entries of an extracted archive stay below the directory they are extracted
  into: a leading `/` is dropped and `..` may not climb out (`entry_path`).

Everything here is pure, so the client, the daemon and the chrooted copier all
use the same code.
"""

from __future__ import annotations

import base64
import json
import posixpath
import stat
import time
from dataclasses import dataclass
from typing import Any

# Go's os.FileMode type and permission bits (io/fs).
MODE_DIR = 1 << 31
MODE_APPEND = 1 << 30
MODE_EXCLUSIVE = 1 << 29
MODE_TEMPORARY = 1 << 28
MODE_SYMLINK = 1 << 27
MODE_DEVICE = 1 << 26
MODE_NAMED_PIPE = 1 << 25
MODE_SOCKET = 1 << 24
MODE_SETUID = 1 << 23
MODE_SETGID = 1 << 22
MODE_CHAR_DEVICE = 1 << 21
MODE_STICKY = 1 << 20
MODE_IRREGULAR = 1 << 19
MODE_TYPE = (
    MODE_DIR
    | MODE_SYMLINK
    | MODE_NAMED_PIPE
    | MODE_SOCKET
    | MODE_DEVICE
    | MODE_CHAR_DEVICE
    | MODE_IRREGULAR
)

STAT_HEADER = "X-Docker-Container-Path-Stat"


class EntryOutsideError(ValueError):
    """An archive entry (or hard-link target) that would land outside its directory."""


# -- Go's path/filepath, for "/"-separated paths ------------------------------------


def clean(path: str) -> str:
    """filepath.Clean: the shortest equivalent path ("" is "."; "//a" is "/a")."""
    if not path:
        return "."
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):  # POSIX keeps a leading "//"; Go does not
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def base(path: str) -> str:
    """filepath.Base: the last element, trailing slashes ignored ("/" for the root)."""
    if not path:
        return "."
    stripped = path.rstrip("/")
    if not stripped:
        return "/"
    return stripped.rsplit("/", 1)[-1]


def dirname(path: str) -> str:
    """filepath.Dir: everything but the last element, cleaned."""
    head = path[: path.rfind("/") + 1]
    return clean(head)


def join(*elements: str) -> str:
    """filepath.Join: the non-empty elements joined by "/" and cleaned."""
    parts = [e for e in elements if e]
    return clean("/".join(parts)) if parts else ""


def is_abs(path: str) -> bool:
    return path.startswith("/")


# -- go-archive's copy rules ----------------------------------------------------------


def has_trailing_separator(path: str) -> bool:
    return path.endswith("/")


def specifies_current_dir(path: str) -> bool:
    """The last element is "." (`dir/.`: the directory's contents)."""
    return base(path) == "."


def asserts_directory(path: str) -> bool:
    """The path says it must be a directory: it ends in "/" or "/."."""
    return has_trailing_separator(path) or specifies_current_dir(path)


def preserve_trailing_dot_or_separator(cleaned: str, original: str) -> str:
    """`cleaned` with the trailing "/." or "/" that `original` had and cleaning removed."""
    if not specifies_current_dir(cleaned) and specifies_current_dir(original):
        if not has_trailing_separator(cleaned):
            cleaned += "/"
        cleaned += "."
    if not has_trailing_separator(cleaned) and has_trailing_separator(original):
        cleaned += "/"
    return cleaned


def split_path_dir_entry(path: str) -> tuple[str, str]:
    """(directory, entry) of a cleaned path, keeping a trailing "." as the entry."""
    cleaned = clean(path)
    if specifies_current_dir(path):
        cleaned += "/."
    return dirname(cleaned), base(cleaned)


def container_path(path: str) -> str:
    """A path given to the API as an absolute, cleaned container path, keeping its suffix."""
    return preserve_trailing_dot_or_separator(join("/", path), path)


def rebase_name(path: str, resolved: str) -> tuple[str, str]:
    """go-archive's GetRebaseName: `resolved` given `path`'s trailing "/." or "/", and the
    name the archive's top entry must take ("" if it keeps its own)."""
    if specifies_current_dir(path) and not specifies_current_dir(resolved):
        resolved += "/."
    if has_trailing_separator(path) and not has_trailing_separator(resolved):
        resolved += "/"
    rebase = base(path) if base(path) != base(resolved) else ""
    return resolved, rebase


def rebase_entry(name: str, old: str, new: str) -> str:
    """An archive entry name with its first element `old` replaced by `new` (both without
    trailing slashes); names under another first element are kept."""
    old = old.rstrip("/")
    new = new.rstrip("/")
    if not old:
        name = name.lstrip("/")
        return f"{new}/{name}" if new else name
    if name == old or name.startswith(old + "/"):
        return new + name[len(old) :]
    return name


def go_quote(text: str) -> str:
    """Go's %q, near enough for file names: double quotes, backslash escapes."""
    return json.dumps(text, ensure_ascii=False)


def entry_path(name: str) -> str | None:
    """Where an archive entry lands, relative to the directory it is extracted into
    (None for that directory itself); EntryOutsideError if it would climb out."""
    cleaned = clean(name.lstrip("/"))
    if cleaned == ".":
        return None
    if cleaned == ".." or cleaned.startswith("../"):
        raise EntryOutsideError(f"invalid entry name {go_quote(name)}")
    return cleaned


def hardlink_target(linkname: str) -> str:
    """A hard link's target, relative to the extraction directory (absolute targets
    count from there too, as kaniko writes them); EntryOutsideError if it climbs out."""
    cleaned = clean(linkname.lstrip("/"))
    if cleaned in (".", "..") or cleaned.startswith("../"):
        raise EntryOutsideError(f"invalid hardlink target {go_quote(linkname)}")
    return cleaned


# -- the stat -------------------------------------------------------------------------


def file_mode(st_mode: int) -> int:
    """Go's os.FileMode of a stat(2) mode."""
    mode = st_mode & 0o777
    kind = stat.S_IFMT(st_mode)
    if kind == stat.S_IFDIR:
        mode |= MODE_DIR
    elif kind == stat.S_IFLNK:
        mode |= MODE_SYMLINK
    elif kind == stat.S_IFBLK:
        mode |= MODE_DEVICE
    elif kind == stat.S_IFCHR:
        mode |= MODE_DEVICE | MODE_CHAR_DEVICE
    elif kind == stat.S_IFIFO:
        mode |= MODE_NAMED_PIPE
    elif kind == stat.S_IFSOCK:
        mode |= MODE_SOCKET
    elif kind != stat.S_IFREG:
        mode |= MODE_IRREGULAR
    if st_mode & stat.S_ISUID:
        mode |= MODE_SETUID
    if st_mode & stat.S_ISGID:
        mode |= MODE_SETGID
    if st_mode & stat.S_ISVTX:
        mode |= MODE_STICKY
    return mode


def rfc3339_nano(ns: int) -> str:
    """A time as Go's time.Time marshals to JSON (RFC 3339, nanoseconds without trailing
    zeros), in UTC."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    return text + "Z"


@dataclass(frozen=True)
class PathStat:
    """A file's stat as the archive API reports it (moby's container.PathStat)."""

    name: str
    size: int
    mode: int  # Go's os.FileMode bits
    mtime: str  # RFC 3339
    link_target: str = ""

    @property
    def is_dir(self) -> bool:
        return bool(self.mode & MODE_DIR)

    @property
    def is_symlink(self) -> bool:
        return bool(self.mode & MODE_SYMLINK)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "mode": self.mode,
            "mtime": self.mtime,
            "linkTarget": self.link_target,
        }

    def to_json(self) -> str:
        """JSON as Go's encoding/json writes it: compact, `<>&` escaped, in field order."""
        text = json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)
        for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
            text = text.replace(char, escape)
        return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PathStat:
        return cls(
            name=str(data.get("name", "")),
            size=int(data.get("size") or 0),
            mode=int(data.get("mode") or 0),
            mtime=str(data.get("mtime", "")),
            link_target=str(data.get("linkTarget") or ""),
        )

    def header(self) -> str:
        """The value of the `X-Docker-Container-Path-Stat` header: base64 of the JSON."""
        return base64.b64encode(self.to_json().encode()).decode()

    @classmethod
    def from_header(cls, value: str) -> PathStat:
        return cls.from_dict(json.loads(base64.b64decode(value)))
