"""The VolumeDriver interface that every volume driver implements, built-in or plugin.

One method per endpoint of Docker's VolumeDriver plugin protocol
(`/VolumeDriver.Create`, `.Remove`, `.Mount`, `.Unmount`, `.Path`, `.Get`,
`.List`, `.Capabilities`), with the same arguments and results, so a remote
plugin is this interface backed by HTTP calls and the built-in `local` driver
is the same interface in-process.

Lifecycle, as the engine drives a driver:

    capabilities()        once, when the driver is first resolved: its scope
    get(name)             before create (None = the driver has no such volume),
                          on inspect, and at engine start to re-check records
    create(name, opts)    `volume create -o k=v`, or a container naming a missing
                          volume; opts are the user's driver options (labels
                          stay in the engine and never reach the driver)
    mount(name, id)       at every container start, once per volume, with a
                          fresh 64-hex `id` (never the container ID); returns
                          the host path the engine bind-mounts into the container
    unmount(name, id)     when that container stops, with the same `id`
    path(name)            the mountpoint when the engine has none cached ("" if
                          the volume is not mounted or has no path)
    list()                `volume ls`
    remove(name)          `volume rm`, `rm -v`, `--rm`, prune; only called while
                          no container references the volume

The same volume may be mounted many times at once, each with its own id; a
driver keeps a reference count keyed by id: it provisions on the first mount
and releases on the last unmount. An unmount with an id that is not mounted
changes nothing. The engine persists each id before it calls `mount` and
forgets it after `unmount` returns, so every mount is paired with exactly one
unmount, also across engine restarts and container crashes (an unmount may
therefore repeat after a crash; drivers treat a repeat as a no-op).

Errors are `dockyard.errors` types: `InvalidArgument` for bad names or
options, `NotFound` for a missing volume where one is required, `Unavailable`
for anything else (a plugin's `Err` text becomes its message).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class VolumeInfo:
    """The protocol's Volume object: what `get` and `list` return."""

    name: str
    mountpoint: str = ""
    created_at: str = ""  # RFC 3339, "" if the driver does not say
    status: dict[str, Any] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Capabilities:
    scope: str = "local"  # "local" (per host) or "global" (one per cluster)


class VolumeDriver(Protocol):
    """A volume driver: one method per VolumeDriver protocol endpoint."""

    @property
    def name(self) -> str: ...

    async def create(self, name: str, options: dict[str, str]) -> None: ...

    async def remove(self, name: str) -> None: ...

    async def mount(self, name: str, mount_id: str) -> str: ...

    async def unmount(self, name: str, mount_id: str) -> None: ...

    async def path(self, name: str) -> str: ...

    async def get(self, name: str) -> VolumeInfo | None: ...

    async def list(self) -> list[VolumeInfo]: ...

    async def capabilities(self) -> Capabilities: ...
