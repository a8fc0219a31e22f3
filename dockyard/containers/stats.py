"""Container resource statistics in Docker's model, from one sampler shared by all watchers.

A sample is what `GET /containers/{id}/stats` reports: the cgroup's CPU, memory,
block I/O and pids figures (`runtime.cgroupstats`), the host's CPU time beside
them, and the counters of the container's own interfaces (`runtime.procstats`).

Lifecycle of a feed: whoever wants samples of a container over time (a stream,
or a single answer that needs a previous sample to fill `precpu_stats`)
subscribes to the container's feed. One sampler task serves every feed: a new
feed is read at once, then every `interval` seconds. Feeds that fall due
together are read in one worker-thread call, and reading a batch sets the next
due time of all of them to the same instant, so `docker stats` with 40
containers (40 streams opened within a moment of each other) costs one batch a
second. A feed whose last subscriber leaves is dropped; when its container is
removed the feed ends, and so do its subscribers' streams.

A container that is not running (or is restarting) samples as zeros carrying
only its name and ID, as in Docker; a paused one still reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass, field, replace

from dockyard.containers.model import PAUSED, RUNNING, Container
from dockyard.containers.service import ContainerService
from dockyard.errors import NotFound, Unavailable
from dockyard.network.manager import NetworkManager
from dockyard.runtime import cgroupstats, procstats
from dockyard.runtime.cgroups import CgroupLayout
from dockyard.runtime.cgroupstats import BlkioFigures, CpuFigures, MemoryFigures, PidsFigures
from dockyard.runtime.procstats import HostCpu, InterfaceCounters

log = logging.getLogger(__name__)

INTERVAL = 1.0  # seconds between two samples of a feed, as in Docker
# Feeds due within this much of each other are read in the same batch.
COALESCE = 0.1


@dataclass(frozen=True)
class CpuStats:
    cgroup: CpuFigures = field(default_factory=CpuFigures)
    system_usage: int = 0  # ns of CPU time of the whole host (0: not sampled)
    online_cpus: int = 0


NO_CPU = CpuStats()


@dataclass(frozen=True)
class StatsSample:
    id: str
    name: str  # "/name": Docker's name of a container in stats
    read_ns: int | None = None  # when it was taken (ns since the epoch); None: not running
    cpu: CpuStats = NO_CPU
    memory: MemoryFigures | None = None
    blkio: BlkioFigures | None = None
    pids: PidsFigures = field(default_factory=PidsFigures)
    networks: dict[str, InterfaceCounters] | None = None  # None: no interfaces of its own
    preread_ns: int | None = None  # when the previous sample was taken
    precpu: CpuStats = NO_CPU  # the previous sample's CPU figures


@dataclass(frozen=True)
class _Target:
    """What a worker thread needs to sample one container (taken on the event loop)."""

    id: str
    name: str
    cgroup: str | None  # None: not running, nothing to read
    pid: int
    interfaces: frozenset[str]  # names inside the container that Docker reports


@dataclass
class _Feed:
    container_id: str
    due: float  # loop time of its next sample
    latest: StatsSample | None = None
    subscribers: list[asyncio.Queue[StatsSample | None]] = field(default_factory=list)

    def publish(self, sample: StatsSample | None) -> None:
        """Hand `sample` (None: the end) to every subscriber; one that has not taken the
        last sample yet gets this one instead (a slow reader skips, never piles up)."""
        for queue in self.subscribers:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(sample)


class StatsService:
    def __init__(
        self,
        containers: ContainerService,
        network: NetworkManager,
        layout: CgroupLayout,
        *,
        interval: float = INTERVAL,
    ) -> None:
        self.containers = containers
        self.network = network
        self.layout = layout
        self.interval = interval
        # Docker reports the host's memory as the limit of a container that has none.
        self.host_memory = procstats.host_memory()
        self._feeds: dict[str, _Feed] = {}
        self._wakeup = asyncio.Event()
        self._sampler: asyncio.Task[None] | None = None
        self._closed = False

    # -- what the API asks ---------------------------------------------------------

    async def one_shot(self, container: Container) -> StatsSample:
        """One sample now, without a previous one (`one-shot=1`)."""
        if not _running(container):
            return self.zero(container)
        return (await asyncio.to_thread(self._read_batch, [self._target(container)]))[0]

    async def snapshot(self, container: Container) -> StatsSample:
        """One sample with `precpu` from one taken about a second before (`stream=0`)."""
        if not _running(container):
            return self.zero(container)
        with self._subscription(container.id) as (feed, queue):
            previous = feed.latest or await queue.get()
            sample = await queue.get() if previous is not None else None
        if previous is None or sample is None:  # removed meanwhile
            return self.zero(container)
        return _after(sample, previous)

    async def stream(self, container: Container) -> AsyncGenerator[StatsSample, None]:
        """A sample every `interval`, each with the one before as `precpu` (the first has
        none), until the container is removed or the daemon stops. A container that is
        not running streams zeros, and figures again once it is started."""
        with self._subscription(container.id) as (_, queue):
            previous: StatsSample | None = None
            while (sample := await queue.get()) is not None:
                yield _after(sample, previous) if previous is not None else sample
                previous = sample

    def zero(self, container: Container) -> StatsSample:
        return StatsSample(container.id, "/" + container.name)

    async def close(self) -> None:
        """End every stream (the daemon is stopping)."""
        self._closed = True
        for feed in self._feeds.values():
            feed.publish(None)
        self._feeds.clear()
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler

    # -- feeds -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _subscription(
        self, container_id: str
    ) -> Iterator[tuple[_Feed, asyncio.Queue[StatsSample | None]]]:
        if self._closed:
            raise Unavailable("the daemon is shutting down")
        feed = self._feeds.get(container_id)
        if feed is None:
            loop = asyncio.get_running_loop()
            feed = self._feeds[container_id] = _Feed(container_id, due=loop.time())
            self._wakeup.set()
        queue: asyncio.Queue[StatsSample | None] = asyncio.Queue(maxsize=1)
        feed.subscribers.append(queue)
        if self._sampler is None:
            self._sampler = asyncio.create_task(self._sample_feeds())
        try:
            yield feed, queue
        finally:
            feed.subscribers.remove(queue)
            if not feed.subscribers and self._feeds.get(container_id) is feed:
                del self._feeds[container_id]

    async def _sample_feeds(self) -> None:
        """The sampler: runs while there are feeds, reading those that are due."""
        loop = asyncio.get_running_loop()
        try:
            while self._feeds:
                self._wakeup.clear()
                now = loop.time()
                delay = min(feed.due for feed in self._feeds.values()) - now
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), delay)
                    continue
                batch: list[tuple[_Feed, _Target]] = []
                for feed in list(self._feeds.values()):
                    if feed.due > now + COALESCE:
                        continue
                    feed.due = now + self.interval
                    target = self._target_of(feed.container_id)
                    if target is None:  # removed: its streams end
                        feed.publish(None)
                        del self._feeds[feed.container_id]
                    else:
                        batch.append((feed, target))
                if not batch:
                    continue
                samples = await asyncio.to_thread(self._read_batch, [t for _, t in batch])
                for (feed, _), sample in zip(batch, samples, strict=True):
                    feed.latest = sample
                    feed.publish(sample)
        finally:
            self._sampler = None

    def _target_of(self, container_id: str) -> _Target | None:
        try:
            return self._target(self.containers.get(container_id))
        except NotFound:
            return None

    def _target(self, container: Container) -> _Target:
        running = _running(container)
        return _Target(
            id=container.id,
            name="/" + container.name,
            cgroup=self.containers.cgroup_path(container) if running else None,
            pid=container.state.pid,
            interfaces=self._interfaces(container) if running else frozenset(),
        )

    def _interfaces(self, container: Container) -> frozenset[str]:
        """The interfaces Docker reports: those the engine put in the container's network
        namespace (never `lo`, nothing on the host or none networks); a container that
        shares another's namespace (`container:<id>`) reports that one's."""
        if container.config.network_disabled:
            return frozenset()
        owner = container
        for _ in range(8):
            mode = owner.host_config.network_mode
            if not mode.startswith("container:"):
                break
            try:
                owner = self.containers.get(mode.split(":", 1)[1])
            except NotFound:
                return frozenset()
        return frozenset(e.ifname for e in self.network.container_endpoints(owner.id) if e.ifname)

    # -- reading (worker thread) ------------------------------------------------------

    def _read_batch(self, targets: list[_Target]) -> list[StatsSample]:
        # Host CPU time once for the batch: the batch takes milliseconds, and every
        # container sits at the same place in it each second, so deltas stay true.
        try:
            host: HostCpu | None = procstats.host_cpu()
        except (OSError, ValueError):
            log.exception("reading /proc/stat")
            host = None
        samples = []
        for target in targets:
            try:
                samples.append(self._read(target, host))
            except Exception:  # a bug or a kernel surprise: report zeros, keep serving
                log.exception("sampling container %s", target.id[:12])
                samples.append(StatsSample(target.id, target.name))
        return samples

    def _read(self, target: _Target, host: HostCpu | None) -> StatsSample:
        zero = StatsSample(target.id, target.name)
        if target.cgroup is None:
            return zero
        read_ns = time.time_ns()
        try:
            figures = cgroupstats.read(self.layout, target.cgroup)
        except cgroupstats.CgroupGone:  # it stopped between the check and the read
            return zero
        memory = figures.memory
        if memory is not None and 0 < self.host_memory < memory.limit:
            memory = replace(memory, limit=self.host_memory)
        networks = None
        if target.interfaces:
            counters = procstats.interfaces(target.pid)
            networks = {n: c for n, c in counters.items() if n in target.interfaces} or None
        return StatsSample(
            id=target.id,
            name=target.name,
            read_ns=read_ns,
            cpu=CpuStats(
                figures.cpu,
                host.usage if host else 0,
                host.online if host else 0,
            ),
            memory=memory,
            blkio=figures.blkio,
            pids=figures.pids,
            networks=networks,
        )


def _running(container: Container) -> bool:
    return container.state.status in (RUNNING, PAUSED) and container.state.pid > 0


def _after(sample: StatsSample, previous: StatsSample) -> StatsSample:
    return replace(sample, preread_ns=previous.read_ns, precpu=previous.cpu)
