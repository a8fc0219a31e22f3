"""VolumeDriver: `/VolumeDriver.*` endpoints, messages and client.

Lifecycle (what the engine calls when): `Capabilities` once per driver;
`Get` then `Create` (if missing) for `volume create` and container create;
`Mount{Name, ID}` per container start with a fresh 64-hex ID and `Unmount`
with the same ID at stop; `Get` then `Remove` for `volume rm`; `List` for
`volume ls`; `Path` when the engine needs a path it has not cached. Errors
come back in `Err`. Create and Mount time out after 2 minutes, the rest after
1 minute (Docker's timeouts).
"""

from __future__ import annotations

from typing import Any

from dockyard.plugins.client import PluginClient
from dockyard.wire import Message, wire

CREATE_TIMEOUT = 120.0
DEFAULT_TIMEOUT = 60.0


class Volume(Message):
    name: str = wire(default="")
    mountpoint: str = wire(default="", omitempty=True)
    created_at: str = wire(default="", omitempty=True)
    status: dict[str, Any] | None = wire(default=None, omitempty=True)


class CreateRequest(Message):
    name: str = wire(default="")
    opts: dict[str, str] | None = wire(default=None)


class NameRequest(Message):
    """Remove, Path and Get requests."""

    name: str = wire(default="")


class MountRequest(Message):
    """Mount and Unmount requests."""

    name: str = wire(default="")
    id: str = wire("ID", default="")


class ErrReply(Message):
    err: str = wire(default="", omitempty=True)


class MountReply(Message):
    mountpoint: str = wire(default="")
    err: str = wire(default="", omitempty=True)


class GetReply(Message):
    volume: Volume | None = wire(default=None)
    err: str = wire(default="", omitempty=True)


class ListReply(Message):
    volumes: list[Volume] = wire(default_factory=list)
    err: str = wire(default="", omitempty=True)


class Capability(Message):
    scope: str = wire(default="")


class CapabilitiesReply(Message):
    capabilities: Capability = wire(default_factory=Capability)


class VolumeDriverClient:
    """Typed calls to one VolumeDriver plugin; failures raise `PluginError`."""

    def __init__(self, client: PluginClient) -> None:
        self.client = client

    @property
    def name(self) -> str:
        return self.client.name

    async def create(self, name: str, opts: dict[str, str] | None) -> None:
        await self.client.call(
            "VolumeDriver.Create",
            CreateRequest(name, dict(opts or {})),
            ErrReply,
            timeout=CREATE_TIMEOUT,
        )

    async def remove(self, name: str, *, retry: bool = True) -> None:
        await self.client.call(
            "VolumeDriver.Remove",
            NameRequest(name),
            ErrReply,
            timeout=DEFAULT_TIMEOUT,
            retry=retry,
        )

    async def mount(self, name: str, mount_id: str) -> str:
        reply = await self.client.call(
            "VolumeDriver.Mount", MountRequest(name, mount_id), MountReply, timeout=CREATE_TIMEOUT
        )
        return reply.mountpoint

    async def unmount(self, name: str, mount_id: str) -> None:
        await self.client.call(
            "VolumeDriver.Unmount", MountRequest(name, mount_id), ErrReply, timeout=DEFAULT_TIMEOUT
        )

    async def path(self, name: str) -> str:
        reply = await self.client.call(
            "VolumeDriver.Path", NameRequest(name), MountReply, timeout=DEFAULT_TIMEOUT
        )
        return reply.mountpoint

    async def get(self, name: str) -> Volume | None:
        """The volume, or None when the plugin says it has no such volume."""
        reply = await self.client.call(
            "VolumeDriver.Get", NameRequest(name), GetReply, timeout=DEFAULT_TIMEOUT
        )
        return reply.volume

    async def list(self) -> list[Volume]:
        reply = await self.client.call("VolumeDriver.List", {}, ListReply, timeout=DEFAULT_TIMEOUT)
        return reply.volumes

    async def scope(self) -> str:
        """`local` or `global`; anything missing, invalid or failing counts as `local`."""
        from dockyard.plugins.client import PluginError

        try:
            reply = await self.client.call(
                "VolumeDriver.Capabilities", {}, CapabilitiesReply, timeout=DEFAULT_TIMEOUT
            )
        except PluginError:
            return "local"
        scope = reply.capabilities.scope.lower()
        return scope if scope in ("local", "global") else "local"
