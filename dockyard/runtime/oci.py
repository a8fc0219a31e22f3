"""The OCI runtime (crun or runc) driven through its command line.

Every call passes our own `--root`, so the daemon's containers never mix with
the host's. `probe()` runs a throw-away container to find out whether a runtime
works on this host's cgroup layout before the daemon relies on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any

from dockyard.errors import Conflict, NotFound, Unavailable

STATE_TIMEOUT = 10.0  # seconds `status()` waits for the runtime before giving up on it


@dataclass(frozen=True)
class RuntimeInfo:
    name: str
    path: str
    version: str


def find(name: str) -> RuntimeInfo | None:
    path = name if os.path.isabs(name) else shutil.which(name)
    if not path or not os.access(path, os.X_OK):
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = out.splitlines()[0] if out else ""
    version = first.split("version", 1)[-1].strip() if "version" in first else first
    return RuntimeInfo(os.path.basename(name), path, version)


def probe(info: RuntimeInfo, cgroup_parent: str) -> str | None:
    """Run a throw-away container; returns None if the runtime works, else its error.

    The container's process does not exist, so a working runtime fails at the
    very last step (exec) with "no such file"; anything earlier (namespaces,
    cgroups, mounts) is a real incompatibility with this host.
    """
    with tempfile.TemporaryDirectory(prefix="dockyard-probe-") as bundle:
        os.mkdir(os.path.join(bundle, "rootfs"))
        cid = "dockyard-probe-" + secrets.token_hex(4)
        config = {
            "ociVersion": "1.0.2",
            "process": {
                "args": ["/dockyard-probe"],
                "cwd": "/",
                "user": {"uid": 0, "gid": 0},
                "env": ["PATH=/"],
            },
            "root": {"path": "rootfs"},
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
            "linux": {
                "namespaces": [{"type": t} for t in ("pid", "mount", "ipc", "uts", "network")],
                "cgroupsPath": f"/{cgroup_parent}/{cid}",
                "resources": {"pids": {"limit": 16}, "memory": {"limit": 64 << 20}},
            },
        }
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(config, f)
        state = os.path.join(bundle, "state")
        try:
            result = subprocess.run(
                [info.path, "--root", state, "run", "--bundle", bundle, cid],
                capture_output=True,
                text=True,
                timeout=30,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return str(e)
        finally:
            subprocess.run(
                [info.path, "--root", state, "delete", "--force", cid],
                capture_output=True,
                timeout=30,
            )
        message = (result.stderr + result.stdout).strip()
        if result.returncode != 0 and re.search(r"no such file|not found", message, re.I):
            return None
        return error_message(message) or f"exit status {result.returncode}"


_MSG = re.compile(r'msg="((?:[^"\\]|\\.)*)"')
_LEVEL = re.compile(r"\blevel=(\w+)")


def error_message(stderr: str) -> str:
    """The human part of a runtime's error output (runc logs logfmt lines); when some
    lines are errors, only those (runc warns first about what it tried to undo)."""
    messages = []
    errors = []
    for line in stderr.strip().splitlines():
        m = _MSG.search(line)
        if m:
            text = m.group(1).encode().decode("unicode_escape")
            level = _LEVEL.search(line)
            if level and level.group(1) in ("error", "fatal"):
                errors.append(text)
            messages.append(text)
        elif line.strip():
            messages.append(line.strip())
    return "; ".join(errors or messages)


def forget_state(state_dir: str, cid: str) -> None:
    """Remove a container's state from a runtime's state directory without the runtime
    (its binary is gone): what its `delete` does once the container's processes are dead."""
    shutil.rmtree(os.path.join(state_dir, cid), ignore_errors=True)


