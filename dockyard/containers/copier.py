"""The chrooted worker of the archive API: one short-lived process per request.

The daemon never touches a container's files by host path: a symlink the
container placed, or swapped in while a copy runs (CVE-2018-15664), could
point it at the host. It starts this module in a child process instead, which
makes the container's view of its files its root directory, so that every
path, symlink and `..` resolves inside the container whatever the container
does meanwhile:

* a running container: the root of its init process (`/proc/<pid>/root`,
  opened and checked by the daemon, handed over as a file descriptor), with
  the container's own mounts: volumes, binds, tmpfs, `/etc/hosts`;
* a stopped container: the daemon has mounted the rootfs overlay and the
  volumes as `start` does; this process unshares its mount namespace, makes
  every mount private, clones each volume or bind (`open_tree`), changes its
  root to the rootfs and attaches the clones at their destinations
  (`move_mount`), resolved inside the new root; tmpfs mounts are fresh and
  private. All of it vanishes with the process;
* an export: the rootfs alone, as Docker exports it.

Lifecycle of `main(spec)`:

1. Everything this process will ever run is imported before the root changes
   (CVE-2019-14271: `docker cp` loaded the container's NSS libraries). No
   user or group name is ever looked up through NSS: archives carry numeric
   owners with empty names, as Docker's do, and `copyUIDGID` reads the
   container's `/etc/passwd` and `/etc/group` as text.
2. The view is built and the root changed; then the import system is sealed
   (only built-in modules load) and the process keeps only the capabilities
   file work needs (no chroot, no mounts, no way back to the host).
3. One operation runs: `stat`, `archive`, `extract` or `export`.

Protocol with the daemon: data on stdin (extract: a tar, maybe compressed) or
stdout (archive, export: a tar); JSON lines on stderr: `ready` once the
operation's checks passed (with the stat for stat and archive), `warning`s,
and finally `done` or `error` (`{"kind": "not_found" | "invalid" |
"forbidden" | "failed", "message": ...}`).
"""

from __future__ import annotations

import ctypes
import errno
import importlib.machinery
import json
import os
import shutil
import stat
import sys
import tarfile
from collections.abc import Iterator
from typing import Any, BinaryIO

from dockyard.containers import copyrules
from dockyard.errors import InvalidArgument
from dockyard.layers import compression

NOT_FOUND = "not_found"
INVALID = "invalid"
FORBIDDEN = "forbidden"
FAILED = "failed"

_CHUNK = 1 << 20
_BLOCK = 512
_TAR_BUFSIZE = 64 << 10
_MAX_ACCOUNTS_FILE = 16 << 20

# Linux syscall numbers from 5.2 on; the same on every architecture.
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_MOUNT_SETATTR = 442
_CLONE_NEWNS = 0x00020000
_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18
_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000
_AT_RECURSIVE = 0x8000
_OPEN_TREE_CLONE = 1
_MOVE_MOUNT_F_EMPTY_PATH = 0x04
_MOVE_MOUNT_T_SYMLINKS = 0x10
_MOUNT_ATTR_RDONLY = 0x1
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_CAPABILITY_VERSION_3 = 0x20080522
# What file work needs: chown, bypass permission checks, own any file's
# metadata, keep set-id bits, set file capabilities (security.capability).
_KEEP_CAPABILITIES = (0, 1, 2, 3, 4, 31)

# overlayfs keeps its own state in these; an archive may not set them.
_OVERLAY_XATTRS = ("trusted.overlay.", "user.overlay.")
_XATTR_PAX = "SCHILY.xattr."

_libc = ctypes.CDLL(None, use_errno=True)


class Failure(Exception):
    """An operation's failure, as the daemon reports it to the client."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def _say(message_type: str, /, **payload: Any) -> None:
    line = json.dumps({message_type: payload or True}, ensure_ascii=True) + "\n"
    data = line.encode()
    while data:
        data = data[os.write(2, data) :]


def _warn(message: str) -> None:
    _say("warning", message=message)


def _os_failure(operation: str, path: str, error: OSError) -> Failure:
    """Go's wording ("lstat /x: no such file or directory"); a missing file is NOT_FOUND."""
    kind = NOT_FOUND if error.errno == errno.ENOENT else FAILED
    return Failure(kind, f"{operation} {path}: {os.strerror(error.errno or 0).lower()}")


