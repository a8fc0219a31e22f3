"""Delivering a container's output to a LogDriver plugin.

The container's monitor (conmon) writes its output to the container's log
files whatever the log driver; for a plugin driver those files are the
engine's own copy (Docker's "dual logging" cache), bounded by the `cache-`
options (`options.py`: 5 files of 20 MiB, compressed, unless told otherwise)
and rotated by conmon like any other log (`files.py`), so `logs` works even
for plugins that cannot read, and a slow or dead plugin never blocks the
container. A forwarder in the daemon follows that log across its rotations
(`reader.LogReader`) and writes each record into the plugin's FIFO as a
length-prefixed protobuf `LogEntry`:

1. container start: make the FIFO (`<exec-root>/logging/<64 hex>`; for a
   managed plugin in its own `/run/docker/logging`), open it read-write and
   non-blocking (a reader that goes away gives no EPIPE), ask `Capabilities`,
   send `StartLogging{File, Info}` (an error fails the start), start following;
2. while it runs: records are read in batches on a worker thread and become
   entries (`stdout`/`stderr`, the record's time, the line without its
   newline; the monitor's partial records become partial entries sharing an
   id, numbered, the final one marked `last`); writes wait while the FIFO is
   full (blocking mode) — the container does not;
3. container exit: deliver the rest of the log (bounded by the plugin call
   timeout when the plugin has stopped reading), `StopLogging{File}`, close and
   remove the FIFO.

The forwarder records how far it has delivered (`<container dir>/log-driver.offset`,
replaced atomically after each batch reached the FIFO): a `reader.Position`,
the segment (or, for a log that does not rotate, the inode of the plain file)
and the offset in its content. It always resumes from there: a daemon restart
(a new StartLogging with a new FIFO, as Docker does when it restores a
container) or a container restart neither loses nor repeats output. Only a
daemon crash between a write and the position's update can repeat that one
batch. A position written before logs rotated (`{"offset": N}`) meant the
plain container.log, which has since become the first segment. At daemon
start the delivery of containers recorded running resumes in the background
(`resume`), so a log plugin that is gone or still starting never holds up the
daemon; one that exited while the daemon was down has its delivery ended in
the background too (`stop` does not wait for a resume still under way; the
container's next start does).

Each open session is recorded (`<container dir>/log-driver.session`: plugin,
file, FIFO) before StartLogging and removed after StopLogging. A record found
at the next start is a session a crash left open: its FIFO is removed and the
plugin is sent StopLogging for it before the new session starts.

The bound of the engine's copy is also the bound of what a plugin may fall
behind: output the plugin has not taken by the time rotation prunes it (a
plugin more than `cache-max-file` files behind, or a daemon down while
conmon rotated) is lost to the plugin, with a warning in the daemon's log,
and delivery goes on at the oldest file still there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import stat
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dockyard.containers.model import Container
from dockyard.errors import DockyardError, InvalidArgument
from dockyard.images.oci import ZERO_TIME, rfc3339
from dockyard.logs import k8sfile
from dockyard.logs.files import LogFiles
from dockyard.logs.options import BUILTIN
from dockyard.logs.reader import LogReader, Position
from dockyard.plugins.legacy import Plugin
from dockyard.plugins.protocol import LOG
from dockyard.plugins.protocol.logdriver import Info, LogDriverClient, ReadConfig
from dockyard.plugins.protocol.logentry import LogEntry, PartialMetadata, frame
from dockyard.plugins.runspec import LOGGING_DIR
from dockyard.plugins.service import PluginService
from dockyard.state import crashpoints

log = logging.getLogger(__name__)

T = TypeVar("T")

OFFSET_FILE = "log-driver.offset"  # the delivered position (named when it was an offset)
SESSION_FILE = "log-driver.session"  # the logging session open now: plugin, file, FIFO
_POLL = 0.05
_IDLE_POLL = 0.25
_BATCH = 64 * 1024  # bytes of the log per batch: what a crash can deliver twice


def unknown_driver(name: str) -> InvalidArgument:
    return InvalidArgument(f"logger: no log driver named '{name}' is registered")


@dataclass
class _Partial:
    id: str = ""
    ordinal: int = 0


@dataclass
class _Forwarder:
    container_id: str
    plugin: Plugin
    driver: LogDriverClient
    host_fifo: str
    file: str  # the FIFO's path as the plugin sees it
    log: LogFiles
    position_path: str
    session_path: str
    fd: int
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    partial: dict[str, _Partial] = field(default_factory=dict)
    # The reader's work under way on a worker thread: the reader is closed only after it.
    reading: Future[Any] | None = None


class PluginLogging:
    def __init__(self, plugins: PluginService, fifo_dir: str) -> None:
        self.plugins = plugins
        self.fifo_dir = fifo_dir
        os.makedirs(fifo_dir, mode=0o700, exist_ok=True)
        os.chmod(fifo_dir, 0o700)  # private even if it was made before with other modes
        self._forwarders: dict[str, _Forwarder] = {}
        self._resuming: dict[str, asyncio.Task[None]] = {}  # container id -> its resume
        # container id -> the end of a delivery resumed at start-up, finishing in the
        # background (the container exited before its plugin answered)
        self._ending: dict[str, asyncio.Task[None]] = {}
        # Log reads and position writes: file system work, never on the event loop.
        self._workers = ThreadPoolExecutor(4, thread_name_prefix="log-forward")

    @staticmethod
    def is_plugin_driver(driver: str) -> bool:
        return bool(driver) and driver not in BUILTIN

    async def resolve(self, driver: str) -> Plugin:
        """The plugin serving log driver `driver`, or Docker's unknown-driver error."""
        try:
            return await self.plugins.get(driver, LOG)
        except DockyardError as e:
            log.info("log driver %s: %s", driver, e.message)
            raise unknown_driver(driver) from e

    def _fifo(self, plugin: Plugin, fifo_id: str) -> tuple[str, str]:
        if plugin.managed_id:
            managed = self.plugins.managed.find(plugin.managed_id)
            host_dir = self.plugins.managed.logging_dir(managed)
            return os.path.join(host_dir, fifo_id), os.path.join(LOGGING_DIR, fifo_id)
        path = os.path.join(self.fifo_dir, fifo_id)
        return path, path

    # -- start and stop ------------------------------------------------------

    async def start(self, container: Container, container_dir: str) -> None:
        """Start delivering `container`'s output (its log in `container_dir`) to its log
        plugin (a no-op for built-in drivers). Raises when the plugin refuses: the
        container must not start."""
        driver = container.host_config.log_config.type
        if not self.is_plugin_driver(driver) or container.id in self._forwarders:
            return
        ending = self._ending.get(container.id)
        if ending is not None:  # the last run's delivery first: one forwarder at a time
            await asyncio.shield(ending)
            if container.id in self._forwarders:
                return
        plugin = await self.resolve(driver)
        client = LogDriverClient(plugin.client)
        session_path = os.path.join(container_dir, SESSION_FILE)
        await _end_stale_session(session_path, plugin.name, client)
        self.plugins.acquire(plugin)  # before the calls: it cannot be disabled under them
        try:
            host_fifo, file = self._fifo(plugin, secrets.token_hex(32))
            fd = _make_fifo(host_fifo)
        except BaseException:
            self.plugins.release(plugin)
            raise
        forwarder = _Forwarder(
            container.id,
            plugin,
            client,
            host_fifo,
            file,
            LogFiles(container_dir),
            os.path.join(container_dir, OFFSET_FILE),
            session_path,
            fd,
        )
        try:
            # Recorded before the plugin hears of it: a crash from here on leaves a record
            # the next start ends (`_end_stale_session`).
            _write_json(session_path, {"plugin": plugin.name, "file": file, "fifo": host_fifo})
            await client.can_read()  # Docker asks every time a logger is created
            await client.start(file, _info(container))
        except BaseException:
            os.close(fd)
            for path in (host_fifo, session_path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            self.plugins.release(plugin)
            raise
        self._forwarders[container.id] = forwarder
        forwarder.task = asyncio.ensure_future(self._forward(forwarder))

    def resume(self, container: Container, container_dir: str) -> None:
        """After a daemon restart: deliver a running container's output again, from its
        position, in the background: start-up never waits for a log plugin (one that is
        gone, or a managed one being started). A failure is logged; the output stays in
        the engine's log."""
        driver = container.host_config.log_config.type
        cid = container.id
        if not self.is_plugin_driver(driver) or cid in self._forwarders or cid in self._resuming:
            return

        async def resume() -> None:
            try:
                await self.start(container, container_dir)
            except DockyardError as e:
                log.warning("log driver of %s: %s", container.short_id, e.message)
            except OSError as e:  # its files went meanwhile (removed while it waited)
                log.warning("log driver of %s: %s", container.short_id, e)

        task = asyncio.ensure_future(resume())
        self._resuming[cid] = task

        def done(_: object) -> None:
            if self._resuming.get(cid) is task:
                del self._resuming[cid]

        task.add_done_callback(done)

    async def stop(self, container_id: str) -> None:
        """Deliver what is left, then StopLogging and remove the FIFO. When the delivery
        is one resumed at start-up that has not reached its plugin yet, all that goes on
        in the background (neither start-up nor the exit waits for the plugin): what the
        container wrote still reaches it, and the container's next start waits for it."""
        resuming = self._resuming.get(container_id)
        if resuming is not None and not resuming.done():
            if container_id not in self._ending:
                task = asyncio.ensure_future(self._stop_after(resuming, container_id))
                self._ending[container_id] = task
                task.add_done_callback(lambda _: self._ending.pop(container_id, None))
            return
        forwarder = self._forwarders.pop(container_id, None)
        if forwarder is None:
            return
        await self._finish(forwarder, stop_logging=True)

    async def _stop_after(self, resuming: asyncio.Task[None], container_id: str) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(resuming)
        forwarder = self._forwarders.pop(container_id, None)
        if forwarder is not None:
            await self._finish(forwarder, stop_logging=True)

    async def _finish(self, forwarder: _Forwarder, *, stop_logging: bool) -> None:
        forwarder.stopping.set()
        try:
            if forwarder.task is not None:
                limit = forwarder.plugin.client.timeout(None)
                try:
                    await asyncio.wait_for(asyncio.shield(forwarder.task), limit)
                except TimeoutError:
                    log.warning(
                        "log plugin %s did not read %s's output within %gs; the rest stays in "
                        "the engine's log",
                        forwarder.plugin.name,
                        forwarder.container_id[:12],
                        limit,
                    )
                    forwarder.task.cancel()
                except Exception:
                    log.exception("forwarding %s's output", forwarder.container_id[:12])
            if stop_logging:
                try:
                    await forwarder.driver.stop(forwarder.file)
                except DockyardError as e:
                    log.warning("%s", e.message)
        finally:  # whatever happened, no fd, FIFO, session or plugin reference stays behind

            def release(_: object = None) -> None:
                os.close(forwarder.fd)
                for path in (forwarder.host_fifo, forwarder.session_path):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                self.plugins.release(forwarder.plugin)

            task = forwarder.task
            if task is not None and not task.done():  # cancelled while waiting for it
                task.cancel()
                task.add_done_callback(release)  # the fd stays its own until it is done
            else:
                release()

    async def shutdown(self) -> None:
        """Daemon shutdown: deliver what the monitors wrote so far, record the positions, and
        end each logging session; the next daemon starts new ones where these stopped."""
        # Resumes still waiting on their plugins are given up: the next daemon resumes
        # from the same positions.
        for task in [*self._resuming.values(), *self._ending.values()]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        forwarders, self._forwarders = list(self._forwarders.values()), {}
        await asyncio.gather(*(self._finish(f, stop_logging=True) for f in forwarders))
        self._workers.shutdown(wait=False)

    # -- the forwarding loop -------------------------------------------------

    async def _forward(self, fw: _Forwarder) -> None:
        reader = LogReader(fw.log)
        try:
            position = await self._in_worker(fw, _read_position, fw.position_path)
            if position is not None and not await self._in_worker(fw, reader.resume, position):
                self._warn_lost(fw)
            idle = 0
            while True:
                # Read first, then look at the stop flag: after it is set, one more pass
                # reaches everything the (exited) monitor wrote.
                stopping = fw.stopping.is_set()
                lost = reader.lost
                data, position = await self._in_worker(fw, self._next_batch, fw, reader)
                if reader.lost > lost:
                    self._warn_lost(fw)
                if data:
                    await self._write(fw, data)
                    crashpoints.reached("logs:delivered")  # written, position not yet recorded
                    if position is not None:
                        await self._in_worker(fw, _write_position, fw.position_path, position)
                    idle = 0
                    continue
                if stopping:
                    return
                idle += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(fw.stopping.wait(), _POLL if idle < 20 else _IDLE_POLL)
        finally:
            reading = fw.reading
            if reading is not None and not reading.done():  # cancelled while it reads
                reading.add_done_callback(lambda _: reader.close())
            else:
                reader.close()

    async def _in_worker(self, fw: _Forwarder, fn: Callable[..., T], *args: object) -> T:
        future = self._workers.submit(fn, *args)
        fw.reading = future
        return await asyncio.wrap_future(future)

    def _next_batch(self, fw: _Forwarder, reader: LogReader) -> tuple[bytes, Position | None]:
        """On a worker: the next records as framed entries, and the position after them."""
        records = reader.read(_BATCH)
        data = b"".join(frame(self._entry(fw, record)) for record in records)
        return data, reader.position()

    @staticmethod
    def _warn_lost(fw: _Forwarder) -> None:
        log.warning(
            "log plugin %s: output of container %s was lost to rotation before it was "
            "delivered (the plugin, or a daemon that was down, fell more than cache-max-file "
            "files behind); delivery goes on at the oldest file kept",
            fw.plugin.name,
            fw.container_id[:12],
        )

    def _entry(self, fw: _Forwarder, record: k8sfile.LogEntry) -> LogEntry:
        source = "stderr" if record.stream == k8sfile.STDERR else "stdout"
        state = fw.partial.setdefault(source, _Partial())
        if not record.data.endswith(b"\n"):
            if not state.id:
                state.id, state.ordinal = secrets.token_hex(32), 0
            state.ordinal += 1
            meta = PartialMetadata(last=False, id=state.id, ordinal=state.ordinal)
            return LogEntry(source, record.time_ns, record.data, True, meta)
        line = record.data[:-1]
        if state.id:
            meta = PartialMetadata(last=True, id=state.id, ordinal=state.ordinal + 1)
            state.id, state.ordinal = "", 0
            return LogEntry(source, record.time_ns, line, True, meta)
        return LogEntry(source, record.time_ns, line)

    async def _write(self, fw: _Forwarder, data: bytes) -> None:
        view = memoryview(data)
        loop = asyncio.get_running_loop()
        while view:
            try:
                written = os.write(fw.fd, view)
                view = view[written:]
                continue
            except BlockingIOError:
                pass
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_writer(fw.fd, _wake, ready)
            try:
                await ready
            finally:
                loop.remove_writer(fw.fd)

    # -- reading -------------------------------------------------------------

    async def reader(self, container: Container) -> LogDriverClient | None:
        """The plugin to read `container`'s logs from, when its driver serves ReadLogs."""
        driver = container.host_config.log_config.type
        if not self.is_plugin_driver(driver):
            return None
        try:
            plugin = await self.resolve(driver)
        except DockyardError:
            return None
        client = LogDriverClient(plugin.client)
        return client if await client.can_read() else None

    async def read(
        self,
        client: LogDriverClient,
        container: Container,
        *,
        follow: bool,
        since_ns: int,
        until_ns: int,
        tail: int | None,
    ) -> AsyncIterator[k8sfile.LogEntry]:
        config = ReadConfig(
            since=rfc3339(since_ns) if since_ns else ZERO_TIME,
            until=rfc3339(until_ns) if until_ns else ZERO_TIME,
            tail=-1 if tail is None else tail,
            follow=follow,
        )
        async for entry in client.read(_info(container), config):
            if entry.time_nano < since_ns or (until_ns and entry.time_nano > until_ns):
                continue
            meta = entry.partial_log_metadata
            newline = b"" if entry.partial and not (meta and meta.last) else b"\n"
            stream = k8sfile.STDERR if entry.source == "stderr" else k8sfile.STDOUT
            yield k8sfile.LogEntry(entry.time_nano, stream, entry.line + newline)


def _make_fifo(path: str) -> int:
    """Create the FIFO and open it (read-write, non-blocking) without following a link:
    a managed plugin can write in its logging directory and could swap the FIFO for a
    symlink to a host file between the two steps."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    os.mkfifo(path, 0o700)  # fails if anything, a symlink included, is already there
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise
    if not stat.S_ISFIFO(os.fstat(fd).st_mode):
        os.close(fd)
        raise InvalidArgument(f"log FIFO {path} was replaced by something else")
    return fd


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _info(container: Container) -> Info:
    return Info(
        config=dict(container.host_config.log_config.config or {}),
        container_id=container.id,
        container_name="/" + container.name,
        container_entrypoint=container.path,
        container_args=list(container.args),
        container_image_id=container.image_id,
        container_image_name=container.config.image,
        container_created=container.created,
        container_env=list(container.config.env or []),
        container_labels=dict(container.config.labels or {}),
        log_path="",
        daemon_name="docker",
    )


def _read_position(path: str) -> Position | None:
    """The delivered position recorded in `path`; None when nothing was delivered yet (or
    the record is unreadable: then everything the log still holds is delivered)."""
    try:
        with open(path) as f:
            record = json.load(f)
        offset = int(record["offset"])
        seq = record.get("seq")
        inode = record.get("inode")
        return Position(
            None if seq is None else int(seq), None if inode is None else int(inode), offset
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _write_position(path: str, position: Position) -> None:
    record: dict[str, int] = {"offset": position.offset}
    if position.seq is not None:
        record["seq"] = position.seq
    elif position.inode is not None:
        record["inode"] = position.inode
    _write_json(path, record)


def _write_json(path: str, record: dict[str, Any]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f)
    os.replace(tmp, path)


async def _end_stale_session(path: str, plugin: str, client: LogDriverClient) -> None:
    """A logging session a daemon crash left open (its record is still there): its FIFO
    removed, and the plugin told to stop reading it when it is the same plugin (its
    answer does not matter: it may have restarted since)."""
    try:
        with open(path) as f:
            record = json.load(f)
        stale_plugin, file, fifo = str(record["plugin"]), str(record["file"]), str(record["fifo"])
    except FileNotFoundError:
        return
    except (OSError, ValueError, KeyError, TypeError):
        os.unlink(path)
        return
    with contextlib.suppress(OSError):
        if stat.S_ISFIFO(os.lstat(fifo).st_mode):
            os.unlink(fifo)
    if stale_plugin == plugin:
        with contextlib.suppress(DockyardError):
            await client.stop(file)
    os.unlink(path)
