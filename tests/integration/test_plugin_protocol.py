"""The engine's plugin client against a plugin written without the SDK (stdlib HTTP server).

Covers the wire rules of the protocol spec (P1-P10): request shape, what counts
as success, error texts naming the plugin and the call, retries of transport
failures only, timeouts of hung plugins, and first-use activation.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from dockyard.plugins.client import PluginClient, PluginError
from dockyard.plugins.discovery import Discovery, Endpoint
from dockyard.plugins.legacy import LegacyPlugins
from dockyard.plugins.protocol import Empty
from dockyard.plugins.protocol.ipam import IpamDriverClient, RequestPoolRequest
from dockyard.plugins.protocol.network import NetworkDriverClient
from dockyard.plugins.protocol.volume import VolumeDriverClient
from tests.bare_plugin import BarePlugin, Raw, bind_dead_socket


def client_for(
    path: str, *, retry: float = 0.0, cap: float = 5.0, name: str = "bare"
) -> PluginClient:
    return PluginClient(name, Endpoint("unix", path), retry_window=retry, timeout_cap=cap)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def _with(client: PluginClient, coro):  # type: ignore[no-untyped-def]
    try:
        return await coro
    finally:
        await client.close()


def test_requests_look_like_dockers(tmp_path: Path) -> None:
    sock = str(tmp_path / "p.sock")
    with BarePlugin(
        ["VolumeDriver"], {"/VolumeDriver.Create": {}, "/VolumeDriver.List": {"Volumes": []}}
    ).serve_unix(sock) as plugin:
        client = client_for(sock)
        volumes = VolumeDriverClient(client)

        async def go() -> None:
            await volumes.create("v1", {"a": "b"})
            await volumes.list()
            await client.call("Plugin.Activate", None, Empty)

        run(_with(client, go()))
    create, listing, activate = (
        plugin.calls[1:] if plugin.calls[0].path == "/Plugin.Activate" else plugin.calls
    )
    assert create.path == "/VolumeDriver.Create"
    assert create.headers["Accept"] == "application/vnd.docker.plugins.v1.2+json"
    assert "Content-Type" not in create.headers
    assert create.body == b'{"Name":"v1","Opts":{"a":"b"}}\n'
    assert listing.body == b"{}\n"  # List and Capabilities send {}
    assert activate.body == b"" and activate.headers["Content-Length"] == "0"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Raw(201, b"{}"), "VolumeDriver.Mount: {}"),
        (Raw(204, b""), "VolumeDriver.Mount: HTTP 204 with an empty body"),
        (Raw(500, b'{"Err":"disk on fire"}'), "VolumeDriver.Mount: disk on fire"),
        (
            Raw(500, b"<html><body>Internal Server Error</body></html>"),
            "<html><body>Internal Server Error",
        ),
        (Raw(200, b""), "VolumeDriver.Mount: empty reply (EOF)"),
        (Raw(200, b"\x00\x01garbage"), "invalid JSON reply"),
        (Raw(200, b'{"Err":"no such volume"}'), "VolumeDriver.Mount: no such volume"),
        (Raw(200, b'{"Mountpoint": 7}'), "invalid reply: json: cannot unmarshal number"),
    ],
)
def test_failures_name_the_plugin_and_the_call(tmp_path: Path, reply: Raw, expected: str) -> None:
    sock = str(tmp_path / "p.sock")
    with BarePlugin(["VolumeDriver"], {"/VolumeDriver.Mount": reply}).serve_unix(sock) as plugin:
        client = client_for(sock, name="myvol")
        with pytest.raises(PluginError) as caught:
            run(_with(client, VolumeDriverClient(client).mount("v", "0" * 64)))
    message = caught.value.message
    assert message.startswith("plugin myvol failed with error: ")
    assert expected in message
    assert len(plugin.calls_to("/VolumeDriver.Mount")) == 1  # HTTP errors are never retried


def test_replies_decode_case_insensitively(tmp_path: Path) -> None:
    sock = str(tmp_path / "p.sock")
    with BarePlugin(
        ["VolumeDriver"], {"/VolumeDriver.Mount": {"mountPoint": "/data", "extra": 1}}
    ).serve_unix(sock):
        client = client_for(sock)
        assert run(_with(client, VolumeDriverClient(client).mount("v", "1" * 64))) == "/data"


def test_ipam_errors_come_in_error_and_network_404_is_optional(tmp_path: Path) -> None:
    sock = str(tmp_path / "p.sock")
    replies = {
        "/IpamDriver.RequestPool": {"Error": "pool exhausted", "Err": ""},
        "/NetworkDriver.ProgramExternalConnectivity": Raw(404, b"404 page not found"),
        "/NetworkDriver.Leave": {"Err": "busy"},
    }
    with BarePlugin(["IpamDriver", "NetworkDriver"], replies).serve_unix(sock):
        client = client_for(sock)

        async def go() -> None:
            with pytest.raises(PluginError, match=r"IpamDriver\.RequestPool: pool exhausted"):
                await IpamDriverClient(client).request_pool(
                    RequestPoolRequest(address_space="local")
                )
            network = NetworkDriverClient(client)
            await network.program_external_connectivity("n" * 64, "e" * 64, {})
            with pytest.raises(PluginError, match=r"NetworkDriver\.Leave: busy"):
                await network.leave("n" * 64, "e" * 64)

        run(_with(client, go()))


def test_connection_refused_is_retried_with_backoff_then_fails(tmp_path: Path) -> None:
    sock = str(tmp_path / "dead.sock")
    bind_dead_socket(sock)
    client = client_for(sock, retry=4.0, name="dead")
    start = time.monotonic()
    with pytest.raises(PluginError) as caught:
        run(_with(client, VolumeDriverClient(client).path("v")))
    elapsed = time.monotonic() - start
    # attempts at 0, 1 and 3 s; the next pause (4 s) would end past the 4 s window
    assert 2.9 < elapsed < 4.0
    assert (
        "plugin dead failed with error: VolumeDriver.Path: connecting to unix://"
        in caught.value.message
    )
    assert "Connection refused" in caught.value.message


def test_a_plugin_that_comes_up_during_the_retries_is_used(tmp_path: Path) -> None:
    sock = str(tmp_path / "late.sock")
    plugin = BarePlugin(["VolumeDriver"], {"/VolumeDriver.Path": {"Mountpoint": "/late"}})
    client = client_for(sock, retry=10.0)

    async def go() -> str:
        loop = asyncio.get_running_loop()
        loop.call_later(1.5, plugin.serve_unix, sock)
        return await VolumeDriverClient(client).path("v")

    try:
        assert run(_with(client, go())) == "/late"
    finally:
        plugin.stop()


def test_a_hung_plugin_fails_within_its_timeout_without_blocking_others(tmp_path: Path) -> None:
    hung, fine = str(tmp_path / "hung.sock"), str(tmp_path / "fine.sock")
    with (
        BarePlugin(
            ["NetworkDriver"], {"/NetworkDriver.Leave": Raw(200, b"{}", delay=30)}
        ).serve_unix(hung),
        BarePlugin(["NetworkDriver"], {"/NetworkDriver.Leave": {}}).serve_unix(fine),
    ):
        slow, quick = client_for(hung, cap=1.5, name="hung"), client_for(fine)

        async def go() -> tuple[float, float]:
            start = time.monotonic()
            stuck = asyncio.ensure_future(NetworkDriverClient(slow).leave("n", "e"))
            await NetworkDriverClient(quick).leave("n", "e")
            other = time.monotonic() - start
            with pytest.raises(
                PluginError,
                match=r"plugin hung failed with error: NetworkDriver.Leave: timed out after 1.5s",
            ):
                await stuck
            await slow.close()
            return other, time.monotonic() - start

        other, total = run(_with(quick, go()))
    assert other < 1.0
    assert 1.4 < total < 3.0


def test_first_use_activates_once_even_when_concurrent(tmp_path: Path) -> None:
    socks = tmp_path / "run"
    with BarePlugin(
        ["VolumeDriver"],
        {"/Plugin.Activate": Raw(200, b'{"implements":["VolumeDriver"]}', delay=0.3)},
    ).serve_unix(str(socks / "p.sock")) as plugin:
        legacy = LegacyPlugins(Discovery([str(socks)], []), retry_window=1, timeout_cap=5)

        async def go() -> None:
            found = await asyncio.gather(*(legacy.get("p") for _ in range(5)))
            assert all(f is found[0] for f in found)
            assert found[0].implements == ("VolumeDriver",)
            await legacy.get("p")
            await legacy.close()

        run(go())
    assert plugin.paths() == ["/Plugin.Activate"]


def test_unknown_plugin_fails_after_the_retry_window(tmp_path: Path) -> None:
    legacy = LegacyPlugins(
        Discovery([str(tmp_path)], [str(tmp_path)]), retry_window=2, timeout_cap=5
    )
    start = time.monotonic()
    with pytest.raises(Exception, match=r'plugin "nope" not found \(no socket or spec file in '):
        run(legacy.get("nope"))
    assert 0.9 < time.monotonic() - start < 2.5
