"""Built-in drivers served as plugins on a private socket, for the conformance checker.

`dockyard plugin check local` must check the built-in `local` volume driver
through the very checks a plugin gets, on the wire: the checker's verdicts are
about HTTP replies (status, `Err`, shapes), so the driver is put behind the
SDK's server (`DriverPlugin` turns its `VolumeDriver` methods into endpoint
handlers, and its typed errors into `Err` replies) on a socket in a private
directory, and checked through an ordinary plugin client. Nothing but the
checker ever sees the socket, and it is gone when the check ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from typing import Any

from dockyard.errors import DockyardError
from dockyard.plugins.client import PluginClient
from dockyard.plugins.discovery import Endpoint
from dockyard.sdk.base import PluginError
from dockyard.sdk.server import serve
from dockyard.sdk.volume import Volume, VolumePlugin
from dockyard.volumes.driver import VolumeDriver


class DriverPlugin(VolumePlugin):
    """A `VolumeDriver` answering the VolumeDriver protocol."""

    def __init__(self, driver: VolumeDriver, scope: str = "local") -> None:
        self.driver = driver
        self.scope = scope  # type: ignore[misc]  # per instance: the driver's own

    async def _do(self, work: Any) -> Any:
        try:
            return await work
        except DockyardError as e:
            raise PluginError(e.message) from e

    async def create(self, name: str, opts: dict[str, str]) -> None:
        await self._do(self.driver.create(name, opts))

    async def remove(self, name: str) -> None:
        await self._do(self.driver.remove(name))

    async def mount(self, name: str, id: str) -> str:
        path: str = await self._do(self.driver.mount(name, id))
        return path

    async def unmount(self, name: str, id: str) -> None:
        await self._do(self.driver.unmount(name, id))

    async def path(self, name: str) -> str:
        path: str = await self._do(self.driver.path(name))
        return path

    async def get(self, name: str) -> Volume | None:
        info = await self._do(self.driver.get(name))
        if info is None:
            return None
        return Volume(info.name, info.mountpoint, info.created_at, info.status)

    async def list(self) -> list[Volume]:
        infos = await self._do(self.driver.list())
        return [Volume(i.name, i.mountpoint, i.created_at, i.status) for i in infos]


@contextlib.asynccontextmanager
async def exposed(driver: VolumeDriver) -> AsyncIterator[PluginClient]:
    """A client of `driver` served as a plugin on a private socket while the block runs."""
    directory = tempfile.mkdtemp(prefix="dockyard-loopback-")
    socket = os.path.join(directory, driver.name + ".sock")
    scope = (await driver.capabilities()).scope
    listening = asyncio.Event()
    stop = asyncio.Event()
    server = asyncio.create_task(
        serve(
            DriverPlugin(driver, scope), socket=socket, ready=lambda _: listening.set(), stop=stop
        )
    )
    client = PluginClient(driver.name, Endpoint("unix", socket), retry_window=0)
    try:
        ready = asyncio.create_task(listening.wait())
        await asyncio.wait({ready, server}, return_when=asyncio.FIRST_COMPLETED)
        if server.done():
            ready.cancel()
            server.result()  # raises what stopped it from listening
        yield client
    finally:
        await client.close()
        stop.set()
        with contextlib.suppress(Exception):
            await server
        shutil.rmtree(directory, ignore_errors=True)
