"""Docker's archives of a container's files: written as moby's go-archive writes
them (its Tarballer) and unpacked as its Unpack does, for the copier.

Both work on paths as they are: they are meant to run in the copier, whose
root directory is the container's, so no path or link can reach further.
Archives carry numeric owners and no user or group names (Docker's headers
have none, and looking names up would consult the container's NSS).

* `TarWriter`: PAX headers, times in whole seconds, hard links as links to the
  first name seen, `security.capability` kept, sockets left out, regular files
  sent with sendfile(2). A walk never follows a symlink and does not enter the
  pseudo filesystems it is told about.
* `Extractor`: entries replace what is there (directories merge), missing
  parents are made 0755, owners come from the archive unless overridden,
  modes and times are restored (directories' last); `..` and links climbing
  out of the destination, and device nodes, are refused.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterator
from typing import BinaryIO

from dockyard.containers import copyrules
from dockyard.layers.tarinfo import StrictTarInfo

NOT_FOUND = "not_found"
INVALID = "invalid"
FORBIDDEN = "forbidden"
FAILED = "failed"

_CHUNK = 1 << 20
_BLOCK = 512
_TAR_BUFSIZE = 64 << 10

# overlayfs keeps its own state in these; an archive may not set them.
_OVERLAY_XATTRS = ("trusted.overlay.", "user.overlay.")
XATTR_PAX = "SCHILY.xattr."

Warn = Callable[[str], None]


class Failure(Exception):
    """An operation's failure, as the daemon reports it to the client."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class TarWriter:
    """Writes a tar as moby's go-archive does: PAX, numeric owners without names,
    seconds-precision times, hard links as links to the first name seen, no sockets,
    `security.capability` kept."""

    def __init__(self, fd: int, warn: Warn, *, opaque: list[str] | None = None) -> None:
        self._fd = fd
        self._warn = warn
        self._seen: dict[tuple[int, int], str] = {}
        self._sendfile = True
        self._opaque = self._devices(opaque or [])

    @staticmethod
    def _devices(paths: list[str]) -> set[int]:
        devices = set()
        for path in paths:
            try:
                devices.add(os.stat(path).st_dev)
            except OSError:
                continue
        return devices

    def tree(self, root: str, top: str, *, include_top: bool = True) -> None:
        """Add `root` as `top` and everything below it as `top/...` (just `...`
        without the top), in Go's WalkDir order, never following symlinks.
        A pseudo-filesystem mount below the root (the container's /proc, /sys,
        /dev) is added as a directory but not entered."""
        try:
            st = os.lstat(root)
        except OSError as e:
            self._warn(f"can't stat {root}: {os.strerror(e.errno or 0)}")
            return
        if include_top:
            self.add(root, top, st)
        if not stat.S_ISDIR(st.st_mode):
            return
        root_device = st.st_dev

        def name_of(relative: str) -> str:
            return f"{top}/{relative}" if include_top else relative

        pending: list[tuple[str, str, Iterator[str]]] = [(root, "", self._names(root))]
        while pending:
            directory, relative, names = pending[-1]
            name = next(names, None)
            if name is None:
                pending.pop()
                continue
            path = os.path.join(directory, name)
            child = f"{relative}/{name}" if relative else name
            try:
                st = os.lstat(path)
            except OSError as e:
                self._warn(f"can't stat {path}: {os.strerror(e.errno or 0)}")
                continue
            self.add(path, name_of(child), st)
            if stat.S_ISDIR(st.st_mode) and not (
                st.st_dev in self._opaque and st.st_dev != root_device
            ):
                pending.append((path, child, self._names(path)))

    def _names(self, directory: str) -> Iterator[str]:
        try:
            with os.scandir(directory) as entries:
                names = [entry.name for entry in entries]
        except OSError as e:
            self._warn(f"can't read {directory}: {os.strerror(e.errno or 0)}")
            return iter(())
        return iter(sorted(names, key=os.fsencode))

    def add(self, path: str, name: str, st: os.stat_result) -> None:
        mode = st.st_mode
        info = tarfile.TarInfo(name)
        info.mode = mode & 0o7777
        info.uid, info.gid = st.st_uid, st.st_gid
        info.mtime = st.st_mtime_ns // 1_000_000_000
        data_fd = None
        if stat.S_ISREG(mode):
            info.type = tarfile.REGTYPE
            info.size = st.st_size
        elif stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(mode):
            info.type = tarfile.SYMTYPE
            try:
                info.linkname = os.readlink(path)
            except OSError as e:
                self._warn(f"can't read link {path}: {os.strerror(e.errno or 0)}")
                return
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            info.type = tarfile.FIFOTYPE
        else:
            self._warn(f"can't add {path}: archive/tar: sockets not supported")
            return
        if not stat.S_ISDIR(mode) and st.st_nlink > 1:
            first = self._seen.get((st.st_dev, st.st_ino))
            if first is not None:
                info.type, info.linkname, info.size = tarfile.LNKTYPE, first, 0
            else:
                self._seen[(st.st_dev, st.st_ino)] = info.name
        capability = self._capability(path)
        if capability is not None:
            info.pax_headers = {
                XATTR_PAX + "security.capability": capability.decode("utf-8", "surrogateescape")
            }
        if info.type == tarfile.REGTYPE and info.size:
            data_fd = self._open_regular(path, st)
            if data_fd is None:
                return
        try:
            self._write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
            if data_fd is not None:
                self._copy(data_fd, info.size, path)
        finally:
            if data_fd is not None:
                os.close(data_fd)

    @staticmethod
    def _capability(path: str) -> bytes | None:
        try:
            value = os.getxattr(path, "security.capability", follow_symlinks=False)
        except OSError:
            return None
        if len(value) > 3 and value[3] == 3:
            # A v3 capability names the root uid of a user namespace, meaningless
            # elsewhere: written as v2, as Docker does.
            value = value[:3] + b"\x02" + value[4:20]
        return value

    def _open_regular(self, path: str, st: os.stat_result) -> int | None:
        # O_NONBLOCK: if the file was swapped for a FIFO since the lstat, opening it
        # must not hang; the fstat check then skips it.
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        try:
            fd = os.open(path, flags)
        except OSError as e:
            self._warn(f"can't open {path}: {os.strerror(e.errno or 0)}")
            return None
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            os.close(fd)
            self._warn(f"{path} changed while it was archived")
            return None
        return fd

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def _copy(self, fd: int, size: int, path: str) -> None:
        remaining = size
        while remaining:
            count = min(remaining, _CHUNK * 16)
            sent = 0
            if self._sendfile:
                try:
                    sent = os.sendfile(self._fd, fd, None, count)
                except OSError as e:
                    if e.errno not in (errno.EINVAL, errno.ENOSYS):
                        raise
                    self._sendfile = False
            if not self._sendfile:
                data = os.read(fd, min(count, _CHUNK))
                self._write(data)
                sent = len(data)
            if not sent:
                break
            remaining -= sent
        if remaining:
            # The file shrank while it was read: the header promised `size` bytes.
            self._warn(f"{path} shrank while it was archived")
        while remaining:
            zeros = min(remaining, _CHUNK)
            self._write(bytes(zeros))
            remaining -= zeros
        self._write(bytes(-size % _BLOCK))

    def close(self) -> None:
        self._write(bytes(2 * _BLOCK))  # the end of the archive, as Go's writer ends it


