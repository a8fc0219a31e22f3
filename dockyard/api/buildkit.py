"""BuildKit's front doors: `POST /grpc` and `POST /session`, both upgraded to HTTP/2.

On `/grpc` the engine serves BuildKit's control service and the frontend bridge
(`buildkit.control`, `buildkit.gateway`, over `buildkit.rpc`) until the client hangs up;
on `/session` the client serves the engine (`buildkit.session`). Both ask for
`Upgrade: h2c`; anything else is refused before the upgrade with moby's messages and
statuses (500 on `/grpc`, where moby reports them as untyped errors; 400 on `/session`).
"""

from __future__ import annotations

from aiohttp import web

from dockyard.api.app import Routes, engine
from dockyard.api.streams import upgrade
from dockyard.buildkit import rpc
from dockyard.buildkit.control import Control
from dockyard.buildkit.gateway import Gateway
from dockyard.buildkit.session import HEADER_ID, HEADER_METHOD, HEADER_NAME, HEADER_SHARED_KEY
from dockyard.errors import DockyardError, InvalidArgument

routes = Routes()


def _upgrade_protocol(request: web.Request, error: type[DockyardError]) -> str:
    protocol = request.headers.get("Upgrade", "")
    if not protocol:
        raise error("no upgrade proto in request")
    if protocol != "h2c":
        raise error(f"protocol {protocol} not supported")
    return protocol


@routes.post("/grpc")
async def grpc(request: web.Request) -> web.StreamResponse:
    protocol = _upgrade_protocol(request, DockyardError)
    eng = engine(request)
    control = Control(
        eng.id, eng.builder, eng.buildkit_jobs, host_gateway=eng.network.host_gateway()
    )
    gateway = Gateway(eng.buildkit_jobs, eng.builder, control.worker())
    resp, connection = await upgrade(request, protocol)
    await rpc.serve(connection, {**control.handlers(), **gateway.handlers()})
    return resp


@routes.post("/session")
async def session(request: web.Request) -> web.StreamResponse:
    sessions = engine(request).buildkit_sessions
    headers = request.headers
    session_id = headers.get(HEADER_ID, "")
    sessions.reserve(session_id)  # moby checks the ID first, then the upgrade
    try:
        protocol = _upgrade_protocol(request, InvalidArgument)
        resp, connection = await upgrade(request, protocol)
    except BaseException:
        sessions.release(session_id)
        raise
    await sessions.serve(
        session_id,
        headers.get(HEADER_NAME, ""),
        headers.get(HEADER_SHARED_KEY, ""),
        headers.getall(HEADER_METHOD, []),
        connection,
    )
    return resp
