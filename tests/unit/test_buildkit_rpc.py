"""gRPC over HTTP/2 (`buildkit.rpc`): message framing, and the server driven by a real
HTTP/2 client (h2's client state machine) over a socket pair, plus BuildKit's cache
filters (`buildkit.control`)."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import h2.config
import h2.connection
import h2.events
import pytest

from dockyard.build.cache import CacheRecord
from dockyard.buildkit import rpc
from dockyard.buildkit.control import parse_filters
from dockyard.buildkit.pb import health_pb2

# -- framing --------------------------------------------------------------------


def test_a_message_is_prefixed_with_no_compression_and_its_big_endian_length() -> None:
    assert rpc.frame(b"abc") == b"\x00\x00\x00\x00\x03abc"
    assert rpc.frame(b"") == b"\x00" * 5


def test_messages_are_cut_out_whatever_the_chunk_boundaries() -> None:
    stream = rpc.frame(b"first") + rpc.frame(b"") + rpc.frame(b"x" * 70000)
    for size in (1, 3, 5, 7, 4096, len(stream)):
        deframer = rpc.Deframer()
        found: list[bytes] = []
        for start in range(0, len(stream), size):
            found += deframer.feed(stream[start : start + size])
        assert found == [b"first", b"", b"x" * 70000]
        assert not deframer.pending


def test_half_a_message_is_pending_until_the_rest_arrives() -> None:
    deframer = rpc.Deframer()
    assert deframer.feed(rpc.frame(b"hello")[:7]) == []
    assert deframer.pending
    assert deframer.feed(b"llo") == [b"hello"]


def test_a_compressed_message_is_a_protocol_error() -> None:
    with pytest.raises(rpc.RpcError) as raised:
        rpc.Deframer().feed(b"\x01\x00\x00\x00\x01x")
    assert raised.value.status == rpc.Status.INTERNAL


def test_a_message_over_the_limit_is_refused_before_it_is_buffered() -> None:
    with pytest.raises(rpc.RpcError) as raised:
        rpc.Deframer(limit=10).feed(struct.pack(">BI", 0, 11))
    assert raised.value.status == rpc.Status.RESOURCE_EXHAUSTED
    assert "larger than max (11 vs. 10)" in raised.value.message


def test_status_messages_are_percent_encoded_outside_printable_ascii() -> None:
    assert rpc.status_message("plain: text (ok)") == "plain: text (ok)"
    assert rpc.status_message("100% ünïcode\n") == "100%25 %C3%BCn%C3%AFcode%0A"


# -- the server, against a real HTTP/2 client ------------------------------------


class SocketTransport:
    """The server's end of a socket pair, as `rpc.serve` reads and writes it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def read(self) -> bytes | None:
        return await self.reader.read(65536) or None

    async def write(self, data: bytes) -> bool:
        self.writer.write(data)
        await self.writer.drain()
        return True

    def close(self) -> None:
        self.writer.close()


