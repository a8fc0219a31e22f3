"""Network namespaces the daemon owns: one nsfs file per container sandbox.

A sandbox is created before the container's process exists (so its interfaces
are in place when the process starts) and bind-mounted at
`<exec-root>/netns/<container id>`; the runtime joins it through that path. The
namespace outlives a daemon crash because the mount holds it; unmounting the
file lets the kernel destroy the namespace and every interface in it (the
container side of each veth, and with it the host side) in the background,
which is much cheaper than deleting interfaces one by one.

Namespace switches happen on short-lived threads: `setns` changes only the
calling thread, and a socket stays in the namespace it was created in, so the
event loop can use netlink and DNS sockets of any sandbox.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Callable
from typing import TypeVar

from pyroute2 import AsyncIPRoute

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MNT_DETACH = 2
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


async def _on_thread(fn: Callable[[], T]) -> T:
    """Run `fn` on a fresh thread (it may change its namespace) and await its result."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(value: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)  # type: ignore[arg-type]

    def run() -> None:
        try:
            value = fn()
        except BaseException as e:
            loop.call_soon_threadsafe(settle, None, e)
        else:
            loop.call_soon_threadsafe(settle, value, None)

    threading.Thread(target=run, name="netns", daemon=True).start()
    return await future


async def _inside(path: str, fn: Callable[[], T]) -> T:
    def run() -> T:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(path, os.O_RDONLY)
        try:
            _check(_libc.setns(target, CLONE_NEWNET), f"setns {path}")
            try:
                return fn()
            finally:
                # If this fails the thread is in the wrong namespace: it ends here anyway.
                _libc.setns(home, CLONE_NEWNET)
        finally:
            os.close(target)
            os.close(home)

    return await _on_thread(run)


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(s, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | IFF_UP))


async def create(path: str) -> AsyncIPRoute:
    """A new network namespace with loopback up, bind-mounted at `path`; and netlink into it."""

    def run() -> socket.socket:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            _check(_libc.unshare(CLONE_NEWNET), "unshare")
            try:
                with open(path, "x"):
                    pass
                _check(
                    _libc.mount(b"/proc/thread-self/ns/net", path.encode(), b"none", MS_BIND, None),
                    f"mount {path}",
                )
                _loopback_up()
                return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 0)
            finally:
                _libc.setns(home, CLONE_NEWNET)
        finally:
            os.close(home)

    try:
        sock = await _on_thread(run)
    except BaseException:
        destroy(path)
        raise
    return AsyncIPRoute(fileno=sock.detach(), groups=0)


def destroy(path: str) -> None:
    """Unmount and remove a sandbox file; the kernel then frees the namespace."""
    if _libc.umount2(path.encode(), MNT_DETACH) != 0:
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOENT):
            raise OSError(code, f"umount {path}: {os.strerror(code)}")
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def is_mounted(path: str) -> bool:
    try:
        return os.stat(path).st_dev != os.stat(os.path.dirname(path)).st_dev
    except OSError:
        return False


async def socket_in(path: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket that lives in the namespace at `path`."""
    return await _inside(path, lambda: socket.socket(family, kind, proto))


async def bound_sockets(path: str, address: tuple[str, int]) -> tuple[socket.socket, socket.socket]:
    """A UDP and a listening TCP socket bound to `address` inside the namespace."""

    def run() -> tuple[socket.socket, socket.socket]:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            udp.bind(address)
            tcp.bind(address)
            tcp.listen(64)
        except BaseException:
            udp.close()
            tcp.close()
            raise
        udp.setblocking(False)
        tcp.setblocking(False)
        return udp, tcp

    return await _inside(path, run)


async def netlink(path: str | None = None) -> AsyncIPRoute:
    """An rtnetlink client for the namespace at `path` (the host's when None)."""
    if path is None:
        return AsyncIPRoute(groups=0)
    sock = await socket_in(path, socket.AF_NETLINK, socket.SOCK_DGRAM, 0)
    return AsyncIPRoute(fileno=sock.detach(), groups=0)
