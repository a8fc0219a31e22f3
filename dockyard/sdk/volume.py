"""Volume plugins: subclass `VolumePlugin` and override its methods.

An engine asks the capabilities once (answered from the class's `scope`,
"local" or "global"); then `get(name)` and, if it
returns None, `create(name, opts)` when a volume is created; `mount(name, id)`
at each container start (a fresh 64-hex `id` per mount; count them, several
containers can mount one volume) and `unmount(name, id)` with the same id at
stop; `get` then `remove(name)` at `volume rm`; `list()` for `volume ls`;
`path(name)` when it needs the mountpoint again. Raise `PluginError(message)`
for any failure; the message reaches the user.

    class Dirs(VolumePlugin):
        def create(self, name, opts): os.makedirs(f"/srv/vols/{name}")
        def remove(self, name): shutil.rmtree(f"/srv/vols/{name}")
        def mount(self, name, id): return f"/srv/vols/{name}"
        def path(self, name): return f"/srv/vols/{name}"
        def get(self, name):
            return Volume(name, f"/srv/vols/{name}") if os.path.isdir(f"/srv/vols/{name}") else None
        def list(self): return [Volume(n, f"/srv/vols/{n}") for n in os.listdir("/srv/vols")]
"""

from __future__ import annotations

from typing import Any, ClassVar

from dockyard.plugins.protocol import VOLUME
from dockyard.plugins.protocol.volume import (
    CapabilitiesReply,
    Capability,
    CreateRequest,
    GetReply,
    ListReply,
    MountReply,
    MountRequest,
    NameRequest,
    Volume,
)
from dockyard.sdk.base import Endpoint, Plugin, PluginError, call

__all__ = ["Volume", "VolumePlugin"]


class VolumePlugin(Plugin):
    kind = VOLUME
    scope: ClassVar[str] = "local"  # or "global": one volume for a whole cluster
    endpoints: ClassVar[dict[str, Endpoint]] = {
        "VolumeDriver.Create": Endpoint("_create", CreateRequest),
        "VolumeDriver.Remove": Endpoint("_remove", NameRequest),
        "VolumeDriver.Mount": Endpoint("_mount", MountRequest),
        "VolumeDriver.Unmount": Endpoint("_unmount", MountRequest),
        "VolumeDriver.Path": Endpoint("_path", NameRequest),
        "VolumeDriver.Get": Endpoint("_get", NameRequest),
        "VolumeDriver.List": Endpoint("_list", None),
        "VolumeDriver.Capabilities": Endpoint("_capabilities", None),
    }

    # -- what plugin authors override -----------------------------------------

    def create(self, name: str, opts: dict[str, str]) -> Any:
        raise PluginError("VolumeDriver.Create is not implemented by this plugin")

    def remove(self, name: str) -> Any:
        raise PluginError("VolumeDriver.Remove is not implemented by this plugin")

    def mount(self, name: str, id: str) -> Any:
        """Return the mountpoint (an absolute host path) after making it ready."""
        raise PluginError("VolumeDriver.Mount is not implemented by this plugin")

    def unmount(self, name: str, id: str) -> Any:
        return None

    def path(self, name: str) -> Any:
        """Return the mountpoint, or "" when the volume is not mounted."""
        volume = self.get(name)
        return volume.mountpoint if isinstance(volume, Volume) else ""

    def get(self, name: str) -> Any:
        """Return a `Volume`, or None when there is no such volume."""
        raise PluginError("VolumeDriver.Get is not implemented by this plugin")

    def list(self) -> Any:
        """Return a list of `Volume`."""
        raise PluginError("VolumeDriver.List is not implemented by this plugin")

    # -- the wire side ----------------------------------------------------------

    async def _create(self, req: CreateRequest) -> dict[str, Any]:
        await call(self.create, req.name, dict(req.opts or {}))
        return {}

    async def _remove(self, req: NameRequest) -> dict[str, Any]:
        await call(self.remove, req.name)
        return {}

    async def _mount(self, req: MountRequest) -> MountReply:
        return MountReply(mountpoint=str(await call(self.mount, req.name, req.id) or ""))

    async def _unmount(self, req: MountRequest) -> dict[str, Any]:
        await call(self.unmount, req.name, req.id)
        return {}

    async def _path(self, req: NameRequest) -> MountReply:
        return MountReply(mountpoint=str(await call(self.path, req.name) or ""))

    async def _get(self, req: NameRequest) -> GetReply:
        volume = await call(self.get, req.name)
        if volume is None:
            raise PluginError(f"no such volume: {req.name}")
        return GetReply(volume=volume)

    async def _list(self) -> ListReply:
        return ListReply(volumes=list(await call(self.list)))

    async def _capabilities(self) -> CapabilitiesReply:
        return CapabilitiesReply(Capability(self.scope))