class Extractor:
    """Extracts a tar into the current directory as moby's go-archive Unpack does: entries
    replace what is there (directories merge), missing parents are made 0755, owners come
    from the archive unless `owner` overrides them, modes and times are restored
    (directories' last). Device nodes are refused. Paths resolve in this process's root,
    which is the container's."""

    def __init__(
        self,
        destination: str,
        warn: Warn,
        *,
        owner: tuple[int, int] | None,
        no_overwrite_dir_non_dir: bool,
    ) -> None:
        self.destination = destination
        self._warn = warn
        self.owner = owner
        self.no_overwrite_dir_non_dir = no_overwrite_dir_non_dir
        self._dir_times: list[tuple[str, int, int]] = []

    def run(self, stream: BinaryIO) -> None:
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
                    self.add(member, tar)
                    tar.members.clear()  # type: ignore[attr-defined]
        except tarfile.TarError as e:
            raise Failure(FAILED, f"invalid tar archive: {e}") from None
        for name, atime, mtime in self._dir_times:
            try:
                os.utime(name, ns=(atime, mtime))
            except FileNotFoundError:
                pass
        while stream.read(_CHUNK):
            pass

    def add(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        try:
            name = copyrules.entry_path(member.name)
            target = copyrules.hardlink_target(member.linkname) if member.islnk() else None
        except copyrules.EntryOutsideError as e:
            raise Failure(FAILED, str(e)) from None
        if name is None:
            return
        if member.ischr() or member.isblk():
            raise Failure(
                INVALID,
                f"refusing to create device node {copyrules.go_quote(name)}: device nodes are not "
                "copied into containers",
            )
        try:
            merged = self._replace(name, member)
            self._make_parents(name)
            if not merged:
                self._create(name, member, tar, target)
            self._finish(name, member, target)
        except OSError as e:
            raise self._failure(name, e) from None

    def _failure(self, name: str, error: OSError) -> Failure:
        kind = NOT_FOUND if error.errno == errno.ENOENT else FAILED
        path = os.path.join(self.destination, name)
        return Failure(kind, f"{path}: {os.strerror(error.errno or 0).lower()}")

    def _replace(self, name: str, member: tarfile.TarInfo) -> bool:
        """Make room for the entry; True if it is a directory merging with one there."""
        try:
            existing = os.lstat(name)
        except FileNotFoundError:
            return False
        is_dir = stat.S_ISDIR(existing.st_mode)
        if self.no_overwrite_dir_non_dir and is_dir and not member.isdir():
            raise Failure(
                FAILED,
                f"cannot overwrite directory {copyrules.go_quote(name)} with non-directory "
                f"{copyrules.go_quote(self.destination)}",
            )
        if self.no_overwrite_dir_non_dir and not is_dir and member.isdir():
            raise Failure(
                FAILED,
                f"cannot overwrite non-directory {copyrules.go_quote(name)} with directory "
                f"{copyrules.go_quote(self.destination)}",
            )
        if is_dir and member.isdir():
            return True
        if is_dir:
            shutil.rmtree(name)
        else:
            os.unlink(name)
        return False

    @staticmethod
    def _make_parents(name: str) -> None:
        parent = os.path.dirname(name)
        if not parent or os.path.lexists(parent):
            return
        current = ""
        for part in parent.split("/"):
            current = os.path.join(current, part)
            try:
                os.mkdir(current, 0o755)
            except FileExistsError:
                if not os.path.isdir(current):
                    raise NotADirectoryError(errno.ENOTDIR, "not a directory", current) from None
                continue
            os.chmod(current, 0o755)

    def _create(
        self, name: str, member: tarfile.TarInfo, tar: tarfile.TarFile, target: str | None
    ) -> None:
        if member.isdir():
            os.mkdir(name, member.mode & 0o777)
        elif member.isreg():
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(name, flags, 0o600)
            try:
                source = tar.extractfile(member)
                if source is not None:
                    while chunk := source.read(_CHUNK):
                        view = memoryview(chunk)
                        while view:
                            view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
        elif member.issym():
            os.symlink(member.linkname, name)
        elif member.islnk():
            assert target is not None
            os.link(target, name, follow_symlinks=False)
        elif member.isfifo():
            os.mkfifo(name, member.mode & 0o777)
        else:
            raise Failure(FAILED, f"unhandled tar header type {member.type!r}")

    def _finish(self, name: str, member: tarfile.TarInfo, target: str | None) -> None:
        uid, gid = self.owner or (member.uid, member.gid)
        os.chown(name, uid, gid, follow_symlinks=False)
        for key, value in member.pax_headers.items():
            if not key.startswith(XATTR_PAX):
                continue
            attribute = key[len(XATTR_PAX) :]
            if attribute.startswith(_OVERLAY_XATTRS):
                continue
            try:
                os.setxattr(
                    name,
                    attribute,
                    value.encode("utf-8", "surrogateescape"),
                    follow_symlinks=False,
                )
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise
                self._warn(f"ignored xattr {attribute} of {name}: {os.strerror(e.errno or 0)}")
        follows = not member.issym()
        if member.islnk() and target is not None and os.path.islink(target):
            follows = False
        if follows:
            os.chmod(name, member.mode & 0o7777)
        mtime = int(member.mtime * 1_000_000_000)
        atime = mtime
        pax_atime = member.pax_headers.get("atime")
        if pax_atime:
            try:
                atime = max(mtime, int(float(pax_atime) * 1_000_000_000))
            except ValueError:
                pass
        if member.isdir():
            self._dir_times.append((name, atime, mtime))
        elif member.issym():
            os.utime(name, ns=(atime, mtime), follow_symlinks=False)
        elif follows:
            os.utime(name, ns=(atime, mtime))
