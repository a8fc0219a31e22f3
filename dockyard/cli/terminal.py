"""The client side of attach and exec: raw terminals, resizing, and relaying streams."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import struct
import sys
import termios
import threading
import tty as tty_mod
from collections.abc import Callable, Iterator
from typing import BinaryIO

from dockyard import detachkeys
from dockyard.cli.client import close_write
from dockyard.detachkeys import EscapeFilter


def size() -> tuple[int, int]:
    columns, lines = shutil.get_terminal_size((80, 24))
    return lines, columns


@contextlib.contextmanager
def raw_mode(enabled: bool) -> Iterator[None]:
    if not enabled or not sys.stdin.isatty():
        yield
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty_mod.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def on_resize(callback: Callable[[int, int], None] | None) -> Iterator[None]:
    if callback is None or not sys.stdout.isatty():
        yield
        return
    previous = signal.signal(signal.SIGWINCH, lambda *_: callback(*size()))
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, previous)


class Demux:
    """Splits Docker's stdcopy frames into stdout and stderr."""

    def __init__(self, out: BinaryIO, err: BinaryIO) -> None:
        self._buf = b""
        self._out = out
        self._err = err

    def feed(self, data: bytes) -> None:
        self._buf += data
        while len(self._buf) >= 8:
            stream, length = struct.unpack(">BxxxL", self._buf[:8])
            if len(self._buf) < 8 + length:
                return
            payload = self._buf[8 : 8 + length]
            self._buf = self._buf[8 + length :]
            target = self._err if stream == 2 else self._out
            if stream == 3:
                target = self._err
            target.write(payload)
            target.flush()


def _pump_stdin(
    sock: socket.socket, escape: EscapeFilter | None, detached: threading.Event
) -> None:
    fd = sys.stdin.fileno()
    try:
        while True:
            data = os.read(fd, 32768)
            if not data:
                break
            if escape is not None:
                data = escape.feed(data)
            if data:
                sock.sendall(data)
            if escape is not None and escape.detached:
                # The user typed the detach keys: leave, the container runs on.
                detached.set()
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                return
    except OSError:
        pass
    with contextlib.suppress(OSError):
        close_write(sock)


def relay(
    sock: socket.socket,
    initial: bytes,
    *,
    tty: bool,
    stdin: bool,
    detach_keys: bytes = detachkeys.DEFAULT,
) -> bool:
    """Copy stdin to the socket (if asked) and the socket to stdout/stderr until it closes.

    With a terminal, typing `detach_keys` ends the relay early: returns True then.
    """
    out = sys.stdout.buffer
    err = sys.stderr.buffer
    demux = None if tty else Demux(out, err)
    detached = threading.Event()
    if stdin:
        escape = detachkeys.EscapeFilter(detach_keys) if tty else None
        threading.Thread(target=_pump_stdin, args=(sock, escape, detached), daemon=True).start()
    else:
        with contextlib.suppress(OSError):
            close_write(sock)

    def emit(data: bytes) -> None:
        if demux is None:
            out.write(data)
            out.flush()
        else:
            demux.feed(data)

    if initial:
        emit(initial)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            emit(data)
    except OSError:
        pass
    finally:
        sock.close()
    return detached.is_set()
