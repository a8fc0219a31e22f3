"""Log plugins: subclass `LogPlugin` and override `log` (and `read_logs` to serve
`docker logs`).

For each container start the engine creates a FIFO and calls StartLogging;
this base class opens the FIFO, decodes the framed `LogEntry` messages and
calls `log(info, entry)` for each, in order. At StopLogging it reads what is
left in the FIFO, calls `log` for it, then `stopped(info)`, and answers: the
engine removes the FIFO after that. `entry.line` has no trailing newline;
`entry.partial` marks pieces of a long line (sharing
`entry.partial_log_metadata.id`, the last one with `.last`).

    class Print(LogPlugin):
        def log(self, info, entry):
            print(info.container_name, entry.source, entry.line.decode(errors="replace"))

Override `read_logs(req)` as an async generator of `LogEntry` to serve reads
(`req.info` names the container, `req.config` has `since`, `until`, `tail`
and `follow`); the engine then asks the plugin instead of its own copy. If
the engine dies without StopLogging, the stream ends at the FIFO's EOF and
`stopped(info)` is called then.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from dockyard.plugins.protocol import LOG
from dockyard.plugins.protocol.logdriver import (
    Cap,
    CapabilitiesReply,
    Info,
    ReadConfig,
    ReadRequest,
    StartRequest,
    StopRequest,
)
from dockyard.plugins.protocol.logentry import FrameReader, LogEntry, PartialMetadata
from dockyard.sdk.base import Endpoint, Plugin, PluginError, call

__all__ = ["Info", "LogEntry", "LogPlugin", "PartialMetadata", "ReadConfig"]

log = logging.getLogger(__name__)


@dataclass
class _Stream:
    info: Info
    fd: int
    reader: FrameReader = field(default_factory=FrameReader)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    task: asyncio.Future[None] | None = None


class LogPlugin(Plugin):
    kind = LOG
    endpoints: ClassVar[dict[str, Endpoint]] = {
        "LogDriver.StartLogging": Endpoint("_start", StartRequest),
        "LogDriver.StopLogging": Endpoint("_stop", StopRequest),
        "LogDriver.Capabilities": Endpoint("_capabilities", None),
        "LogDriver.ReadLogs": Endpoint("read_logs", ReadRequest, True),
    }

    def __init__(self) -> None:
        self._streams: dict[str, _Stream] = {}

    # -- what plugin authors override -----------------------------------------

    def log(self, info: Info, entry: LogEntry) -> Any:
        """One entry of the container `info` describes (called in order)."""
        raise PluginError("LogPlugin.log is not implemented by this plugin")

    def started(self, info: Info) -> Any:
        """A container started logging (before any entry)."""
        return None

    def stopped(self, info: Info) -> Any:
        """A container stopped logging (after its last entry)."""
        return None

    def read_logs(self, req: ReadRequest) -> AsyncIterator[LogEntry]:
        """Entries of `req.info.container_id` as `req.config` asks (since, until, tail,
        follow); an async generator. Not overridden: the plugin cannot read logs."""
        raise PluginError("LogDriver.ReadLogs is not implemented by this plugin")

    # -- the wire side ----------------------------------------------------------

    def _streams_of(self) -> dict[str, _Stream]:
        if not hasattr(self, "_streams"):
            self._streams = {}  # a subclass that did not call super().__init__()
        return self._streams

    async def _start(self, req: StartRequest) -> dict[str, Any]:
        streams = self._streams_of()
        if req.file in streams:
            raise PluginError(f"already logging to {req.file}")
        try:
            fd = os.open(req.file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise PluginError(f"cannot open {req.file}: {e.strerror}") from e
        streams[req.file] = _Stream(req.info, fd)
        await call(self.started, req.info)
        asyncio.get_running_loop().add_reader(fd, self._readable, req.file)
        return {}

    def _readable(self, file: str) -> None:
        stream = self._streams_of().get(file)
        if stream is not None and not stream.lock.locked():
            stream.task = asyncio.ensure_future(self._drain(stream))

    async def _drain(self, stream: _Stream) -> None:
        async with stream.lock:
            while stream.fd >= 0:
                try:
                    data = os.read(stream.fd, 1 << 16)
                except BlockingIOError:
                    return
                except OSError:
                    data = b""
                if not data:
                    # No writer left (the engine died without StopLogging): a FIFO at EOF
                    # stays readable, so stop watching it or the loop spins.
                    await self._ended(stream)
                    return
                for entry in stream.reader.feed(data):
                    try:
                        await call(self.log, stream.info, entry)
                    except Exception:
                        log.exception("log plugin failed on an entry")

    async def _ended(self, stream: _Stream) -> None:
        """The writer went away: the stream ends as if stopped."""
        streams = self._streams_of()
        file = next((f for f, known in streams.items() if known is stream), None)
        if file is None:
            return  # StopLogging is under way and finishes it
        del streams[file]
        self._close(stream)
        await call(self.stopped, stream.info)

    @staticmethod
    def _close(stream: _Stream) -> None:
        if stream.fd >= 0:
            asyncio.get_running_loop().remove_reader(stream.fd)
            os.close(stream.fd)
            stream.fd = -1

    async def _stop(self, req: StopRequest) -> dict[str, Any]:
        stream = self._streams_of().pop(req.file, None)
        if stream is None:
            raise PluginError(f"not logging to {req.file}")
        asyncio.get_running_loop().remove_reader(stream.fd)
        try:
            await self._drain(stream)
        finally:
            self._close(stream)
        await call(self.stopped, stream.info)
        return {}

    async def _capabilities(self) -> CapabilitiesReply:
        return CapabilitiesReply(cap=Cap(read_logs=self.overrides("read_logs")))
