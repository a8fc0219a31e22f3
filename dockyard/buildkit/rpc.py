"""gRPC over HTTP/2 on a connection that is already open: what `/grpc` serves.

BuildKit's clients reach the engine through the Engine API: they POST `/grpc` with
`Upgrade: h2c`, get `101 Switching Protocols`, and from then on speak HTTP/2 with the
prior-knowledge preface on that same socket, with gRPC on top. Neither gRPC library
for Python runs on a connection someone else accepted, so this module is the small
part of gRPC that BuildKit needs, on the sans-I/O `h2` state machine:

* the length-prefixed message framing (`frame`, `Deframer`): a 1-byte compressed flag
  (always 0 here: no compression is offered) and a 4-byte big-endian length;
* a server (`serve`): each request stream is a `ServerCall`, dispatched by its `:path`
  (`/<package>.<Service>/<Method>`) to a handler; the reply is `:status 200` headers,
  the messages, then trailers with `grpc-status` and `grpc-message`. An unknown method
  gets `UNIMPLEMENTED`, a handler's `RpcError` its own status, anything else `UNKNOWN`
  (logged). A stream the client resets cancels its handler.
* a client (`Client`) for `/session`, where the roles turn: the BuildKit client serves
  on its end of a connection it opened, and the daemon sends the HTTP/2 preface and
  calls it. `ClientCall` streams both ways; a non-OK status is raised as `RpcError`
  after the messages before it; cancelling a call resets its stream; a closed
  connection ends every call with UNAVAILABLE.

Flow control follows what the application consumes: received data is acknowledged as
`ServerCall.recv` hands it over, and sends wait for the peer's window, so a slow reader
on either side holds the other back instead of filling memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar
from urllib.parse import quote, unquote

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

log = logging.getLogger(__name__)

MAX_MESSAGE = 16 << 20  # BuildKit's own limit for one message (both directions)
_PREFIX = struct.Struct(">BI")


class Status(enum.IntEnum):
    """gRPC status codes (the numbers are the protocol's)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class RpcError(Exception):
    """A call ended with a gRPC status other than OK."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ProtocolViolation(RpcError):
    def __init__(self, message: str) -> None:
        super().__init__(Status.INTERNAL, message)


def frame(message: bytes) -> bytes:
    """One gRPC message as it travels in DATA frames."""
    return _PREFIX.pack(0, len(message)) + message


class Deframer:
    """Cuts a byte stream into gRPC messages, whatever the DATA frame boundaries were."""

    def __init__(self, limit: int = MAX_MESSAGE) -> None:
        self._buffer = bytearray()
        self._limit = limit

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        messages = []
        while len(self._buffer) >= _PREFIX.size:
            compressed, length = _PREFIX.unpack_from(self._buffer)
            if compressed:
                raise ProtocolViolation("compressed message, but no compression was offered")
            if length > self._limit:
                raise RpcError(
                    Status.RESOURCE_EXHAUSTED,
                    f"received message larger than max ({length} vs. {self._limit})",
                )
            end = _PREFIX.size + length
            if len(self._buffer) < end:
                break
            messages.append(bytes(self._buffer[_PREFIX.size : end]))
            del self._buffer[:end]
        return messages

    @property
    def pending(self) -> bool:
        """Whether part of a message is still waiting for the rest."""
        return bool(self._buffer)


def status_message(message: str) -> str:
    """`grpc-message` is percent-encoded (printable ASCII other than % stays as it is)."""
    return quote(message, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")


class Transport(Protocol):
    """Both directions of the connection the HTTP/2 frames travel on."""

    async def read(self) -> bytes | None: ...

    async def write(self, data: bytes) -> bool: ...

    def close(self) -> None: ...


class _Call:
    """What both ends of a call share: incoming messages, cut out of DATA frames and
    handed over in order, with the window given back as they are consumed."""

    def __init__(self, connection: _Connection, stream_id: int, method: str) -> None:
        self._connection = connection
        self.stream_id = stream_id
        self.method = method
        self._deframer = Deframer()
        self._messages: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._unacked = 0  # received bytes not yet given back to the peer's window
        self.broken: RpcError | None = None  # what was wrong with the peer's messages

    # -- what the connection feeds in ------------------------------------------

    def _data(self, data: bytes, flow_controlled: int) -> None:
        try:
            messages = [] if self.broken else self._deframer.feed(data)
        except RpcError as e:
            self.broken = e
            self._messages.put_nowait(None)
            messages = []
        for message in messages:
            self._messages.put_nowait(message)
        self._unacked += flow_controlled
        # While whole messages wait to be taken, hold the window back; otherwise (the
        # rest of a message is needed to make progress) open it at once.
        if self._messages.empty():
            self._acknowledge()

    def _acknowledge(self) -> None:
        self._connection.consumed(self.stream_id, self._unacked)
        self._unacked = 0

    def _end(self) -> None:
        if self._deframer.pending and self.broken is None:
            self.broken = ProtocolViolation(f"{self.method}: stream ended inside a message")
        self._messages.put_nowait(None)

    @property
    def ready(self) -> bool:
        """Whether a message (or the end) can be taken without waiting."""
        return not self._messages.empty()

    async def _next(self) -> bytes | None:
        message = await self._messages.get()
        if message is None:
            self._messages.put_nowait(None)  # stays ended for later readers
        if self._unacked:
            self._acknowledge()
            await self._connection.flush()
        return message


class ServerCall(_Call):
    """One incoming call: its method, request metadata and both message directions."""

    def __init__(self, connection: _Connection, stream_id: int, method: str) -> None:
        super().__init__(connection, stream_id, method)
        self.metadata: dict[str, str] = {}
        self._headers_sent = False
        self.ended = False  # the response (trailers) went out, or the stream was reset

    async def recv(self) -> bytes | None:
        """The next request message; None once the client has sent its last."""
        message = await self._next()
        if message is None and self.broken is not None:
            raise self.broken
        return message

    async def send(self, message: bytes) -> None:
        if not self._headers_sent:
            self._send_headers()
        await self._connection.send_data(self.stream_id, frame(message))

    def _send_headers(self) -> None:
        self._headers_sent = True
        self._connection.send_headers(
            self.stream_id,
            [(":status", "200"), ("content-type", "application/grpc")],
            end_stream=False,
        )

    async def finish(self, status: Status = Status.OK, message: str = "") -> None:
        """Send the trailers (a trailers-only response if nothing was sent before)."""
        if self.ended:
            return
        self.ended = True
        trailers = [("grpc-status", str(int(status)))]
        if message:
            trailers.append(("grpc-message", status_message(message)))
        if self._headers_sent:
            self._connection.send_headers(self.stream_id, trailers, end_stream=True)
        else:
            self._headers_sent = True
            head = [(":status", "200"), ("content-type", "application/grpc")]
            self._connection.send_headers(self.stream_id, head + trailers, end_stream=True)
        await self._connection.flush()


Handler = Callable[[ServerCall], Awaitable[None]]
# request metadata of an outgoing call: a mapping, or pairs when a key repeats
Metadata = Mapping[str, str] | Iterable[tuple[str, str]]


@dataclass
class _Stream:
    call: ServerCall
    task: asyncio.Task[None] | None = None


@dataclass
class _Connection:
    """The HTTP/2 connection: one reader loop, writes serialized, windows awaited."""

    transport: Transport
    h2conn: h2.connection.H2Connection
    streams: dict[int, _Stream] = field(default_factory=dict)
    window_open: asyncio.Event = field(default_factory=asyncio.Event)
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closed: bool = False

    async def flush(self) -> None:
        async with self.write_lock:
            data = self.h2conn.data_to_send()
            if data and not self.closed and not await self.transport.write(data):
                self.closed = True

    def consumed(self, stream_id: int, length: int) -> None:
        if length and not self.closed:
            with contextlib.suppress(h2.exceptions.StreamClosedError, KeyError):
                self.h2conn.acknowledge_received_data(length, stream_id)

    def send_headers(
        self, stream_id: int, headers: list[tuple[str, str]], *, end_stream: bool
    ) -> None:
        if self.closed:
            return
        with contextlib.suppress(h2.exceptions.StreamClosedError):
            self.h2conn.send_headers(stream_id, headers, end_stream=end_stream)

    async def send_data(self, stream_id: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self.closed:
                raise ConnectionResetError("the client went away")
            try:
                window = self.h2conn.local_flow_control_window(stream_id)
            except h2.exceptions.StreamClosedError:
                raise ConnectionResetError("the call was cancelled") from None
            size = min(window, self.h2conn.max_outbound_frame_size, len(view))
            if size <= 0:
                self.window_open.clear()
                await self.flush()
                await self.window_open.wait()
                continue
            self.h2conn.send_data(stream_id, bytes(view[:size]))
            view = view[size:]
            await self.flush()


async def serve(transport: Transport, handlers: dict[str, Handler]) -> None:
    """Serve gRPC calls on `transport` until the client closes it."""
    config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
    connection = _Connection(transport, h2.connection.H2Connection(config=config))
    h2conn = connection.h2conn
    h2conn.local_settings = h2.settings.Settings(
        client=False,
        initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20,
        },
    )
    h2conn.initiate_connection()
    # A bigger connection window than the default 64 KiB: every stream shares it.
    h2conn.increment_flow_control_window((16 << 20) - 65535)
    await connection.flush()
    try:
        while not connection.closed:
            data = await transport.read()
            if not data:
                break
            try:
                events = h2conn.receive_data(data)
            except h2.exceptions.ProtocolError as e:
                log.info("gRPC connection: protocol error from the client: %s", e)
                break
            for event in events:
                _dispatch(connection, event, handlers)
            await connection.flush()
    finally:
        connection.closed = True
        connection.window_open.set()
        tasks = [s.task for s in connection.streams.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        transport.close()


def _dispatch(
    connection: _Connection, event: h2.events.Event, handlers: dict[str, Handler]
) -> None:
    if isinstance(event, h2.events.RequestReceived):
        headers = {str(k): str(v) for k, v in event.headers or ()}
        stream_id = event.stream_id or 0
        call = ServerCall(connection, stream_id, headers.get(":path", ""))
        call.metadata = {k: v for k, v in headers.items() if not k.startswith(":")}
        stream = _Stream(call)
        connection.streams[stream_id] = stream
        stream.task = asyncio.create_task(_run(connection, stream, handlers))
        if event.stream_ended is not None:
            call._end()
    elif isinstance(event, h2.events.DataReceived):
        found = connection.streams.get(event.stream_id or 0)
        if found is not None:
            found.call._data(event.data or b"", event.flow_controlled_length or 0)
        else:
            connection.consumed(event.stream_id or 0, event.flow_controlled_length or 0)
    elif isinstance(event, h2.events.StreamEnded):
        found = connection.streams.get(event.stream_id or 0)
        if found is not None:
            found.call._end()
    elif isinstance(event, h2.events.StreamReset):
        found = connection.streams.pop(event.stream_id or 0, None)
        if found is not None:
            found.call.ended = True
            if found.task is not None:
                found.task.cancel()  # the client cancelled the call
        connection.window_open.set()
    elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
        connection.window_open.set()
    elif isinstance(event, h2.events.ConnectionTerminated):
        connection.closed = True
        connection.window_open.set()


async def _run(connection: _Connection, stream: _Stream, handlers: dict[str, Handler]) -> None:
    call = stream.call
    handler = handlers.get(call.method)
    started = time.monotonic()
    try:
        if handler is None:
            await call.finish(Status.UNIMPLEMENTED, f"unknown method {call.method}")
            return
        await handler(call)
        await call.finish()
    except RpcError as e:
        with contextlib.suppress(ConnectionError):
            await call.finish(e.status, e.message)
    except (ConnectionError, asyncio.CancelledError):
        pass  # the client went away or reset the call: nobody to answer
    except Exception as e:
        log.exception("gRPC call %s failed", call.method)
        with contextlib.suppress(ConnectionError):
            await call.finish(Status.UNKNOWN, f"{type(e).__name__}: {e}")
    finally:
        connection.streams.pop(call.stream_id, None)
        log.debug("gRPC %s served in %.1f ms", call.method, (time.monotonic() - started) * 1000)


# -- the client (the daemon calling a BuildKit session) ---------------------------


class ClientCall(_Call):
    """One outgoing call: send requests, `close_send()`, read responses; a status other
    than OK is raised by `recv()` once the responses before it were read."""

    def __init__(self, connection: _Connection, stream_id: int, method: str) -> None:
        super().__init__(connection, stream_id, method)
        self.status: Status | None = None
        self.status_message = ""
        self.done = asyncio.Event()

    async def send(self, message: bytes) -> None:
        await self._connection.send_data(self.stream_id, frame(message))

    async def close_send(self) -> None:
        """No more requests (half-close)."""
        if not self._connection.closed:
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self._connection.h2conn.end_stream(self.stream_id)
            await self._connection.flush()

    async def recv(self) -> bytes | None:
        """The next response; None after the last one of a call that ended OK."""
        message = await self._next()
        if message is not None:
            return message
        await self.done.wait()
        if self.broken is not None:
            raise self.broken
        if self.status != Status.OK:
            raise RpcError(self.status or Status.UNKNOWN, self.status_message)
        return None

    async def cancel(self) -> None:
        """Give up on the call (RST_STREAM CANCEL), as a Go client does on cancellation."""
        if not self.done.is_set() and not self._connection.closed:
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self._connection.h2conn.reset_stream(self.stream_id, h2.errors.ErrorCodes.CANCEL)
            await self._connection.flush()
        self._finish(Status.CANCELLED, "call cancelled")

    def _headers(self, headers: dict[str, str]) -> None:
        if headers.get(":status", "200") != "200" and self.status is None:
            self.status = Status.UNKNOWN
            self.status_message = f"unexpected HTTP status code {headers[':status']}"
        if "grpc-status" in headers and self.status is None:
            try:
                self.status = Status(int(headers["grpc-status"]))
            except ValueError:
                self.status = Status.UNKNOWN
            self.status_message = unquote(headers.get("grpc-message", ""))

    def _finish(self, status: Status, message: str) -> None:
        if self.status is None:
            self.status, self.status_message = status, message
        self._messages.put_nowait(None)
        self.done.set()


class Client:
    """A gRPC client on a connection the peer opened: `run()` reads it until it closes,
    calls are made meanwhile. Every call ends when the connection does."""

    def __init__(self, transport: Transport) -> None:
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self._connection = _Connection(transport, h2.connection.H2Connection(config=config))
        self._connection.h2conn.local_settings = h2.settings.Settings(
            client=True,
            initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20},
        )
        # The preface goes out with the first write, whether that is run()'s or a call's.
        self._connection.h2conn.initiate_connection()
        self._connection.h2conn.increment_flow_control_window((16 << 20) - 65535)
        self._calls: dict[int, ClientCall] = {}
        self.closed = asyncio.Event()

    async def run(self) -> None:
        connection = self._connection
        h2conn = connection.h2conn
        await connection.flush()
        try:
            while not connection.closed:
                data = await connection.transport.read()
                if not data:
                    break
                try:
                    events = h2conn.receive_data(data)
                except h2.exceptions.ProtocolError as e:
                    log.info("gRPC client connection: protocol error from the server: %s", e)
                    break
                for event in events:
                    self._dispatch(event)
                await connection.flush()
        finally:
            connection.closed = True
            connection.window_open.set()
            for call in list(self._calls.values()):
                call._finish(Status.UNAVAILABLE, "the session's connection closed")
            self._calls.clear()
            connection.transport.close()
            self.closed.set()

    async def open(self, method: str, metadata: Metadata | None = None) -> ClientCall:
        """Start a call; `metadata` may repeat a key (as a sequence of pairs), as gRPC
        metadata may."""
        connection = self._connection
        if connection.closed:
            raise RpcError(Status.UNAVAILABLE, "the session's connection closed")
        stream_id = connection.h2conn.get_next_available_stream_id()
        call = ClientCall(connection, stream_id, method)
        self._calls[stream_id] = call
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", method),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("user-agent", "dockyard"),
        ]
        pairs = metadata.items() if isinstance(metadata, Mapping) else metadata or ()
        headers += [(key.lower(), value) for key, value in pairs]
        connection.send_headers(stream_id, headers, end_stream=False)
        await connection.flush()
        return call

    async def unary(
        self,
        method: str,
        request: Message,
        response_type: type[Resp],
        metadata: Metadata | None = None,
    ) -> Resp:
        call = await self.open(method, metadata)
        try:
            await call.send(request.SerializeToString())
            await call.close_send()
            data = await call.recv()
            if data is None:
                raise ProtocolViolation(f"{method}: no response message")
            while await call.recv() is not None:
                pass
        except asyncio.CancelledError:
            await call.cancel()
            raise
        response = response_type()
        response.ParseFromString(data)
        return response

    def _dispatch(self, event: h2.events.Event) -> None:
        stream_id = getattr(event, "stream_id", None) or 0
        call = self._calls.get(stream_id)
        if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
            if call is not None:
                call._headers({str(k): str(v) for k, v in event.headers or ()})
        elif isinstance(event, h2.events.DataReceived):
            if call is not None:
                call._data(event.data or b"", event.flow_controlled_length or 0)
            else:
                self._connection.consumed(stream_id, event.flow_controlled_length or 0)
        elif isinstance(event, h2.events.StreamEnded):
            if call is not None:
                call._end()
                call._finish(Status.INTERNAL, "server closed the stream without sending trailers")
                del self._calls[stream_id]
        elif isinstance(event, h2.events.StreamReset):
            if call is not None:
                call._finish(Status.CANCELLED, "the server reset the call")
                del self._calls[stream_id]
            self._connection.window_open.set()
        elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            self._connection.window_open.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._connection.closed = True
            self._connection.window_open.set()


# -- typed handlers -------------------------------------------------------------


class Message(Protocol):
    """What protobuf's generated message classes offer (the part used here)."""

    def SerializeToString(self) -> bytes: ...

    def ParseFromString(self, data: bytes, /) -> int: ...


Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)


