"""BuildKit's control service (`moby.buildkit.v1.Control`) over Dockyard's builder.

buildx and compose see the engine as one BuildKit worker, as they see Docker's:

* `ListWorkers`: one worker whose ID is the engine's, the host's platform, no garbage
  collection policy (Dockyard keeps build cache until it is pruned), and the worker
  labels buildx reads (`org.mobyproject.buildkit.worker.moby.host-gateway-ip` when the
  engine has a default bridge gateway).
* `Info`: the implementation's name and version.
* `Solve` and `Status`: a build (`jobs`): Solve waits for the client's build function
  to return its result over the frontend bridge (`gateway`), exports it
  (`exporters`) and answers what the exporters report; Status streams the job's
  vertexes, statuses and logs from its start until it ends.
* `DiskUsage` and `Prune`: the records of the one build cache that the classic builder
  and BuildKit's front door share (`build.cache`), so `docker buildx du`, `docker buildx
  prune`, `docker builder prune` and `POST /build/prune` all see and free the same
  bytes. Prune streams one record per dropped step. The context mirrors kept for
  incremental uploads (`filesync.ContextMirrors`) are records too (`source.local`,
  mutable), dropped by age and filter unless a size to keep is given.

Filters are BuildKit's (containerd's syntax): a list of alternatives, each a comma-
separated conjunction of `field==value`, `field!=value` or `field~=regexp` over the
fields `id`, `description`, `type`, `inuse`, `mutable`, `immutable`, `shared` and
`private`. A filter that does not parse is INVALID_ARGUMENT.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

import dockyard
from dockyard.build.builder import Builder
from dockyard.build.cache import CacheRecord
from dockyard.build.cachemounts import CacheMountRecord
from dockyard.buildkit import exporters, rpc
from dockyard.buildkit.filesync import MirrorRecord
from dockyard.buildkit.jobs import Jobs, status_error
from dockyard.buildkit.pb import control_pb2, gateway_pb2, ops_pb2, worker_pb2
from dockyard.images.oci import host_arch

log = logging.getLogger(__name__)

SERVICE = "moby.buildkit.v1.Control"
PACKAGE = "github.com/dockyard/dockyard"
HOST_GATEWAY_LABEL = "org.mobyproject.buildkit.worker.moby.host-gateway-ip"
RECORD_TYPE = "regular"  # a step's snapshot, in BuildKit's words
Record = CacheRecord | MirrorRecord | CacheMountRecord
# records that change in place and may be in use (context mirrors, cache mounts)
_MUTABLE = (MirrorRecord, CacheMountRecord)


class Control:
    """The control service's methods; `handlers()` is what `/grpc` serves."""

    def __init__(
        self,
        engine_id: str,
        builder: Builder,
        jobs: Jobs,
        host_gateway: str = "",
    ) -> None:
        self.engine_id = engine_id
        self.builder = builder
        self.jobs = jobs
        self.host_gateway = host_gateway

    def handlers(self) -> dict[str, rpc.Handler]:
        return rpc.handler_table(
            SERVICE,
            [
                ("ListWorkers", rpc.unary(control_pb2.ListWorkersRequest, self.list_workers)),
                ("Info", rpc.unary(control_pb2.InfoRequest, self.info)),
                ("DiskUsage", rpc.unary(control_pb2.DiskUsageRequest, self.disk_usage)),
                ("Prune", rpc.server_stream(control_pb2.PruneRequest, self.prune)),
                ("Solve", rpc.unary(control_pb2.SolveRequest, self.solve)),
                ("Status", self.status),
            ],
        )

    async def solve(
        self, request: control_pb2.SolveRequest, call: rpc.ServerCall
    ) -> control_pb2.SolveResponse:
        if request.Frontend or getattr(request.Definition, "def"):
            raise rpc.RpcError(
                rpc.Status.UNIMPLEMENTED,
                "Dockyard builds through the frontend bridge that buildx drives "
                "(docker buildx build, docker build, docker compose build); "
                "solving a frontend or an LLB definition directly is not supported",
            )
        job = await self.jobs.open(request)
        try:
            exporters.check(list(request.Exporters))
            session = job.session = await self.jobs.session(request.Session)
            returned = await self.jobs.until_returned(job, session)
            if returned.HasField("error") and returned.error.code != rpc.Status.OK:
                error = returned.error
                raise rpc.RpcError(rpc.Status(error.code), error.message)
            result = None
            if returned.HasField("result"):
                ref_id = _returned_ref(returned.result)
                result = job.results.get(ref_id) if ref_id else None
                if ref_id and result is None:
                    raise rpc.RpcError(rpc.Status.NOT_FOUND, f"no such result {ref_id}")
            response = exporters.export(self.builder, job.graph, list(request.Exporters), result)
            return control_pb2.SolveResponse(ExporterResponse=response)
        except Exception as e:
            raise status_error(e) from None
        finally:
            await self.jobs.close(job)

    async def status(self, call: rpc.ServerCall) -> None:
        data = await call.recv()
        request = control_pb2.StatusRequest()
        request.ParseFromString(data or b"")
        job = await self.jobs.find(request.Ref)
        async for update in job.status.follow():
            await call.send(update.SerializeToString())

    def version(self) -> worker_pb2.BuildkitVersion:
        return worker_pb2.BuildkitVersion(package=PACKAGE, version=dockyard.__version__)

    def worker(self) -> worker_pb2.WorkerRecord:
        """The one worker: the engine."""
        labels = {HOST_GATEWAY_LABEL: self.host_gateway} if self.host_gateway else {}
        return worker_pb2.WorkerRecord(
            ID=self.engine_id,
            Labels=labels,
            platforms=[ops_pb2.Platform(OS="linux", Architecture=host_arch())],
            BuildkitVersion=self.version(),
        )

    async def list_workers(
        self, request: control_pb2.ListWorkersRequest, call: rpc.ServerCall
    ) -> control_pb2.ListWorkersResponse:
        # A worker filter (containerd syntax) is matched against the worker's ID and
        # labels only as far as BuildKit's own workers answer it: no filter, all workers.
        return control_pb2.ListWorkersResponse(record=[self.worker()])

    async def info(
        self, request: control_pb2.InfoRequest, call: rpc.ServerCall
    ) -> control_pb2.InfoResponse:
        return control_pb2.InfoResponse(buildkitVersion=self.version())

    async def disk_usage(
        self, request: control_pb2.DiskUsageRequest, call: rpc.ServerCall
    ) -> control_pb2.DiskUsageResponse:
        selected = parse_filters(list(request.filter))
        records: list[Record] = [*self.builder.cache.records()]
        records += await asyncio.to_thread(self.jobs.mirrors.records)
        records += await asyncio.to_thread(self.builder.cache_mounts.records)
        return control_pb2.DiskUsageResponse(
            record=[usage_record(r) for r in records if selected is None or selected(r)]
        )

    async def prune(
        self, request: control_pb2.PruneRequest, call: rpc.ServerCall
    ) -> AsyncIterator[control_pb2.UsageRecord]:
        selected = parse_filters(list(request.filter))
        dropped = await self.builder.prune(
            all=request.all,
            keep_storage=max(request.keepBytes, 0),
            keep_duration=max(request.keepDuration, 0) / 1e9,  # Go's time.Duration: ns
            selected=selected,
        )
        for record in dropped:
            yield usage_record(record)
        # Context mirrors go by age and filter; a size to keep leaves them (they are
        # what makes the next upload small).
        keep_duration = max(request.keepDuration, 0) / 1e9
        if request.keepBytes <= 0 or request.all:
            now = time.time()

            def drop(record: MirrorRecord | CacheMountRecord) -> bool:
                old = not keep_duration or record.last_used < now - keep_duration
                return old and (selected is None or selected(record))

            for mirror in await asyncio.to_thread(self.jobs.mirrors.prune, drop):
                yield usage_record(mirror)
            # Cache mounts, likewise (BuildKit keeps none of them through a prune
            # without a size to keep either).
            for cache in await asyncio.to_thread(self.builder.cache_mounts.prune, drop):
                yield usage_record(cache)


