"""Apply one layer changeset (an uncompressed tar stream) into its own layer directory.

Lifecycle: the snapshotter makes an empty `diff/` directory for a layer, calls
`apply_layer` with the layer's tar and the `diff/` directories of the layers
below it (topmost first), and records the layer only once this returns. The
directory then holds exactly this layer's changes in overlayfs' native form
(Docker's overlay2 model, spec §3.3) and can be stacked as a `lowerdir` as is:

* `dir/.wh.NAME` becomes `dir/NAME`, a 0/0 character device (an overlay whiteout);
* `dir/.wh..wh..opq` becomes the xattr `trusted.overlay.opaque=y` on `dir`;
* other `.wh..wh.*` names are AUFS bookkeeping and are skipped with their subtrees.

Nothing is deleted from lower layers: overlayfs hides them at mount time. A
hard link to an earlier entry of this layer is a real link; one to a file of a
lower layer becomes a copy of it (a layer directory cannot link into another).

The archive is hostile input. Every path is resolved one component at a time
with `O_NOFOLLOW` relative to a directory fd that is already known to be inside
`target`, so no string concatenation or `os.path` call ever decides where a
write lands. An entry may not be written below a symlink, whatever the symlink
points at; an entry that replaces a symlink replaces the link itself. Symlink
entries are stored verbatim and never followed. Anything that would reach
outside `target` raises `InvalidArgument` naming the entry.

All the work is blocking; callers run `apply_layer` in a worker thread.
"""

from __future__ import annotations

import base64
import binascii
import errno
import logging
import os
import shutil
import stat
import tarfile
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import BinaryIO, Literal, TypeVar, overload

from dockyard.errors import InvalidArgument
from dockyard.layers.tarinfo import StrictTarInfo

log = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"

# overlayfs keeps its own state (opaque, redirect, origin, metacopy …) in
# these namespaces. An archive that carried them could make the mounted view
# read files from elsewhere, so they only ever come from the whiteout rules.
_OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")

_CHUNK = 1 << 20

# tarfile's stream reader re-slices its whole read-ahead buffer on every
# 512-byte header read, so a large buffer costs a large copy per entry. This
# size keeps both that copy and the number of reads small (measured).
_TAR_BUFSIZE = 64 << 10

# Directory fds kept open per layer. Entries of one directory are usually
# adjacent, so a small cache saves nearly all path walks; it is emptied when
# full rather than kept LRU, which costs one re-walk and no per-hit work. Kept
# well below the usual 1024-fd soft limit, since several layers apply at once.
_DIR_CACHE_LIMIT = 128

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_O_READ_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC

_T = TypeVar("_T")


@dataclass
class ApplyResult:
    size: int  # bytes of regular-file content written, hard-link copies included


def apply_layer(stream: BinaryIO, target: str, *, lowers: Sequence[str] = ()) -> ApplyResult:
    """Extract the tar `stream` into `target`, an empty directory for this layer alone.

    `lowers` are the directories of the layers below, topmost first; they are
    only read, to copy the targets of hard links that point into them. The
    stream is read to its end, so a digesting reader wrapped around it sees the
    whole blob, and a compressed stream's trailer is checked.

    On any error `target` is left partly written; the caller discards it.
    """
    writer = _LayerWriter(target, lowers)
    try:
        try:
            with tarfile.open(
                fileobj=stream,
                mode="r|",
                bufsize=_TAR_BUFSIZE,
                tarinfo=StrictTarInfo,
                encoding="utf-8",
                errors="surrogateescape",
            ) as tar:
                while (member := tar.next()) is not None:
                    try:
                        writer.add(member, tar)
                    except OverflowError as e:  # a uid, gid or device number too big
                        raise InvalidArgument(f"layer entry {member.name!r}: {e}") from None
                    except OSError as e:
                        e.add_note(f"while applying layer entry {member.name!r}")
                        raise
                    # Streaming mode still appends every header to `members`;
                    # nothing here needs them, and a big layer has millions.
                    tar.members.clear()  # type: ignore[attr-defined]
        except tarfile.TarError as e:
            raise InvalidArgument(f"invalid layer tar: {e}") from e
        writer.finish()
    finally:
        writer.close()
    while stream.read(_CHUNK):
        pass
    return ApplyResult(size=writer.size)


