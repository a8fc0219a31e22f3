"""The per-container monitor: conmon.

conmon is the container's parent. It runs `runtime create`, holds the
container's stdio (a pty with `-t`), writes its log, and when the container
exits records the exit code (`<persist>/exit`) and an OOM kill
(`<persist>/oom`). It double-forks and starts its own session, so containers,
their logs and their exit codes survive the daemon being killed.

The daemon talks to a monitor through:
  * the sync pipe: one JSON line `{"data": <container pid>}` once the container
    is created, or `{"data": -1, "message": "<runtime error>"}`;
  * the attach socket `<socket dir>/<id>/attach` (SOCK_SEQPACKET): packets
    from conmon start with one byte naming the stream (2 stdout, 3 stderr),
    bytes sent to it go to the container's stdin, and a client's EOF closes
    that stdin unless `--leave-stdin-open` was given;
  * the control FIFO `<bundle>/ctl`: "1 <height> <width>\\n" resizes the pty;
  * its pid, watched with a pidfd: the monitor exits right after the container.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass

from dockyard.errors import Unavailable
from dockyard.runtime.oci import Runtime, error_message

STDOUT = 2
STDERR = 3


@dataclass(frozen=True)
class Monitor:
    pid: int
    start_time: int  # clock ticks after boot, from /proc/<pid>/stat; tells reused pids apart


def process_start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses; fields resume after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def is_alive(monitor: Monitor) -> bool:
    return process_start_time(monitor.pid) == monitor.start_time


@dataclass(frozen=True)
class Paths:
    """Where one container's monitor keeps its files."""

    bundle: str  # config.json, ctl FIFO; the attach socket's directory
    persist: str  # exit and oom files
    log: str
    pid_file: str
    monitor_pid_file: str

    @property
    def exit_file(self) -> str:
        return os.path.join(self.persist, "exit")

    @property
    def oom_file(self) -> str:
        return os.path.join(self.persist, "oom")

    @property
    def ctl(self) -> str:
        return os.path.join(self.bundle, "ctl")


class Conmon:
    def __init__(self, path: str, runtime: Runtime, socket_dir: str) -> None:
        self.path = path
        self.runtime = runtime
        self.socket_dir = socket_dir
        os.makedirs(socket_dir, exist_ok=True)

    @staticmethod
    def find(configured: str | None = None) -> str | None:
        """conmon's path: the configured one (daemon.json `conmon-path`), else the first
        found where distributions install it."""
        if configured:
            return configured if os.access(configured, os.X_OK) else None
        for candidate in ("conmon", "/usr/libexec/podman/conmon", "/usr/bin/conmon"):
            path = shutil.which(candidate)
            if path:
                return path
        return None

    def attach_socket(self, cid: str) -> str:
        return attach_socket(self.socket_dir, cid)

    def forget(self, cuuid: str) -> None:
        """Remove the link to a container's (or an exec's) directory that the monitor made
        in the socket directory, once that directory is gone or going."""
        forget_attach_link(self.socket_dir, cuuid)

    async def create(
        self,
        cid: str,
        name: str,
        paths: Paths,
        *,
        terminal: bool,
        stdin: bool,
        leave_stdin_open: bool,
    ) -> tuple[Monitor, int]:
        """Create the container under a new monitor; returns it and the container's pid.

        The container is created, not started: output written before `start`
        cannot happen, so attach clients connected now miss nothing.
        """
        for stale in (paths.exit_file, paths.oom_file, paths.pid_file, paths.monitor_pid_file):
            try:
                os.unlink(stale)
            except FileNotFoundError:
                pass
        argv = [
            self.path,
            "--api-version",
            "1",
            "-c",
            cid,
            "-u",
            cid,
            "-n",
            name,
            "-r",
            self.runtime.path,
            *[arg for a in self.runtime.global_args for arg in ("--runtime-arg", a)],
            "-b",
            paths.bundle,
            "-p",
            paths.pid_file,
            "-P",
            paths.monitor_pid_file,
            "-l",
            f"k8s-file:{paths.log}",
            "--persist-dir",
            paths.persist,
            "--socket-dir-path",
            self.socket_dir,
            "--log-level",
            "warning",
        ]
        if terminal:
            argv.append("-t")
        if stdin:
            argv.append("-i")
        if leave_stdin_open:
            argv.append("--leave-stdin-open")
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=(write_fd,),
                env={"_OCI_SYNCPIPE": str(write_fd), "PATH": os.environ.get("PATH", "")},
                # conmon drops an "oom" marker in its working directory on cgroup v1.
                cwd=paths.persist,
                start_new_session=True,
            )
        finally:
            os.close(write_fd)
        sync = PipeReader(read_fd)
        try:
            # The first conmon process exits as soon as it has forked the real monitor.
            _, early_err = await proc.communicate()
            reply = await sync.line()
        finally:
            sync.close()
        if not reply:
            detail = early_err.decode(errors="replace").strip()
            raise Unavailable(f"container monitor failed to start: {detail or 'no reply'}")
        message = json.loads(reply)
        pid = int(message.get("data", -1))
        if pid <= 0:
            detail = error_message(message.get("message", ""))
            raise Unavailable(detail or "container create failed")
        monitor_pid = int(_read_file(paths.monitor_pid_file) or 0)
        start_time = process_start_time(monitor_pid) if monitor_pid else None
        return Monitor(monitor_pid, start_time or 0), pid