def _display(text: str) -> str:
    """A file name for JSON: bytes that are not UTF-8 become U+FFFD, as in Go."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


# -- the container's view ---------------------------------------------------------------


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _syscall(number: int, *args: Any) -> int:
    return int(_libc.syscall(ctypes.c_long(number), *args))


def _unshare_mounts() -> None:
    """A private mount namespace in which nothing propagates back to the host."""
    _check(_libc.unshare(_CLONE_NEWNS), "unshare")
    _check(
        _libc.mount(b"none", b"/", None, ctypes.c_ulong(_MS_REC | _MS_PRIVATE), None),
        "make mounts private",
    )


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _read_only(dirfd: int, path: bytes, flags: int) -> None:
    attr = _MountAttr(_MOUNT_ATTR_RDONLY, 0, 0, 0)
    _check(
        _syscall(
            _SYS_MOUNT_SETATTR,
            ctypes.c_int(dirfd),
            ctypes.c_char_p(path),
            ctypes.c_uint(flags),
            ctypes.byref(attr),
            ctypes.c_size_t(ctypes.sizeof(attr)),
        ),
        "mount_setattr",
    )


def _clone_tree(source: str, *, recursive: bool, readonly: bool) -> int:
    """A detached copy of the mount tree at `source` (a host path), read-only if asked."""
    flags = _OPEN_TREE_CLONE | os.O_CLOEXEC | (_AT_RECURSIVE if recursive else 0)
    fd = _check(
        _syscall(
            _SYS_OPEN_TREE,
            ctypes.c_int(_AT_FDCWD),
            ctypes.c_char_p(os.fsencode(source)),
            ctypes.c_uint(flags),
        ),
        f"open_tree {source}",
    )
    if readonly:
        try:
            _read_only(fd, b"", _AT_EMPTY_PATH | _AT_RECURSIVE)
        except OSError:
            os.close(fd)
            raise
    return fd


def _attach_tree(fd: int, destination: str) -> None:
    _check(
        _syscall(
            _SYS_MOVE_MOUNT,
            ctypes.c_int(fd),
            ctypes.c_char_p(b""),
            ctypes.c_int(_AT_FDCWD),
            ctypes.c_char_p(os.fsencode(destination)),
            ctypes.c_uint(_MOVE_MOUNT_F_EMPTY_PATH | _MOVE_MOUNT_T_SYMLINKS),
        ),
        f"mount on {destination}",
    )


def _mount_tmpfs(destination: str, flags: int, data: str) -> None:
    _check(
        _libc.mount(
            b"tmpfs",
            os.fsencode(destination),
            b"tmpfs",
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount tmpfs on {destination}",
    )


def _make_mountpoint(destination: str, directory: bool) -> None:
    """Create a mount's destination inside the (already changed) root, as runc would."""
    if directory:
        os.makedirs(destination, 0o755, exist_ok=True)
        return
    os.makedirs(os.path.dirname(destination) or "/", 0o755, exist_ok=True)
    os.close(os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))


