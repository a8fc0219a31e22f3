"""Health checks as Docker runs them: the `Healthcheck` config, `State.Health`, the probes.

A container's healthcheck comes from its image (`HEALTHCHECK`) and from the create
request's `Config.Healthcheck`; a request field left at 0 (or an empty `Test`) takes
the image's value, and what is still 0 at run time means Docker's default (interval
30 s, timeout 30 s, start period 0, start interval 5 s, retries 3). `Test` is
`["NONE"]` (no check), `["CMD", argv...]` or `["CMD-SHELL", "command"]` (run by the
container's shell, `/bin/sh -c`).

The daemon runs each probe inside the container as an exec (so `exec_create`,
`exec_start` and `exec_die` events appear for it, as with Docker), with the
container's user, environment and working directory, and keeps the first 4096 bytes
of its output. A probe that outlives its timeout is killed and counts as a failure.

The life of `State.Health`, which is persisted with the container's state:

    start, every restart  -> "starting", failing streak 0 (the log of the last five
                             probes is kept)
    probe exits 0         -> "healthy", streak 0
    any other result      -> streak + 1, "unhealthy" once it reaches Retries; while
                             "starting" inside the start period, failures do not count
    pause, exit           -> probes stop; the status reads "unhealthy", as Docker
                             reports a container whose checks stopped
    unpause               -> probes resume, the status kept until the next result
    daemon restart        -> probes resume, status and log kept

Between probes the monitor waits the interval, or the start interval while the
container is "starting" inside its start period. Each status change emits a
`health_status: <status>` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dockyard.containers.model import RUNNING, Container
from dockyard.containers.schema import HealthConfig, StrSlice
from dockyard.errors import DockyardError, InvalidArgument
from dockyard.images.oci import ZERO_TIME, rfc3339
from dockyard.units import go_duration

if TYPE_CHECKING:
    from dockyard.containers.execs import Exec, ExecService
    from dockyard.containers.service import ContainerService

log = logging.getLogger(__name__)

NONE = "none"  # no healthcheck (a filter value, never a stored status)
STARTING = "starting"
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
FILTER_VALUES = (NONE, STARTING, HEALTHY, UNHEALTHY)

SECOND = 1_000_000_000
MINIMUM_DURATION = 1_000_000  # 1 ms: shorter non-zero durations are refused
DEFAULT_INTERVAL = 30 * SECOND
DEFAULT_TIMEOUT = 30 * SECOND
DEFAULT_START_PERIOD = 0
DEFAULT_START_INTERVAL = 5 * SECOND
DEFAULT_RETRIES = 3
MAX_OUTPUT = 4096  # bytes of a probe's output kept; more is cut and marked "..."
MAX_LOG_ENTRIES = 5
# Starting the exec is not the probe's time: it gets its own, generous, limit.
START_TIMEOUT = 30.0

DEFAULT_SHELL = ("/bin/sh", "-c")


# -- the config --------------------------------------------------------------------


def validate(config: HealthConfig) -> None:
    """moby's checks of a create request's healthcheck, in its order, with its messages."""
    for key, value in (("Interval", config.interval), ("Timeout", config.timeout)):
        if value != 0 and value < MINIMUM_DURATION:
            raise InvalidArgument(f"{key} in Healthcheck cannot be less than 1ms")
    if config.retries < 0:
        raise InvalidArgument("Retries in Healthcheck cannot be negative")
    for key, value in (
        ("StartPeriod", config.start_period),
        ("StartInterval", config.start_interval),
    ):
        if value != 0 and value < MINIMUM_DURATION:
            raise InvalidArgument(f"{key} in Healthcheck cannot be less than 1ms")


def container_healthcheck(
    request: HealthConfig | None, image: HealthConfig | None
) -> HealthConfig | None:
    """`Config.Healthcheck` of a new container from the create request's and the image's:
    the request's is validated, and each field it leaves 0 comes from the image's."""
    if request is None:
        return image
    validate(request)
    if image is None:
        return request
    return HealthConfig(
        test=request.test or image.test,
        interval=request.interval or image.interval,
        timeout=request.timeout or image.timeout,
        start_period=request.start_period or image.start_period,
        start_interval=request.start_interval or image.start_interval,
        retries=request.retries or image.retries,
    )


@dataclass(frozen=True)
class Probing:
    """How a container is probed: its healthcheck with Docker's defaults for what is 0."""

    test: tuple[str, ...]
    interval: int
    timeout: int
    start_period: int
    start_interval: int
    retries: int

    @classmethod
    def of(cls, config: HealthConfig) -> Probing:
        return cls(
            test=tuple(config.test or ()),
            interval=config.interval or DEFAULT_INTERVAL,
            timeout=config.timeout or DEFAULT_TIMEOUT,
            start_period=config.start_period or DEFAULT_START_PERIOD,
            start_interval=config.start_interval or DEFAULT_START_INTERVAL,
            retries=config.retries if config.retries > 0 else DEFAULT_RETRIES,
        )

    @property
    def probes(self) -> bool:
        """Whether this asks for probes (`CMD` or `CMD-SHELL`; not `NONE`, empty or an
        unknown kind)."""
        return bool(self.test) and self.test[0] in ("CMD", "CMD-SHELL")

    def command(self, shell: list[str] | None = None) -> list[str]:
        """The probe's argv (empty when the test names no command)."""
        words = list(self.test[1:])
        if not words:
            return []
        if self.test[0] == "CMD-SHELL":
            return [*(shell or DEFAULT_SHELL), *words]
        return words


