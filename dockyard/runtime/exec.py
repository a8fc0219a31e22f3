"""Running a process in a container under its own monitor (`conmon --exec`).

Like the container itself, an exec'd process has conmon as its parent, which
holds its stdio (or pty), hands output to attach clients and reports its exit
code. The handshake over three pipes (conmon's protocol, as Podman drives it):

  1. the start pipe is written once so conmon may proceed past its set-up;
  2. conmon creates the attach socket and says so on the attach pipe;
  3. the daemon connects to the socket, then writes the start pipe again;
  4. conmon runs `runtime exec --detach`; the sync pipe reports the process's
     pid (or a negative value and the runtime's error), then its exit code.

Connecting before the process starts means no early output is lost.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from typing import Any

from dockyard.errors import Unavailable
from dockyard.runtime.attach import AttachConnection
from dockyard.runtime.monitor import Conmon, PipeReader, forget_attach_link
from dockyard.runtime.oci import error_message


class ExecProcess:
    """One running exec: output, stdin, resize and exit code."""

    def __init__(
        self,
        workdir: str,
        sync: PipeReader,
        conn: AttachConnection | None,
        pid: int,
        exit_dir: str,
        container_id: str,
        attach_link: tuple[str, str] = ("", ""),
    ) -> None:
        self._workdir = workdir
        self._attach_link = attach_link  # (socket dir, exec ID): the monitor's link
        self._sync = sync
        self._conn = conn
        self.pid = pid
        self._exit_file = os.path.join(exit_dir, container_id)
        self._code: int | None = None

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        """Output as (1 stdout | 2 stderr, bytes) until the process has exited."""
        if self._conn is None:
            return
        while True:
            chunk = await self._conn.read()
            if chunk is None:
                return
            yield chunk

    async def write(self, data: bytes) -> None:
        if self._conn is not None:
            try:
                await self._conn.write(data)
            except OSError:
                pass

    def close_stdin(self) -> None:
        if self._conn is not None:
            self._conn.close_stdin()

    def detach(self) -> None:
        """Stop relaying: the process runs on, its output no longer read (the monitor
        drops what no client reads, so it never blocks the process)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def resize(self, height: int, width: int) -> None:
        try:
            fd = os.open(os.path.join(self._workdir, "ctl"), os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return
        try:
            os.write(fd, f"1 {height} {width}\n".encode())
        except OSError:
            pass
        finally:
            os.close(fd)

    async def wait(self) -> int:
        """The exit code, once the process has exited; frees the monitor's files."""
        if self._code is not None:
            return self._code
        line = await self._sync.line()
        code: int | None = None
        if line:
            try:
                code = int(json.loads(line).get("data", 255))
            except (ValueError, json.JSONDecodeError):
                code = None
        if code is None:
            try:
                with open(self._exit_file) as f:
                    code = int(f.read().strip())
            except (OSError, ValueError):
                code = 255
        self._code = code
        self._sync.close()
        if self._conn is not None:
            self._conn.close()
        shutil.rmtree(self._workdir, ignore_errors=True)
        if self._attach_link[0]:
            forget_attach_link(*self._attach_link)
        return code


async def start(
    conmon: Conmon,
    container_id: str,
    exec_id: str,
    process: dict[str, Any],
    workdir: str,
    *,
    stdin: bool,
    detach: bool = False,
) -> ExecProcess:
    """Start `process` in the container under a new monitor."""
    tty = bool(process.get("terminal"))
    os.makedirs(workdir, exist_ok=True)
    process_file = os.path.join(workdir, "process.json")
    with open(process_file, "w") as f:
        json.dump(process, f)
    argv = [
        conmon.path,
        "--api-version",
        "1",
        "-c",
        container_id,
        "-u",
        exec_id,
        "-r",
        conmon.runtime.path,
        *[arg for a in conmon.runtime.global_args for arg in ("--runtime-arg", a)],
        "-b",
        workdir,
        "-p",
        os.path.join(workdir, "pid"),
        "-P",
        os.path.join(workdir, "conmon.pid"),
        "-l",
        "none",
        "--exit-dir",
        workdir,
        "--socket-dir-path",
        conmon.socket_dir,
        "--log-level",
        "warning",
        "-e",
        "--exec-process-spec",
        process_file,
    ]
    attach = not detach
    if attach:
        argv.append("--exec-attach")
    if tty:
        argv.append("-t")
    if stdin and attach:
        argv.append("-i")
    sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
    start_r, start_w = os.pipe2(os.O_CLOEXEC)
    attach_r, attach_w = os.pipe2(os.O_CLOEXEC)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "_OCI_SYNCPIPE": str(sync_w),
        "_OCI_STARTPIPE": str(start_r),
    }
    passed = [sync_w, start_r]
    if attach:
        env["_OCI_ATTACHPIPE"] = str(attach_w)
        passed.append(attach_w)
    sync = PipeReader(sync_r)
    attach_reader = PipeReader(attach_r)
    conn: AttachConnection | None = None
    try:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=passed,
                env=env,
                start_new_session=True,
                cwd=workdir,
            )
        finally:
            for fd in (sync_w, start_r, attach_w):
                os.close(fd)
        os.write(start_w, b"0")  # may proceed past set-up
        _, early_err = await proc.communicate()
        if attach:
            if not await attach_reader.line():
                raise Unavailable(
                    "exec monitor failed: "
                    + (early_err.decode(errors="replace").strip() or "no reply")
                )
            conn = await AttachConnection.open(conmon.attach_socket(exec_id))
            os.write(start_w, b"0")  # now run the process
        reply = await sync.line()
        if not reply:
            raise Unavailable("exec monitor exited without starting the process")
        message = json.loads(reply)
        pid = int(message.get("data", -1))
        if pid <= 0:
            raise Unavailable(error_message(message.get("message", "")) or "exec failed")
    except BaseException:
        if conn is not None:
            conn.close()
        sync.close()
        shutil.rmtree(workdir, ignore_errors=True)
        forget_attach_link(conmon.socket_dir, exec_id)
        raise
    finally:
        os.close(start_w)
        attach_reader.close()
    return ExecProcess(
        workdir, sync, conn, pid, workdir, container_id, (conmon.socket_dir, exec_id)
    )
