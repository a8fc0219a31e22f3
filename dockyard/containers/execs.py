"""Exec instances: processes started in a running container (`docker exec`).

An exec is created (recorded, not run), then started once; its exit code is
kept for inspection until the daemon restarts or the container goes. Before
running anything the command is looked up in the container's filesystem, so a
missing or non-executable command fails like Docker's (exit code 127 / 126
with the runtime's message) instead of as an opaque runtime error.

A started exec has a monitor of its own, a working directory in the
container's bundle and a link in the attach socket directory; its intent
(`journal.EXEC`) is written before the monitor starts and ended when its exit
code is in. After a crash, `recover` waits for a monitor still running and then
removes what it used.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import stat
from dataclasses import dataclass, field

from dockyard import detachkeys, rootpath
from dockyard.containers import config as cfg
from dockyard.containers import journal, spec, users
from dockyard.containers.journal import Intent
from dockyard.containers.model import PAUSED, RUNNING, Container
from dockyard.containers.schema import StrSlice
from dockyard.containers.service import ContainerService
from dockyard.errors import Conflict, InvalidArgument, NotFound, Unavailable
from dockyard.runtime import exec as runtime_exec
from dockyard.runtime import monitor
from dockyard.state import crashpoints
from dockyard.wire import Message, wire


class ExecCreate(Message):
    """`POST /containers/{id}/exec`'s body (moby's `ExecOptions`), decoded with Go's rules."""

    user: str = wire(default="")
    privileged: bool = wire(default=False)
    tty: bool = wire(default=False)
    console_size: list[int] | None = wire(default=None)
    attach_stdin: bool = wire(default=False)
    attach_stderr: bool = wire(default=False)
    attach_stdout: bool = wire(default=False)
    detach_keys: str = wire(default="")
    env: list[str] | None = wire(default=None)
    working_dir: str = wire(default="")
    cmd: StrSlice | None = wire(default=None)


class ExecStart(Message):
    """`POST /exec/{id}/start`'s body (moby's `ExecStartCheck`)."""

    detach: bool = wire(default=False)
    tty: bool = wire(default=False)
    console_size: list[int] | None = wire(default=None)


@dataclass
class Exec:
    id: str
    container_id: str
    cmd: list[str]
    env: list[str]
    user: str
    working_dir: str
    tty: bool
    privileged: bool
    attach_stdin: bool
    attach_stdout: bool
    attach_stderr: bool
    detach_keys: str = ""
    escape_keys: bytes = detachkeys.DEFAULT  # what `detach_keys` names
    console_size: tuple[int, int] | None = None
    running: bool = False
    exit_code: int | None = None
    pid: int = 0
    started: bool = False
    process: runtime_exec.ExecProcess | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    intent: Intent | None = None


class CommandError(Exception):
    """The process cannot start; `code` is what docker reports (126 or 127), `message`
    the runtime's reason ("exec failed: unable to start container process: ...")."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


_START_FAILED = "exec failed: unable to start container process"


def find_command(root: str, name: str, env: list[str]) -> None:
    """Raise CommandError unless `name` is an executable file in the container."""
    if "/" in name:
        candidates = [name]
    else:
        path = next((e[5:] for e in reversed(env) if e.startswith("PATH=")), cfg.DEFAULT_PATH)
        candidates = [os.path.join(d or ".", name) for d in path.split(":")]
    for candidate in candidates:
        host = rootpath.resolve(root, candidate if candidate.startswith("/") else "/" + candidate)
        try:
            st = os.stat(host)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            if "/" in name:
                raise CommandError(f'{_START_FAILED}: exec: "{name}": is a directory', 126)
            continue
        if not st.st_mode & 0o111:
            raise CommandError(f'{_START_FAILED}: exec: "{name}": permission denied', 126)
        return
    if "/" in name:
        raise CommandError(
            f'{_START_FAILED}: exec: "{name}": stat {name}: no such file or directory', 127
        )
    raise CommandError(f'{_START_FAILED}: exec: "{name}": executable file not found in $PATH', 127)


def runtime_message(error: CommandError) -> str:
    """The failure as Docker's daemon words it (the runtime's reason, wrapped)."""
    return f"OCI runtime exec failed: {error.message}: unknown"


def _start_failure_code(message: str) -> int:
    """Docker's exit code for a process the runtime could not start."""
    lowered = message.lower()
    if "executable file not found" in lowered or "no such file or directory" in lowered:
        return 127
    return 126  # cannot be invoked: not executable, or refused (capabilities, ...)