def config_of(container: Container) -> Probing | None:
    """How the container is probed, when its healthcheck asks for probes."""
    if container.config.healthcheck is None:
        return None
    probing = Probing.of(container.config.healthcheck)
    return probing if probing.probes else None


# -- the state ---------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeResult:
    start_ns: int
    end_ns: int
    exit_code: int  # 0 healthy; -1 when the probe could not run or timed out
    output: str

    def to_wire(self) -> dict[str, Any]:
        return {
            "Start": rfc3339(self.start_ns),
            "End": rfc3339(self.end_ns),
            "ExitCode": self.exit_code,
            "Output": self.output,
        }


@dataclass
class Health:
    """`State.Health`; `log` holds the last probes in Docker's JSON, oldest first."""

    status: str = STARTING
    failing_streak: int = 0
    log: list[dict[str, Any]] | None = None

    @classmethod
    def from_record(cls, record: dict[str, Any] | None) -> Health:
        if not record:
            return cls()
        return cls(
            status=record.get("Status") or UNHEALTHY,
            failing_streak=int(record.get("FailingStreak") or 0),
            log=list(record["Log"]) if record.get("Log") is not None else None,
        )

    def to_record(self) -> dict[str, Any]:
        """Docker's JSON, which is also what the container's state record keeps."""
        return {"Status": self.status, "FailingStreak": self.failing_streak, "Log": self.log}

    def record(self, result: ProbeResult, config: Probing, started_at_ns: int) -> bool:
        """Take a probe's result into the log and the status; True if the status changed."""
        before = self.status
        self.log = [*(self.log or [])[-(MAX_LOG_ENTRIES - 1) :], result.to_wire()]
        if result.exit_code == 0:
            self.failing_streak = 0
            self.status = HEALTHY
            return self.status != before
        in_start_period = (
            self.status == STARTING and result.start_ns - started_at_ns < config.start_period
        )
        if not in_start_period:
            self.failing_streak += 1
            if self.failing_streak >= config.retries:
                self.status = UNHEALTHY
        return self.status != before


def next_wait(config: Probing, status: str, since_start_ns: int) -> int:
    """Nanoseconds until the next probe: the start interval while a container is still
    starting inside its start period, the interval otherwise."""
    if since_start_ns >= config.start_period:
        return config.interval
    if status == STARTING:
        return config.start_interval
    return config.interval


def status_suffix(record: dict[str, Any] | None) -> str:
    """What `docker ps` adds to a running container's `Up ...`: ` (healthy)`,
    ` (health: starting)`, ` (unhealthy)`; nothing without a healthcheck."""
    if record is None:
        return ""
    status = record.get("Status") or UNHEALTHY
    return " (health: starting)" if status == STARTING else f" ({status})"


def filter_matches(record: dict[str, Any] | None, values: list[str]) -> bool:
    """The `health=` filter of the container list (`none` for no healthcheck)."""
    for value in values:
        if value not in FILTER_VALUES:
            raise InvalidArgument(
                f"invalid filter 'health={value}': invalid value for health ({value}): "
                f"must be one of {', '.join(FILTER_VALUES)}"
            )
    status = NONE if record is None else record.get("Status") or UNHEALTHY
    return status in values