def attach_socket(socket_dir: str, cuuid: str) -> str:
    """The attach socket of a container or exec: conmon links `<socket dir>/<cuuid>` to its
    directory so that the socket's path stays short."""
    return os.path.join(socket_dir, cuuid, "attach")


def forget_attach_link(socket_dir: str, cuuid: str) -> None:
    link = os.path.join(socket_dir, cuuid)
    if os.path.islink(link):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)


def find_monitor(pid_file: str, cuuid: str) -> Monitor | None:
    """The live monitor whose pid `pid_file` holds, if that process is still the monitor of
    `cuuid` (its command line names it): how a monitor started by a daemon that crashed
    before recording it is found again."""
    text = _read_file(pid_file)
    if not text.isdigit():
        return None
    pid = int(text)
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return None
    if cuuid.encode() not in argv:
        return None
    start = process_start_time(pid)
    return Monitor(pid, start) if start is not None else None


def read_pid(path: str) -> int:
    """A pid file's pid (0 if there is none)."""
    text = _read_file(path)
    return int(text) if text.isdigit() else 0


def _read_file(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


class PipeReader:
    """Reads JSON lines the monitor writes to a pipe, without blocking the event loop."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = b""
        self._eof = False
        os.set_blocking(fd, False)

    async def line(self) -> bytes:
        """The next line (without its newline); b"" once the writer has gone."""
        loop = asyncio.get_running_loop()
        while b"\n" not in self._buffer and not self._eof:
            ready: asyncio.Future[None] = loop.create_future()

            def wake(ready: asyncio.Future[None] = ready) -> None:
                if not ready.done():
                    ready.set_result(None)

            loop.add_reader(self.fd, wake)
            try:
                await ready
            finally:
                loop.remove_reader(self.fd)
            try:
                chunk = os.read(self.fd, 4096)
            except BlockingIOError:
                continue
            if not chunk:
                self._eof = True
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


async def wait_exit(monitor: Monitor) -> None:
    """Return when the monitor process has exited (it need not be our child)."""
    if not is_alive(monitor):
        return
    try:
        pidfd = os.pidfd_open(monitor.pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def exited() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(pidfd, exited)
    try:
        # The pid may have been reused between the check above and pidfd_open.
        if is_alive(monitor):
            await done
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    # The first fork is our child only when we spawned it; reap whatever is ours.
    try:
        os.waitpid(monitor.pid, os.WNOHANG)
    except ChildProcessError:
        pass


def read_exit(paths: Paths) -> tuple[int | None, bool]:
    """The container's exit code as the monitor recorded it, and whether it was OOM-killed."""
    text = _read_file(paths.exit_file)
    code = int(text) if text.lstrip("-").isdigit() else None
    return code, os.path.exists(paths.oom_file)
