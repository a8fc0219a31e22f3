"""`GET /containers/{id}/attach/ws`: a container's stdio over a websocket, as Docker serves it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp

from tests.harness import Daemon

IMAGE = "demo/busybox:1"


async def _attach(
    daemon: Daemon,
    ref: str,
    query: str,
    version: str,
    script: Callable[[aiohttp.ClientWebSocketResponse], Awaitable[None]],
) -> list[aiohttp.WSMessage]:
    """Open the websocket, run `script(ws)`, collect what arrives until the server closes."""
    connector = aiohttp.UnixConnector(path=daemon.socket)
    async with aiohttp.ClientSession(connector=connector) as session:
        url = f"http://localhost/v{version}/containers/{ref}/attach/ws?{query}"
        async with session.ws_connect(url) as ws:
            await script(ws)
            received = []
            async for message in ws:
                received.append(message)
            return received


def test_output_arrives_raw_and_input_reaches_the_container(daemon: Daemon, name: str) -> None:
    line = "hi there and stuff and things, words!"
    daemon.cli("create", "--name", name, IMAGE, "printf", line, check=True)

    async def start(ws: aiohttp.ClientWebSocketResponse) -> None:
        await asyncio.to_thread(daemon.cli, "start", name)

    try:
        received = asyncio.run(_attach(daemon, name, "stdout=1&stream=1&logs=1", "1.45", start))
        assert [m.type for m in received] == [aiohttp.WSMsgType.BINARY]
        assert received[0].data == line.encode()  # no multiplexing header on a websocket
        # Clients of API 1.41 and older get text frames, as moby sent them.
        old = asyncio.run(_attach(daemon, name, "stdout=1&logs=1", "1.41", _nothing))
        assert [(m.type, m.data) for m in old] == [(aiohttp.WSMsgType.TEXT, line)]
    finally:
        daemon.cli("rm", "-f", name)

    daemon.cli("run", "-d", "-i", "--name", name, IMAGE, "cat", check=True)

    async def talk(ws: aiohttp.ClientWebSocketResponse) -> None:
        await ws.send_bytes(b"echoed back\n")
        reply = await ws.receive(timeout=30)
        assert reply.data == b"echoed back\n"
        await ws.close()

    try:
        asyncio.run(_attach(daemon, name, "stdin=1&stdout=1&stream=1", "1.45", talk))
        # Closing the websocket detaches; the container goes on.
        assert daemon.cli("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true"
    finally:
        daemon.cli("rm", "-f", name)


async def _nothing(ws: aiohttp.ClientWebSocketResponse) -> None:
    return None


def test_unknown_containers_and_bad_detach_keys_are_refused(daemon: Daemon) -> None:
    assert daemon.api("GET", "/v1.45/containers/nope/attach/ws?stream=1")[0] == 404
    daemon.cli("create", "--name", "ws-keys", IMAGE, "true", check=True)
    try:
        status, body = daemon.api("GET", "/v1.45/containers/ws-keys/attach/ws?detachKeys=ctrl-")
        assert status == 400 and "Invalid detach keys" in body["message"]
    finally:
        daemon.cli("rm", "-f", "ws-keys")