class ExecService:
    def __init__(self, containers: ContainerService) -> None:
        self.containers = containers
        self._execs: dict[str, Exec] = {}
        self._background: set[asyncio.Future[int]] = set()
        self._watchers: set[asyncio.Future[None]] = set()
        containers.exec_recovery = self.recover

    def get(self, exec_id: str) -> Exec:
        found = self._execs.get(exec_id)
        if found is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return found

    def create(self, ref: str, request: ExecCreate) -> Exec:
        container = self.containers.get(ref)
        self._check_running(container)
        if not request.cmd:
            raise InvalidArgument("No exec command specified")
        keys = request.detach_keys
        try:
            escape_keys = detachkeys.parse(keys) if keys else detachkeys.DEFAULT
        except detachkeys.InvalidKeys:
            # Docker answers 500 here; it is the client's input, so a 400 as for attach.
            raise InvalidArgument(f"Invalid escape keys ({keys}) provided") from None
        size = request.console_size
        instance = Exec(
            id=secrets.token_hex(32),
            container_id=container.id,
            cmd=list(request.cmd),
            env=list(request.env or []),
            user=request.user,
            working_dir=request.working_dir,
            tty=request.tty,
            privileged=request.privileged,
            attach_stdin=request.attach_stdin,
            attach_stdout=request.attach_stdout,
            attach_stderr=request.attach_stderr,
            detach_keys=keys,
            escape_keys=escape_keys,
            console_size=(size[0], size[1]) if size and len(size) == 2 else None,
        )
        self._execs[instance.id] = instance
        self.containers.emit(
            container, f"exec_create: {' '.join(instance.cmd)}", execID=instance.id
        )
        return instance

    def _check_running(self, container: Container) -> None:
        if container.state.status == PAUSED:
            raise Conflict(f"Container {container.id} is paused, unpause the container before exec")
        if container.state.status != RUNNING:
            raise Conflict(f"container {container.id} is not running")

    async def start(
        self,
        exec_id: str,
        *,
        detach: bool,
        console_size: tuple[int, int] | None = None,
    ) -> Exec:
        """Start the process. Raises CommandError (after recording the code) if it cannot run."""
        instance = self.get(exec_id)
        if instance.started:
            raise Conflict(f"Error: Exec command {exec_id} has already run")
        container = self.containers.get(instance.container_id)
        self._check_running(container)
        instance.started = True
        if console_size:
            instance.console_size = console_size
        merged = os.path.join(self.containers.dir(container), "rootfs", "merged")
        # The command and the user are looked up as the container sees its files, its
        # mounts included (a binary in a volume, a mounted /etc/passwd); the root file
        # system alone lacks them.
        seen = f"/proc/{container.state.pid}/root" if container.state.pid else merged
        env = cfg.merge_env(container.config.env, instance.env)
        try:
            find_command(seen, instance.cmd[0], env)
        except CommandError as e:
            instance.exit_code = e.code
            instance.done.set()
            raise
        user = users.resolve(
            seen,
            instance.user or container.config.user,
            list(container.host_config.group_add or []),
        )
        process = spec.exec_process(
            container,
            cmd=instance.cmd,
            env=instance.env,
            user=user,
            cwd=instance.working_dir or container.config.working_dir or "/",
            tty=instance.tty,
            privileged=instance.privileged,
            hostname=container.config.hostname or container.short_id,
            nofile_limit=self.containers.settings.nofile_limit,
            console_size=instance.console_size,
        )
        try:
            conmon = self.containers.monitor_of(container)
        except Unavailable as e:
            instance.exit_code = 126
            instance.done.set()
            raise CommandError(e.message, 126) from None
        workdir = os.path.join(self.containers.paths(container).bundle, "exec", instance.id)
        instance.intent = self.containers.journal.begin(
            container.id, journal.EXEC, exec_id=instance.id, workdir=workdir
        )
        crashpoints.reached("exec:recorded")
        try:
            proc = await runtime_exec.start(
                conmon,
                container.id,
                instance.id,
                process,
                workdir,
                stdin=instance.attach_stdin,
                detach=detach,
            )
        except Unavailable as e:
            # The runtime refused to start it (e.g. capabilities the daemon lacks for
            # --privileged): Docker's exit code and message, not a silent exit 0.
            instance.exit_code = _start_failure_code(e.message)
            instance.done.set()
            self.containers.journal.end(instance.intent)
            raise CommandError(e.message, instance.exit_code) from None
        except BaseException:
            self.containers.journal.end(instance.intent)
            raise
        crashpoints.reached("exec:started")
        instance.process = proc
        instance.pid = proc.pid
        instance.running = True
        self.containers.emit(container, f"exec_start: {' '.join(instance.cmd)}", execID=instance.id)
        if detach:
            self._background.add(asyncio.ensure_future(self.finish(instance)))
        return instance

    async def finish(self, instance: Exec) -> int:
        """Wait for the process; records the exit code before returning it."""
        assert instance.process is not None
        code = await instance.process.wait()
        self._background = {f for f in self._background if not f.done()}
        instance.exit_code = code
        instance.running = False
        instance.done.set()
        self.containers.journal.end(instance.intent)
        try:
            container = self.containers.get(instance.container_id)
            self.containers.emit(container, "exec_die", execID=instance.id, exitCode=str(code))
        except NotFound:
            pass
        return code

    def detached(self, instance: Exec) -> None:
        """The client typed the detach keys: the process runs on, its exit code recorded
        when it comes."""
        if instance.process is not None:
            instance.process.detach()
        container = self.containers.get(instance.container_id)
        self.containers.emit(container, "exec_detach", execID=instance.id)
        self._background.add(asyncio.ensure_future(self.finish(instance)))

    def resize(self, exec_id: str, height: int, width: int) -> None:
        instance = self.get(exec_id)
        if instance.process is not None:
            instance.process.resize(height, width)
        elif instance.tty:
            instance.console_size = (height, width)

    async def recover(self, intent: Intent) -> None:
        """An exec a crash left (daemon start-up): once its monitor, if still running, has
        exited, its directory and attach link go and its intent ends. Its exit code is
        not kept: exec instances do not outlive the daemon."""
        exec_id = str(intent.detail.get("exec_id", ""))
        workdir = str(intent.detail.get("workdir", ""))
        found = monitor.find_monitor(os.path.join(workdir, "conmon.pid"), exec_id)

        async def clean() -> None:
            if found is not None:
                await monitor.wait_exit(found)
            shutil.rmtree(workdir, ignore_errors=True)
            monitor.forget_attach_link(self.containers.attach_dir, exec_id)
            self.containers.journal.end(intent)

        if found is None:
            await clean()
            return
        watcher = asyncio.ensure_future(clean())
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    def forget(self, exec_id: str) -> None:
        """Drop one finished exec (a health probe: nobody inspects it afterwards)."""
        self._execs.pop(exec_id, None)

    def forget_container(self, container_id: str) -> None:
        for exec_id in [e.id for e in self._execs.values() if e.container_id == container_id]:
            del self._execs[exec_id]

    def for_container(self, container_id: str) -> list[str]:
        return [e.id for e in self._execs.values() if e.container_id == container_id]