def timeout_message(timeout_ns: int, output: str) -> str:
    text = f"Health check exceeded timeout ({go_duration(timeout_ns)})"
    return f"{text}: {output}" if output else text


def parse_time_ns(text: str) -> int:
    """An RFC 3339 time as the state records it -> nanoseconds since the epoch (0 if unset)."""
    if not text or text == ZERO_TIME:
        return 0
    base, _, rest = text.partition(".")
    fraction = rest.rstrip("Z")
    if not rest:
        base = base.rstrip("Z")
    seconds = int(datetime.fromisoformat(base + "+00:00").timestamp())
    return seconds * SECOND + int((fraction + "000000000")[:9])


class ProbeOutput:
    """A probe's stdout and stderr together, the first MAX_OUTPUT bytes of it."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._truncated = False

    def write(self, data: bytes) -> None:
        room = MAX_OUTPUT - len(self._data)
        if room > 0:
            self._data += data[:room]
        if len(data) > room:
            self._truncated = True

    def text(self) -> str:
        return self._data.decode(errors="replace") + ("..." if self._truncated else "")


# -- the monitor -------------------------------------------------------------------


class HealthMonitor:
    """Runs the probes of every running container that has a healthcheck: one asyncio
    task per container, cancelled when the container exits, pauses or goes away."""

    def __init__(self, containers: ContainerService, execs: ExecService) -> None:
        self.containers = containers
        self.execs = execs
        self._watches: dict[str, asyncio.Task[None]] = {}
        # Probes cut short (by a stop or daemon shutdown) being killed and reaped.
        self._reaping: set[asyncio.Future[None]] = set()

    # Hooks of the container lifecycle. Each updates `container.state.health` in memory;
    # the container service saves the state record.

    def started(self, container: Container) -> None:
        """A (re)start: status "starting", streak 0, the log kept; probes begin."""
        config = config_of(container)
        if config is None:
            return
        self._cancel(container.id)
        health = (
            Health.from_record(container.state.health)
            if container.state.health is not None
            else Health()
        )
        health.status = STARTING
        health.failing_streak = 0
        container.state.health = health.to_record()
        self._watch(container, config)

    def restored(self, container: Container) -> None:
        """A running container adopted at daemon start: its health as recorded, probes resume."""
        config = config_of(container)
        if config is None or container.state.status != RUNNING:
            return
        if container.state.health is None:
            container.state.health = Health().to_record()
        self._watch(container, config)

    def stopped(self, container: Container) -> None:
        """Exit or pause: probes stop, and the status reads "unhealthy" (as Docker's)."""
        self._cancel(container.id)
        if container.state.health is not None:
            container.state.health = {**container.state.health, "Status": UNHEALTHY}

    def unpaused(self, container: Container) -> None:
        config = config_of(container)
        if config is not None and container.state.status == RUNNING:
            if container.state.health is None:
                container.state.health = Health().to_record()
            self._watch(container, config)

    def shutdown(self) -> None:
        """The daemon is going: stop every monitor (containers keep running)."""
        for container_id in list(self._watches):
            self._cancel(container_id)

    # The loop.

    def _watch(self, container: Container, config: Probing) -> None:
        if container.id in self._watches:
            return
        self._watches[container.id] = asyncio.ensure_future(self._loop(container.id, config))

    def _cancel(self, container_id: str) -> bool:
        task = self._watches.pop(container_id, None)
        if task is None:
            return False
        task.cancel()
        return True

    async def _loop(self, container_id: str, config: Probing) -> None:
        try:
            while True:
                container = self._running(container_id)
                if container is None:
                    return
                started_ns = parse_time_ns(container.state.started_at)
                status = Health.from_record(container.state.health).status
                await asyncio.sleep(next_wait(config, status, time.time_ns() - started_ns) / SECOND)
                container = self._running(container_id)
                if container is None:
                    return
                try:
                    result = await self._probe(container, config)
                    self._take(container_id, config, result)
                except Exception:
                    # A fault of ours, not the container's: say so and keep checking.
                    log.exception("health check of %s failed", container_id[:12])
        finally:
            if self._watches.get(container_id) is asyncio.current_task():
                del self._watches[container_id]

    def _running(self, container_id: str) -> Container | None:
        try:
            container = self.containers.get(container_id)
        except DockyardError:
            return None
        return container if container.state.status == RUNNING else None

    def _take(self, container_id: str, config: Probing, result: ProbeResult) -> None:
        container = self._running(container_id)
        if container is None:
            return
        health = Health.from_record(container.state.health)
        changed = health.record(result, config, parse_time_ns(container.state.started_at))
        container.state.health = health.to_record()
        self.containers.state_changed(container)
        if changed:
            self.containers.emit(container, f"health_status: {health.status}")

    async def _probe(self, container: Container, config: Probing) -> ProbeResult:
        """Run the probe once; any failure to run it is a failed result, as with Docker."""
        start = time.time_ns()

        def failed(message: str) -> ProbeResult:
            return ProbeResult(start, time.time_ns(), -1, message)

        argv = config.command(container.config.shell)
        if not argv:
            return failed(f"healthcheck for container {container.id} has no command")
        # Imported here: execs imports the container config, which imports this module.
        from dockyard.containers.execs import ExecCreate

        try:
            instance = self.execs.create(
                container.id,
                ExecCreate(cmd=StrSlice(argv), attach_stdout=True, attach_stderr=True),
            )
        except DockyardError as e:
            return failed(e.message)
        finished = False
        try:
            result = await self._run(container, instance, config, start)
            finished = True
            return result
        finally:
            if not finished and instance.process is not None and instance.running:
                # Cancelled mid-probe (exit, pause, shutdown): the probe must not outlive
                # its monitor.
                reap = asyncio.ensure_future(self._reap(instance))
                self._reaping.add(reap)
                reap.add_done_callback(self._reaping.discard)
            else:
                self.execs.forget(instance.id)

    async def _run(
        self, container: Container, instance: Exec, config: Probing, start: int
    ) -> ProbeResult:
        # Imported here: execs imports the container config, which imports this module.
        from dockyard.containers.execs import CommandError, runtime_message

        def failed(message: str) -> ProbeResult:
            return ProbeResult(start, time.time_ns(), -1, message)

        try:
            await asyncio.wait_for(
                self.execs.start(instance.id, detach=False), timeout=START_TIMEOUT
            )
        except CommandError as e:
            return failed(runtime_message(e))
        except TimeoutError:
            return failed(f"timed out starting health check for container {container.id}")
        except DockyardError as e:
            return failed(e.message)
        process = instance.process
        assert process is not None
        output = ProbeOutput()

        async def collect() -> None:
            async for _stream, data in process.output():
                output.write(data)

        reader = asyncio.ensure_future(collect())
        try:
            await asyncio.wait_for(asyncio.shield(reader), config.timeout / SECOND)
        except TimeoutError:
            # Reading /proc is blocking work: off the event loop.
            await asyncio.to_thread(_kill_tree, process.pid)
            await reader
            await self.execs.finish(instance)
            return ProbeResult(
                start,
                time.time_ns(),
                -1,
                timeout_message(config.timeout, output.text()),
            )
        except BaseException:
            reader.cancel()
            raise
        code = await self.execs.finish(instance)
        return ProbeResult(start, time.time_ns(), code, output.text())

    async def _reap(self, instance: Exec) -> None:
        """Kill a probe cut short, then collect its exit like any other exec's."""
        assert instance.process is not None
        with contextlib.suppress(Exception):
            await asyncio.to_thread(_kill_tree, instance.process.pid)
            await self.execs.finish(instance)
        self.execs.forget(instance.id)


def _kill_tree(pid: int) -> None:
    """SIGKILL a probe's process and everything it started (`sleep 100 | cat`): once the
    shell is gone its children would live on in the container, a few per probe. Signals
    go through pidfds: a process that exits and whose pid is reused after its pidfd is
    open is never hit."""
    _kill_all(_pidfds(_descendants(pid)))


def _descendants(pid: int) -> list[int]:
    """`pid` and its descendants, from the parent pids in /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the fields follow the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found = [pid]
    for parent in found:
        found.extend(children.get(parent, ()))
    return found


def _pidfds(pids: list[int]) -> list[int]:
    fds = []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(pid))
        except OSError:
            continue
    return fds


def _kill_all(pidfds: list[int]) -> None:
    for fd in pidfds:
        try:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        except OSError:
            pass
        finally:
            os.close(fd)
