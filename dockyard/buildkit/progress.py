"""A BuildKit build's progress: vertexes, their statuses and logs, as `Status` streams.

BuildKit clients draw a build as a list of vertexes (one per operation: loading the
Dockerfile, transferring the context, each filesystem step, exporting), each started,
completed, cached or failed, with log lines and byte counters under it. A job keeps
every update it made in a `StatusLog`; each `Status` call replays them from the start
and then follows, merging what is waiting into one message.

`VertexProgress` is the builder's `BuildProgress` for this door. It names steps as
BuildKit's Dockerfile frontend does: `[2/4] RUN ...` for a build of one stage,
`[build 2/4] RUN ...` (or `stage-N`) when there are several, counting the FROM and the
steps that change the filesystem (RUN, COPY, ADD, WORKDIR); metadata instructions are
no vertex of their own. A RUN's output is the log of its vertex.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
from collections.abc import AsyncIterator, Callable

from google.protobuf.timestamp_pb2 import Timestamp

from dockyard.build import instructions as ins
from dockyard.build.cache import State
from dockyard.build.progress import Step
from dockyard.buildkit.pb import control_pb2
from dockyard.errors import InvalidArgument
from dockyard.images import reference

_FILESYSTEM_STEPS = (ins.Run, ins.Copy, ins.Workdir)
LOG_LIMIT = 2 << 20  # a vertex's log is clipped after this much, as BuildKit clips it
MERGE_LIMIT = 1 << 20  # one Status message carries about this much at most
COUNTER_INTERVAL = 0.1  # seconds between updates of a byte counter


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


def _image_name(base: str) -> str:
    """A FROM's image as BuildKit names it: the full reference (`docker.io/library/...`)."""
    if "$" in base or base.lower() == "scratch":
        return base
    try:
        return str(reference.parse(base))
    except InvalidArgument:
        return base


class StatusLog:
    """Every status update of a job, for any number of followers, until it is closed."""

    def __init__(self) -> None:
        self.updates: list[control_pb2.StatusResponse] = []
        self.closed = False
        self._waiters: list[asyncio.Future[None]] = []

    def add(self, update: control_pb2.StatusResponse) -> None:
        self.updates.append(update)
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def follow(self) -> AsyncIterator[control_pb2.StatusResponse]:
        """All updates from the first, what is waiting merged into one message (of a
        bounded size: a replay of a long build's logs takes several)."""
        sent = 0
        while True:
            if sent < len(self.updates):
                merged = control_pb2.StatusResponse()
                size = 0
                while sent < len(self.updates) and (size == 0 or size < MERGE_LIMIT):
                    update = self.updates[sent]
                    merged.MergeFrom(update)
                    size += update.ByteSize()
                    sent += 1
                yield merged
                continue
            if self.closed:
                return
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter


class Vertex:
    """One vertex of a job's graph: what the client shows as one line."""

    def __init__(self, log: StatusLog, digest: str, name: str) -> None:
        self.log = log
        self.message = control_pb2.Vertex(digest=digest, name=name)
        self.done = False
        self.logged = 0  # bytes of log so far

    @property
    def digest(self) -> str:
        return self.message.digest

    def _send(self) -> None:
        update = control_pb2.StatusResponse()
        update.vertexes.append(self.message)
        self.log.add(update)
        self.message = control_pb2.Vertex()
        self.message.CopyFrom(update.vertexes[0])

    def start(self) -> Vertex:
        self.message.started.CopyFrom(_now())
        self._send()
        return self

    def complete(self, *, cached: bool = False, error: str = "") -> None:
        if self.done:
            return
        self.done = True
        now = _now()
        if cached:
            self.message.cached = True
            if not self.message.HasField("started"):
                self.message.started.CopyFrom(now)
        self.message.completed.CopyFrom(now)
        if error:
            self.message.error = error
        self._send()

    def write(self, stream: int, data: bytes) -> None:
        if self.logged >= LOG_LIMIT:
            return
        self.logged += len(data)
        if self.logged >= LOG_LIMIT:
            data = data[: len(data) - (self.logged - LOG_LIMIT)]
            data += b"\n[output clipped, log limit 2MiB reached]\n"
        update = control_pb2.StatusResponse()
        update.logs.append(
            control_pb2.VertexLog(vertex=self.digest, stream=stream, msg=data, timestamp=_now())
        )
        self.log.add(update)

    def status(self, name: str, *, current: int = 0, total: int = 0, done: bool = False) -> None:
        """A counter or a sub-task under the vertex (`transferring context: 2kB`)."""
        now = _now()
        status = control_pb2.VertexStatus(
            ID=name, vertex=self.digest, name=name, current=current, total=total, timestamp=now
        )
        status.started.CopyFrom(now)
        if done:
            status.completed.CopyFrom(now)
        update = control_pb2.StatusResponse()
        update.statuses.append(status)
        self.log.add(update)

    def counter(self, name: str) -> Callable[[int], None]:
        """A byte counter under the vertex, updated at most every 0.1 s (a transfer of
        thousands of files would otherwise make thousands of updates)."""
        last = 0.0

        def update(current: int) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= COUNTER_INTERVAL:
                last = now
                self.status(name, current=current)

        return update

    def warn(self, text: str) -> None:
        update = control_pb2.StatusResponse()
        update.warnings.append(
            control_pb2.VertexWarning(vertex=self.digest, level=1, short=text.encode())
        )
        self.log.add(update)


