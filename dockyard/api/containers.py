"""Container routes: parse the request, call the engine, render Docker's reply."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from dockyard import detachkeys
from dockyard.api import container_json, filters
from dockyard.api.app import (
    Routes,
    api_version,
    engine,
    json_response,
    query_bool,
    query_int,
    read_json,
)
from dockyard.api.streams import Hijacked, WebSocketStream, frame, hijack, stream_content_type
from dockyard.api.system import _parse_time
from dockyard.containers import health, schema
from dockyard.containers.model import Container
from dockyard.containers.schema import ContainerCreate, EndpointSettings
from dockyard.containers.update import ContainerUpdate
from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.images.oci import rfc3339
from dockyard.logs.k8sfile import LogEntry
from dockyard.runtime.attach import AttachConnection

routes = Routes()

_LIST_FILTERS = (
    "id",
    "name",
    "label",
    "status",
    "ancestor",
    "exited",
    "before",
    "since",
    "health",
    "is-task",
    "network",
    "volume",
    "publish",
    "expose",
)


def _matches(eng: Any, container: Container, wanted: filters.Filters) -> bool:
    for key, values in wanted.items():
        if not values:
            continue
        if key == "id" and not any(container.id.startswith(v) for v in values):
            return False
        if key == "name" and not any(v.lstrip("/") in container.name for v in values):
            return False
        if key == "label" and not filters.label_matches(container.labels, values):
            return False
        if key == "status":
            for v in values:
                if v not in container_json.STATUSES:
                    raise InvalidArgument(f"invalid filter 'status={v}'")
            if container.state.status not in values:
                return False
        if key == "exited" and (
            container.state.status != "exited" or str(container.state.exit_code) not in values
        ):
            return False
        if key == "ancestor":
            ids = set()
            for v in values:
                with contextlib.suppress(NotFound, InvalidArgument):
                    ids.add(eng.images.resolve(v).id)
            if container.image_id not in ids and container.config.image not in values:
                return False
        if key == "is-task" and filters.bool_value(values, key):
            return False
        if key == "health" and not health.filter_matches(container.state.health, values):
            return False
        if key == "volume" and not any(
            v in (point.name, point.destination) for point in container.mounts for v in values
        ):
            return False
        if key == "network" and not any(
            v in container.networks
            or any(s.network_id.startswith(v) for s in container.networks.values())
            for v in values
        ):
            return False
    return True


@routes.get("/containers/json")
async def list_containers(request: web.Request) -> web.StreamResponse:
    eng = engine(request)
    wanted = filters.parse(request.query.get("filters"), _LIST_FILTERS)
    show_all = query_bool(request, "all")
    limit = query_int(request, "limit", -1) or -1
    containers = eng.containers.all()
    for key in ("before", "since"):
        if key in wanted or request.query.get(key):
            ref = (wanted.get(key) or [request.query.get(key, "")])[0]
            pivot = eng.containers.get(ref)
            index = containers.index(pivot)
            containers = containers[index + 1 :] if key == "before" else containers[:index]
            show_all = True
    if limit > 0:
        show_all = True
    result = []
    link_names = eng.containers.networking.link_names()
    for container in containers:
        if not show_all and not container.state.running:
            continue
        if not _matches(eng, container, wanted):
            continue
        result.append(
            container_json.summary(
                container,
                container.config.image,
                container_json.network_settings(container, eng.network),
                link_names.get(container.id),
            )
        )
        if 0 < limit <= len(result):
            break
    return json_response(result)


@routes.post("/containers/create")
async def create(request: web.Request) -> web.StreamResponse:
    body = schema.decode(ContainerCreate, await read_json(request, required=True))
    platform = request.query.get("platform") or ""
    if platform and not platform.startswith("linux"):
        raise InvalidArgument(f"unsupported platform: {platform}")
    _versioned_defaults(body, api_version(request))
    container = await engine(request).containers.create(request.query.get("name"), body)
    return json_response({"Id": container.id, "Warnings": []}, 201)


def _versioned_defaults(body: ContainerCreate, version: tuple[int, int]) -> None:
    """What older clients mean by leaving a field out, or by a field that has moved."""
    if version < (1, 40) and not body.host_config.ipc_mode:
        body.host_config.ipc_mode = "shareable"  # the daemon default before API 1.40
    if version < (1, 44) and body.healthcheck is not None:
        body.healthcheck.start_interval = 0  # unknown to older clients: moby drops it
    if body.mac_address:
        # The container-wide MAC address (deprecated in 1.44) belongs to the main network's
        # endpoint; from 1.44 on the two must agree when both are given.
        mode = body.host_config.network_mode or "default"
        endpoints = body.networking_config.endpoints_config or {}
        settings = endpoints.get(mode) or EndpointSettings()
        if version >= (1, 44) and settings.mac_address and settings.mac_address != body.mac_address:
            raise InvalidArgument(
                "the container-wide MAC address must match the endpoint-specific MAC address "
                "for the main network, or be left empty"
            )
        settings.mac_address = body.mac_address
        body.networking_config.endpoints_config = {**endpoints, mode: settings}


def _inspect(request: web.Request, container: Container) -> dict[str, Any]:
    eng = engine(request)
    data = container_json.inspect(
        container,
        paths=eng.containers.paths(container),
        exec_ids=eng.execs.for_container(container.id),
        network=container_json.network_settings(container, eng.network),
    )
    if query_bool(request, "size"):
        data["SizeRw"] = 0
        data["SizeRootFs"] = 0
    return data


@routes.get("/containers/{id}/json")
async def inspect(request: web.Request) -> web.StreamResponse:
    container = engine(request).containers.get(request.match_info["id"])
    return json_response(_inspect(request, container))


@routes.post("/containers/{id}/start")
async def start(request: web.Request) -> web.StreamResponse:
    await engine(request).containers.start(request.match_info["id"])
    return web.Response(status=204)


def _signal_param(request: web.Request) -> str | None:
    if api_version(request) < (1, 42):
        return None
    return request.query.get("signal") or None


@routes.post("/containers/{id}/stop")
async def stop(request: web.Request) -> web.StreamResponse:
    await engine(request).containers.stop(
        request.match_info["id"], query_int(request, "t"), _signal_param(request)
    )
    return web.Response(status=204)


@routes.post("/containers/{id}/restart")
async def restart(request: web.Request) -> web.StreamResponse:
    await engine(request).containers.restart(
        request.match_info["id"], query_int(request, "t"), _signal_param(request)
    )
    return web.Response(status=204)


@routes.post("/containers/{id}/kill")
async def kill(request: web.Request) -> web.StreamResponse:
    await engine(request).containers.kill(request.match_info["id"], request.query.get("signal"))
    return web.Response(status=204)


@routes.post("/containers/{id}/pause")
async def pause(request: web.Request) -> web.StreamResponse:
    await engine(request).containers.pause(request.match_info["id"])
    return web.Response(status=204)


@routes.post("/containers/{id}/unpause")
async def unpause(request: web.Request) -> web.StreamResponse:
    await engine(request).containers.unpause(request.match_info["id"])
    return web.Response(status=204)


@routes.post("/containers/{id}/update")
async def update(request: web.Request) -> web.StreamResponse:
    body = schema.decode(ContainerUpdate, await read_json(request))
    version = api_version(request)
    if version < (1, 40):
        body.pids_limit = None  # not updatable before API 1.40
    if version >= (1, 42):
        body.kernel_memory = 0  # removed in API 1.42: ignored
    warnings = await engine(request).containers.update(request.match_info["id"], body)
    return json_response({"Warnings": warnings})


@routes.post("/containers/{id}/rename")
async def rename(request: web.Request) -> web.StreamResponse:
    engine(request).containers.rename(request.match_info["id"], request.query.get("name", ""))
    return web.Response(status=204)


@routes.post("/containers/{id}/wait")
async def wait(request: web.Request) -> web.StreamResponse:
    condition = request.query.get("condition", "")
    waiter = engine(request).containers.waiter(request.match_info["id"], condition)
    resp = web.StreamResponse(status=200)
    resp.headers["Content-Type"] = "application/json"
    # The client waits for the headers before it starts the container.
    await resp.prepare(request)
    code = await waiter
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await resp.write(f'{{"StatusCode":{code}}}\n'.encode())
        await resp.write_eof()
    return resp


# `{id:.+}`: a link is named `parent/alias` (docker-py sends the slash as it is).
@routes.delete("/containers/{id:.+}")
async def remove(request: web.Request) -> web.StreamResponse:
    eng = engine(request)
    if query_bool(request, "link"):
        await eng.containers.networking.remove_link(request.match_info["id"])
        return web.Response(status=204)
    container = eng.containers.get(request.match_info["id"])
    await eng.containers.remove(
        container.id, force=query_bool(request, "force"), volumes=query_bool(request, "v")
    )
    eng.execs.forget_container(container.id)
    return web.Response(status=204)


@routes.post("/containers/prune")
async def prune(request: web.Request) -> web.StreamResponse:
    wanted = filters.parse(request.query.get("filters"), ("label", "label!", "until"))
    until = filters.until(wanted.get("until", []))

    def chosen(container: Container) -> bool:
        if until is not None and container_json.parse_time(container.created) * 1e9 > until:
            return False
        return filters.prune_labels_match(container.labels, wanted)

    removed, space = await engine(request).containers.prune(chosen)
    return json_response({"ContainersDeleted": removed or None, "SpaceReclaimed": space})


@routes.get("/containers/{id}/top")
async def top(request: web.Request) -> web.StreamResponse:
    titles, processes = await engine(request).containers.top(
        request.match_info["id"], request.query.get("ps_args", "-ef")
    )
    return json_response({"Titles": titles, "Processes": processes})


@routes.post("/containers/{id}/resize")
async def resize(request: web.Request) -> web.StreamResponse:
    height = query_int(request, "h", 0) or 0
    width = query_int(request, "w", 0) or 0
    engine(request).containers.resize(request.match_info["id"], height, width)
    return web.Response(status=200)


@routes.get("/containers/{id}/logs")
async def logs(request: web.Request) -> web.StreamResponse:
    eng = engine(request)
    container = eng.containers.get(request.match_info["id"])
    want_out = query_bool(request, "stdout")
    want_err = query_bool(request, "stderr")
    if not (want_out or want_err):
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    tail_text = request.query.get("tail", "all")
    tail = None if tail_text in ("", "all") else query_int(request, "tail")
    since = _parse_time(request.query.get("since"), "since") or 0
    until = _parse_time(request.query.get("until"), "until") or 0
    timestamps = query_bool(request, "timestamps")
    follow = query_bool(request, "follow")
    batches = await eng.containers.log_batches(
        container.id, follow=follow, since_ns=since, until_ns=until, tail=tail
    )
    streams = {1} if not want_err else {2} if not want_out else {1, 2}
    render = functools.partial(
        _render_log, streams=streams, timestamps=timestamps, framed=not container.tty
    )
    resp = web.StreamResponse(status=200)
    resp.headers["Content-Type"] = stream_content_type(request, not container.tty)
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    try:
        async for batch in batches:
            # A large batch is rendered on a worker thread, as it was read on one.
            data = render(batch) if len(batch) < 512 else await asyncio.to_thread(render, batch)
            if data:
                await resp.write(data)
        await resp.write_eof()
    except (ConnectionResetError, RuntimeError):
        pass
    finally:
        await batches.aclose()
    return resp


def _render_log(
    batch: list[LogEntry], *, streams: set[int], timestamps: bool, framed: bool
) -> bytes:
    """Log records as the client reads them: stdcopy frames, or raw for a TTY."""
    out = []
    for entry in batch:
        if entry.stream not in streams:
            continue
        data = entry.data
        if timestamps:
            data = rfc3339(entry.time_ns).encode() + b" " + data
        out.append(frame(entry.stream, data) if framed else data)
    return b"".join(out)


@routes.post("/containers/{id}/attach")
async def attach(request: web.Request) -> web.StreamResponse:
    eng = engine(request)
    container = eng.containers.get(request.match_info["id"])
    escape_keys = _detach_keys(request)
    tty = container.tty
    ref = request.match_info["id"]
    if container.state.status == "paused":
        raise Conflict(f"container {ref} is paused, unpause the container before attach")
    if container.state.status == "restarting":
        raise Conflict(f"container {ref} is restarting, wait until the container is running")
    resp, conn = await hijack(request, stream_content_type(request, not tty))
    await conn.head_read()
    await _serve_attach(request, container, conn, framed=not tty, escape_keys=escape_keys)
    return resp


@routes.get("/containers/{id}/attach/ws")
async def attach_ws(request: web.Request) -> web.StreamResponse:
    """The same attach over a websocket: raw output (never multiplexed), input as frames."""
    eng = engine(request)
    container = eng.containers.get(request.match_info["id"])
    escape_keys = _detach_keys(request)
    if container.state.status == "paused":
        raise Conflict(
            f"container {request.match_info['id']} is paused, unpause the container before attach"
        )
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    conn = WebSocketStream(ws, binary=api_version(request) >= (1, 42))
    await _serve_attach(request, container, conn, framed=False, escape_keys=escape_keys)
    return ws


def _detach_keys(request: web.Request) -> bytes:
    keys = request.query.get("detachKeys", "")
    try:
        return detachkeys.parse(keys) if keys else detachkeys.DEFAULT
    except detachkeys.InvalidKeys:
        raise InvalidArgument(f"Invalid detach keys ({keys}) provided") from None


async def _serve_attach(
    request: web.Request,
    container: Container,
    conn: Hijacked | WebSocketStream,
    *,
    framed: bool,
    escape_keys: bytes,
) -> None:
    """Replay the log if asked, then relay the container's stdio until it ends or the client
    detaches; `framed`: Docker's multiplexed stream (no TTY, plain attach)."""
    eng = engine(request)
    want_in = query_bool(request, "stdin")
    want_out = query_bool(request, "stdout")
    want_err = query_bool(request, "stderr")
    stream = query_bool(request, "stream")
    tty = container.tty

    async def send(stream_id: int, data: bytes) -> bool:
        if (stream_id == 1 and not want_out) or (stream_id == 2 and not want_err):
            return True
        return await conn.write(frame(stream_id, data) if framed else data)

    try:
        if query_bool(request, "logs"):
            async for entry in eng.containers.logs(container.id, follow=False):
                if not await send(entry.stream, entry.data):
                    return
        if not stream:
            return
        eng.containers.emit(container, "attach")
        target = await eng.containers.attach(container.id)
        if target is None:
            return
        # Detach keys are a terminal's: only a TTY container's input is watched (Docker).
        escape = detachkeys.EscapeFilter(escape_keys) if tty and want_in else None
        if await _pump(conn, target, send, want_in, escape):
            eng.containers.emit(container, "detach")
    finally:
        conn.close()


