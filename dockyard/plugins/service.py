"""The engine's plugin subsystem: "the plugin named N of kind K", v2 first, then v1.

Every lookup by name asks the managed (v2) plugins first: a v2 plugin by that
name that is disabled fails the lookup at once ("found but disabled") and
never falls back to v1 discovery. Otherwise v1 discovery runs, with its retry
window. A plugin that does not implement the kind asked for fails the lookup.

The configured retry window (`plugin-retry-timeout`) is only used to wait for a
managed plugin the engine is starting; a v1 plugin that is not there, or does
not answer its socket, fails within the short window, whatever the setting.
"""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.errors import NotFound, Unavailable
from dockyard.plugins.client import QUICK_RETRY_WINDOW
from dockyard.plugins.discovery import Discovery
from dockyard.plugins.legacy import LegacyPlugins, Plugin
from dockyard.plugins.managed import ManagedPlugins


@dataclass(frozen=True)
class PluginSettings:
    """Discovery directories, retry window and call-timeout bound (daemon configuration)."""

    socket_dirs: tuple[str, ...]
    spec_dirs: tuple[str, ...]
    retry_window: float = 30.0
    timeout_cap: float = 120.0


class NotImplementsKind(Unavailable):
    pass


class PluginService:
    def __init__(self, settings: PluginSettings, managed: ManagedPlugins) -> None:
        self.settings = settings
        self.discovery = Discovery(settings.socket_dirs, settings.spec_dirs)
        self.legacy = LegacyPlugins(
            self.discovery,
            retry_window=min(settings.retry_window, QUICK_RETRY_WINDOW),
            timeout_cap=settings.timeout_cap,
        )
        self.managed = managed

    async def get(self, name: str, kind: str, *, retry: bool = True) -> Plugin:
        """The plugin `name` implementing `kind`; NotFound, or Unavailable if it cannot serve."""
        managed = self.managed.lookup(name)
        if managed is not None:
            if not managed.enabled:
                raise Unavailable(f"plugin {managed.name} found but disabled")
            plugin = self.managed.plugin(managed)
        else:
            plugin = await self.legacy.get(name, retry=retry)
        if not plugin.implements_kind(kind):
            raise NotImplementsKind(
                f"plugin {plugin.name} does not implement the requested driver ({kind})"
            )
        return plugin

    async def all(self, kind: str) -> list[Plugin]:
        """Every usable plugin of `kind`: enabled v2 plugins and the v1 plugins found by a
        scan of the directories (each activated; broken ones skipped)."""
        found = {
            p.name: self.managed.plugin(p)
            for p in self.managed.all()
            if p.enabled and kind in p.kinds
        }
        for plugin in await self.legacy.scan(kind):
            found.setdefault(plugin.name, plugin)
        return list(found.values())

    def names(self, kind: str) -> list[str]:
        """Names of the plugins of `kind` known without contacting any (for `info`)."""
        names = [p.name for p in self.managed.all() if p.enabled and kind in p.kinds]
        names += [p.name for p in self.legacy.active() if p.implements_kind(kind)]
        return list(dict.fromkeys(names))

    def acquire(self, plugin: Plugin) -> None:
        """Hold a reference on a v2 plugin (v1 plugins have no reference count)."""
        if plugin.managed_id:
            self.managed.acquire(plugin.managed_id)

    def release(self, plugin: Plugin) -> None:
        if plugin.managed_id:
            self.managed.release(plugin.managed_id)

    async def close(self) -> None:
        await self.managed.shutdown()
        await self.legacy.close()


__all__ = ["NotFound", "Plugin", "PluginService", "PluginSettings"]
