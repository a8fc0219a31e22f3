"""The frontend bridge (`moby.buildkit.v1.frontend.LLBBridge`) that buildx drives.

For a build, buildx is BuildKit's gateway client (see `jobs`): every call names its
job in the metadata `buildkit-controlapi-buildid`. What is served:

* `Ping`: the capabilities that are really there, which decide what the client calls
  next: `solve.base`; `return` (so the client ends with `Return`, not an inline
  final Solve); `proto.refarray` (results as `Ref` messages). The LLB capability list
  holds one disabled entry, so that the client does not assume BuildKit's original
  defaults (LLB definitions are not run here). The worker is the control service's.
* `Solve{Frontend: "dockerfile.v0"}`: the build, by the builder, with the Dockerfile
  and context from the job's session (`frontend`) and its progress drawn as vertexes
  in the job's status; the answer is a reference to the result, kept by the job.
  Definitions (LLB) and other frontends are UNIMPLEMENTED with a message that says so.
* `Return`: the client's build function is done; its result (or error) goes to the
  job's Solve, which exports it.
* `Warn`: a warning from the client, shown on its vertex.

Anything else is UNIMPLEMENTED (the rpc layer's answer for unknown methods).
"""

from __future__ import annotations

import asyncio

from dockyard.build.builder import Builder, BuildResult
from dockyard.buildkit import frontend, rpc
from dockyard.buildkit.jobs import Job, Jobs, status_error
from dockyard.buildkit.pb import caps_pb2, gateway_pb2, worker_pb2
from dockyard.buildkit.progress import Vertex, VertexProgress

SERVICE = "moby.buildkit.v1.frontend.LLBBridge"
FRONTEND_CAPS = ("solve.base", "return", "proto.refarray")
CANCELLED = "context canceled"  # what clients show as CANCELED


class Gateway:
    def __init__(self, jobs: Jobs, builder: Builder, worker: worker_pb2.WorkerRecord) -> None:
        self.jobs = jobs
        self.builder = builder
        self.worker = worker

    def handlers(self) -> dict[str, rpc.Handler]:
        return rpc.handler_table(
            SERVICE,
            [
                ("Ping", rpc.unary(gateway_pb2.PingRequest, self.ping)),
                ("Solve", rpc.unary(gateway_pb2.SolveRequest, self.solve)),
                ("Return", rpc.unary(gateway_pb2.ReturnRequest, self.return_)),
                ("Warn", rpc.unary(gateway_pb2.WarnRequest, self.warn)),
            ],
        )

    async def ping(
        self, request: gateway_pb2.PingRequest, call: rpc.ServerCall
    ) -> gateway_pb2.PongResponse:
        await self.jobs.find_for_call(call)
        return gateway_pb2.PongResponse(
            FrontendAPICaps=[caps_pb2.APICap(ID=cap, Enabled=True) for cap in FRONTEND_CAPS],
            LLBCaps=[
                caps_pb2.APICap(
                    ID="source.local",
                    Enabled=False,
                    DisabledReason="unsupported",
                    DisabledReasonMsg="Dockyard runs Dockerfile builds, not LLB definitions",
                )
            ],
            Workers=[self.worker],
        )

    async def solve(
        self, request: gateway_pb2.SolveRequest, call: rpc.ServerCall
    ) -> gateway_pb2.SolveResponse:
        job = await self.jobs.find_for_call(call)
        if request.Frontend != frontend.NAME:
            if request.Frontend:
                message = f"frontend {request.Frontend} is not supported by Dockyard"
            else:
                message = (
                    "Dockyard runs Dockerfile builds (frontend dockerfile.v0), not LLB definitions"
                )
            raise rpc.RpcError(rpc.Status.UNIMPLEMENTED, message)
        if request.FrontendInputs:
            raise rpc.RpcError(
                rpc.Status.UNIMPLEMENTED,
                "frontend inputs (named contexts from other builds) are not supported by Dockyard",
            )
        result = await job.run(self._build(job, dict(request.FrontendOpt)))
        ref_id = job.add_result(result)
        if request.allowResultReturn:
            return gateway_pb2.SolveResponse(
                result=gateway_pb2.Result(ref=gateway_pb2.Ref(id=ref_id))
            )
        return gateway_pb2.SolveResponse(ref=ref_id)

    async def _build(self, job: Job, attrs: dict[str, str]) -> BuildResult:
        progress: VertexProgress | None = None
        try:
            options = frontend.build_options(attrs)
            session = job.session or await self.jobs.session(job.request.Session)
            progress = VertexProgress(job.graph)
            source = frontend.SessionContext(
                session,
                self.jobs.mirrors,
                progress,
                dockerfile_dir=attrs.get("dockerfilekey") or "dockerfile",
                context_dir=attrs.get("contextkey") or "context",
            )
            options.run_mounts = True
            options.secrets = source.secret
            return await self.builder.solve(source, options, progress)
        except asyncio.CancelledError:
            if progress is not None:
                progress.fail(CANCELLED)
            raise
        except Exception as e:
            error = status_error(e)  # a bug is logged there
            if progress is not None:
                progress.fail(error.message)
            raise error from None

    async def return_(
        self, request: gateway_pb2.ReturnRequest, call: rpc.ServerCall
    ) -> gateway_pb2.ReturnResponse:
        job = await self.jobs.find_for_call(call)
        if job.returned.done():
            raise rpc.RpcError(rpc.Status.FAILED_PRECONDITION, "the build has returned already")
        job.returned.set_result(request)
        return gateway_pb2.ReturnResponse()

    async def warn(
        self, request: gateway_pb2.WarnRequest, call: rpc.ServerCall
    ) -> gateway_pb2.WarnResponse:
        job = await self.jobs.find_for_call(call)
        Vertex(job.status, request.digest, "").warn(request.short.decode(errors="replace"))
        return gateway_pb2.WarnResponse()