async def _pump(
    conn: Hijacked | WebSocketStream,
    target: AttachConnection,
    send: Callable[[int, bytes], Awaitable[bool]],
    want_in: bool,
    escape: detachkeys.EscapeFilter | None,
) -> bool:
    """Relay output to the client and the client's stdin to the container until the output
    ends; True if the client left first (detach keys, or gone) with the container running."""
    detached = asyncio.Event()

    async def stdin() -> None:
        while True:
            data = await conn.read()
            if data is None:
                if want_in:
                    target.close_stdin()  # the monitor keeps it open unless StdinOnce (no TTY)
                return
            if not want_in:
                continue
            if escape is not None:
                data = escape.feed(data)
            if data:
                await target.write(data)
            if escape is not None and escape.detached:
                detached.set()
                return

    async def output() -> bool:
        while True:
            chunk = await target.read()
            if chunk is None:
                return False
            if not await send(*chunk):
                return True  # the client is gone

    feeder = asyncio.ensure_future(stdin())
    relay = asyncio.ensure_future(output())
    detach = asyncio.ensure_future(detached.wait())
    try:
        await asyncio.wait({relay, detach}, return_when=asyncio.FIRST_COMPLETED)
        return detached.is_set() or (relay.done() and relay.result())
    finally:
        for task in (feeder, relay, detach):
            task.cancel()
        await asyncio.gather(feeder, relay, detach, return_exceptions=True)
        target.close()
