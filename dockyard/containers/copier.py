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
2. The view is built: mounts prepared, the import system sealed (only
   built-in modules load from here on), the root changed, the mounts
   attached; then the process keeps only the capabilities file work needs
   (no chroot, no mounts, no way back to the host).
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
import stat
import sys
import tarfile
from typing import Any

from dockyard.containers import copyrules
from dockyard.containers.tarcopy import (
    FAILED,
    FORBIDDEN,
    INVALID,
    NOT_FOUND,
    XATTR_PAX,
    Extractor,
    Failure,
    TarWriter,
)
from dockyard.errors import InvalidArgument
from dockyard.layers import compression
from dockyard.layers.tarinfo import StrictTarInfo

_MAX_ACCOUNTS_FILE = 16 << 20

# Linux syscall numbers from 5.2 on (mount_setattr: 5.12), shared by the
# architectures Linux numbers new syscalls alike (all but alpha).
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


_libc = ctypes.CDLL(None, use_errno=True)


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
    writer = TarWriter(1, _warn, opaque=spec.get("opaque"))
    writer.tree(f"{source_dir}/{source_base}", "" if rebase == "/" else rebase)
    writer.close()


def _export() -> None:
    _say("ready")
    writer = TarWriter(1, _warn)
    writer.tree("/", "", include_top=False)
    writer.close()


# -- extract ---------------------------------------------------------------------------------


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
        _warn,
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
    info.pax_headers = {XATTR_PAX + "user.a": "\udcff"}
    buffer.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
    buffer.write(bytes(1024))
    buffer.seek(0)
    with tarfile.open(fileobj=buffer, mode="r|", tarinfo=StrictTarInfo) as tar:
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
