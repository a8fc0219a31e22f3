"""The VolumeDriver conformance suite through the remote adapter, against real plugins:
the SDK's example volume plugin (snapshots and size limits) in its own process, and a
volume plugin written without the SDK (the stdlib HTTP server on a unix socket).
Then what the adapter adds to the wire client: absolute mountpoints, "no such volume"
from an answered Get, and the cached scope."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.plugins.client import PluginClient, PluginError
from dockyard.plugins.discovery import Endpoint
from dockyard.plugins.legacy import Plugin
from dockyard.volumes.driver import VolumeDriver
from dockyard.volumes.remote import RemoteDriver
from tests.bare_plugin import BarePlugin, DirectoryVolumes, Raw
from tests.conformance.volume_driver import VolumeDriverConformance, new_id
from tests.plugin_env import EXAMPLES, PluginProcess


def _unmount_below(root: Path) -> None:
    for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
        target = line.split()[1]
        if target.startswith(str(root)):
            subprocess.run(["umount", "-l", target], capture_output=True)


class _Adapters:
    """Remote drivers on one plugin socket; each new handle has its own client, as after
    an engine restart."""

    def __init__(self, name: str, socket: str, loop: asyncio.AbstractEventLoop) -> None:
        self.name, self.socket, self.loop = name, socket, loop
        self.clients: list[PluginClient] = []

    def new(self) -> RemoteDriver:
        client = PluginClient(self.name, Endpoint("unix", self.socket), retry_window=0)
        self.clients.append(client)
        return RemoteDriver(Plugin(self.name, client, ("VolumeDriver",)))

    def close(self) -> None:
        for client in self.clients:
            self.loop.run_until_complete(client.close())


class TestSDKExamplePlugin(VolumeDriverConformance):
    """plugins/volume_snap.py: `-o size=8m` is an ext4 image loop-mounted while in use."""

    PROVISIONED_OPTIONS = {"size": "8m"}

    @pytest.fixture
    def driver(self, loop: asyncio.AbstractEventLoop, tmp_path: Path) -> Iterator[VolumeDriver]:
        socket = str(tmp_path / "snap.sock")
        env = {"VOLUME_ROOT": str(tmp_path / "root")}
        try:
            with PluginProcess(f"{EXAMPLES}/volume_snap.py:SnapshotVolumes", socket, env):
                self.adapters = _Adapters("snap", socket, loop)
                yield self.adapters.new()
                self.adapters.close()
        finally:
            _unmount_below(tmp_path)

    def reopen(self, driver: VolumeDriver) -> VolumeDriver:
        return self.adapters.new()


class TestPluginWithoutTheSDK(VolumeDriverConformance):
    """A bare HTTP server: `-o tmpfs=1m` is a tmpfs mounted while in use."""

    PROVISIONED_OPTIONS = {"tmpfs": "1m"}

    @pytest.fixture
    def driver(self, loop: asyncio.AbstractEventLoop, tmp_path: Path) -> Iterator[VolumeDriver]:
        socket = str(tmp_path / "bare.sock")
        try:
            with BarePlugin(
                ["VolumeDriver"], DirectoryVolumes(str(tmp_path / "vols")).replies()
            ).serve_unix(socket):
                self.adapters = _Adapters("bare", socket, loop)
                yield self.adapters.new()
                self.adapters.close()
        finally:
            _unmount_below(tmp_path)

    def reopen(self, driver: VolumeDriver) -> VolumeDriver:
        return self.adapters.new()


def _call(socket: str, work):  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        client = PluginClient("odd", Endpoint("unix", socket), retry_window=0, timeout_cap=2)
        try:
            return await work(RemoteDriver(Plugin("odd", client, ("VolumeDriver",))))
        finally:
            await client.close()

    return asyncio.run(go())


def test_mountpoints_must_be_absolute_host_paths(tmp_path: Path) -> None:
    socket = str(tmp_path / "odd.sock")
    replies = {
        "/VolumeDriver.Mount": {"Mountpoint": "relative/dir"},
        "/VolumeDriver.Path": {"Mountpoint": "/a/../b/"},
    }
    with BarePlugin(["VolumeDriver"], replies).serve_unix(socket):
        with pytest.raises(PluginError) as caught:
            _call(socket, lambda d: d.mount("v", new_id()))
        assert _call(socket, lambda d: d.path("v")) == "/b"
    assert caught.value.message == (
        "plugin odd failed with error: VolumeDriver.Mount: invalid reply: Mountpoint "
        "'relative/dir' is not an absolute path"
    )


def test_an_error_answered_to_get_is_no_such_volume_but_silence_is_an_error(
    tmp_path: Path,
) -> None:
    socket = str(tmp_path / "odd.sock")
    replies = {
        "/VolumeDriver.Get": Raw(500, b"<html>Internal Server Error</html>"),
        "/VolumeDriver.Capabilities": {"Capabilities": {"Scope": "GLOBAL"}},
    }
    with BarePlugin(["VolumeDriver"], replies).serve_unix(socket) as plugin:
        assert _call(socket, lambda d: d.get("v")) is None

        async def scope_twice(d: RemoteDriver) -> str:
            await d.capabilities()
            return (await d.capabilities()).scope

        assert _call(socket, scope_twice) == "global"
        assert len(plugin.calls_to("/VolumeDriver.Capabilities")) == 1  # cached
        plugin.replies["/VolumeDriver.Get"] = Raw(200, b"{}", delay=5)
        with pytest.raises(PluginError, match=r"VolumeDriver.Get: timed out after 2s"):
            _call(socket, lambda d: d.get("v"))


def test_the_example_plugin_keeps_its_mounts_across_its_restart(tmp_path: Path) -> None:
    """Engines do not mount again after a plugin restart: it must remember who mounted."""
    socket = str(tmp_path / "snap.sock")
    env = {"VOLUME_ROOT": str(tmp_path / "root")}
    target = tmp_path / "root" / "volumes" / "v"
    try:
        with PluginProcess(f"{EXAMPLES}/volume_snap.py:SnapshotVolumes", socket, env):

            async def two_containers(driver: RemoteDriver) -> None:
                await driver.create("v", {"size": "8m"})
                await driver.mount("v", "a" * 64)
                await driver.mount("v", "b" * 64)

            _call(socket, two_containers)
        assert target.is_mount()
        with PluginProcess(f"{EXAMPLES}/volume_snap.py:SnapshotVolumes", socket, env):

            async def first_stops(driver: RemoteDriver) -> str:
                await driver.unmount("v", "a" * 64)
                try:
                    await driver.remove("v")
                except PluginError as e:
                    return str(e)
                return "removed"

            refused = _call(socket, first_stops)
            assert "volume v is in use" in refused
            assert target.is_mount()  # the other container still uses it

            async def second_stops(driver: RemoteDriver) -> str:
                await driver.unmount("v", "b" * 64)
                return await driver.path("v")

            assert _call(socket, second_stops) == ""  # not mounted: no path to give
            assert not target.is_mount()
    finally:
        _unmount_below(tmp_path)
