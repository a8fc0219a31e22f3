"""v1 plugins: found by name in the discovery directories, activated lazily, cached.

No plugin is contacted until something needs it by name. The first use looks
the name up (retrying for the retry window: the engine uses a short one, so a
plugin that is nowhere fails the call within 2 s, saying where it looked),
sends `/Plugin.Activate` and caches the result for the daemon's lifetime;
concurrent first uses share that one activation. A failed activation is not
cached: the next use tries again. The engine never starts or stops these
plugins; a plugin that restarts on the same socket keeps working because every
call opens a new connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from dockyard.errors import DockyardError, NotFound
from dockyard.plugins.client import (
    QUICK_RETRY_WINDOW,
    PluginClient,
    PluginError,
    backoff,
    quick_backoff,
)
from dockyard.plugins.discovery import Discovery, Endpoint
from dockyard.plugins.protocol import ActivateReply

log = logging.getLogger(__name__)


@dataclass
class Plugin:
    """A plugin the engine can call: v1 (activated) or v2 (enabled, `managed_id` set)."""

    name: str
    client: PluginClient
    implements: tuple[str, ...]
    managed_id: str | None = None

    def implements_kind(self, kind: str) -> bool:
        return kind in self.implements


class LegacyPlugins:
    def __init__(self, discovery: Discovery, *, retry_window: float, timeout_cap: float) -> None:
        self.discovery = discovery
        self.retry_window = retry_window
        self.timeout_cap = timeout_cap
        self._active: dict[str, Plugin] = {}
        self._pending: dict[str, asyncio.Future[Plugin]] = {}

    def active(self) -> list[Plugin]:
        return list(self._active.values())

    async def get(self, name: str, *, retry: bool = True) -> Plugin:
        """The activated plugin `name`; NotFound (after the retry window) if it is nowhere."""
        plugin = self._active.get(name)
        if plugin is not None:
            return plugin
        pending = self._pending.get(name)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Plugin] = asyncio.get_running_loop().create_future()
        self._pending[name] = future
        try:
            plugin = await self._load(name, retry)
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # retrieved here: waiters re-raise it themselves
            raise
        finally:
            self._pending.pop(name, None)
        self._active[name] = plugin
        future.set_result(plugin)
        return plugin

    async def _load(self, name: str, retry: bool) -> Plugin:
        endpoint = await self._find(name, retry)
        client = PluginClient(
            name, endpoint, retry_window=self.retry_window, timeout_cap=self.timeout_cap
        )
        try:
            reply = await client.call("Plugin.Activate", None, ActivateReply, error_key=None)
        except PluginError:
            await client.close()
            raise
        log.info("activated plugin %s at %s: %s", name, endpoint, ", ".join(reply.implements))
        return Plugin(name, client, tuple(reply.implements))

    async def _find(self, name: str, retry: bool) -> Endpoint:
        start = time.monotonic()
        attempt = 0
        while True:
            try:
                return self.discovery.find(name)
            except DockyardError as e:
                quick = self.retry_window <= QUICK_RETRY_WINDOW
                pause = quick_backoff(attempt) if quick else backoff(attempt)
                attempt += 1
                elapsed = time.monotonic() - start
                if not retry or elapsed + pause >= self.retry_window:
                    if isinstance(e, NotFound):
                        places = ", ".join((*self.discovery.socket_dirs, *self.discovery.spec_dirs))
                        times = "once" if attempt == 1 else f"{attempt} times"
                        raise NotFound(
                            f'plugin "{name}" not found (no socket or spec file in {places}; '
                            f"looked {times} in {elapsed:.1f}s)"
                        ) from None
                    raise
                log.info("unable to locate plugin %s, retrying in %gs", name, pause)
                await asyncio.sleep(pause)

    async def scan(self, kind: str) -> list[Plugin]:
        """Every plugin of `kind` in the directories (activating each, without retries);
        plugins that fail are skipped with a warning."""
        found = []
        for name in self.discovery.names():
            try:
                plugin = await self.get(name, retry=False)
            except DockyardError as e:
                log.warning("skipping plugin %s: %s", name, e.message)
                continue
            if plugin.implements_kind(kind):
                found.append(plugin)
        return found

    async def close(self) -> None:
        for plugin in self._active.values():
            await plugin.client.close()
        self._active.clear()
