"""Running a process in a container: `runtime exec --process`.

The runtime stays the process's parent for its whole life and exits with its
status, so the exit code needs no monitor. Without a terminal the process's
stdio are pipes to the daemon; with one, the runtime hands the pty master over
a console socket (SCM_RIGHTS) and the daemon relays it.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import termios
from collections.abc import AsyncIterator
from typing import Any

from dockyard.errors import Unavailable
from dockyard.runtime.oci import Runtime, error_message


def set_winsize(fd: int, height: int, width: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


async def receive_pty(listener: socket.socket) -> int:
    """Accept the runtime's connection on a console socket and take the pty master fd."""
    loop = asyncio.get_running_loop()
    conn, _ = await loop.sock_accept(listener)
    try:
        conn.setblocking(True)
        _msg, fds, _flags, _addr = await loop.run_in_executor(
            None, socket.recv_fds, conn, 4096, 1
        )
    finally:
        conn.close()
    if not fds:
        raise Unavailable("runtime did not send a terminal")
    return fds[0]


class ExecProcess:
    """One running exec: output as (stream, bytes) chunks, stdin, resize, exit code."""

    def __init__(self, proc: asyncio.subprocess.Process, master: int | None, workdir: str) -> None:
        self.proc = proc
        self.master = master
        self._workdir = workdir
        self.pid = proc.pid
        self._output: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self._readers: list[asyncio.Task[None]] = []
        self._stderr_tail = b""

    def _start_readers(self) -> None:
        if self.master is not None:
            self._readers.append(asyncio.ensure_future(self._read_master()))
            return
        if self.proc.stdout:
            self._readers.append(asyncio.ensure_future(self._read_pipe(self.proc.stdout, 1)))
        if self.proc.stderr:
            self._readers.append(asyncio.ensure_future(self._read_pipe(self.proc.stderr, 2)))

    async def _read_pipe(self, reader: asyncio.StreamReader, stream: int) -> None:
        while True:
            data = await reader.read(32768)
            if not data:
                return
            if stream == 2:
                self._stderr_tail = (self._stderr_tail + data)[-4096:]
            await self._output.put((stream, data))

    async def _read_master(self) -> None:
        assert self.master is not None
        loop = asyncio.get_running_loop()
        fd = self.master
        os.set_blocking(fd, False)
        ready = asyncio.Event()
        loop.add_reader(fd, ready.set)
        try:
            while True:
                await ready.wait()
                ready.clear()
                try:
                    data = os.read(fd, 32768)
                except BlockingIOError:
                    continue
                except OSError:  # EIO once every holder of the pty slave is gone
                    return
                if not data:
                    return
                await self._output.put((1, data))
        finally:
            loop.remove_reader(fd)

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        """Output until the process has exited and its stdio is drained."""
        done = asyncio.ensure_future(self._finish())
        while True:
            item = await self._output.get()
            if item is None:
                break
            yield item
        await done

    async def _finish(self) -> None:
        await asyncio.gather(*self._readers, return_exceptions=True)
        await self._output.put(None)

    async def write(self, data: bytes) -> None:
        if self.master is not None:
            view = memoryview(data)
            while view:
                try:
                    written = os.write(self.master, view)
                    view = view[written:]
                except BlockingIOError:
                    await asyncio.sleep(0.005)
        elif self.proc.stdin:
            self.proc.stdin.write(data)
            try:
                await self.proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass

    def close_stdin(self) -> None:
        if self.master is not None:
            try:
                os.write(self.master, b"\x04")  # EOF for the terminal's line discipline
            except OSError:
                pass
        elif self.proc.stdin:
            self.proc.stdin.close()

    def resize(self, height: int, width: int) -> None:
        if self.master is not None:
            set_winsize(self.master, height, width)

    async def wait(self) -> int:
        code = await self.proc.wait()
        shutil.rmtree(self._workdir, ignore_errors=True)
        if self.master is not None:
            try:
                os.close(self.master)
            except OSError:
                pass
            self.master = None
        return 128 - code if code < 0 else code

    @property
    def runtime_error(self) -> str:
        return error_message(self._stderr_tail.decode(errors="replace"))


async def start(
    runtime: Runtime,
    container_id: str,
    process: dict[str, Any],
    *,
    stdin: bool,
    detach: bool = False,
) -> ExecProcess:
    """Start `process` in the container; its output is ready to read on return."""
    tty = bool(process.get("terminal"))
    workdir = tempfile.mkdtemp(prefix="exec-", dir=runtime.state_dir)
    process_file = os.path.join(workdir, "process.json")
    with open(process_file, "w") as f:
        json.dump(process, f)
    listener = None
    console_path = None
    if tty:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        console_path = os.path.join(workdir, "console.sock")
        listener.bind(console_path)
        listener.listen(1)
        listener.setblocking(False)
    argv = runtime.exec_argv(container_id, process_file, tty=tty, console_socket=console_path)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.PIPE if stdin and not tty and not detach else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if tty or detach else subprocess.PIPE,
            stderr=subprocess.PIPE if not tty and not detach else subprocess.DEVNULL,
        )
        master = None
        if listener is not None:
            accept = asyncio.ensure_future(receive_pty(listener))
            exited = asyncio.ensure_future(proc.wait())
            finished, _ = await asyncio.wait({accept, exited}, return_when=asyncio.FIRST_COMPLETED)
            if accept not in finished:
                accept.cancel()
                raise Unavailable("exec failed: the runtime exited before providing a terminal")
            exited.cancel()
            master = accept.result()
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    finally:
        if listener is not None:
            listener.close()
    # The runtime reads process.json after it has started: the file goes when it exits.
    execution = ExecProcess(proc, master, workdir)
    if not detach:
        execution._start_readers()
    return execution