def _returned_ref(result: gateway_pb2.Result) -> str:
    """The result reference a Return names (old clients send it as a bare string)."""
    which = result.WhichOneof("result")
    if which == "ref":
        return result.ref.id
    if which == "refDeprecated":
        return result.refDeprecated
    if which is None:
        return ""
    raise rpc.RpcError(
        rpc.Status.UNIMPLEMENTED, "a result of several references is not supported by Dockyard"
    )


def usage_record(record: Record) -> control_pb2.UsageRecord:
    created = Timestamp()
    created.FromNanoseconds(int(record.created * 1e9))
    last_used = Timestamp()
    last_used.FromNanoseconds(int(record.last_used * 1e9))
    return control_pb2.UsageRecord(
        ID=record.key,
        Size=record.size,
        CreatedAt=created,
        LastUsedAt=last_used,
        Description=record.description,
        RecordType=_field(record, "type"),
        Mutable=isinstance(record, _MUTABLE),
        InUse=isinstance(record, _MUTABLE) and record.in_use,
    )


# -- filters --------------------------------------------------------------------


@dataclass(frozen=True)
class _Condition:
    field: str
    operator: str  # "==", "!=" or "~="
    value: str

    def holds(self, record: Record) -> bool:
        actual = _field(record, self.field)
        if self.operator == "==":
            return actual == self.value
        if self.operator == "!=":
            return actual != self.value
        return re.search(self.value, actual) is not None