class Runtime:
    def __init__(self, info: RuntimeInfo, state_dir: str) -> None:
        self.info = info
        self.name = info.name
        self.path = info.path
        self.state_dir = state_dir
        os.makedirs(state_dir, exist_ok=True)

    @property
    def global_args(self) -> list[str]:
        return ["--root", self.state_dir]

    async def _run(
        self, *args: str, input: bytes | None = None, timeout: float | None = None
    ) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            self.path,
            *self.global_args,
            *args,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(input), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise Unavailable(f"{self.name} {args[0]} gave no answer within {timeout} s") from None
        return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")

    async def start(self, cid: str) -> None:
        rc, _, err = await self._run("start", cid)
        if rc != 0:
            raise Unavailable(error_message(err) or f"{self.name} start failed")

    async def kill(self, cid: str, signal: int, *, all: bool = False) -> None:
        """Signal the container; `Conflict` if it is not running (or is exiting meanwhile)."""
        args = ["kill", *(["--all"] if all else []), cid, str(signal)]
        rc, _, err = await self._run(*args)
        if rc != 0:
            text = error_message(err)
            if await self._gone(cid):
                # Exiting under our feet: the init is dead (state "stopped") and the
                # runtime tripped over its cgroup or freezer being torn down.
                raise Conflict(f"container {cid} is not running")
            raise Unavailable(text or f"{self.name} kill failed")

    async def _gone(self, cid: str) -> bool:
        """Whether the runtime no longer has `cid` running (stopped, or not there at all)."""
        try:
            state = await self.state(cid)
        except NotFound:
            return True
        return state.get("status") == "stopped"

    async def delete(self, cid: str) -> None:
        await self._run("delete", "--force", cid)

    def has_state(self, cid: str) -> bool:
        """Whether the runtime keeps state for `cid` (read from its state directory)."""
        return os.path.isdir(os.path.join(self.state_dir, cid))

    def container_ids(self) -> list[str]:
        """Every container (and managed plugin) the runtime keeps state for."""
        try:
            return sorted(e.name for e in os.scandir(self.state_dir) if e.is_dir())
        except OSError:
            return []

    async def status(self, cid: str) -> str | None:
        """What the runtime says of `cid`: created, running, paused or stopped; "" when it
        has no such container; None when it does not answer (STATE_TIMEOUT)."""
        if not self.has_state(cid):
            return ""
        try:
            return str((await self.state(cid, timeout=STATE_TIMEOUT)).get("status") or "")
        except NotFound:
            return ""
        except Unavailable:
            return None

    async def state(self, cid: str, *, timeout: float | None = None) -> dict[str, Any]:
        rc, out, err = await self._run("state", cid, timeout=timeout)
        if rc != 0:
            raise NotFound(error_message(err) or f"container {cid} not found in {self.name}")
        result: dict[str, Any] = json.loads(out)
        return result

    async def pause(self, cid: str) -> None:
        rc, _, err = await self._run("pause", cid)
        if rc != 0:
            if await self._gone(cid):
                raise Conflict(f"container {cid} is not running")
            raise Unavailable(error_message(err) or f"{self.name} pause failed")

    async def resume(self, cid: str) -> None:
        rc, _, err = await self._run("resume", cid)
        if rc != 0:
            if await self._gone(cid):
                raise Conflict(f"container {cid} is not running")
            raise Unavailable(error_message(err) or f"{self.name} resume failed")

    async def update(self, cid: str, resources: dict[str, Any]) -> None:
        """Apply OCI `LinuxResources` to a running container's cgroup (`runtime update`).

        `Conflict` if the container is not running; `Unavailable` with the runtime's
        (usually the kernel's) reason if a value is refused.
        """
        # A file rather than stdin: crun reads `--resources` only from a path.
        fd, path = tempfile.mkstemp(prefix="resources-", suffix=".json", dir=self.state_dir)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(resources, f)
            rc, _, err = await self._run("update", "--resources", path, cid)
        finally:
            os.unlink(path)
        if rc != 0:
            if await self._gone(cid):
                raise Conflict(f"container {cid} is not running")
            raise Unavailable(error_message(err) or f"{self.name} update failed")

    async def processes(self, cid: str) -> list[int]:
        rc, out, err = await self._run("ps", "--format", "json", cid)
        if rc != 0:
            raise Conflict(error_message(err) or f"container {cid} is not running")
        pids: list[int] = json.loads(out or "[]") or []
        return pids

    def exec_argv(
        self,
        cid: str,
        process_file: str,
        *,
        tty: bool,
        console_socket: str | None,
        detach: bool = False,
        pid_file: str | None = None,
    ) -> list[str]:
        argv = [self.path, *self.global_args, "exec", "--process", process_file]
        if tty:
            argv.append("--tty")
        if console_socket:
            argv += ["--console-socket", console_socket]
        if detach:
            argv.append("--detach")
        if pid_file:
            argv += ["--pid-file", pid_file]
        return [*argv, cid]
