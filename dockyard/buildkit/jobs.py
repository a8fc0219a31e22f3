"""Builds in flight on BuildKit's door: one `Job` per Solve reference.

buildx (and compose, which links it) runs a build as a *client-side gateway*:

1. it calls `Control.Solve{Ref, Session, Exporters}` with no frontend and no
   definition, and `Control.Status{Ref}` to follow it, while its session connection
   (`/session`) opens beside them;
2. over the same `/grpc` connection it then calls the frontend bridge
   (`moby.buildkit.v1.frontend.LLBBridge`, every call carrying the metadata
   `buildkit-controlapi-buildid: <Ref>`): `Ping`, then `Solve{Frontend:
   "dockerfile.v0"}`, which runs the build and answers a result reference, then
   `Return` with that result (or the error that ended its build function);
3. Solve exports what was returned with its exporters, answers with what they
   report, and the Status stream ends.

`Jobs` is the registry those calls meet in: Solve `open()`s a job, the bridge and
Status `find()` it (waiting briefly: clients send them all at once). An ended job
stays findable for a while, so that a Status or bridge call that arrives after its
Solve failed gets the job's story, or its end, at once rather than waiting for it. A job owns the
tasks that build for it, the results they produced (their layers pinned until the job
ends) and its status log. When Solve ends, whatever way (the client cancelled, its
connection or session went away, the build failed), the job's builds are cancelled,
their clean-up awaited, their results released, and the status log closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections import OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dockyard.build.builder import Builder, BuildResult, StepFailed
from dockyard.buildkit import rpc
from dockyard.buildkit.filesync import ContextMirrors
from dockyard.buildkit.pb import control_pb2, gateway_pb2
from dockyard.buildkit.progress import Graph, StatusLog
from dockyard.buildkit.session import Session, SessionManager
from dockyard.errors import DockyardError

log = logging.getLogger(__name__)

BUILD_ID_KEY = "buildkit-controlapi-buildid"
FIND_TIMEOUT = 10.0  # how long a call waits for the job (or session) it names
ENDED_KEPT = 64  # ended jobs kept findable

T = TypeVar("T")


def status_error(error: BaseException) -> rpc.RpcError:
    """How a build's failure reaches a BuildKit client: a status whose message is what
    buildx prints after `ERROR: failed to solve:` (UNKNOWN codes print the message
    alone). A failed RUN reads as BuildKit's."""
    if isinstance(error, rpc.RpcError):
        return error
    if isinstance(error, StepFailed) and error.command is not None:
        command = " ".join(error.command)
        return rpc.RpcError(
            rpc.Status.UNKNOWN,
            f'process "{command}" did not complete successfully: exit code: {error.code}',
        )
    if isinstance(error, DockyardError):
        return rpc.RpcError(rpc.Status.UNKNOWN, error.message)
    if isinstance(error, asyncio.CancelledError):
        return rpc.RpcError(rpc.Status.CANCELLED, "context canceled")
    log.error("BuildKit build failed", exc_info=error)
    return rpc.RpcError(rpc.Status.UNKNOWN, f"internal error: {type(error).__name__}: {error}")