class Client:
    """A gRPC client made of h2's client state machine, for unary calls."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.conn.initiate_connection()

    async def call(
        self, path: str, request: bytes, *, reset_after_headers: bool = False
    ) -> tuple[list[bytes], dict[str, str]]:
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(
            stream_id,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", path),
                (":authority", "localhost"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ],
        )
        self.conn.send_data(stream_id, rpc.frame(request), end_stream=True)
        deframer = rpc.Deframer(limit=64 << 20)
        messages: list[bytes] = []
        trailers: dict[str, str] = {}
        while True:
            self.writer.write(self.conn.data_to_send())
            await self.writer.drain()
            data = await self.reader.read(65536)
            assert data, "the server closed the connection"
            for event in self.conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    headers = dict(event.headers or ())
                    trailers.update({str(k): str(v) for k, v in headers.items()})
                    if reset_after_headers:
                        self.conn.reset_stream(stream_id)
                        self.writer.write(self.conn.data_to_send())
                        return messages, trailers
                elif isinstance(event, h2.events.DataReceived):
                    messages += deframer.feed(event.data or b"")
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length or 0, stream_id
                    )
                elif isinstance(event, h2.events.TrailersReceived):
                    trailers.update({str(k): str(v) for k, v in event.headers or ()})
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream_id:
                    return messages, trailers


SERVICE = "grpc.health.v1.Health"


async def check(
    request: health_pb2.HealthCheckRequest, call: rpc.ServerCall
) -> health_pb2.HealthCheckResponse:
    if request.service == "broken":
        raise rpc.RpcError(rpc.Status.NOT_FOUND, "no such service: broken")
    if request.service == "bug":
        raise ValueError("a bug")
    return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


async def watch(
    request: health_pb2.HealthCheckRequest, call: rpc.ServerCall
) -> AsyncIterator[health_pb2.HealthCheckRequest]:
    # A stream of messages far bigger than the client's initial window (64 KiB).
    for index in range(int(request.service)):
        yield health_pb2.HealthCheckRequest(service=str(index) * 300_000)


async def forever(call: rpc.ServerCall) -> None:
    await call.send(b"")
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        CANCELLED["handler"].set()
        raise


# set by `forever` when its call is cancelled; made anew in each test's event loop
CANCELLED: dict[str, asyncio.Event] = {}
HANDLERS = {
    **rpc.handler_table(
        SERVICE,
        [
            ("Check", rpc.unary(health_pb2.HealthCheckRequest, check)),
            ("Watch", rpc.server_stream(health_pb2.HealthCheckRequest, watch)),
            ("Forever", forever),
        ],
    )
}


async def with_server(exercise: Callable[[Client], Awaitable[None]]) -> None:
    ours, theirs = socket.socketpair()
    server_streams = await asyncio.open_connection(sock=ours)
    client_streams = await asyncio.open_connection(sock=theirs)
    server = asyncio.create_task(rpc.serve(SocketTransport(*server_streams), HANDLERS))
    try:
        await exercise(Client(*client_streams))
    finally:
        client_streams[1].close()
        await asyncio.wait_for(server, 10)


def test_a_unary_call_gets_its_response_and_an_ok_status() -> None:
    async def exercise(client: Client) -> None:
        request = health_pb2.HealthCheckRequest(service="x").SerializeToString()
        messages, trailers = await client.call(f"/{SERVICE}/Check", request)
        assert trailers[":status"] == "200"
        assert trailers["content-type"] == "application/grpc"
        assert trailers["grpc-status"] == "0"
        reply = health_pb2.HealthCheckResponse()
        reply.ParseFromString(messages[0])
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        # and again on the same connection
        messages, trailers = await client.call(f"/{SERVICE}/Check", request)
        assert len(messages) == 1 and trailers["grpc-status"] == "0"

    asyncio.run(with_server(exercise))


def test_errors_become_grpc_statuses() -> None:
    async def exercise(client: Client) -> None:
        _, unknown = await client.call(f"/{SERVICE}/Nope", b"")
        assert unknown["grpc-status"] == str(int(rpc.Status.UNIMPLEMENTED))
        assert unknown["grpc-message"] == f"unknown method /{SERVICE}/Nope"

        broken = health_pb2.HealthCheckRequest(service="broken").SerializeToString()
        messages, typed = await client.call(f"/{SERVICE}/Check", broken)
        assert messages == []
        assert typed["grpc-status"] == str(int(rpc.Status.NOT_FOUND))
        assert typed["grpc-message"] == "no such service: broken"

        bug = health_pb2.HealthCheckRequest(service="bug").SerializeToString()
        _, untyped = await client.call(f"/{SERVICE}/Check", bug)
        assert untyped["grpc-status"] == str(int(rpc.Status.UNKNOWN))
        assert untyped["grpc-message"] == "ValueError: a bug"

        _, garbage = await client.call(f"/{SERVICE}/Check", b"\xff\xff\xff")
        assert garbage["grpc-status"] == str(int(rpc.Status.INTERNAL))

    asyncio.run(with_server(exercise))


def test_a_stream_larger_than_the_clients_window_arrives_whole() -> None:
    async def exercise(client: Client) -> None:
        request = health_pb2.HealthCheckRequest(service="5").SerializeToString()
        messages, trailers = await client.call(f"/{SERVICE}/Watch", request)
        assert trailers["grpc-status"] == "0"
        decoded = []
        for data in messages:
            message = health_pb2.HealthCheckRequest()
            message.ParseFromString(data)
            decoded.append(message.service)
        assert decoded == [str(i) * 300_000 for i in range(5)]

    asyncio.run(with_server(exercise))


def test_a_call_the_client_resets_cancels_its_handler() -> None:
    async def exercise(client: Client) -> None:
        CANCELLED["handler"] = asyncio.Event()
        await client.call(f"/{SERVICE}/Forever", b"", reset_after_headers=True)
        await client.writer.drain()
        await asyncio.wait_for(CANCELLED["handler"].wait(), 10)

    asyncio.run(with_server(exercise))


# -- BuildKit's cache filters -----------------------------------------------------

RECORD = CacheRecord(
    key="abc123", size=10, created=0, last_used=0, description="/bin/sh -c make all"
)


def test_no_filter_selects_everything() -> None:
    assert parse_filters([]) is None
    assert parse_filters(["", " "]) is None


@pytest.mark.parametrize(
    ("filters", "selected"),
    [
        (["id==abc123"], True),
        (["id==abc"], False),
        (["id~=^abc"], True),
        (["id!=abc123"], False),
        (["type==regular"], True),
        (["type==exec.cachemount"], False),
        (["description~=make"], True),
        (["type==regular,description~=cmake"], False),  # a comma is AND
        (["id==nope", "description~=make"], True),  # alternatives are OR
        (["private"], True),
        (["shared"], False),
        (['id=="abc123"'], True),
    ],
)
def test_filters_select_records_as_buildkit_does(filters: list[str], selected: bool) -> None:
    predicate = parse_filters(filters)
    assert predicate is not None
    assert predicate(RECORD) is selected


@pytest.mark.parametrize("text", ["color==blue", "not a filter", "id~=(", "until=24h"])
def test_filters_that_do_not_parse_are_invalid_arguments(text: str) -> None:
    with pytest.raises(rpc.RpcError) as raised:
        parse_filters([text])
    assert raised.value.status == rpc.Status.INVALID_ARGUMENT


# -- the client (the daemon's side of a session), against the server --------------


async def echo(call: rpc.ServerCall) -> None:
    """Bidirectional: every request comes back, then one last message with the count."""
    count = 0
    while (message := await call.recv()) is not None:
        count += 1
        await call.send(message)
    await call.send(str(count).encode())


async def with_client(exercise: Callable[[rpc.Client], Awaitable[None]]) -> None:
    handlers = {**HANDLERS, f"/{SERVICE}/Echo": echo}
    ours, theirs = socket.socketpair()
    server = asyncio.create_task(
        rpc.serve(SocketTransport(*await asyncio.open_connection(sock=ours)), handlers)
    )
    client = rpc.Client(SocketTransport(*await asyncio.open_connection(sock=theirs)))
    reader = asyncio.create_task(client.run())
    try:
        await exercise(client)
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)
        await asyncio.wait_for(reader, 10)


def test_the_client_makes_unary_calls() -> None:
    async def exercise(client: rpc.Client) -> None:
        request = health_pb2.HealthCheckRequest(service="x")
        for _ in range(3):
            reply = await client.unary(f"/{SERVICE}/Check", request, health_pb2.HealthCheckResponse)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING

    asyncio.run(with_client(exercise))


def test_the_client_raises_the_servers_status() -> None:
    async def exercise(client: rpc.Client) -> None:
        broken = health_pb2.HealthCheckRequest(service="broken")
        with pytest.raises(rpc.RpcError) as raised:
            await client.unary(f"/{SERVICE}/Check", broken, health_pb2.HealthCheckResponse)
        assert raised.value.status == rpc.Status.NOT_FOUND
        assert raised.value.message == "no such service: broken"
        with pytest.raises(rpc.RpcError) as unknown:
            await client.unary(f"/{SERVICE}/Nope", broken, health_pb2.HealthCheckResponse)
        assert unknown.value.status == rpc.Status.UNIMPLEMENTED

    asyncio.run(with_client(exercise))


def test_the_client_streams_both_ways_beyond_the_windows() -> None:
    async def exercise(client: rpc.Client) -> None:
        call = await client.open(f"/{SERVICE}/Echo", {"dir-name": "context"})
        chunks = [bytes([i]) * 200_000 for i in range(8)]  # 1.6 MB each way
        for chunk in chunks:
            await call.send(chunk)
        await call.close_send()
        received = []
        while (message := await call.recv()) is not None:
            received.append(message)
        assert received == [*chunks, b"8"]
        assert call.status == rpc.Status.OK

    asyncio.run(with_client(exercise))


def test_cancelling_a_client_call_cancels_the_servers_handler() -> None:
    async def exercise(client: rpc.Client) -> None:
        CANCELLED["handler"] = asyncio.Event()
        call = await client.open(f"/{SERVICE}/Forever")
        await call.close_send()
        assert await call.recv() == b""  # the handler is running
        await call.cancel()
        await asyncio.wait_for(CANCELLED["handler"].wait(), 10)
        with pytest.raises(rpc.RpcError) as raised:
            await call.recv()
        assert raised.value.status == rpc.Status.CANCELLED

    asyncio.run(with_client(exercise))


def test_a_closed_connection_ends_the_calls_in_flight() -> None:
    async def exercise(client: rpc.Client) -> None:
        CANCELLED["handler"] = asyncio.Event()
        call = await client.open(f"/{SERVICE}/Forever")
        await call.close_send()
        assert await call.recv() == b""
        client._connection.transport.close()  # the peer hangs up
        with pytest.raises(rpc.RpcError) as raised:
            await call.recv()
        assert raised.value.status == rpc.Status.UNAVAILABLE
        await client.closed.wait()
        with pytest.raises(rpc.RpcError):
            await client.open(f"/{SERVICE}/Check")

    asyncio.run(with_client(exercise))
