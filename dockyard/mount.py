"""mount(2) and umount2(2) for the daemon, without spawning mount(8).

`mount_with_options` takes mount(8)-style options ("ro,bind,size=8m"): flag
words become MS_* flags, everything else is the filesystem's data string, and
propagation and bind-read-only are applied in the extra steps mount(2) needs,
as mount(8) does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2

PROPAGATION = MS_SHARED | MS_SLAVE | MS_PRIVATE | MS_UNBINDABLE

# mount(8) option word -> (clear instead of set, flag)
FLAGS: dict[str, tuple[bool, int]] = {
    "defaults": (False, 0),
    "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY),
    "suid": (True, MS_NOSUID),
    "nosuid": (False, MS_NOSUID),
    "dev": (True, MS_NODEV),
    "nodev": (False, MS_NODEV),
    "exec": (True, MS_NOEXEC),
    "noexec": (False, MS_NOEXEC),
    "sync": (False, MS_SYNCHRONOUS),
    "async": (True, MS_SYNCHRONOUS),
    "dirsync": (False, MS_DIRSYNC),
    "remount": (False, MS_REMOUNT),
    "mand": (False, MS_MANDLOCK),
    "nomand": (True, MS_MANDLOCK),
    "atime": (True, MS_NOATIME),
    "noatime": (False, MS_NOATIME),
    "diratime": (True, MS_NODIRATIME),
    "nodiratime": (False, MS_NODIRATIME),
    "bind": (False, MS_BIND),
    "rbind": (False, MS_BIND | MS_REC),
    "unbindable": (False, MS_UNBINDABLE),
    "runbindable": (False, MS_UNBINDABLE | MS_REC),
    "private": (False, MS_PRIVATE),
    "rprivate": (False, MS_PRIVATE | MS_REC),
    "shared": (False, MS_SHARED),
    "rshared": (False, MS_SHARED | MS_REC),
    "slave": (False, MS_SLAVE),
    "rslave": (False, MS_SLAVE | MS_REC),
    "relatime": (False, MS_RELATIME),
    "norelatime": (True, MS_RELATIME),
    "strictatime": (False, MS_STRICTATIME),
    "nostrictatime": (True, MS_STRICTATIME),
}


def mount(source: str, target: str, fstype: str | None, flags: int = 0, data: str = "") -> None:
    rc = _libc.mount(
        source.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        flags,
        data.encode() if data else None,
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype or 'bind'} on {target}: {os.strerror(err)}")


def unmount(target: str, *, detach: bool = True) -> None:
    """Unmount `target`; an already unmounted target is not an error."""
    rc = _libc.umount2(target.encode(), MNT_DETACH if detach else 0)
    if rc != 0:
        err = ctypes.get_errno()
        if err in (22, 2):  # EINVAL: not a mount point; ENOENT: gone
            return
        raise OSError(err, f"umount {target}: {os.strerror(err)}")


def parse_options(options: str) -> tuple[int, str]:
    """mount(8)-style options as (flags, data): known words are flags, the rest is data."""
    flags = 0
    data = []
    for option in options.split(","):
        if not option:
            continue
        known = FLAGS.get(option)
        if known is None:
            data.append(option)
        elif known[0]:
            flags &= ~known[1]
        else:
            flags |= known[1]
    return flags, ",".join(data)


def mount_with_options(source: str, target: str, fstype: str | None, options: str) -> None:
    """Mount like mount(8) -t FSTYPE -o OPTIONS SOURCE TARGET."""
    flags, data = parse_options(options)
    base = flags & ~(PROPAGATION | MS_REC) | (flags & MS_REC if flags & MS_BIND else 0)
    fresh = not flags & MS_REMOUNT or bool(data)
    if fresh:
        mount(source, target, fstype if fstype not in ("", "none") else None, base, data)
    try:
        if flags & PROPAGATION:
            mount("", target, None, flags & (PROPAGATION | MS_REC))
        if base & (MS_BIND | MS_RDONLY) == MS_BIND | MS_RDONLY:
            # A bind mount ignores MS_RDONLY until it is remounted.
            mount("", target, None, base | MS_REMOUNT)
    except OSError:
        if fresh:
            unmount(target)  # never leave a mount without the options it was asked for
        raise


def is_mountpoint(path: str) -> bool:
    if os.path.ismount(path):
        return True
    # A bind mount from the same filesystem has its parent's device: ask the kernel's table.
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4].replace("\\040", " ") == path for line in f)


def mount_of(path: str) -> tuple[str, list[str]]:
    """The mount point holding `path` and its propagation tags ("shared:N", "master:N")."""
    path = os.path.realpath(path)
    best, tags = "/", []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4].replace("\\040", " ")
            inside = path == point or path.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best):
                best = point
                tags = fields[6 : fields.index("-")]
    return best, tags
