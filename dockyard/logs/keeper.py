"""The log keeper: keeps the rotating logs of running containers complete and bounded.

conmon rotates a container's log by itself (see `files.py`); after each
rotation the keeper arms the next file and adopts a plain file conmon made
when none was armed, then drops the oldest files beyond `max-file` and
compresses the closed ones.

Arming is the urgent part: conmon's second rotation without an armed file is
still lossless, its third is not. A thread of its own therefore waits on
inotify for the rename with which conmon ends each rotation and arms at once,
never queued behind the event loop or a worker pool busy with image loads or
builds; it also looks at every kept log once a second. Pruning and
compression run on another thread, asked for from the event loop. A daemon
restart resumes keeping running containers (`start(running=True)`) and
settles what conmon did meanwhile; the monitor's exit ends it (`stop`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from dockyard.logs.files import CURRENT, LogFiles
from dockyard.logs.inotify import IN_IGNORED, IN_MOVED_TO, Inotify
from dockyard.logs.options import Rotation

log = logging.getLogger(__name__)

T = TypeVar("T")

_LOOK_AGAIN = 1.0  # seconds between looks when no rotation was announced


@dataclass
class _Kept:
    container_id: str
    files: LogFiles
    rotation: Rotation
    watch: int | None = None
    tidying: asyncio.Task[None] | None = None
    again: bool = False  # rotated while being tidied: tidy once more


class _Watcher(threading.Thread):
    """Arms the next file of every kept log after each rotation (see the module doc)."""

    def __init__(self, rotated: Callable[[_Kept], None]) -> None:
        super().__init__(name="log-keeper", daemon=True)
        self.inotify = Inotify()
        self.rotated = rotated  # called on this thread after a kept log rotated
        self.kept: dict[int, _Kept] = {}  # by watch descriptor
        self.unwatched: list[_Kept] = []  # kept without inotify (it refused the directory)
        self.lock = threading.Lock()
        self.stopping = False
        self._interrupt_r, self._interrupt_w = os.pipe2(os.O_CLOEXEC)

    def add(self, kept: _Kept) -> None:
        with self.lock:
            try:
                kept.watch = self.inotify.watch(kept.files.directory, IN_MOVED_TO)
                self.kept[kept.watch] = kept
            except OSError as e:
                log.warning("log keeper: %s; looking once a second instead", e)
                self.unwatched.append(kept)

    def remove(self, kept: _Kept) -> None:
        with self.lock:
            if kept.watch is not None and self.kept.pop(kept.watch, None) is not None:
                self.inotify.unwatch(kept.watch)
            if kept in self.unwatched:
                self.unwatched.remove(kept)
            kept.watch = None

    def run(self) -> None:
        try:
            self._run()
        finally:
            self.inotify.close()
            os.close(self._interrupt_r)
            os.close(self._interrupt_w)

    def _run(self) -> None:
        while True:
            events = self.inotify.events(_LOOK_AGAIN, self._interrupt_r)
            if self.stopping:
                return
            with self.lock:
                due: list[_Kept]
                if events:
                    due = list(
                        {
                            id(k): k
                            for wd, mask, name in events
                            if not mask & IN_IGNORED
                            and name == CURRENT
                            and (k := self.kept.get(wd)) is not None
                        }.values()
                    )
                else:
                    due = [*self.kept.values(), *self.unwatched]
                for kept in due:
                    try:
                        kept.files.rearm()
                    except OSError as e:
                        log.warning("log files of %s: %s", kept.container_id[:12], e)
            for kept in due:
                self.rotated(kept)

    def stop(self) -> None:
        self.stopping = True
        os.write(self._interrupt_w, b"x")


class LogKeeper:
    def __init__(self) -> None:
        self._kept: dict[str, _Kept] = {}
        self._files: dict[str, LogFiles] = {}  # one per container: its lock orders changes
        self._watcher: _Watcher | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tidying = ThreadPoolExecutor(1, thread_name_prefix="log-tidy")

    def files(self, container_id: str, directory: str) -> LogFiles:
        files = self._files.get(container_id)
        if files is None or files.directory != directory:
            files = self._files[container_id] = LogFiles(directory)
        return files

    @staticmethod
    async def _run(fn: Callable[..., T], *args: Any, executor: Any = None) -> T:
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)

    async def start(
        self, container_id: str, directory: str, rotation: Rotation, *, running: bool
    ) -> None:
        """Before the monitor starts (`running` False): lay out the files it will write.
        For a monitor already running (daemon restart): settle what it did meanwhile.
        Then keep them while it runs, if they rotate."""
        files = self.files(container_id, directory)
        if not running:
            await self._run(files.prepare, rotation)
        elif rotation.rotates:
            await self._run(files.rearm)
        if not rotation.rotates or container_id in self._kept:
            return
        kept = _Kept(container_id, files, rotation)
        self._kept[container_id] = kept
        if self._watcher is None:
            self._loop = asyncio.get_running_loop()
            self._watcher = _Watcher(self._rotated)
            self._watcher.start()
        self._watcher.add(kept)
        self._tidy_soon(kept)

    async def stop(self, container_id: str) -> None:
        """The monitor has exited: settle the files it left and compress the closed ones
        (awaited: nothing may write in the container's directory once it can be removed)."""
        kept = self._kept.pop(container_id, None)
        self._files.pop(container_id, None)
        if kept is None:
            return
        if self._watcher is not None:
            self._watcher.remove(kept)
        kept.again = False
        if kept.tidying is not None:
            with contextlib.suppress(Exception):
                await kept.tidying
        try:
            closed = await self._run(kept.files.finish, kept.rotation)
            for seq in closed:
                await self._run(kept.files.compress, seq, executor=self._tidying)
        except OSError as e:
            log.warning("log files of %s: %s", container_id[:12], e)

    async def shutdown(self) -> None:
        """Daemon shutdown: stop keeping; the monitors go on, the next daemon resumes."""
        kept, self._kept = list(self._kept.values()), {}
        for entry in kept:
            if entry.tidying is not None:
                entry.tidying.cancel()
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        self._tidying.shutdown(wait=False, cancel_futures=True)

    def _rotated(self, kept: _Kept) -> None:
        """On the watcher's thread: a kept log rotated (or was looked at)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._tidy_soon, kept)

    def _tidy_soon(self, kept: _Kept) -> None:
        if self._kept.get(kept.container_id) is not kept:
            return
        if kept.tidying is not None and not kept.tidying.done():
            kept.again = True
            return
        kept.tidying = asyncio.ensure_future(self._tidy(kept))

    async def _tidy(self, kept: _Kept) -> None:
        while True:
            kept.again = False
            try:
                closed = await self._run(kept.files.tidy, kept.rotation, executor=self._tidying)
                for seq in closed:
                    await self._run(kept.files.compress, seq, executor=self._tidying)
            except OSError as e:
                log.warning("log files of %s: %s", kept.container_id[:12], e)
            if not kept.again:
                return