def _seal_imports() -> None:
    """From here on only built-in and frozen modules can load: a lazy import would
    otherwise find its module in the container's files."""
    allowed = (importlib.machinery.BuiltinImporter, importlib.machinery.FrozenImporter)
    sys.meta_path[:] = [finder for finder in sys.meta_path if finder in allowed]
    sys.path_hooks.clear()
    sys.path_importer_cache.clear()
    sys.path.clear()


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _drop_privileges() -> None:
    """Keep only the capabilities file work needs, for good: no chroot, no mounts, no
    ptrace, nothing regained through exec."""
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    for cap in range(64):
        if cap not in _KEEP_CAPABILITIES and _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) < 0:
            if ctypes.get_errno() == errno.EINVAL:
                break  # past the kernel's last capability
            _check(-1, "drop capability")
    keep = sum(1 << cap for cap in _KEEP_CAPABILITIES)
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)(_CapData(keep, keep, 0), _CapData(0, 0, 0))
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def _enter(spec: dict[str, Any]) -> None:
    """Build the container's view, make it this process's root, lock the process down."""
    os.umask(0)
    trees: list[tuple[dict[str, Any], int | None, bool]] = []
    if spec.get("private"):
        _unshare_mounts()
        for mount in spec.get("mounts_to_make") or []:
            if mount["type"] == "bind":
                directory = os.path.isdir(mount["source"])
                tree = _clone_tree(
                    mount["source"], recursive=mount["recursive"], readonly=mount["readonly"]
                )
                trees.append((mount, tree, directory))
            else:
                trees.append((mount, None, True))
    given = spec.get("root_fd")
    root_fd = (
        given
        if isinstance(given, int)
        else os.open(spec["root_path"], os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    )
    _seal_imports()
    os.fchdir(root_fd)
    os.chroot(".")
    os.chdir("/")
    os.close(root_fd)
    for mount, cloned, directory in trees:
        destination = mount["destination"]
        _make_mountpoint(destination, directory)
        if cloned is not None:
            _attach_tree(cloned, destination)
            os.close(cloned)
        else:
            _mount_tmpfs(destination, mount["flags"], mount["data"])
    if spec.get("readonly_root"):
        _read_only(_AT_FDCWD, b"/", 0)
    _drop_privileges()


# -- paths -------------------------------------------------------------------------------


def follow_symlinks_in_scope(path: str, root: str = "/") -> str:
    """`path` with every symlink in it resolved as if `root` were `/`, as far as it
    exists (moby/sys/symlink's FollowSymlinkInScope): the stat's `linkTarget`."""
    root = copyrules.clean(root)
    if path == root:
        return path
    if not path.startswith(root):
        raise ValueError(f"{path} is not in {root}")
    rest = path[len(root) :]
    if root == "/":
        rest = "/" + rest
    rest = copyrules.clean(rest)
    done = ""
    steps = 0
    while rest:
        steps += 1
        if steps > 255:
            raise OSError(errno.ELOOP, f"evalSymlinksInScope: too many links in {path}")
        part, _, rest = rest.partition("/")
        if not part:
            continue
        clean_part = copyrules.clean("/" + done + part)
        if clean_part == "/":
            done = ""
            continue
        full = copyrules.clean(root + clean_part)
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            done += part + "/"
            continue
        if not stat.S_ISLNK(st.st_mode):
            done += part + "/"
            continue
        target = os.readlink(full)
        if target.startswith("/"):
            done = ""
        rest = target + "/" + rest
    return copyrules.clean(root + copyrules.clean("/" + done))


def writable_error(path: str, mounts: list[dict[str, Any]], readonly_rootfs: bool) -> str | None:
    """Why `path` (resolved) may not be written to, by the container's configuration:
    the innermost mount holding it decides, else the rootfs (moby's checkWritablePath)."""
    path = copyrules.clean(path)
    holder: dict[str, Any] | None = None
    for mount in mounts:
        destination = copyrules.clean(mount["destination"])
        inside = path == destination or path.startswith(destination.rstrip("/") + "/")
        if inside and (holder is None or len(destination) > len(holder["destination"])):
            holder = {**mount, "destination": destination}
    if holder is not None:
        return None if holder["rw"] else "mounted volume is marked read-only"
    return "container rootfs is marked read-only" if readonly_rootfs else None


def _accounts(text: str, fields: int) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        row = line.split(":")
        if len(row) >= fields:
            rows.append(row)
    return rows


def owner(user: str, passwd: str, group: str) -> tuple[int, int]:
    """The uid and gid of a container's `User` (`name`, `uid`, `name:group`, `uid:gid`,
    `:gid`), looked up in the container's passwd and group files as moby does for
    `copyUIDGID`; ValueError with Docker's message if a name is unknown."""
    user_part, _, group_part = user.partition(":")
    uid = gid = 0
    if user_part:
        numeric = user_part.isdigit()
        for row in _accounts(passwd, 4):
            if not row[2].isdigit():
                continue
            if (int(row[2]) == int(user_part)) if numeric else (row[0] == user_part):
                uid, gid = int(row[2]), int(row[3]) if row[3].isdigit() else 0
                break
        else:
            if not numeric:
                quoted = copyrules.go_quote(user_part)
                raise ValueError(
                    f"failed to look up user {quoted} in container: unable to find "
                    f"user {user_part}: no matching entries in passwd file"
                )
            uid, gid = int(user_part), 0
    if group_part:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            for row in _accounts(group, 3):
                if row[0] == group_part and row[2].isdigit():
                    gid = int(row[2])
                    break
            else:
                quoted = copyrules.go_quote(group_part)
                raise ValueError(
                    f"failed to look up group {quoted} in container: unable to "
                    f"find group {group_part}: no matching entries in group file"
                )
    return uid, gid


def _read_accounts_file(path: str) -> str:
    """A small regular file of the container as text ("" if there is none); never blocks
    on a FIFO the container put in its place."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        data = os.read(fd, _MAX_ACCOUNTS_FILE)
    finally:
        os.close(fd)
    return data.decode("utf-8", "replace")


# -- stat and archive ----------------------------------------------------------------------


def _stat(path: str) -> copyrules.PathStat:
    absolute = copyrules.container_path(path)
    try:
        st = os.lstat(absolute)
    except OSError as e:
        raise _os_failure("lstat", absolute, e) from None
    link_target = ""
    if stat.S_ISLNK(st.st_mode):
        link_target = follow_symlinks_in_scope(absolute)
    return copyrules.PathStat(
        name=_display(copyrules.base(absolute)),
        size=st.st_size,
        mode=copyrules.file_mode(st.st_mode),
        mtime=copyrules.rfc3339_nano(st.st_mtime_ns),
        link_target=_display(link_target),
    )


class TarWriter:
    """Writes a tar as moby's go-archive does: PAX, numeric owners without names,
    seconds-precision times, hard links as links to the first name seen, no sockets,
    `security.capability` kept."""

    def __init__(self, fd: int, *, opaque: list[str] | None = None) -> None:
        self._fd = fd
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
            _warn(f"can't stat {root}: {os.strerror(e.errno or 0)}")
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
                _warn(f"can't stat {path}: {os.strerror(e.errno or 0)}")
                continue
            self.add(path, name_of(child), st)
            if stat.S_ISDIR(st.st_mode) and not (
                st.st_dev in self._opaque and st.st_dev != root_device
            ):
                pending.append((path, child, self._names(path)))

    @staticmethod
    def _names(directory: str) -> Iterator[str]:
        try:
            with os.scandir(directory) as entries:
                names = [entry.name for entry in entries]
        except OSError as e:
            _warn(f"can't read {directory}: {os.strerror(e.errno or 0)}")
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
                _warn(f"can't read link {path}: {os.strerror(e.errno or 0)}")
                return
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            info.type = tarfile.FIFOTYPE
        else:
            _warn(f"can't add {path}: archive/tar: sockets not supported")
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
                _XATTR_PAX + "security.capability": capability.decode("utf-8", "surrogateescape")
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

    @staticmethod
    def _open_regular(path: str, st: os.stat_result) -> int | None:
        # O_NONBLOCK: if the file was swapped for a FIFO since the lstat, opening it
        # must not hang; the fstat check then skips it.
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        try:
            fd = os.open(path, flags)
        except OSError as e:
            _warn(f"can't open {path}: {os.strerror(e.errno or 0)}")
            return None
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            os.close(fd)
            _warn(f"{path} changed while it was archived")
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
            _warn(f"{path} shrank while it was archived")
        while remaining:
            zeros = min(remaining, _CHUNK)
            self._write(bytes(zeros))
            remaining -= zeros
        self._write(bytes(-size % _BLOCK))

    def close(self) -> None:
        self._write(bytes(2 * _BLOCK))  # the end of the archive, as Go's writer ends it


def _archive(spec: dict[str, Any]) -> None:
    path = spec["path"]
    pathstat = _stat(path)
    _say("ready", stat=pathstat.to_dict())
    absolute = copyrules.container_path(path)
    if pathstat.is_dir:
        source_dir, source_base = absolute, "."
    else:
        cut = absolute.rfind("/") + 1
        source_dir, source_base = absolute[:cut], absolute[cut:]
    rebase = copyrules.base(absolute)
    writer = TarWriter(1, opaque=spec.get("opaque"))
    writer.tree(f"{source_dir}/{source_base}", "" if rebase == "/" else rebase)
    writer.close()


def _export() -> None:
    _say("ready")
    writer = TarWriter(1)
    writer.tree("/", "", include_top=False)
    writer.close()


# -- extract ---------------------------------------------------------------------------------

_EOF_HEADER: type[Exception] = vars(tarfile)["EOFHeaderError"]
_EMPTY_HEADER: type[Exception] = vars(tarfile)["EmptyHeaderError"]


class _StrictTarInfo(tarfile.TarInfo):
    """A truncated or corrupt archive is an error, not a short one (tarfile would take
    any bad header after the first for the end)."""

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> _StrictTarInfo:
        try:
            return super().fromtarfile(tarfile_)
        except _EMPTY_HEADER:
            raise _EOF_HEADER("end of file header") from None
        except _EOF_HEADER:
            raise
        except tarfile.HeaderError as e:
            raise tarfile.ReadError(f"bad header at offset {tarfile_.offset}: {e}") from None


class Extractor:
    """Extracts a tar into the current directory as moby's go-archive Unpack does: entries
    replace what is there (directories merge), missing parents are made 0755, owners come
    from the archive unless `owner` overrides them, modes and times are restored
    (directories' last). Device nodes are refused. Paths resolve in this process's root,
    which is the container's."""

    def __init__(
        self, destination: str, *, owner: tuple[int, int] | None, no_overwrite_dir_non_dir: bool
    ) -> None:
        self.destination = destination
        self.owner = owner
        self.no_overwrite_dir_non_dir = no_overwrite_dir_non_dir
        self._dir_times: list[tuple[str, int, int]] = []

    def run(self, stream: BinaryIO) -> None:
        try:
            with tarfile.open(
                fileobj=stream,
                mode="r|",
                bufsize=_TAR_BUFSIZE,
                tarinfo=_StrictTarInfo,
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
            if not key.startswith(_XATTR_PAX):
                continue
            attribute = key[len(_XATTR_PAX) :]
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
                _warn(f"ignored xattr {attribute} of {name}: {os.strerror(e.errno or 0)}")
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


def _extract(spec: dict[str, Any]) -> None:
    path = spec["path"]
    try:
        resolved = os.path.realpath(copyrules.join("/", path), strict=True)
        absolute = copyrules.preserve_trailing_dot_or_separator(resolved, path)
        st = os.lstat(absolute)
    except OSError as e:
        raise _os_failure("lstat", copyrules.join("/", path), e) from None
    if not stat.S_ISDIR(st.st_mode):
        raise Failure(INVALID, "extraction point is not a directory")
    problem = writable_error(resolved, spec.get("mounts") or [], bool(spec.get("readonly_rootfs")))
    if problem:
        raise Failure(FORBIDDEN, problem)
    user = spec.get("user") or ""
    chown_to = None
    if user:
        try:
            chown_to = owner(
                user, _read_accounts_file("/etc/passwd"), _read_accounts_file("/etc/group")
            )
        except ValueError as e:
            raise Failure(INVALID, str(e)) from None
    _say("ready")
    os.chdir(resolved)
    extractor = Extractor(
        resolved,
        owner=chown_to,
        no_overwrite_dir_non_dir=bool(spec.get("no_overwrite_dir_non_dir")),
    )
    try:
        stream = compression.open_decompressed(sys.stdin.buffer)
    except Exception as e:  # an unreadable start of the archive
        raise Failure(FAILED, f"invalid tar archive: {e}") from None
    try:
        extractor.run(stream)
    except InvalidArgument as e:  # corrupt compressed data
        raise Failure(FAILED, e.message) from None
    finally:
        stream.close()


def _warm_up() -> None:
    """Run the archive code once in memory, so that anything it imports lazily is
    imported now, from the host, and not after the root changed."""
    import io

    buffer = io.BytesIO()
    info = tarfile.TarInfo("ä/" + "x" * 120)
    info.pax_headers = {_XATTR_PAX + "user.a": "\udcff"}
    buffer.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
    buffer.write(bytes(2 * _BLOCK))
    buffer.seek(0)
    with tarfile.open(fileobj=buffer, mode="r|", tarinfo=_StrictTarInfo) as tar:
        for member in tar:
            member.isreg()
    copyrules.rfc3339_nano(1)
    json.loads(json.dumps({"a": [1, "\u00e4"]}))
    os.path.realpath("/")


def main(spec_text: str) -> int:
    try:
        spec = json.loads(spec_text)
        _warm_up()
        _enter(spec)
        operation = spec["op"]
        if operation == "stat":
            _say("ready", stat=_stat(spec["path"]).to_dict())
        elif operation == "archive":
            _archive(spec)
        elif operation == "export":
            _export()
        elif operation == "extract":
            _extract(spec)
        else:
            raise Failure(FAILED, f"unknown operation {operation!r}")
    except Failure as e:
        _say("error", kind=e.kind, message=e.message)
        return 1
    except BrokenPipeError:
        return 1  # the daemon stopped reading: the client went away
    except Exception as e:
        _say("error", kind=FAILED, message=str(e) or type(e).__name__)
        return 1
    _say("done")
    return 0
