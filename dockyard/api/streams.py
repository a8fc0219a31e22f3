"""Streaming replies: stdcopy framing, JSON-lines progress, and connection hijack.

Attach and exec take over the HTTP connection (`101 UPGRADED`, then raw bytes
both ways). A client that half-closes its side (no more stdin) still reads
output until the server closes, so the connection must survive the client's
EOF; aiohttp closes a connection on EOF, so a hijacked connection switches its
protocol object to `_HijackedHandler`, which keeps it open.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import socket
import struct
import termios
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from aiohttp import WSMsgType, web
from aiohttp.web_protocol import RequestHandler

from dockyard.api.app import api_version
from dockyard.errors import DockyardError
from dockyard.registry.progress import Event, Report

log = logging.getLogger(__name__)
T = TypeVar("T")

MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
RAW = "application/vnd.docker.raw-stream"
FRAME_LIMIT = 32 * 1024


def frame(stream: int, data: bytes) -> bytes:
    """Docker's stdcopy framing: 8-byte header (stream id, big-endian length) + payload."""
    out = bytearray()
    for start in range(0, len(data), FRAME_LIMIT):
        chunk = data[start : start + FRAME_LIMIT]
        out += struct.pack(">BxxxL", stream, len(chunk)) + chunk
    return bytes(out)


def stream_content_type(request: web.Request, multiplexed: bool) -> str:
    # Before API 1.42 clients decide framing themselves; they expect raw-stream.
    if api_version(request) < (1, 42):
        return RAW
    return MULTIPLEXED if multiplexed else RAW


class _HijackedHandler(RequestHandler):
    """A request handler whose connection is no longer HTTP: EOF from the client is
    half-close (stdin ended), not the end of the connection."""

    __slots__ = ()

    def eof_received(self) -> bool:  # type: ignore[override]
        parser = self._payload_parser
        if parser is not None:
            parser.feed_eof()
        return True


class _RawReader:
    """Receives the raw bytes of a hijacked connection (aiohttp's payload-parser protocol)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.queue.put_nowait(data)
        return False, b""

    def feed_eof(self) -> None:
        self.queue.put_nowait(None)


class Hijacked:
    """Both directions of a hijacked connection."""

    def __init__(self, request: web.Request, reader: _RawReader) -> None:
        self._request = request
        self._reader = reader
        self._transport = request.transport
        self.closed = False

    async def read(self) -> bytes | None:
        """Next chunk from the client; None once the client has half-closed or gone."""
        return await self._reader.queue.get()

    async def write(self, data: bytes) -> bool:
        """Send bytes; False if the client is gone."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return False
        transport.write(data)
        # Back-pressure: let a slow client drain before reading more container output.
        while transport.get_write_buffer_size() > 1 << 20 and not transport.is_closing():
            await asyncio.sleep(0.01)
        return not transport.is_closing()

    async def head_read(self) -> None:
        """Return once the client has read the reply head (or after a moment).

        Clients that parse the head through a buffered reader and then read the raw
        socket (docker-py) lose whatever arrived in the same read as the head, so the
        first bytes of the stream must not catch up with it. On a unix socket the
        kernel says how much the peer has yet to read (SIOCOUTQ).
        """
        transport = self._transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None or sock.family != socket.AF_UNIX:
            await asyncio.sleep(0.05)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2
        while loop.time() < deadline and transport is not None and not transport.is_closing():
            try:
                queued = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))
            except OSError:
                return
            if queued[0] == 0 and transport.get_write_buffer_size() == 0:
                return
            await asyncio.sleep(0.002)

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()
        self.closed = True


class WebSocketStream:
    """A websocket used as a hijacked connection is: bytes in, bytes out, no framing of
    Docker's own (`/attach/ws`). Output goes as binary messages from API 1.42 on, as text
    before, as moby sends it."""

    def __init__(self, ws: web.WebSocketResponse, *, binary: bool) -> None:
        self._ws = ws
        self._binary = binary
        self.closed = False
        self._closing: asyncio.Future[bool] | None = None

    async def read(self) -> bytes | None:
        message = await self._ws.receive()
        if message.type == WSMsgType.BINARY:
            return bytes(message.data)
        if message.type == WSMsgType.TEXT:
            return str(message.data).encode()
        return None  # closed, closing or failed: the client's input has ended

    async def write(self, data: bytes) -> bool:
        if self._ws.closed:
            return False
        try:
            if self._binary:
                await self._ws.send_bytes(data)
            else:
                await self._ws.send_str(data.decode(errors="replace"))
        except ConnectionResetError:
            return False
        return not self._ws.closed

    async def head_read(self) -> None:
        return None  # websocket frames carry their own boundaries

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._closing = asyncio.ensure_future(self._ws.close())


