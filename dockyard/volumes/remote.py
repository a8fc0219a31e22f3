"""Volume plugins as volume drivers: the `VolumeDriver` interface over `/VolumeDriver.*`.

`RemoteDriver` is thin: each method is one call through the typed protocol
client (`plugins.protocol.volume`), which already applies Docker's timeouts,
error conventions and retries, so every failure is a `PluginError` naming the
plugin and the call. It adds only what Docker's adapter adds:

* the scope from `Capabilities`, asked once when the driver is first resolved
  and cached (missing, invalid or failing: `local`);
* a managed (v2) plugin's mountpoints are paths inside the plugin: they are
  mapped to the host, under the plugin's propagated-mount directory when they
  lie in its `PropagatedMount`, else under its rootfs; a v1 plugin's must be
  absolute host paths;
* the last mountpoint the plugin reported for each volume (Docker's "cached
  path"), so that creating or listing volumes needs no extra call;
* an error the plugin answers to `Get` means "no such volume" to `get` (most
  plugins say it that way; Docker's store reads every answered error so when it
  looks a name up); only a plugin that cannot be reached, times out or hangs up
  makes `get` fail. `inspect` (for `volume inspect` and `volume rm`) raises the
  answered error too, and `listed` asks `List` when `Get` fails.

`PluginDrivers` turns a driver name into its adapter through the plugin
service (managed plugins first, then v1 discovery with its retry window) and
holds the references volumes keep on managed plugins: one per volume, so a
plugin that still has volumes cannot be disabled or removed without force.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator

from dockyard.errors import Unavailable
from dockyard.plugins.client import PluginError
from dockyard.plugins.legacy import Plugin
from dockyard.plugins.protocol import VOLUME
from dockyard.plugins.protocol.volume import Volume, VolumeDriverClient
from dockyard.plugins.service import PluginService
from dockyard.volumes.driver import Capabilities, VolumeInfo


class RemoteDriver:
    """A VolumeDriver backed by a plugin."""

    def __init__(self, plugin: Plugin, host_path: Callable[[str], str] | None = None) -> None:
        self.plugin = plugin
        self.client = VolumeDriverClient(plugin.client)
        self._host_path = host_path  # v2: a path inside the plugin -> the host's path
        self._scope: str | None = None
        self._paths: dict[str, str] = {}

    @property
    def name(self) -> str:
        return self.plugin.name

    @property
    def scope(self) -> str:
        """The scope as far as known without asking ("local" until Capabilities answered)."""
        return self._scope or "local"

    def cached_path(self, name: str) -> str:
        """The host path the plugin last reported for `name` ("" if none)."""
        return self._paths.get(name, "")

    def _host(self, method: str, point: str, *, required: bool = False) -> str:
        if not point:
            if required:
                raise PluginError(self.name, method, "invalid reply: no Mountpoint", status=200)
            return ""
        if self._host_path is not None:
            return self._host_path(point)
        if not os.path.isabs(point):
            raise PluginError(
                self.name,
                method,
                f"invalid reply: Mountpoint {point!r} is not an absolute path",
                status=200,
            )
        return os.path.normpath(point)

    def _info(self, method: str, volume: Volume) -> VolumeInfo:
        try:
            path = self._host(method, volume.mountpoint)
        except PluginError:
            path = ""  # shown only; Mount is what must give a usable path
        if path:
            self._paths[volume.name] = path
        return VolumeInfo(volume.name, path, volume.created_at, volume.status)

    # -- VolumeDriver ------------------------------------------------------------

    async def create(self, name: str, options: dict[str, str]) -> None:
        await self.client.create(name, options)

    async def remove(self, name: str) -> None:
        await self.client.remove(name)
        self._paths.pop(name, None)

    async def discard(self, name: str) -> None:
        """Remove what a Create that failed half way may have left (one attempt)."""
        await self.client.remove(name, retry=False)
        self._paths.pop(name, None)

    async def mount(self, name: str, mount_id: str) -> str:
        path = self._host(
            "VolumeDriver.Mount", await self.client.mount(name, mount_id), required=True
        )
        self._paths[name] = path
        return path

    async def unmount(self, name: str, mount_id: str) -> None:
        await self.client.unmount(name, mount_id)

    async def path(self, name: str) -> str:
        path = self._host("VolumeDriver.Path", await self.client.path(name))
        if path:
            self._paths[name] = path
        return path

    async def get(self, name: str) -> VolumeInfo | None:
        try:
            return await self.inspect(name)
        except PluginError as e:
            if not e.http_status:
                raise  # unreachable, timed out, cut short: no answer at all
            # The plugin answered with an error: most say "no such volume" that way, and
            # Docker's store takes any error answered to Get so when it looks a name up.
            self._paths.pop(name, None)
            return None

    async def inspect(self, name: str) -> VolumeInfo | None:
        """`Get` as `volume inspect` and `volume rm` need it: None only when the plugin
        answers that it has no such volume; an error it answers is raised (Docker shows
        it), as is one reaching it."""
        volume = await self.client.get(name)
        if volume is None:
            self._paths.pop(name, None)
            return None
        return self._info("VolumeDriver.Get", volume)

    async def listed(self, name: str) -> bool:
        """Whether the plugin's `List` shows `name` (a plugin whose Get fails may still
        have the volume)."""
        return any(v.name == name for v in await self.client.list())

    async def list(self) -> list[VolumeInfo]:
        return [self._info("VolumeDriver.List", v) for v in await self.client.list()]

    async def capabilities(self) -> Capabilities:
        if self._scope is None:
            self._scope = await self.client.scope()
        return Capabilities(self._scope)


class PluginDrivers:
    """Volume drivers served by plugins, by name."""

    def __init__(self, plugins: PluginService) -> None:
        self.plugins = plugins
        self._drivers: dict[str, RemoteDriver] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, name: str, *, retry: bool = True) -> RemoteDriver:
        """The driver `name`: NotFound (after the discovery retries) if no plugin has that
        name, Unavailable if it is disabled or does not implement VolumeDriver."""
        return await self._adapter(await self.plugins.get(name, VOLUME, retry=retry))

    async def all(self) -> list[RemoteDriver]:
        """Every volume plugin: enabled managed ones and the v1 plugins found by a scan."""
        return [await self._adapter(p) for p in await self.plugins.all(VOLUME)]

    def peek(self, name: str) -> RemoteDriver | None:
        """The adapter of `name` if it was resolved before (no lookup, no call)."""
        return self._drivers.get(name)

    async def _adapter(self, plugin: Plugin) -> RemoteDriver:
        async with self._locks.setdefault(plugin.name, asyncio.Lock()):
            driver = self._drivers.get(plugin.name)
            if driver is None or driver.plugin.client is not plugin.client:
                # New, or a managed plugin enabled again (a new client): Docker makes a
                # new adapter and validates its scope then.
                driver = RemoteDriver(plugin, self._host_path(plugin))
                await driver.capabilities()
                self._drivers[plugin.name] = driver
            return driver

    def _host_path(self, plugin: Plugin) -> Callable[[str], str] | None:
        if not plugin.managed_id:
            return None
        managed = self.plugins.managed
        record = managed.find(plugin.managed_id)
        return lambda path: managed.host_path(record, path)

    def hold(self, driver: str) -> None:
        """A volume of `driver` exists: a reference on it when it is a managed plugin."""
        plugin = self.plugins.managed.lookup(driver)
        if plugin is not None:
            self.plugins.managed.acquire(plugin.id)

    def release(self, driver: str) -> None:
        plugin = self.plugins.managed.lookup(driver)
        if plugin is not None:
            self.plugins.managed.release(plugin.id)

    @contextlib.contextmanager
    def calling(self, driver: str) -> Iterator[None]:
        """A reference on `driver`'s managed plugin while calls are made to it. Taken
        with no await after the enabled check, so a `disable` either came first (and
        this refuses) or sees the reference (and refuses itself)."""
        managed = self.plugins.managed
        plugin = managed.lookup(driver)
        if plugin is None:
            yield
            return
        if not plugin.enabled:
            raise Unavailable(f"plugin {plugin.name} found but disabled")
        managed.acquire(plugin.id)
        try:
            yield
        finally:
            managed.release(plugin.id)
