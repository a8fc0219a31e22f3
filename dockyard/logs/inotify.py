"""Directory change notices from the kernel (inotify), read by a thread of the log keeper.

The log keeper watches each running container's directory for the rename
with which conmon ends a rotation, so it can arm the next file at once.
"""

from __future__ import annotations

import ctypes
import os
import select
import struct

IN_MOVED_TO = 0x00000080
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000

_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name
_libc = ctypes.CDLL(None, use_errno=True)


class Inotify:
    def __init__(self) -> None:
        fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.fd: int = fd

    def watch(self, directory: str, mask: int) -> int:
        wd = _libc.inotify_add_watch(self.fd, os.fsencode(directory), mask | IN_ONLYDIR)
        if wd < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"inotify_add_watch {directory}: {os.strerror(errno)}")
        return int(wd)

    def unwatch(self, wd: int) -> None:
        _libc.inotify_rm_watch(self.fd, wd)  # fails harmlessly if the directory is gone

    def events(self, timeout: float, interrupt: int = -1) -> list[tuple[int, int, str]]:
        """(watch, mask, name) of what happened, waiting up to `timeout` seconds for it
        (or until `interrupt`, a descriptor, becomes readable)."""
        ready, _, _ = select.select(
            [self.fd, *([interrupt] if interrupt >= 0 else [])], [], [], timeout
        )
        if self.fd not in ready:
            return []
        try:
            data = os.read(self.fd, 64 * 1024)
        except BlockingIOError:
            return []
        found = []
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            name = data[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0")
            offset += _EVENT.size + length
            found.append((wd, mask, os.fsdecode(name)))
        return found

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