_FIELDS = ("id", "description", "type", "inuse", "mutable", "immutable", "shared", "private")
_CONDITION = re.compile(r"^\s*([A-Za-z_.]+)\s*(==|!=|~=)\s*(.*?)\s*$")


def _field(record: Record, name: str) -> str:
    # A step's record is an immutable, private snapshot no build holds; a context
    # mirror is a mutable one, in use while a transfer updates it.
    if isinstance(record, _MUTABLE):
        mutable, in_use = "true", "true" if record.in_use else ""
        record_type = record.record_type
    else:
        mutable, in_use = "", ""
        record_type = RECORD_TYPE
    return {
        "id": record.key,
        "description": record.description,
        "type": record_type,
        "inuse": in_use,
        "mutable": mutable,
        "immutable": "" if mutable else "true",
        "shared": "",
        "private": "true",
    }[name]


def parse_filters(filters: list[str]) -> Callable[[Record], bool] | None:
    """A predicate for BuildKit filter strings (None: no filter, everything matches)."""
    alternatives: list[list[_Condition]] = []
    for text in filters:
        if not text.strip():
            continue
        conditions = []
        for part in text.split(","):
            match = _CONDITION.match(part)
            if match is None:
                if part.strip() in _FIELDS:  # a bare field: present (true)
                    conditions.append(_Condition(part.strip(), "==", "true"))
                    continue
                raise rpc.RpcError(rpc.Status.INVALID_ARGUMENT, f"invalid filter {text!r}")
            name, operator, value = match.groups()
            value = value.strip('"')
            if name not in _FIELDS:
                raise rpc.RpcError(
                    rpc.Status.INVALID_ARGUMENT, f"invalid filter {text!r}: unknown field {name}"
                )
            if operator == "~=":
                try:
                    re.compile(value)
                except re.error as e:
                    raise rpc.RpcError(
                        rpc.Status.INVALID_ARGUMENT, f"invalid filter {text!r}: {e}"
                    ) from None
            conditions.append(_Condition(name, operator, value))
        alternatives.append(conditions)
    if not alternatives:
        return None
    return lambda record: any(all(c.holds(record) for c in conj) for conj in alternatives)
