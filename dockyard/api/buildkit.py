"""BuildKit's front door: `POST /grpc`, upgraded to HTTP/2 for BuildKit's gRPC services.

The client asks for `Upgrade: h2c`; anything else is refused before the upgrade with
moby's messages and status (500: moby reports these as untyped errors). After `101`
the connection belongs to `buildkit.rpc`, which serves the control service until the
client hangs up.
"""

from __future__ import annotations

from aiohttp import web

from dockyard.api.app import Routes, engine
from dockyard.api.streams import upgrade
from dockyard.buildkit import rpc
from dockyard.buildkit.control import Control
from dockyard.errors import DockyardError

routes = Routes()


def _upgrade_protocol(request: web.Request) -> str:
    protocol = request.headers.get("Upgrade", "")
    if not protocol:
        raise DockyardError("no upgrade proto in request")
    if protocol != "h2c":
        raise DockyardError(f"protocol {protocol} not supported")
    return protocol


@routes.post("/grpc")
async def grpc(request: web.Request) -> web.StreamResponse:
    protocol = _upgrade_protocol(request)
    eng = engine(request)
    control = Control(eng.id, eng.builder, host_gateway=eng.network.host_gateway())
    resp, connection = await upgrade(request, protocol)
    await rpc.serve(connection, control.handlers())
    return resp
