"""Volume routes: create, list, inspect, remove, prune (Docker's JSON shapes)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dockyard.api import filters
from dockyard.api.app import (
    Routes,
    api_version,
    engine,
    error_response,
    json_response,
    query_bool,
    read_json,
)
from dockyard.containers import schema
from dockyard.volumes.service import Usage, Volume
from dockyard.wire import Message, wire

routes = Routes()


def volume_json(volume: Volume, usage: Usage | None = None) -> dict[str, Any]:
    """Docker's Volume object; with `usage`, the `UsageData` `/system/df` needs."""
    data: dict[str, Any] = {
        "CreatedAt": volume.created,
        "Driver": volume.driver,
        "Labels": volume.labels,
        "Mountpoint": volume.mountpoint,
        "Name": volume.name,
        "Options": volume.options,
        "Scope": volume.scope,
    }
    if volume.status:
        data["Status"] = volume.status
    if usage is not None:
        data["UsageData"] = {"Size": usage.size, "RefCount": usage.ref_count}
    return data


class VolumeCreate(Message):
    """`POST /volumes/create`'s body (moby's `volume.CreateOptions`)."""

    name: str = wire(default="")
    driver: str = wire(default="")
    driver_opts: dict[str, str] | None = wire(default=None)
    labels: dict[str, str] | None = wire(default=None)


@routes.post("/volumes/create")
async def create(request: web.Request) -> web.StreamResponse:
    body = schema.decode(VolumeCreate, await read_json(request))
    volume = await engine(request).volumes.create(
        body.name, body.driver, body.driver_opts, body.labels
    )
    return json_response(volume_json(volume), 201)


@routes.get("/volumes")
async def list_volumes(request: web.Request) -> web.StreamResponse:
    wanted = filters.parse(request.query.get("filters"))
    volumes, warnings = await engine(request).volumes.find(wanted)
    return json_response({"Volumes": [volume_json(v) for v in volumes], "Warnings": warnings})


@routes.get("/volumes/{name}")
async def inspect(request: web.Request) -> web.StreamResponse:
    volume = await engine(request).volumes.get(request.match_info["name"])
    return json_response(volume_json(volume))


@routes.put("/volumes/{name}")
async def update(request: web.Request) -> web.StreamResponse:
    return error_response(
        503, "volume update only valid for cluster volumes, but swarm is unavailable"
    )


@routes.delete("/volumes/{name}")
async def remove(request: web.Request) -> web.StreamResponse:
    await engine(request).volumes.remove(
        request.match_info["name"], force=query_bool(request, "force")
    )
    return web.Response(status=204)


@routes.post("/volumes/prune")
async def prune(request: web.Request) -> web.StreamResponse:
    wanted = filters.parse(request.query.get("filters"))
    # Before API 1.42 prune took every unused volume, not only anonymous ones.
    removed, reclaimed = await engine(request).volumes.prune(
        wanted, all=api_version(request) < (1, 42)
    )
    return json_response({"VolumesDeleted": removed or None, "SpaceReclaimed": reclaimed})