class Graph:
    """The vertexes of one job, with digests unique to it."""

    def __init__(self, log: StatusLog, ref: str) -> None:
        self.log = log
        self.ref = ref
        self._numbers = itertools.count()

    def vertex(self, name: str) -> Vertex:
        seed = f"{self.ref}\0{next(self._numbers)}\0{name}"
        return Vertex(self.log, "sha256:" + hashlib.sha256(seed.encode()).hexdigest(), name)


class VertexProgress:
    """The builder's progress drawn as BuildKit's Dockerfile frontend draws it."""

    def __init__(self, graph: Graph, definition: Vertex | None = None) -> None:
        self.graph = graph
        self.definition = definition  # where warnings about the Dockerfile go
        self.current: Vertex | None = None
        self._position = 0
        self._count = 0

    def fail(self, message: str) -> None:
        """The build failed in the current step (if one is open). A cancelled step says
        `context canceled`, which clients show as CANCELED."""
        if self.current is not None:
            self.current.complete(error=message)
            self.current = None

    def _close_current(self) -> None:
        if self.current is not None:
            self.current.complete()
            self.current = None

    async def warning(self, text: str) -> None:
        if self.definition is not None:
            self.definition.warn(text)

    async def syntax_directive(self, value: str) -> None:
        pass  # the frontend let it through: it names the built-in syntax

    async def step(self, step: Step) -> None:
        self._close_current()
        stage = step.stage
        if stage is None:
            return  # an ARG before the first FROM changes no filesystem
        instruction = step.instruction
        if isinstance(instruction, ins.From):
            self._position = 1
            self._count = 1 + sum(isinstance(c, _FILESYSTEM_STEPS) for c in stage.commands)
            if step.from_stage:
                return  # the stage goes on from another one's result: nothing to show
            text = f"FROM {_image_name(instruction.base)}"
        elif isinstance(instruction, _FILESYSTEM_STEPS):
            self._position += 1
            self._count = max(self._count, self._position)
            text = instruction.text
        else:
            return
        prefix = ""
        if step.stages > 1:
            prefix = (stage.name or f"stage-{stage.index}") + " "
        name = f"[{prefix}{self._position}/{self._count}] {text}"
        self.current = self.graph.vertex(name).start()

    async def triggers(self, count: int) -> None:
        pass

    async def cached(self) -> None:
        if self.current is not None:
            self.current.complete(cached=True)
            self.current = None

    async def running(self, container: str) -> None:
        pass

    async def output(self, stream: int, data: bytes) -> None:
        if self.current is not None:
            self.current.write(stream, data)

    async def removed(self, container: str) -> None:
        pass

    async def step_done(self, state: State) -> None:
        self._close_current()

    async def stage_done(self, state: State) -> None:
        self._close_current()

    async def unused_args(self, names: list[str]) -> None:
        pass  # BuildKit does not report them
