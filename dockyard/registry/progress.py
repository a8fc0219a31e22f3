"""Progress of a transfer, as events the API layer renders as Docker's JSON lines.

An operation reports through a `Report` callable: per-item events carry the
short ID of a layer (or a tag) and a status ("Downloading", "Pull complete"),
byte counts when there are any; events without an ID are status lines of the
whole operation; `aux` carries a structured result (push's digest).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Byte progress is reported at most this often per item, and at the end.
_INTERVAL = 0.1


@dataclass(frozen=True)
class Event:
    status: str
    id: str = ""
    current: int | None = None
    total: int | None = None
    aux: dict[str, Any] | None = None
    detail: bool = True  # a per-item progress line (False: a status line about `id`)


Report = Callable[[Event], None]


def silent(event: Event) -> None:
    pass


def short_id(digest: str) -> str:
    return digest.partition(":")[2][:12]


class Meter:
    """Byte progress of one item, reported no more often than every `_INTERVAL` seconds.

    A total of 0 means unknown (a layer being compressed while it is sent).
    """

    def __init__(self, report: Report, item: str, status: str, total: int) -> None:
        self._report = report
        self._item = item
        self._status = status
        self.total = total
        self.current = 0
        self._last = 0.0

    def add(self, count: int) -> None:
        self.current += count
        now = time.monotonic()
        if now - self._last >= _INTERVAL or 0 < self.total <= self.current:
            self._last = now
            self._report(Event(self._status, self._item, self.current, self.total))
