"""Event bus: what happened to containers, images, networks, volumes, plugins.

Services `emit` events; API clients `subscribe` to a live queue and can replay
the recent past from a ring buffer (docker clients ask for `since`/`until`
windows after the fact).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Event:
    type: str  # container, image, network, volume, plugin, daemon
    action: str
    actor_id: str
    attributes: dict[str, str] = field(default_factory=dict)
    time_nano: int = field(default_factory=time.time_ns)
    scope: str = "local"


class EventBus:
    def __init__(self, history: int = 1024) -> None:
        self._history: deque[Event] = deque(maxlen=history)
        self._subscribers: set[asyncio.Queue[Event]] = set()

    def emit(
        self, type: str, action: str, actor_id: str, attributes: dict[str, str] | None = None
    ) -> Event:
        event = Event(type, action, actor_id, dict(attributes or {}))
        self._history.append(event)
        for queue in self._subscribers:
            queue.put_nowait(event)
        return event

    def history(self, since_ns: int = 0, until_ns: int | None = None) -> list[Event]:
        return [
            e
            for e in self._history
            if e.time_nano >= since_ns and (until_ns is None or e.time_nano <= until_ns)
        ]

    @contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[Event]]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    @property
    def listeners(self) -> int:
        return len(self._subscribers)
