"""A volume's subpath, opened without leaving the volume and pinned for the runtime.

`--mount type=volume,volume-subpath=a/b` mounts one directory of a volume
(API 1.45). A volume's contents belong to the containers that use it, so any
component of the path may be a symlink planted to point at the host's `/`.
The path is therefore resolved by the kernel as if the volume were the root
(openat2 with RESOLVE_IN_ROOT), and the directory found is bind-mounted
through its file descriptor onto a private staging path, which is what the
runtime mounts: a link swapped in after the check changes nothing. The
staging mounts are undone as soon as the runtime has made the container's
own mounts (and at the latest when the container's volumes are unmounted).
"""

from __future__ import annotations

import ctypes
import os

from dockyard import mount
from dockyard.errors import InvalidArgument

_SYS_OPENAT2 = 437  # the same number on every architecture (added with the generic table)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10
_O_PATH = 0o10000000

_libc = ctypes.CDLL(None, use_errno=True)


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


def _open_in_root(root: str, path: str) -> int:
    """An O_PATH descriptor of `path` resolved with `root` as `/`."""
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        how = _OpenHow(_O_PATH | os.O_CLOEXEC, 0, _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
        fd = _libc.syscall(
            _SYS_OPENAT2,
            ctypes.c_int(root_fd),
            ctypes.c_char_p(path.encode()),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return int(fd)
    finally:
        os.close(root_fd)


def pin(volume_root: str, subpath: str, staging: str) -> str:
    """Bind `subpath` of the volume at `volume_root` onto `staging`; returns `staging`."""
    try:
        fd = _open_in_root(volume_root, subpath)
    except OSError as e:
        raise InvalidArgument(f"cannot access path {subpath}: {e.strerror}") from None
    try:
        os.makedirs(staging, mode=0o700, exist_ok=True)
        mount.mount(f"/proc/self/fd/{fd}", staging, None, mount.MS_BIND)
    finally:
        os.close(fd)
    return staging


def release(directory: str) -> None:
    """Undo every staging mount under `directory` and remove it (never a recursive delete:
    a staging path still mounted would lead into the volume)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        path = os.path.join(directory, name)
        mount.unmount(path)
        try:
            os.rmdir(path)
        except OSError:
            pass
    try:
        os.rmdir(directory)
    except OSError:
        pass