class _LayerWriter:
    """Writes the entries of one layer; holds the per-layer state of spec §3.2."""

    def __init__(self, target: str, lowers: Sequence[str]) -> None:
        self._root = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._lowers = list(lowers)
        # Relative dir path ("" is the root) -> open fd of that directory.
        self._dirs: dict[str, int] = {"": self._root}
        # Fds dropped from the cache while an entry may still hold them; they
        # are closed between entries so that a number is never reused mid-entry.
        self._retired: list[int] = []
        # Entry counter; orders directory-time records against removals.
        self._seq = 0
        # Dir path -> (seq, atime_ns, mtime_ns), applied when the layer is done.
        self._dir_times: dict[str, tuple[int, int, int]] = {}
        # Dir path -> seq of its latest removal (replaced by a non-directory).
        self._removed: dict[str, int] = {}
        # Lower-layer hard-link target -> (path of our copy, its st_dev, st_ino),
        # so that further links to the same target share one inode again.
        self._lower_copies: dict[str, tuple[list[str], int, int]] = {}
        self.size = 0

    def close(self) -> None:
        for fd in self._retired:
            os.close(fd)
        for fd in self._dirs.values():  # the root among them
            os.close(fd)

    # -- entries ----------------------------------------------------------

    def add(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        self._seq += 1
        self._release_fds()
        entry = member.name
        parts = _split(entry, entry)
        if not parts:
            # The layer root itself ("./"). Docker leaves the root directory's
            # attributes alone; a tar made with `tar -C tmpdir .` would
            # otherwise make every image's / mode 0700.
            if member.isdir():
                return
            raise InvalidArgument(f"layer entry {entry!r}: the layer root must be a directory")
        parents, base = parts[:-1], parts[-1]
        if WHITEOUT_PREFIX in entry:
            for name in parents:
                if name.startswith(WHITEOUT_META_PREFIX):
                    return  # inside an AUFS metadata directory such as .wh..wh.plnk/
                if name.startswith(WHITEOUT_PREFIX):
                    raise InvalidArgument(f"layer entry {entry!r}: a whiteout cannot have children")
            if base.startswith(WHITEOUT_PREFIX):
                self._whiteout(parents, base, member, entry)
                return
        parent = self._dir(parents, entry)
        path = "/".join(parts)
        if member.isreg():
            self._file(parent, base, path, member, tar, entry)
        elif member.isdir():
            self._directory(parent, base, parts, member, entry)
        elif member.issym():
            self._symlink(parent, base, path, member, entry)
        elif member.islnk():
            self._hardlink(parent, base, path, member, entry)
        elif member.ischr() or member.isblk() or member.isfifo():
            self._node(parent, base, path, member, entry)
        else:
            raise InvalidArgument(
                f"layer entry {entry!r}: unsupported tar entry type {member.type!r}"
            )

    def _whiteout(self, parents: list[str], base: str, member: tarfile.TarInfo, entry: str) -> None:
        if base.startswith(WHITEOUT_META_PREFIX):
            if base == WHITEOUT_OPAQUE:
                # Hides everything the lower layers have in this directory; what
                # this layer puts there, before or after the marker, stays.
                os.setxattr(self._dir(parents, entry), OPAQUE_XATTR, b"y")
            return  # any other .wh..wh.* name is AUFS metadata
        name = base[len(WHITEOUT_PREFIX) :]
        if name in ("", ".", ".."):
            raise InvalidArgument(f"layer entry {entry!r}: invalid whiteout name")
        parent = self._dir(parents, entry)
        if _lstat(name, parent) is not None:
            # Engine decision (spec §3.2 step 5): a whiteout never removes what
            # this very layer created; it only hides lower layers.
            return
        os.mknod(name, stat.S_IFCHR, 0, dir_fd=parent)
        os.chown(name, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)

    def _file(
        self,
        parent: int,
        base: str,
        path: str,
        member: tarfile.TarInfo,
        tar: tarfile.TarFile,
        entry: str,
    ) -> None:
        # Always a new inode: truncating in place would also change every
        # earlier hard link to the old file.
        fd = self._create(
            parent, base, path, lambda: os.open(base, _O_NEW_FILE, 0o600, dir_fd=parent)
        )
        try:
            if member.size:
                self._copy_member(fd, member, tar, entry)
            _set_attrs_fd(fd, member, entry)
        finally:
            os.close(fd)

    def _copy_member(
        self, fd: int, member: tarfile.TarInfo, tar: tarfile.TarFile, entry: str
    ) -> None:
        source = tar.extractfile(member)
        assert source is not None  # always a file object for a regular member
        remaining = member.size
        while remaining:
            data = source.read(min(remaining, _CHUNK))
            if not data:
                raise InvalidArgument(f"layer entry {entry!r}: archive ends inside the file")
            _write_all(fd, memoryview(data))
            remaining -= len(data)
        self.size += member.size

    def _directory(
        self, parent: int, base: str, parts: list[str], member: tarfile.TarInfo, entry: str
    ) -> None:
        opaque = False
        try:
            os.mkdir(base, 0o700, dir_fd=parent)
        except FileExistsError:
            st = os.stat(base, dir_fd=parent, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):  # a directory over a directory merges
                # `.wh.NAME` then `NAME/` means "the lower NAME is gone, here is
                # a new directory". Without the opaque mark the lower one's
                # contents would show through the new directory.
                opaque = _is_whiteout(st)
                self._remove(parent, base, "/".join(parts))
                os.mkdir(base, 0o700, dir_fd=parent)
        fd = self._dir(parts, entry)
        if opaque:
            os.setxattr(fd, OPAQUE_XATTR, b"y")
        os.fchown(fd, member.uid, member.gid)
        os.fchmod(fd, member.mode & 0o7777)
        _set_xattrs(fd, _xattrs(member, entry), entry)
        # Creating children changes a directory's mtime: set it at the end.
        self._dir_times["/".join(parts)] = (self._seq, *_times_ns(member))

    def _symlink(
        self, parent: int, base: str, path: str, member: tarfile.TarInfo, entry: str
    ) -> None:
        if not member.linkname:
            raise InvalidArgument(f"layer entry {entry!r}: symlink with an empty target")
        # The target text is stored as is: it is resolved inside the container
        # later, never by us.
        self._create(parent, base, path, lambda: os.symlink(member.linkname, base, dir_fd=parent))
        _set_attrs_at(parent, base, member, entry, is_symlink=True)

    def _node(self, parent: int, base: str, path: str, member: tarfile.TarInfo, entry: str) -> None:
        if member.isfifo():
            self._create(parent, base, path, lambda: os.mkfifo(base, 0o600, dir_fd=parent))
        else:
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            device = os.makedev(member.devmajor, member.devminor)
            self._create(
                parent, base, path, lambda: os.mknod(base, kind | 0o600, device, dir_fd=parent)
            )
        _set_attrs_at(parent, base, member, entry, is_symlink=False)

    def _hardlink(
        self, parent: int, base: str, path: str, member: tarfile.TarInfo, entry: str
    ) -> None:
        """Link to an earlier entry of this layer, or clone a lower layer's file."""
        target = _split(member.linkname, entry, what="hard link target")
        if not target:
            raise InvalidArgument(f"layer entry {entry!r}: hard link to the layer root")
        key = "/".join(target)
        source = self._in_layer(target, entry)
        if source is None and key in self._lower_copies:
            source = self._earlier_copy(*self._lower_copies[key])
        # The link's header attributes are not applied (as GNU tar and bsdtar
        # do): the inode keeps those of the entry that made it, or of the lower
        # file. Docker's producer repeats the same values there anyway, but a
        # header without them would clobber the mode, and any chown, even to
        # the same owner, makes the kernel drop security.capability.
        if source is not None:
            self._link(source, parent, base, path, entry)
        else:
            st = self._clone_from_lowers(target, parent, base, path, entry)
            self._lower_copies[key] = (path.split("/"), st.st_dev, st.st_ino)

    def _link(
        self, source: tuple[int, str, os.stat_result], parent: int, base: str, path: str, entry: str
    ) -> None:
        src_dir, src_name, src_st = source
        existing = _lstat(base, parent)
        if existing is not None and (existing.st_dev, existing.st_ino) == (
            src_st.st_dev,
            src_st.st_ino,
        ):
            return  # already that inode (a repeated entry, or a link to itself)
        try:
            # follow_symlinks=False: a link to a symlink links the symlink.
            self._create(
                parent,
                base,
                path,
                lambda: os.link(
                    src_name, base, src_dir_fd=src_dir, dst_dir_fd=parent, follow_symlinks=False
                ),
            )
        except FileNotFoundError:
            # Only possible when replacing `path` removed the target itself.
            raise InvalidArgument(
                f"layer entry {entry!r}: hard link target was removed by the entry itself"
            ) from None

    def _in_layer(self, parts: list[str], entry: str) -> tuple[int, str, os.stat_result] | None:
        """Find a hard-link source among what this layer has written so far."""
        parent = self._dir(parts[:-1], entry, create=False)
        if parent is None:
            return None
        st = _lstat(parts[-1], parent)
        if st is None:
            return None
        if stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(f"layer entry {entry!r}: hard link to a directory")
        if _is_whiteout(st):
            raise InvalidArgument(
                f"layer entry {entry!r}: hard link target was deleted by this layer"
            )
        return parent, parts[-1], st

    def _earlier_copy(
        self, parts: list[str], dev: int, ino: int
    ) -> tuple[int, str, os.stat_result] | None:
        """Our copy of a lower file made for an earlier link, if it is still in place."""
        try:
            found = self._in_layer(parts, "")
        except InvalidArgument:  # later entries replaced it or a parent of it
            return None
        if found is None or (found[2].st_dev, found[2].st_ino) != (dev, ino):
            return None
        return found

    def _clone_from_lowers(
        self, target: list[str], parent: int, base: str, path: str, entry: str
    ) -> os.stat_result:
        """Copy a lower layer's file, content and metadata, to `base`: a layer
        dir cannot hard-link into another layer dir (spec §3.2 step 8)."""
        found = _find_in_lowers(self._lowers, target, entry)
        if found is None:
            raise InvalidArgument(
                f"layer entry {entry!r}: hard link target {'/'.join(target)!r} does not exist"
            )
        src_dir, st = found
        name = target[-1]
        try:
            mode = st.st_mode
            if stat.S_ISREG(mode):
                src = os.open(name, _O_READ_FILE, dir_fd=src_dir)
                try:
                    dst = self._create(
                        parent, base, path, lambda: os.open(base, _O_NEW_FILE, 0o600, dir_fd=parent)
                    )
                    try:
                        self.size += _copy_fd(src, dst)
                        os.fchown(dst, st.st_uid, st.st_gid)
                        os.fchmod(dst, stat.S_IMODE(mode))
                        _set_xattrs(dst, _read_xattrs(src), entry)
                        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
                        return os.fstat(dst)
                    finally:
                        os.close(dst)
                finally:
                    os.close(src)
            if stat.S_ISLNK(mode):
                link_text = os.readlink(name, dir_fd=src_dir)
                self._create(parent, base, path, lambda: os.symlink(link_text, base, dir_fd=parent))
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
                node_mode = stat.S_IFMT(mode) | 0o600
                self._create(
                    parent, base, path, lambda: os.mknod(base, node_mode, st.st_rdev, dir_fd=parent)
                )
            else:
                raise InvalidArgument(
                    f"layer entry {entry!r}: hard link target is not a file, symlink or device"
                )
            os.chown(base, st.st_uid, st.st_gid, dir_fd=parent, follow_symlinks=False)
            if not stat.S_ISLNK(mode):
                os.chmod(base, stat.S_IMODE(mode), dir_fd=parent)
            _set_xattrs(
                _proc_path(parent, base),
                _read_xattrs(_proc_path(src_dir, name)),
                entry,
                follow=False,
            )
            os.utime(
                base, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=parent, follow_symlinks=False
            )
            return os.stat(base, dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(src_dir)

    # -- paths ------------------------------------------------------------

    def _create(self, parent: int, base: str, path: str, make: Callable[[], _T]) -> _T:
        """Run `make`; if `base` already exists, remove it and run it again.

        The new entry always replaces the old one (a later entry wins); the old
        one is removed, never opened, so a symlink there is never written through.
        """
        try:
            return make()
        except FileExistsError:
            self._remove(parent, base, path)
            return make()

    def _remove(self, parent: int, base: str, path: str) -> None:
        st = os.stat(base, dir_fd=parent, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(base, dir_fd=parent)
            return
        # fd-relative and symlink-safe: rmtree(dir_fd=) never leaves the tree.
        shutil.rmtree(base, dir_fd=parent)
        self._removed[path] = self._seq
        prefix = path + "/"
        for key in [k for k in self._dirs if k == path or k.startswith(prefix)]:
            self._retired.append(self._dirs.pop(key))

    @overload
    def _dir(self, parts: list[str], entry: str) -> int: ...

    @overload
    def _dir(self, parts: list[str], entry: str, *, create: Literal[False]) -> int | None: ...

    def _dir(self, parts: list[str], entry: str, *, create: bool = True) -> int | None:
        """Return an fd for the directory `parts` of this layer.

        Missing directories are created 0755 root:root when `create` is set;
        otherwise a missing one gives None. A symlink anywhere on the way is
        refused, as is a non-directory (except a whiteout, which a new
        directory replaces). The fd belongs to the cache: do not close it.
        """
        key = "/".join(parts)
        fd = self._dirs.get(key)
        if fd is not None:
            return fd
        # Walk down from the deepest directory on the way that is already open.
        start, fd = len(parts) - 1, self._root
        while start > 0:
            cached = self._dirs.get("/".join(parts[:start]))
            if cached is not None:
                fd = cached
                break
            start -= 1
        for depth in range(start, len(parts)):
            child = self._open_dir(fd, parts, depth, entry, create)
            if child is None:
                return None
            fd = child
            self._dirs["/".join(parts[: depth + 1])] = fd
        return fd

    def _open_dir(
        self, parent: int, parts: list[str], depth: int, entry: str, create: bool
    ) -> int | None:
        name = parts[depth]
        try:
            return os.open(name, _O_DIR, dir_fd=parent)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                raise
        st = _lstat(name, parent)
        where = "/".join(parts[: depth + 1])
        if st is not None and stat.S_ISLNK(st.st_mode):
            raise InvalidArgument(
                f"layer entry {entry!r}: {where!r} is a symlink; refusing to go through it"
            )
        if st is not None and not _is_whiteout(st):
            raise InvalidArgument(f"layer entry {entry!r}: {where!r} is not a directory")
        if not create:
            if st is not None:  # and it hides the lower layers' version too
                raise InvalidArgument(f"layer entry {entry!r}: {where!r} was deleted by this layer")
            return None
        if st is not None:
            # The lower `name` was whited out earlier in this layer and now gets
            # children: it is a new directory, opaque so the old one stays gone.
            os.unlink(name, dir_fd=parent)
        os.mkdir(name, 0o755, dir_fd=parent)
        fd = os.open(name, _O_DIR, dir_fd=parent)
        os.fchown(fd, 0, 0)
        os.fchmod(fd, 0o755)  # mkdir's mode went through the umask
        if st is not None:
            os.setxattr(fd, OPAQUE_XATTR, b"y")
        return fd

    def _release_fds(self) -> None:
        for fd in self._retired:
            os.close(fd)
        self._retired.clear()
        if len(self._dirs) > _DIR_CACHE_LIMIT:
            for key, fd in self._dirs.items():
                if key:
                    os.close(fd)
            self._dirs = {"": self._root}

    def finish(self) -> None:
        """Apply directory times, now that no more children will be added."""
        for path, (seq, atime, mtime) in self._dir_times.items():
            if self._removed_since(path, seq):
                continue
            self._release_fds()
            fd = self._dir(path.split("/"), path, create=False)
            if fd is not None:
                os.utime(fd, ns=(atime, mtime))

    def _removed_since(self, path: str, seq: int) -> bool:
        while path:
            if self._removed.get(path, -1) > seq:
                return True
            path = path.rpartition("/")[0]
        return False


# -- helpers --------------------------------------------------------------


def _split(name: str, entry: str, what: str = "path") -> list[str]:
    """Split an archive path into components inside the layer root.

    Leading `/` and `./`, empty and `.` components go; `..` is resolved
    lexically (as Go's filepath.Clean does for Docker) and must not climb out
    of the root. No symlink is consulted here: the result is walked with
    O_NOFOLLOW afterwards.
    """
    parts: list[str] = []
    for part in name.split("/"):
        if part == "..":
            if not parts:
                raise InvalidArgument(
                    f"layer entry {entry!r}: {what} {name!r} points outside the layer root"
                )
            parts.pop()
        elif part and part != ".":
            parts.append(part)
    return parts


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _proc_path(dir_fd: int, name: str) -> str:
    # The xattr calls take no dir_fd. /proc/self/fd/N is the directory we
    # already hold, so this resolves `name` in it without walking any path.
    return f"/proc/self/fd/{dir_fd}/{name}"


def _find_in_lowers(
    lowers: Sequence[str], parts: list[str], entry: str
) -> tuple[int, os.stat_result] | None:
    """Resolve `parts` the way overlayfs would over `lowers` (topmost first).

    Returns an fd of the containing directory (the caller closes it) and the
    lstat of the entry. A whiteout or a non-directory on the way hides
    everything below it, and an opaque directory hides the layers under it.
    """
    *parents, name = parts
    for lower in lowers:
        fd = os.open(lower, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        opaque = False
        try:
            for depth, component in enumerate(parents):
                st = _lstat(component, fd)
                if st is None:
                    break
                if stat.S_ISLNK(st.st_mode):
                    where = "/".join(parents[: depth + 1])
                    raise InvalidArgument(
                        f"layer entry {entry!r}: hard link target goes through symlink {where!r}"
                    )
                if not stat.S_ISDIR(st.st_mode):
                    return None
                child = os.open(component, _O_DIR, dir_fd=fd)
                os.close(fd)
                fd = child
                opaque = opaque or _has_opaque_mark(fd)
            else:
                st = _lstat(name, fd)
                if st is not None:
                    if _is_whiteout(st):
                        return None
                    if stat.S_ISDIR(st.st_mode):
                        raise InvalidArgument(f"layer entry {entry!r}: hard link to a directory")
                    found, fd = fd, -1
                    return found, st
        finally:
            if fd >= 0:
                os.close(fd)
        if opaque:
            return None
    return None


def _has_opaque_mark(fd: int) -> bool:
    try:
        return os.getxattr(fd, OPAQUE_XATTR) == b"y"
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.ENOTSUP):
            return False
        raise


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _copy_fd(src: int, dst: int) -> int:
    """Copy a whole file between fds; in-kernel (and reflinked) where possible."""
    copied = 0
    try:
        while n := os.copy_file_range(src, dst, _CHUNK * 16):
            copied += n
        return copied
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    # Both offsets are where copy_file_range left them.
    while data := os.read(src, _CHUNK):
        _write_all(dst, memoryview(data))
        copied += len(data)
    return copied


def _xattrs(member: tarfile.TarInfo, entry: str) -> list[tuple[str, bytes]]:
    """The extended attributes an entry carries in its PAX records."""
    headers = member.pax_headers
    if not headers:
        return []
    found: dict[str, bytes] = {}
    for key, value in headers.items():
        if key.startswith("SCHILY.xattr."):
            # Values are binary; tarfile decoded them with surrogateescape.
            found[key[len("SCHILY.xattr.") :]] = value.encode("utf-8", "surrogateescape")
        elif key.startswith("LIBARCHIVE.xattr."):
            # libarchive url-encodes the name and base64-encodes the value,
            # usually unpadded. It also writes SCHILY records, which win.
            name = urllib.parse.unquote(key[len("LIBARCHIVE.xattr.") :], errors="surrogateescape")
            try:
                decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
            except binascii.Error:
                raise InvalidArgument(
                    f"layer entry {entry!r}: bad base64 in xattr record {key!r}"
                ) from None
            found.setdefault(name, decoded)
    return [(k, v) for k, v in found.items() if not k.startswith(_OVERLAY_XATTR_PREFIXES)]


def _read_xattrs(target: int | str) -> list[tuple[str, bytes]]:
    follow = isinstance(target, int)  # fds take no follow_symlinks=False
    try:
        names = os.listxattr(target, follow_symlinks=follow)
    except OSError as e:
        if e.errno == errno.ENOTSUP:
            return []
        raise
    return [
        (name, os.getxattr(target, name, follow_symlinks=follow))
        for name in names
        if not name.startswith(_OVERLAY_XATTR_PREFIXES)
    ]


def _set_xattrs(
    target: int | str, xattrs: list[tuple[str, bytes]], entry: str, *, follow: bool = True
) -> None:
    for name, value in xattrs:
        try:
            os.setxattr(target, name, value, follow_symlinks=follow)
        except OSError as e:
            # As Docker does: a filesystem without xattrs, or a namespace the
            # file type cannot carry (user.* on a symlink), costs a warning.
            if e.errno not in (errno.ENOTSUP, errno.EPERM):
                raise
            log.warning("layer entry %r: cannot set xattr %s: %s", entry, name, e.strerror)


def _set_attrs_fd(fd: int, member: tarfile.TarInfo, entry: str) -> None:
    # chown clears setuid/setgid and security.capability, so chown comes
    # first, then chmod, then xattrs; times last, once nothing else changes.
    os.fchown(fd, member.uid, member.gid)
    os.fchmod(fd, member.mode & 0o7777)
    _set_xattrs(fd, _xattrs(member, entry), entry)
    os.utime(fd, ns=_times_ns(member))


def _set_attrs_at(
    parent: int, base: str, member: tarfile.TarInfo, entry: str, *, is_symlink: bool
) -> None:
    # For entries we must not open: symlinks, devices, FIFOs. Same order as
    # `_set_attrs_fd`; symlinks have no mode of their own.
    os.chown(base, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
    if not is_symlink:
        os.chmod(base, member.mode & 0o7777, dir_fd=parent)
    xattrs = _xattrs(member, entry)
    if xattrs:
        _set_xattrs(_proc_path(parent, base), xattrs, entry, follow=False)
    os.utime(base, ns=_times_ns(member), dir_fd=parent, follow_symlinks=False)


# The range of a 64-bit time_t. Filesystems clamp further by themselves; like
# containerd, a time out of range is clamped rather than refused.
_MAX_TIME_NS = (2**63 - 1) * 1_000_000_000


def _times_ns(member: tarfile.TarInfo) -> tuple[int, int]:
    """(atime, mtime) in ns; the access time is never before the modification."""
    mtime = _pax_time_ns(member, "mtime")
    if mtime is None:
        try:
            mtime = int(member.mtime) * 1_000_000_000
        except (OverflowError, ValueError):  # inf or nan from a PAX record
            mtime = 0
    atime = _pax_time_ns(member, "atime")
    mtime = max(-_MAX_TIME_NS, min(mtime, _MAX_TIME_NS))
    return (mtime if atime is None or atime < mtime else min(atime, _MAX_TIME_NS)), mtime


def _pax_time_ns(member: tarfile.TarInfo, key: str) -> int | None:
    # tarfile turns PAX times into floats, which lose the nanoseconds.
    text = member.pax_headers.get(key) if member.pax_headers else None
    if text is None:
        return None
    try:
        return int(Decimal(text) * 1_000_000_000)
    except (InvalidOperation, ValueError, OverflowError):
        return None
