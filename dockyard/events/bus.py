"""Event bus: what happened to containers, images, networks, volumes, plugins, the daemon.

Services `emit` events as Docker logs them (`Type`, `Action`, the actor's ID and
attributes); API clients `subscribe` to a live queue and can replay the recent
past from a ring buffer (clients ask for `since`/`until` windows after the
fact). An event may be emitted from any thread: a subscriber's queue is fed on
its own event loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

# Docker's event types (api/types/events): the swarm ones never occur here.
TYPES = ("builder", "container", "daemon", "image", "network", "plugin", "volume")


@dataclass(frozen=True)
class Event:
    type: str  # one of TYPES
    action: str
    actor_id: str
    attributes: dict[str, str] = field(default_factory=dict)
    time_nano: int = field(default_factory=time.time_ns)
    scope: str = "local"


@dataclass(frozen=True)
class _Subscriber:
    queue: asyncio.Queue[Event]
    loop: asyncio.AbstractEventLoop


class EventBus:
    def __init__(self, history: int = 1024) -> None:
        self._history: deque[Event] = deque(maxlen=history)
        self._subscribers: dict[int, _Subscriber] = {}
        self._lock = threading.Lock()

    def emit(
        self, type: str, action: str, actor_id: str, attributes: dict[str, str] | None = None
    ) -> Event:
        event = Event(type, action, actor_id, dict(attributes or {}))
        with self._lock:  # one order for the buffer and every queue
            self._history.append(event)
            for subscriber in self._subscribers.values():
                self._deliver(subscriber, event)
        return event

    @staticmethod
    def _deliver(subscriber: _Subscriber, event: Event) -> None:
        try:
            on_loop = asyncio.get_running_loop() is subscriber.loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            subscriber.queue.put_nowait(event)
        elif not subscriber.loop.is_closed():
            subscriber.loop.call_soon_threadsafe(subscriber.queue.put_nowait, event)

    @contextmanager
    def subscribe(
        self, since_ns: int | None = None
    ) -> Iterator[tuple[list[Event], asyncio.Queue[Event]]]:
        """A live queue, and (with `since_ns`) the buffered events from then on, with
        nothing lost or repeated between the two."""
        queue: asyncio.Queue[Event] = asyncio.Queue()
        key = id(queue)
        with self._lock:
            past = (
                [e for e in self._history if e.time_nano >= since_ns]
                if since_ns is not None
                else []
            )
            self._subscribers[key] = _Subscriber(queue, asyncio.get_running_loop())
        try:
            yield past, queue
        finally:
            with self._lock:
                self._subscribers.pop(key, None)

    @property
    def listeners(self) -> int:
        return len(self._subscribers)