def unary(
    request_type: type[Req], function: Callable[[Req, ServerCall], Awaitable[Resp]]
) -> Handler:
    """A handler for a call with one request and one response message."""

    async def handle(call: ServerCall) -> None:
        request = await _one_request(call, request_type)
        response = await function(request, call)
        await call.send(response.SerializeToString())

    return handle


def server_stream(
    request_type: type[Req], function: Callable[[Req, ServerCall], AsyncIterator[Resp]]
) -> Handler:
    """A handler for a call with one request and a stream of responses."""

    async def handle(call: ServerCall) -> None:
        request = await _one_request(call, request_type)
        async for response in function(request, call):
            await call.send(response.SerializeToString())

    return handle


async def _one_request(call: ServerCall, request_type: type[Req]) -> Req:
    data = await call.recv()
    if data is None:
        raise ProtocolViolation(f"{call.method}: no request message")
    request = request_type()
    try:
        request.ParseFromString(data)
    except Exception as e:  # protobuf's DecodeError, or a RuntimeWarning turned error
        raise RpcError(Status.INTERNAL, f"grpc: error unmarshalling request: {e}") from None
    return request


def method_path(service: str, method: str) -> str:
    """The `:path` of a method: `/<package>.<Service>/<Method>`."""
    return f"/{service}/{method}"


def handler_table(service: str, methods: Iterable[tuple[str, Handler]]) -> dict[str, Handler]:
    return {method_path(service, name): handler for name, handler in methods}