@dataclass
class Job:
    ref: str
    request: control_pb2.SolveRequest
    status: StatusLog = field(default_factory=StatusLog)
    session: Session | None = None
    results: dict[str, BuildResult] = field(default_factory=dict)
    returned: asyncio.Future[gateway_pb2.ReturnRequest] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[object]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.graph = Graph(self.status, self.ref)

    async def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` as one of the job's tasks: cancelled when the job ends, and when
        the caller is cancelled (its clean-up awaited either way)."""
        if self.ended.is_set():
            work.close()
            raise rpc.RpcError(rpc.Status.CANCELLED, f"build {self.ref} has ended")
        task: asyncio.Task[T] = asyncio.ensure_future(work)
        self._tasks.add(task)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the caller was cancelled
            # the job ended under the work: the caller still gets an answer
            raise rpc.RpcError(rpc.Status.CANCELLED, f"build {self.ref} has ended") from None
        finally:
            self._tasks.discard(task)

    def add_result(self, result: BuildResult) -> str:
        if self.ended.is_set():
            result.release()
            raise rpc.RpcError(rpc.Status.CANCELLED, f"build {self.ref} has ended")
        ref_id = secrets.token_hex(16)
        self.results[ref_id] = result
        return ref_id

    async def end(self) -> None:
        """Cancel what still builds, release every result, close the status."""
        self.ended.set()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for result in self.results.values():
            result.release()
        self.results.clear()
        if not self.returned.done():
            self.returned.cancel()
        self.status.close()


class Jobs:
    """The jobs of this engine's BuildKit door, by Solve reference."""

    def __init__(self, builder: Builder, sessions: SessionManager, root: str) -> None:
        self.builder = builder
        self.sessions = sessions
        self.mirrors = ContextMirrors(os.path.join(root, "contexts"))
        self._jobs: dict[str, Job] = {}
        self._ended: OrderedDict[str, Job] = OrderedDict()
        self._changed = asyncio.Condition()

    async def open(self, request: control_pb2.SolveRequest) -> Job:
        if not request.Ref:
            raise rpc.RpcError(rpc.Status.INVALID_ARGUMENT, "a build needs a reference (Ref)")
        if request.Ref in self._jobs or request.Ref in self._ended:
            raise rpc.RpcError(rpc.Status.ALREADY_EXISTS, f"job ID {request.Ref} exists")
        job = Job(request.Ref, request)
        self._jobs[request.Ref] = job
        async with self._changed:
            self._changed.notify_all()
        return job

    async def close(self, job: Job) -> None:
        try:
            await asyncio.shield(job.end())
        finally:
            if self._jobs.get(job.ref) is job:
                del self._jobs[job.ref]
                self._ended[job.ref] = job
                while len(self._ended) > ENDED_KEPT:
                    self._ended.popitem(last=False)

    async def find(self, ref: str) -> Job:
        """The job `ref`, waiting for its Solve to arrive (clients send it alongside)."""

        async def wait() -> Job:
            async with self._changed:
                await self._changed.wait_for(lambda: ref in self._jobs or ref in self._ended)
                return self._jobs.get(ref) or self._ended[ref]

        try:
            return await asyncio.wait_for(wait(), FIND_TIMEOUT)
        except TimeoutError:
            raise rpc.RpcError(rpc.Status.NOT_FOUND, f"no such job {ref}") from None

    async def find_for_call(self, call: rpc.ServerCall) -> Job:
        """The job a bridge call names in its metadata."""
        ref = call.metadata.get(BUILD_ID_KEY, "")
        if not ref:
            raise rpc.RpcError(
                rpc.Status.INVALID_ARGUMENT, f"no {BUILD_ID_KEY} in the call's metadata"
            )
        job = await self.find(ref)
        if job.ended.is_set():
            raise rpc.RpcError(rpc.Status.CANCELLED, f"build {ref} has ended")
        return job

    async def session(self, session_id: str) -> Session:
        """The build's live session (waiting for it to open, as it opens alongside)."""
        if not session_id:
            raise rpc.RpcError(rpc.Status.INVALID_ARGUMENT, "a build needs a session")
        try:
            return await asyncio.wait_for(self.sessions.get(session_id), FIND_TIMEOUT)
        except TimeoutError:
            raise rpc.RpcError(
                rpc.Status.UNAVAILABLE,
                f"no active session for {session_id}: context deadline exceeded",
            ) from None

    async def until_returned(self, job: Job, session: Session) -> gateway_pb2.ReturnRequest:
        """What the client's build function returned; fails if the session goes first."""
        closed: asyncio.Future[object] = asyncio.ensure_future(session.closed.wait())
        returned: asyncio.Future[object] = job.returned  # type: ignore[assignment]
        try:
            await asyncio.wait({returned, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await closed
        if job.returned.done():
            return job.returned.result()
        raise rpc.RpcError(
            rpc.Status.UNAVAILABLE, f"no active session for {session.id}: the session closed"
        )