async def hijack(request: web.Request, content_type: str) -> tuple[web.StreamResponse, Hijacked]:
    """Switch the connection to a raw stream (101 if the client asked to upgrade, else 200)."""
    upgrade = request.headers.get("Upgrade", "").lower() == "tcp" or "upgrade" in (
        request.headers.get("Connection", "").lower()
    )
    if upgrade:
        resp = web.StreamResponse(status=101, reason="UPGRADED")
        resp.headers["Connection"] = "Upgrade"
        resp.headers["Upgrade"] = "tcp"
    else:
        resp = web.StreamResponse(status=200)
        resp.force_close()
    resp.headers["Content-Type"] = content_type
    await resp.prepare(request)
    protocol = request.protocol
    reader = _RawReader()
    if upgrade and protocol is not None:
        protocol.__class__ = _HijackedHandler
        protocol.set_parser(reader)  # type: ignore[arg-type]
    else:
        # No upgrade: nothing more will come from the client.
        reader.feed_eof()
    return resp, Hijacked(request, reader)


async def upgrade(request: web.Request, protocol: str) -> tuple[web.StreamResponse, Hijacked]:
    """Answer `101 Switching Protocols` to `protocol` and take the connection over (`/grpc`
    and `/session`: the client then speaks HTTP/2 on it)."""
    resp = web.StreamResponse(status=101, reason="Switching Protocols")
    resp.headers["Connection"] = "Upgrade"
    resp.headers["Upgrade"] = protocol
    await resp.prepare(request)
    handler = request.protocol
    reader = _RawReader()
    if handler is not None:
        handler.__class__ = _HijackedHandler
        handler.set_parser(reader)  # type: ignore[arg-type]
    return resp, Hijacked(request, reader)


class JSONStream:
    """A chunked reply of JSON messages, one per line, flushed as they are written."""

    def __init__(self, request: web.Request) -> None:
        self._request = request
        self.resp = web.StreamResponse(status=200)
        self.resp.headers["Content-Type"] = "application/json"
        self.resp.enable_chunked_encoding()
        self.started = False

    async def start(self) -> None:
        if not self.started:
            await self.resp.prepare(self._request)
            self.started = True

    async def send(self, message: dict[str, Any]) -> None:
        await self.start()
        await self.resp.write(json.dumps(message, separators=(",", ":")).encode() + b"\r\n")

    async def error(self, message: str, code: int = 1) -> None:
        await self.send({"errorDetail": {"code": code, "message": message}, "error": message})

    async def finish(self) -> web.StreamResponse:
        await self.start()
        await self.resp.write_eof()
        return self.resp


def progress_message(event: Event) -> dict[str, Any]:
    """A transfer event as one of Docker's JSON progress messages (spec §3.5)."""
    if event.aux is not None:
        return {"progressDetail": {}, "aux": event.aux}
    message: dict[str, Any] = {"status": event.status}
    if event.id and event.detail:
        detail: dict[str, int] = {}
        if event.current is not None:
            detail["current"] = event.current
        if event.total:
            detail["total"] = event.total
        message["progressDetail"] = detail
    if event.id:
        message["id"] = event.id
    return message


async def progress_stream(
    request: web.Request,
    work: Callable[[Report], Coroutine[Any, Any, T]],
    headers: dict[str, str] | None = None,
) -> tuple[JSONStream, T | None]:
    """Run `work(report)` while streaming the events it reports (with extra `headers`).

    The reply starts with the first event: an error before it is an ordinary
    error reply with its status code (Docker answers an unknown repository
    with a 404 before streaming), an error after it ends the stream as an
    error message. A client that goes away cancels the work.
    """
    stream = JSONStream(request)
    stream.resp.headers.update(headers or {})
    queue: asyncio.Queue[Event] = asyncio.Queue()
    task = asyncio.create_task(work(queue.put_nowait))
    try:
        while not task.done() or not queue.empty():
            if queue.empty():
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    continue
                event = getter.result()
            else:
                event = queue.get_nowait()
            try:
                await stream.send(progress_message(event))
            except ConnectionError:
                log.info("client went away during %s %s; cancelling", request.method, request.path)
                raise
        try:
            return stream, task.result()
        except DockyardError as e:
            if not stream.started:
                raise
            await stream.error(e.message)
        except Exception as e:
            if not stream.started:
                raise
            log.exception("%s %s failed", request.method, request.path)
            await stream.error(f"internal error: {type(e).__name__}: {e}")
        return stream, None
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
