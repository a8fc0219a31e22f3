"""Build routes: the classic builder's `POST /build`, build cache prune and cancel.

Bad parameters, an unreadable context or a Dockerfile that does not parse
are answered with an error status before any output. Once the build runs,
its output and any failure travel in the JSON stream (Docker's `stream`,
`aux` and `errorDetail` messages). A client that goes away cancels the build.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from dockyard import wire
from dockyard.api.app import Routes, body_chunks, engine, json_response, query_bool, query_int
from dockyard.api.streams import JSONStream
from dockyard.build import bootstrap as bootstraps
from dockyard.build.builder import BuildOptions, StepFailed, parse_platform, parse_tags
from dockyard.build.context import TarContext
from dockyard.build.progress import ClassicProgress
from dockyard.containers import schema
from dockyard.containers.schema import HostConfig
from dockyard.errors import DockyardError, InvalidArgument, NotImplementedByEngine

log = logging.getLogger(__name__)
routes = Routes()

_RESOURCES = {
    "memory": "Memory",
    "memswap": "MemorySwap",
    "cpushares": "CpuShares",
    "cpuperiod": "CpuPeriod",
    "cpuquota": "CpuQuota",
    "shmsize": "ShmSize",
}


def _json_param(request: web.Request, name: str, what: str, kind: type) -> Any:
    text = request.query.get(name)
    if not text:
        return kind()
    try:
        value = wire.loads(text)
    except ValueError as e:
        raise InvalidArgument(f"error reading {what}: {e}") from None
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise InvalidArgument(f"error reading {what}: expected a JSON {kind.__name__}")
    return value


def options(request: web.Request) -> BuildOptions:
    q = request.query
    if q.get("version", "1") not in ("", "1"):
        if q.get("version") == "2":
            raise InvalidArgument(
                "BuildKit (builder version 2) is not supported by Dockyard; "
                "use the classic builder (DOCKER_BUILDKIT=0)"
            )
        raise InvalidArgument(f'invalid version "{q.get("version")}"')
    if q.get("remote"):
        raise NotImplementedByEngine("building from a remote context is not supported by Dockyard")
    if query_bool(request, "squash"):
        raise InvalidArgument("squash is only supported with experimental mode")
    tags = parse_tags(q.getall("t", ()))
    build_args = _json_param(request, "buildargs", "build args", dict)
    for name, value in build_args.items():
        if value is not None and not isinstance(value, str):
            raise InvalidArgument(f"error reading build args: {name} must be a string")
    labels = _json_param(request, "labels", "labels", dict)
    platform = q.get("platform", "")
    parse_platform(platform)
    host_config: dict[str, Any] = {}
    for param, field in _RESOURCES.items():
        value = query_int(request, param)
        if value:
            host_config[field] = value
    for param, field in (("cpusetcpus", "CpusetCpus"), ("cgroupparent", "CgroupParent")):
        if q.get(param):
            host_config[field] = q[param]
    extra_hosts = list(q.getall("extrahosts", ()))
    if extra_hosts:
        host_config["ExtraHosts"] = extra_hosts
    ulimits = _json_param(request, "ulimits", "ulimit settings", list)
    if ulimits:
        host_config["Ulimits"] = ulimits
    force_remove = query_bool(request, "forcerm")
    cache_from = None
    if q.get("cachefrom"):
        cache_from = _json_param(request, "cachefrom", "cache from", list)
        if not all(isinstance(name, str) for name in cache_from):
            raise InvalidArgument("error reading cache from: expected a list of image names")
    return BuildOptions(
        dockerfile=q.get("dockerfile", ""),
        tags=tags,
        build_args=build_args,
        target=q.get("target", ""),
        no_cache=query_bool(request, "nocache"),
        labels={str(k): str(v) for k, v in labels.items()},
        remove=force_remove or query_bool(request, "rm", default=True),
        force_remove=force_remove,
        pull=query_bool(request, "pull"),
        network_mode=q.get("networkmode", ""),
        platform=platform,
        quiet=query_bool(request, "q"),
        cache_from=cache_from,
        host_config=schema.decode(HostConfig, host_config, "build options"),
    )


_CLIENT_CHECK = 0.1  # seconds between looks at a build's connection


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


@routes.post("/build")
async def build(request: web.Request) -> web.StreamResponse:
    eng = engine(request)
    opts = options(request)
    stream = JSONStream(request)
    progress = ClassicProgress(stream.send, quiet=opts.quiet)
    task = asyncio.ensure_future(
        eng.builder.build(TarContext(body_chunks(request)), opts, progress)
    )
    try:
        while not task.done():
            # A step may print nothing for a long time: look at the connection often, so
            # that a build whose client has gone stops (its step container killed and
            # removed) at once rather than when it next writes.
            await asyncio.wait({task}, timeout=_CLIENT_CHECK)
            if not task.done() and _client_gone(request):
                log.info("build client went away; stopping the build")
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)  # its clean-up included
                return stream.resp
        task.result()
    except asyncio.CancelledError:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        raise
    except (ConnectionResetError, RuntimeError):
        return stream.resp  # the client went away mid-build; the build cleaned up
    except Exception as e:
        if not stream.started:
            raise
        if isinstance(e, DockyardError):
            message = e.message
        else:  # a bug: the client still gets a proper end of stream
            log.exception("build failed")
            message = f"internal error: {type(e).__name__}: {e}"
        try:
            await stream.error(message, e.code if isinstance(e, StepFailed) else 1)
        except (ConnectionResetError, RuntimeError):
            return stream.resp
    return await stream.finish()


@routes.post("/build/prune")
async def prune(request: web.Request) -> web.StreamResponse:
    keep = query_int(request, "reserved-space") or query_int(request, "keep-storage") or 0
    dropped = await engine(request).builder.prune(all=query_bool(request, "all"), keep_storage=keep)
    return json_response(
        {
            "CachesDeleted": [record.key for record in dropped] or None,
            "SpaceReclaimed": sum(record.size for record in dropped),
        }
    )


@routes.post("/build/cancel")
async def cancel(request: web.Request) -> web.StreamResponse:
    if not request.query.get("id"):
        raise InvalidArgument("build ID not provided")
    return web.Response(status=200)


@routes.post("/dockyard/bootstrap")
async def bootstrap(request: web.Request) -> web.StreamResponse:
    """Dockyard's own: a base image from a distribution's package archive."""
    eng = engine(request)
    q = request.query
    spec, tag = bootstraps.recipe(
        q.get("name", ""),
        mirror=q.get("mirror", ""),
        variant=q.get("variant", ""),
        include=list(q.getall("include", ())),
        arch=q.get("arch", ""),
    )
    stream = JSONStream(request)
    try:
        await eng.bootstrapper.bootstrap(
            spec, tag, stream.send, no_cache=query_bool(request, "nocache")
        )
    except DockyardError as e:
        if not stream.started:
            raise
        await stream.error(e.message)
    return await stream.finish()
