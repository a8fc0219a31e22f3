"""A changeset from an overlay upper directory: the layer tar, and `docker diff`'s list.

A container's (or a build step's) changes are its overlayfs upper directory,
in overlay's own form: a deleted path is a 0/0 character device, a directory
whose lower contents are hidden carries `trusted.overlay.opaque=y`. This
module reads that directory against the layers below it (topmost first) and

* `write_tar` turns it into a layer tar in Docker's form: whiteouts become
  empty `.wh.NAME` files, an opaque directory is followed by its
  `.wh..wh..opq` marker, hard links within the changeset become link entries,
  owners are numeric with no names, times are whole seconds, and only the
  `security.capability` xattr is kept. Entries are sorted by path, each
  directory before its children, so the same tree always gives the same bytes;
* `changes` lists what was added, changed and deleted (`GET /containers/{id}/changes`).

What the runtime itself put into the upper directory is not a change: the
mountpoints it creates for `/proc`, `/sys`, `/dev` and the bind-mounted
`/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf` when the image lacks them
(Docker keeps those in a hidden init layer), and directories that overlay
copied up only because such a mountpoint was created in them. `prune`
removes exactly that noise from the upper directory itself, so that a build
step's upper directory can become the layer's directory as it is.

Everything here blocks; callers run it in a worker thread.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

WHITEOUT_PREFIX = ".wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_KEPT_XATTRS = ("security.capability",)

# Paths the runtime creates as mountpoints when the image does not have them.
RUNTIME_STUBS = (
    "etc/hosts",
    "etc/hostname",
    "etc/resolv.conf",
    "proc",
    "sys",
    "dev",
    "sbin/docker-init",
    ".dockerenv",
)

# `docker diff` kinds
CHANGE_MODIFIED = 0
CHANGE_ADDED = 1
CHANGE_DELETED = 2

_CHUNK = 1 << 20


@dataclass
class Entry:
    path: str  # relative, "/"-separated
    st: os.stat_result
    whiteout: bool = False
    opaque: bool = False
    link: str = ""  # for a hard link: the earlier path of the same inode
    children: list[Entry] = field(default_factory=list)


@dataclass
class Changeset:
    """The changes of an upper directory, noise removed, as a sorted tree."""

    upper: str
    root: list[Entry]
    noise: list[str]  # upper paths that are runtime artefacts, deepest first

    def __iter__(self) -> Iterator[Entry]:
        stack = list(reversed(self.root))
        while stack:
            entry = stack.pop()
            yield entry
            stack.extend(reversed(entry.children))

    @property
    def empty(self) -> bool:
        return not self.root


class LowerView:
    """The merged view of read-only layer directories (topmost first), overlay's rules."""

    def __init__(self, lowers: Sequence[str]) -> None:
        self.lowers = list(lowers)

    def lstat(self, path: str) -> os.stat_result | None:
        parts = path.split("/")
        for lower in self.lowers:
            current = lower
            hidden = False
            for depth, part in enumerate(parts):
                current = os.path.join(current, part)
                try:
                    st = os.lstat(current)
                except FileNotFoundError:
                    break
                except NotADirectoryError:
                    return None
                if _is_whiteout(st):
                    return None
                if depth == len(parts) - 1:
                    return st
                if not stat.S_ISDIR(st.st_mode):
                    return None  # a non-directory hides everything below it
                if _is_opaque(current):
                    hidden = True
            if hidden:
                return None
        return None


def scan(upper: str, lowers: Sequence[str], *, stubs: Sequence[str] = RUNTIME_STUBS) -> Changeset:
    """Read an upper directory against its lower layers."""
    view = LowerView(lowers)
    stub_set = set(stubs)
    stub_parents = {"/".join(s.split("/")[:i]) for s in stubs for i in range(1, s.count("/") + 1)}
    links: dict[tuple[int, int], str] = {}
    noise: list[str] = []

    def walk(rel: str) -> list[Entry]:
        directory = os.path.join(upper, rel) if rel else upper
        try:
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            return []
        entries: list[Entry] = []
        for name in names:
            path = f"{rel}/{name}" if rel else name
            st = os.lstat(os.path.join(upper, path))
            entry = Entry(path, st)
            if _is_whiteout(st):
                entry.whiteout = True
                entries.append(entry)
                continue
            if stat.S_ISDIR(st.st_mode):
                entry.opaque = _is_opaque(os.path.join(upper, path))
                entry.children = walk(path)
                if (
                    not entry.children
                    and not entry.opaque
                    and _is_noise_dir(path, st, view, stub_set, stub_parents)
                ):
                    noise.append(path)
                    continue
            elif path in stub_set and _is_stub(st) and view.lstat(path) is None:
                noise.append(path)
                continue
            elif not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in links:
                    entry.link = links[key]
                else:
                    links[key] = path
            entries.append(entry)
        return entries

    root = walk("")
    return Changeset(upper, root, noise)


