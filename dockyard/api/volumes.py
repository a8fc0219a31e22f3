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
from dockyard.errors import InvalidArgument
from dockyard.volumes.service import Usage, Volume

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


def _string_map(value: Any, field: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidArgument(f"invalid JSON: {field} must map strings to strings")
    return value


@routes.post("/volumes/create")
async def create(request: web.Request) -> web.StreamResponse:
    body = await read_json(request)
    name = body.get("Name") or ""
    driver = body.get("Driver") or ""
    if not isinstance(name, str) or not isinstance(driver, str):
        raise InvalidArgument("invalid JSON: Name and Driver must be strings")
    volume = await engine(request).volumes.create(
        name,
        driver,
        _string_map(body.get("DriverOpts"), "DriverOpts"),
        _string_map(body.get("Labels"), "Labels"),
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
