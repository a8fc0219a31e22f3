"""Exec routes: create, start (hijacked or detached), resize, inspect."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from dockyard.api.app import Routes, engine, json_response, query_int, read_json
from dockyard.api.streams import Hijacked, frame, hijack, stream_content_type
from dockyard.containers.execs import CommandError, Exec, runtime_message

routes = Routes()


@routes.post("/containers/{id}/exec")
async def create(request: web.Request) -> web.StreamResponse:
    body = await read_json(request, required=True)
    instance = engine(request).execs.create(request.match_info["id"], body)
    return json_response({"Id": instance.id}, 201)


@routes.post("/exec/{id}/start")
async def start(request: web.Request) -> web.StreamResponse:
    eng = engine(request)
    body = await read_json(request)
    instance = eng.execs.get(request.match_info["id"])
    detach = bool(body.get("Detach"))
    tty = body.get("Tty")
    tty = instance.tty if tty is None else bool(tty)
    size = body.get("ConsoleSize")
    console_size = (int(size[0]), int(size[1])) if size and len(size) == 2 else None
    if detach:
        try:
            await eng.execs.start(instance.id, detach=True, tty=tty, console_size=console_size)
        except CommandError as e:
            return json_response({"message": runtime_message(e)}, 500)
        return web.Response(status=200)
    resp, conn = await hijack(request, stream_content_type(request, not tty))
    try:
        try:
            await eng.execs.start(instance.id, detach=False, tty=tty, console_size=console_size)
        except CommandError as e:
            # Docker writes the failure into the stream; the exit code is already recorded.
            # Clients that read the 101 reply through a buffered reader (docker-py) drop
            # bytes that arrive with the headers, so let the headers land first, as they
            # do with Docker while the runtime starts.
            await asyncio.sleep(0.05)
            text = (runtime_message(e) + "\r\n").encode()
            await conn.write(text if tty else frame(1, text))
            return resp
        await _relay(conn, instance, tty)
        # The exit code must be recorded before the client sees the stream end.
        await eng.execs.finish(instance)
    finally:
        conn.close()
    return resp


async def _relay(conn: Hijacked, instance: Exec, tty: bool) -> None:
    process = instance.process
    assert process is not None
    write = conn.write
    read = conn.read

    async def stdin() -> None:
        while True:
            data = await read()
            if data is None:
                if instance.attach_stdin:
                    process.close_stdin()
                return
            if instance.attach_stdin:
                await process.write(data)

    feeder = asyncio.ensure_future(stdin())
    try:
        async for stream_id, data in process.output():
            if stream_id == 1 and not instance.attach_stdout:
                continue
            if stream_id == 2 and not instance.attach_stderr:
                continue
            if not await write(data if tty else frame(stream_id, data)):
                break
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder


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
