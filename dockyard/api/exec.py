"""Exec routes: create, start (hijacked or detached), resize, inspect."""

from __future__ import annotations

import asyncio

from aiohttp import web

from dockyard import detachkeys
from dockyard.api.app import Routes, api_version, engine, json_response, query_int, read_json
from dockyard.api.streams import Hijacked, frame, hijack, stream_content_type
from dockyard.containers import schema
from dockyard.containers.execs import CommandError, Exec, ExecCreate, ExecStart, runtime_message

routes = Routes()


@routes.post("/containers/{id}/exec")
async def create(request: web.Request) -> web.StreamResponse:
    body = schema.decode(ExecCreate, await read_json(request, required=True))
    instance = engine(request).execs.create(request.match_info["id"], body)
    return json_response({"Id": instance.id}, 201)


@routes.post("/exec/{id}/start")
async def start(request: web.Request) -> web.StreamResponse:
    eng = engine(request)
    body = schema.decode(ExecStart, await read_json(request))
    instance = eng.execs.get(request.match_info["id"])
    detach = body.detach
    # The process gets a terminal if the exec was created with one; the start's Tty
    # only chooses the framing of the stream (Docker's rule).
    framed = not body.tty
    size = body.console_size
    console_size = (
        (size[0], size[1])
        if size and len(size) == 2 and not framed and api_version(request) >= (1, 42)
        else None
    )
    if detach:
        try:
            await eng.execs.start(instance.id, detach=True, console_size=console_size)
        except CommandError as e:
            return json_response({"message": runtime_message(e)}, 500)
        return web.Response(status=200)
    resp, conn = await hijack(request, stream_content_type(request, framed))
    await conn.head_read()
    try:
        try:
            await eng.execs.start(instance.id, detach=False, console_size=console_size)
        except CommandError as e:
            # Docker writes the failure into the stream; the exit code is already recorded.
            text = (runtime_message(e) + "\r\n").encode()
            await conn.write(frame(1, text) if framed else text)
            return resp
        if await _relay(conn, instance, framed):
            eng.execs.detached(instance)
            return resp
        # The exit code must be recorded before the client sees the stream end.
        await eng.execs.finish(instance)
    finally:
        conn.close()
    return resp


async def _relay(conn: Hijacked, instance: Exec, framed: bool) -> bool:
    """Relay until the process's output ends; True if the client typed the detach keys."""
    process = instance.process
    assert process is not None
    escape = (
        detachkeys.EscapeFilter(instance.escape_keys)
        if instance.tty and instance.attach_stdin
        else None
    )
    detached = asyncio.Event()

    async def stdin() -> None:
        while True:
            data = await conn.read()
            if data is None:
                if instance.attach_stdin:
                    process.close_stdin()
                return
            if not instance.attach_stdin:
                continue
            if escape is not None:
                data = escape.feed(data)
            if data:
                await process.write(data)
            if escape is not None and escape.detached:
                detached.set()
                return

    async def output() -> None:
        async for stream_id, data in process.output():
            if stream_id == 1 and not instance.attach_stdout:
                continue
            if stream_id == 2 and not instance.attach_stderr:
                continue
            if not await conn.write(frame(stream_id, data) if framed else data):
                return

    feeder = asyncio.ensure_future(stdin())
    relay = asyncio.ensure_future(output())
    detach = asyncio.ensure_future(detached.wait())
    try:
        await asyncio.wait({relay, detach}, return_when=asyncio.FIRST_COMPLETED)
        return detached.is_set()
    finally:
        for task in (feeder, relay, detach):
            task.cancel()
        await asyncio.gather(feeder, relay, detach, return_exceptions=True)


@routes.post("/exec/{id}/resize")
async def resize(request: web.Request) -> web.StreamResponse:
    engine(request).execs.resize(
        request.match_info["id"], query_int(request, "h", 0) or 0, query_int(request, "w", 0) or 0
    )
    return web.Response(status=201)


@routes.get("/exec/{id}/json")
async def inspect(request: web.Request) -> web.StreamResponse:
    instance = engine(request).execs.get(request.match_info["id"])
    return json_response(
        {
            "ID": instance.id,
            "ContainerID": instance.container_id,
            "Running": instance.running,
            "ExitCode": instance.exit_code,
            "Pid": instance.pid,
            "OpenStdin": instance.attach_stdin,
            "OpenStdout": instance.attach_stdout,
            "OpenStderr": instance.attach_stderr,
            "CanRemove": False,
            "DetachKeys": instance.detach_keys,
            "ProcessConfig": {
                "entrypoint": instance.cmd[0],
                "arguments": instance.cmd[1:],
                "tty": instance.tty,
                "privileged": instance.privileged,
                "user": instance.user,
            },
        }
    )
