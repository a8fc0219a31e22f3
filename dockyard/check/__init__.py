"""`system check`: diagnosis and repair of the store, the state and the host.

`run(engine, repair=...)` looks at everything in one pass, area by area
(store, containers, mounts, volumes, network, plugins, host; each module's
docstring says what it checks), while the daemon keeps serving: blocking
work (hashing blobs, walking directories, reading mountinfo and cgroups)
runs on worker threads, and host objects that look stray are judged twice
(see `owners`). With `repair`, each finding that can be fixed without losing
data is then fixed, in the order found (a blob is quarantined before the
image that needs it is judged again, a parent layer is unpacked before its
children), and the finding says what was done or why it failed.

One check runs at a time per engine. The summary of the last one is kept
in `<data-root>/check/last.json`, for `info` to warn about problems found.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import weakref
from typing import TYPE_CHECKING, Any

from dockyard.check import containers, host, mounts, network, plugins, store, volumes
from dockyard.check.report import Report
from dockyard.errors import DockyardError

if TYPE_CHECKING:
    from dockyard.engine import Engine

log = logging.getLogger(__name__)

AREAS = (store, containers, mounts, volumes, network, plugins, host)
_locks: weakref.WeakKeyDictionary[Engine, asyncio.Lock] = weakref.WeakKeyDictionary()


def _summary_path(data_root: str) -> str:
    return os.path.join(data_root, "check", "last.json")


async def run(engine: Engine, *, repair: bool = False) -> Report:
    lock = _locks.setdefault(engine, asyncio.Lock())
    async with lock:
        report = Report(repair=repair)
        started = time.monotonic()
        for area in AREAS:
            await area.check(engine, report)
        if repair:
            for finding in report.findings:
                if finding.fix is None:
                    continue
                try:
                    finding.repaired = await finding.fix()
                except (DockyardError, OSError, ValueError, EOFError) as e:
                    text = e.message if isinstance(e, DockyardError) else str(e)
                    finding.failed = text or type(e).__name__
                except Exception as e:  # a bug: one repair must not cost the others
                    log.exception("system check: repairing %s", finding.subject)
                    finding.failed = f"internal error: {type(e).__name__}: {e}"
                if finding.failed:
                    log.warning("system check: repairing %s: %s", finding.subject, finding.failed)
        report.duration = time.monotonic() - started
        try:
            await asyncio.to_thread(_save_summary, engine.config.data_root, report.summary())
        except OSError as e:
            log.warning("system check: cannot keep its summary: %s", e)
        return report


def _save_summary(data_root: str, summary: dict[str, Any]) -> None:
    path = _summary_path(data_root)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    temporary = path + ".tmp"
    with open(temporary, "w") as f:
        json.dump(summary, f)
    os.replace(temporary, path)


def last_summary(data_root: str) -> dict[str, Any] | None:
    """The summary of the last check (a small file), or None when none ran."""
    try:
        with open(_summary_path(data_root)) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
