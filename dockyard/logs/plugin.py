"""Delivering a container's output to a LogDriver plugin.

The container's monitor (conmon) writes its output to the container's log
file whatever the log driver; that file is the engine's own copy (Docker's
"dual logging"), so `logs` works even for plugins that cannot read, and a slow
or dead plugin never blocks the container. For a plugin driver, a forwarder in
the daemon tails that file and writes each record into the plugin's FIFO as a
length-prefixed protobuf `LogEntry`:

1. container start: make the FIFO (`<exec-root>/logging/<64 hex>`; for a
   managed plugin in its own `/run/docker/logging`), open it read-write and
   non-blocking (a reader that goes away gives no EPIPE), ask `Capabilities`,
   send `StartLogging{File, Info}` (an error fails the start), start tailing;
2. while it runs: records become entries (`stdout`/`stderr`, the record's
   time, the line without its newline; the monitor's partial records become
   partial entries sharing an id, numbered, the final one marked `last`);
   writes wait while the FIFO is full (blocking mode) — the container does not;
3. container exit: deliver the rest of the file (bounded by the plugin call
   timeout when the plugin has stopped reading), `StopLogging{File}`, close and
   remove the FIFO.

The forwarder records how far into the log file it has delivered
(`<container dir>/log-driver.offset`, written after each batch reached the
FIFO) and always resumes from there: a daemon restart (a new StartLogging with
a new FIFO, as Docker does when it restores a container) or a container
restart neither loses nor repeats output. Only a daemon crash between a write
and the offset update can repeat that one batch. At daemon start the delivery
of running containers resumes in the background (`resume`), so a log plugin
that is gone or still starting never holds up the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from dockyard.containers.model import Container
from dockyard.errors import DockyardError, InvalidArgument
from dockyard.images.oci import ZERO_TIME, rfc3339
from dockyard.logs import k8sfile
from dockyard.logs.options import BUILTIN
from dockyard.plugins.legacy import Plugin
from dockyard.plugins.protocol import LOG
from dockyard.plugins.protocol.logdriver import Info, LogDriverClient, ReadConfig
from dockyard.plugins.protocol.logentry import LogEntry, PartialMetadata, frame
from dockyard.plugins.runspec import LOGGING_DIR
from dockyard.plugins.service import PluginService

log = logging.getLogger(__name__)

OFFSET_FILE = "log-driver.offset"
_POLL = 0.05
_IDLE_POLL = 0.25
_BATCH = 256


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
    log_path: str
    offset_path: str
    fd: int
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    partial: dict[str, _Partial] = field(default_factory=dict)


class PluginLogging:
    def __init__(self, plugins: PluginService, fifo_dir: str) -> None:
        self.plugins = plugins
        self.fifo_dir = fifo_dir
        os.makedirs(fifo_dir, mode=0o700, exist_ok=True)
        os.chmod(fifo_dir, 0o700)  # private even if it was made before with other modes
        self._forwarders: dict[str, _Forwarder] = {}
        self._resuming: dict[str, asyncio.Task[None]] = {}  # container id -> its resume

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

    async def start(self, container: Container, log_path: str, container_dir: str) -> None:
        """Start delivering `container`'s output to its log plugin (a no-op for built-in
        drivers). Raises when the plugin refuses: the container must not start."""
        driver = container.host_config.log_config.type
        if not self.is_plugin_driver(driver) or container.id in self._forwarders:
            return
        plugin = await self.resolve(driver)
        client = LogDriverClient(plugin.client)
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
            log_path,
            os.path.join(container_dir, OFFSET_FILE),
            fd,
        )
        try:
            await client.can_read()  # Docker asks every time a logger is created
            await client.start(file, _info(container))
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(host_fifo)
            self.plugins.release(plugin)
            raise
        self._forwarders[container.id] = forwarder
        forwarder.task = asyncio.ensure_future(self._forward(forwarder))

    def resume(self, container: Container, log_path: str, container_dir: str) -> None:
        """After a daemon restart: deliver a running container's output again, from its
        offset, in the background: start-up never waits for a log plugin (one that is
        gone, or a managed one being started). A failure is logged; the output stays in
        the engine's log."""
        driver = container.host_config.log_config.type
        cid = container.id
        if not self.is_plugin_driver(driver) or cid in self._forwarders or cid in self._resuming:
            return

        async def resume() -> None:
            try:
                await self.start(container, log_path, container_dir)
            except DockyardError as e:
                log.warning("log driver of %s: %s", container.short_id, e.message)

        task = asyncio.ensure_future(resume())
        self._resuming[cid] = task

        def done(_: object) -> None:
            if self._resuming.get(cid) is task:
                del self._resuming[cid]

        task.add_done_callback(done)

    async def stop(self, container_id: str) -> None:
        """Deliver what is left, then StopLogging and remove the FIFO. A resume still
        under way is waited for first (it fails fast for a plugin that is gone): what the
        container wrote reaches the plugin."""
        resuming = self._resuming.get(container_id)
        if resuming is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(resuming)
        forwarder = self._forwarders.pop(container_id, None)
        if forwarder is None:
            return
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
        finally:  # whatever happened, no fd, FIFO or plugin reference stays behind

            def release(_: object = None) -> None:
                os.close(forwarder.fd)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(forwarder.host_fifo)
                self.plugins.release(forwarder.plugin)

            task = forwarder.task
            if task is not None and not task.done():  # cancelled while waiting for it
                task.cancel()
                task.add_done_callback(release)  # the fd stays its own until it is done
            else:
                release()

    async def shutdown(self) -> None:
        """Daemon shutdown: deliver what the monitors wrote so far, record the offsets, and
        end each logging session; the next daemon starts new ones where these stopped."""
        # Resumes still waiting on their plugins are given up: the next daemon resumes
        # from the same offsets.
        for task in list(self._resuming.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        forwarders, self._forwarders = list(self._forwarders.values()), {}
        await asyncio.gather(*(self._finish(f, stop_logging=True) for f in forwarders))

    # -- the forwarding loop -------------------------------------------------

    async def _forward(self, fw: _Forwarder) -> None:
        offset = _read_offset(fw.offset_path)
        f = None
        try:
            while f is None:
                try:
                    f = open(fw.log_path, "rb")  # noqa: SIM115 - held across awaits
                except FileNotFoundError:
                    if fw.stopping.is_set():
                        return
                    await asyncio.sleep(_POLL)
            f.seek(offset)
            idle = 0
            while True:
                # Read first, then look at the stop flag: after it is set, one more pass
                # reaches everything the (exited) monitor wrote.
                stopping = fw.stopping.is_set()
                batch = []
                for entry in k8sfile.read_entries(f):
                    batch.append(frame(self._entry(fw, entry)))
                    if len(batch) >= _BATCH:
                        break
                if batch:
                    await self._write(fw, b"".join(batch))
                    _write_offset(fw.offset_path, f.tell())
                    idle = 0
                    continue
                if stopping:
                    return
                idle += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(fw.stopping.wait(), _POLL if idle < 20 else _IDLE_POLL)
        finally:
            if f is not None:
                f.close()

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


def _read_offset(path: str) -> int:
    try:
        with open(path) as f:
            return int(json.load(f)["offset"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _write_offset(path: str, offset: int) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"offset": offset}, f)
    os.replace(tmp, path)
