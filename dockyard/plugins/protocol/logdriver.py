"""LogDriver: `/LogDriver.*` endpoints, messages and client.

Lifecycle per container start: the engine makes a FIFO, asks `Capabilities`
(optional), sends `StartLogging{File, Info}`, writes framed `LogEntry`
messages (see `logentry`) into the FIFO while the container runs, and at stop
sends `StopLogging{File}` and then removes the FIFO. `ReadLogs{Info, Config}`
(only when `Cap.ReadLogs` is true) answers with a stream of framed entries.

The docs disagree with the daemon; this follows the daemon: the capabilities
reply is `{"Cap": {"ReadLogs": true}}` (a top-level `ReadLogs` is accepted
too) and the ReadLogs request key is `Config`, not `ReadConfig`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from dockyard.plugins.client import PluginClient, PluginError
from dockyard.plugins.protocol import logentry
from dockyard.wire import Message, wire

ZERO_TIME = "0001-01-01T00:00:00Z"


class Info(Message):
    config: dict[str, str] = wire(default_factory=dict)
    container_id: str = wire("ContainerID", default="")
    container_name: str = wire(default="")
    container_entrypoint: str = wire(default="")
    container_args: list[str] = wire(default_factory=list)
    container_image_id: str = wire("ContainerImageID", default="")
    container_image_name: str = wire(default="")
    container_created: str = wire(default=ZERO_TIME)
    container_env: list[str] = wire(default_factory=list)
    container_labels: dict[str, str] = wire(default_factory=dict)
    log_path: str = wire(default="")
    daemon_name: str = wire(default="")


class StartRequest(Message):
    file: str = wire(default="")
    info: Info = wire(default_factory=Info)


class StopRequest(Message):
    file: str = wire(default="")


class ReadConfig(Message):
    since: str = wire(default=ZERO_TIME)
    until: str = wire(default=ZERO_TIME)
    tail: int = wire(default=-1)
    follow: bool = wire(default=False)


class ReadRequest(Message):
    info: Info = wire(default_factory=Info)
    config: ReadConfig = wire(default_factory=ReadConfig)


class Cap(Message):
    read_logs: bool = wire(default=False)


class CapabilitiesReply(Message):
    cap: Cap | None = wire(default=None)
    read_logs: bool = wire(default=False)  # what the docs (wrongly) show
    err: str = wire(default="", omitempty=True)


class ErrReply(Message):
    err: str = wire(default="", omitempty=True)


class LogDriverClient:
    """Typed calls to one LogDriver plugin; failures raise `PluginError`."""

    def __init__(self, client: PluginClient) -> None:
        self.client = client

    @property
    def name(self) -> str:
        return self.client.name

    async def can_read(self) -> bool:
        """Whether the plugin serves ReadLogs; a failing or missing Capabilities means no."""
        try:
            reply = await self.client.call("LogDriver.Capabilities", None, CapabilitiesReply)
        except PluginError:
            return False
        return bool(reply.cap.read_logs if reply.cap is not None else reply.read_logs)

    async def start(self, file: str, info: Info) -> None:
        await self.client.call("LogDriver.StartLogging", StartRequest(file, info), ErrReply)

    async def stop(self, file: str) -> None:
        await self.client.call("LogDriver.StopLogging", StopRequest(file), ErrReply)

    async def read(self, info: Info, config: ReadConfig) -> AsyncIterator[logentry.LogEntry]:
        reader = logentry.FrameReader()
        try:
            async for chunk in self.client.stream("LogDriver.ReadLogs", ReadRequest(info, config)):
                for entry in reader.feed(chunk):
                    yield entry
        except logentry.DecodeError as e:
            raise PluginError(self.name, "LogDriver.ReadLogs", f"invalid log stream: {e}") from e