def _is_noise_dir(
    path: str,
    st: os.stat_result,
    view: LowerView,
    stubs: set[str],
    stub_parents: set[str],
) -> bool:
    """An empty upper directory that records no change of its own."""
    lower = view.lstat(path)
    if lower is None:
        # New and empty: only noise if the runtime made it for a mountpoint.
        return path in stubs or path in stub_parents
    # Copied up (a child was created and removed, or a mountpoint made in it)
    # with the same type and owner: only its times changed.
    return (
        stat.S_ISDIR(lower.st_mode)
        and stat.S_IMODE(lower.st_mode) == stat.S_IMODE(st.st_mode)
        and (lower.st_uid, lower.st_gid) == (st.st_uid, st.st_gid)
    )


def _is_stub(st: os.stat_result) -> bool:
    return (stat.S_ISREG(st.st_mode) and st.st_size == 0) or stat.S_ISDIR(st.st_mode)


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.ENOTSUP, errno.ENOENT):
            return False
        raise


def prune(changes: Changeset) -> None:
    """Delete the runtime's noise from the upper directory, making it equal to the changeset."""
    for path in changes.noise:
        full = os.path.join(changes.upper, path)
        try:
            if os.path.isdir(full) and not os.path.islink(full):
                os.rmdir(full)
            else:
                os.unlink(full)
        except FileNotFoundError:
            pass
        except OSError as e:
            if e.errno != errno.ENOTEMPTY:
                raise


@dataclass
class TarResult:
    size: int  # bytes of regular-file content


def write_tar(changes: Changeset, out: BinaryIO) -> TarResult:
    """Write the changeset as a layer tar to `out` (uncompressed)."""
    size = 0
    with tarfile.open(
        fileobj=out,
        mode="w|",
        format=tarfile.PAX_FORMAT,
        encoding="utf-8",
        errors="surrogateescape",
    ) as tar:
        for entry in changes:
            full = os.path.join(changes.upper, entry.path)
            if entry.whiteout:
                head, _, name = entry.path.rpartition("/")
                info = _header(entry.st, (f"{head}/" if head else "") + WHITEOUT_PREFIX + name)
                info.type = tarfile.REGTYPE
                info.mode = 0o600
                tar.addfile(info)
                continue
            info = _header(entry.st, entry.path)
            mode = entry.st.st_mode
            xattrs = _security_xattrs(full)
            if xattrs:
                info.pax_headers = xattrs
            if entry.link:
                info.type = tarfile.LNKTYPE
                info.linkname = entry.link
                tar.addfile(info)
            elif stat.S_ISREG(mode):
                info.type = tarfile.REGTYPE
                info.size = entry.st.st_size
                with open(full, "rb") as f:
                    tar.addfile(info, _Exactly(f, info.size, entry.path))
                size += info.size
            elif stat.S_ISDIR(mode):
                info.type = tarfile.DIRTYPE
                info.name = entry.path + "/"
                tar.addfile(info)
                if entry.opaque:
                    marker = _header(entry.st, f"{entry.path}/{WHITEOUT_OPAQUE}")
                    marker.type = tarfile.REGTYPE
                    marker.mode = 0o600
                    tar.addfile(marker)
            elif stat.S_ISLNK(mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(full)
                tar.addfile(info)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
                info.devmajor = os.major(entry.st.st_rdev)
                info.devminor = os.minor(entry.st.st_rdev)
                tar.addfile(info)
            elif stat.S_ISFIFO(mode):
                info.type = tarfile.FIFOTYPE
                tar.addfile(info)
            # sockets cannot be represented in a tar; they are left out
    return TarResult(size)


def _header(st: os.stat_result, name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid = st.st_uid
    info.gid = st.st_gid
    info.uname = ""
    info.gname = ""
    info.mtime = int(st.st_mtime)
    return info


def _security_xattrs(path: str) -> dict[str, str]:
    found = {}
    for name in _KEPT_XATTRS:
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
        found["SCHILY.xattr." + name] = value.decode("utf-8", "surrogateescape")
    return found


class _Exactly:
    """A file read as exactly `size` bytes (a file that changed size while read is an error)."""

    def __init__(self, f: BinaryIO, size: int, path: str) -> None:
        self._f = f
        self._left = size
        self._path = path

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        want = self._left if n < 0 else min(n, self._left)
        data = self._f.read(want)
        if not data:
            raise OSError(errno.EIO, f"{self._path} shrank while it was archived")
        self._left -= len(data)
        return data


def changes(changeset: Changeset, lowers: Sequence[str]) -> list[tuple[str, int]]:
    """`docker diff`: (absolute path, kind) sorted by path; kinds as the API numbers them."""
    view = LowerView(lowers)
    out = []
    for entry in changeset:
        path = "/" + entry.path
        if entry.whiteout:
            out.append((path, CHANGE_DELETED))
        elif view.lstat(entry.path) is None:
            out.append((path, CHANGE_ADDED))
        else:
            out.append((path, CHANGE_MODIFIED))
    return sorted(out)


def strip_overlay_xattrs(root: str) -> None:
    """Remove overlay's bookkeeping xattrs (origin, impure, ...) but keep opaque marks."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames, ""]:
            path = os.path.join(dirpath, name) if name else dirpath
            try:
                names = os.listxattr(path, follow_symlinks=False)
            except OSError:
                continue
            for xattr in names:
                if (
                    xattr.startswith(("trusted.overlay.", "user.overlay."))
                    and xattr != OPAQUE_XATTR
                ):
                    try:
                        os.removexattr(path, xattr, follow_symlinks=False)
                    except OSError:
                        pass
