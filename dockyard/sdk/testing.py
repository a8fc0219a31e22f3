"""Helpers for testing plugins: run one in a background thread, call it, check it.

    from dockyard.sdk.testing import running

    def test_my_volume_plugin(tmp_path):
        with running(MyVolumes(tmp_path)) as plugin:
            assert plugin.call("VolumeDriver.Create", {"Name": "v"}) == (200, {})
            report = plugin.check()          # the conformance checker
            assert report.ok, report.render()

The plugin runs on its own event loop in a thread, on a unix socket in a
private temporary directory, and is stopped when the block ends.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from dockyard.sdk.base import Plugin
from dockyard.sdk.server import serve

if TYPE_CHECKING:
    from dockyard.plugins.check import CheckReport


class Running:
    """A plugin served in a thread: its socket and ways to talk to it."""

    def __init__(self, socket_path: str) -> None:
        self.socket = socket_path

    def call(self, method: str, body: Any = None) -> tuple[int, Any]:
        """POST to `/<method>` as an engine does; returns the status and decoded JSON."""
        import http.client

        path = self.socket

        class Conn(http.client.HTTPConnection):
            def connect(self) -> None:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(path)

        conn = Conn("plugin", timeout=30)
        data = b"" if body is None else json.dumps(body).encode() + b"\n"
        conn.request(
            "POST",
            "/" + method,
            body=data,
            headers={"Accept": "application/vnd.docker.plugins.v1.2+json"},
        )
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        try:
            return resp.status, json.loads(raw) if raw.strip() else None
        except json.JSONDecodeError:
            return resp.status, raw

    def check(self, timeout: float = 30.0) -> CheckReport:
        """Run the conformance checker (`dockyard plugin check`) against the plugin:
        a report with `.ok`, `.results` and `.render()`."""
        from dockyard.plugins import check
        from dockyard.plugins.client import PluginClient
        from dockyard.plugins.discovery import Endpoint

        async def go() -> CheckReport:
            client = PluginClient("plugin", Endpoint("unix", self.socket), retry_window=0)
            try:
                return await check.run(client, timeout=timeout)
            finally:
                await client.close()

        return asyncio.run(go())


@contextmanager
def running(
    plugins: Plugin | Sequence[Plugin], socket_path: str | None = None
) -> Iterator[Running]:
    """Serve `plugins` in a background thread for the duration of the block."""
    workdir = None
    if socket_path is None:
        workdir = tempfile.mkdtemp(prefix="dyplug-")
        socket_path = os.path.join(workdir, "plugin.sock")
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    started = threading.Event()
    failure: list[BaseException] = []

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(
                serve(plugins, socket=socket_path, stop=stop, ready=lambda _: started.set())
            )
        except BaseException as e:
            failure.append(e)
            started.set()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    started.wait(30)
    if failure:
        raise failure[0]
    try:
        yield Running(socket_path)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
