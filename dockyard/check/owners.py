"""Who owns what right now: the records `system check` judges host state against.

A snapshot is taken on the event loop (the services' records live there). A
container with an operation in progress (its lock held: start, stop,
remove...) or between two restarts is `busy`: what it holds on the host may
be half made or half released, so no check judges it. Host objects that look
stray are judged twice, `STRAY_DELAY` apart, with a fresh snapshot each time:
an object that an operation was just making or releasing is then owned, or
gone.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dockyard.containers.model import PAUSED, REMOVING, RESTARTING, RUNNING, Container

if TYPE_CHECKING:
    from dockyard.engine import Engine
    from dockyard.plugins.managed import ManagedPlugin

STRAY_DELAY = 0.5


@dataclass(frozen=True)
class Owners:
    containers: dict[str, Container]
    running: frozenset[str]  # running or paused: their mounts, cgroups, sandboxes are theirs
    busy: frozenset[str]
    plugins: dict[str, ManagedPlugin]  # managed plugins by ID

    def stopped(self, container_id: str) -> bool:
        """A recorded container that is settled and not running."""
        return (
            container_id in self.containers
            and container_id not in self.running
            and container_id not in self.busy
        )

    def unowned(self, container_id: str) -> bool:
        """No container record by that ID (and none being made)."""
        return container_id not in self.containers and container_id not in self.busy

    def plugin_enabled(self, plugin_id: str) -> bool:
        plugin = self.plugins.get(plugin_id)
        return plugin is not None and plugin.enabled


def snapshot(engine: Engine) -> Owners:
    containers = {c.id: c for c in engine.containers.all()}
    running = frozenset(cid for cid, c in containers.items() if c.state.status in (RUNNING, PAUSED))
    busy = frozenset(
        cid
        for cid, c in containers.items()
        if c.state.status in (RESTARTING, REMOVING) or engine.containers.live(c).lock.locked()
    )
    plugins = {p.id: p for p in engine.plugins.managed.all()}
    return Owners(containers, running, busy, plugins)


async def settle(engine: Engine) -> Owners:
    """A fresh snapshot after `STRAY_DELAY`: for judging candidates a second time."""
    await asyncio.sleep(STRAY_DELAY)
    return snapshot(engine)
