"""Network routes: list, inspect, create, remove, prune, connect, disconnect (Docker's shapes)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dockyard.api import filters
from dockyard.api.app import Routes, engine, json_response, read_json
from dockyard.containers import schema
from dockyard.containers.schema import EndpointSettings
from dockyard.errors import InvalidArgument
from dockyard.images.oci import rfc3339
from dockyard.network.manager import NetworkManager
from dockyard.network.model import Network
from dockyard.network.requests import (
    NetworkConnectRequest,
    NetworkCreateRequest,
    NetworkDisconnectRequest,
)

routes = Routes()

_FILTERS = ("driver", "id", "label", "name", "scope", "type", "dangling")
_PRUNE_FILTERS = ("until", "label", "label!")


def render(manager: NetworkManager, network: Network, *, containers: bool = True) -> dict[str, Any]:
    attached: dict[str, Any] = {}
    if containers:
        for endpoint in manager.endpoints_of(network):
            attached[endpoint.container_id] = {
                "Name": endpoint.container_name,
                "EndpointID": endpoint.id,
                "MacAddress": endpoint.mac,
                "IPv4Address": endpoint.address,
                "IPv6Address": endpoint.address6,
            }
    return {
        "Name": network.name,
        "Id": network.id,
        "Created": network.created,
        "Scope": network.scope,
        "Driver": network.driver,
        "EnableIPv4": network.driver == "bridge",
        "EnableIPv6": network.enable_ipv6,
        "IPAM": {
            "Driver": network.ipam_driver,
            "Options": network.ipam_options or None,
            "Config": network.ipam_config,
        },
        "Internal": network.internal,
        "Attachable": network.attachable,
        "Ingress": network.ingress,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": attached,
        "Options": network.options,
        "Labels": network.labels,
    }


def _matches(manager: NetworkManager, network: Network, wanted: filters.Filters) -> bool:
    for key, values in wanted.items():
        if not values:
            continue
        if key == "driver" and network.driver not in values:
            return False
        if key == "id" and not any(network.id.startswith(v) for v in values):
            return False
        if key == "name" and not any(v in network.name for v in values):
            return False
        if key == "label" and not filters.label_matches(network.labels, values):
            return False
        if key == "scope" and network.scope not in values:
            return False
        if key == "type":
            for value in values:
                if value not in ("custom", "builtin"):
                    raise InvalidArgument(f"invalid filter: 'type'='{value}'")
            kind = "builtin" if network.predefined else "custom"
            if kind not in values:
                return False
        if key == "dangling":
            dangling = filters.bool_value(values, key)
            unused = network.user_defined and not manager.in_use(network)
            if dangling != unused:
                return False
    return True


@routes.get("/networks")
async def list_networks(request: web.Request) -> web.StreamResponse:
    manager = engine(request).network
    wanted = filters.parse(request.query.get("filters"), _FILTERS)
    return json_response(
        [
            render(manager, n, containers=False)
            for n in manager.all()
            if _matches(manager, n, wanted)
        ]
    )


@routes.get("/networks/{id}")
async def inspect(request: web.Request) -> web.StreamResponse:
    manager = engine(request).network
    return json_response(render(manager, manager.get(request.match_info["id"])))


@routes.post("/networks/create")
async def create(request: web.Request) -> web.StreamResponse:
    body = schema.decode(NetworkCreateRequest, await read_json(request, required=True))
    network = await engine(request).network.create(body)
    return json_response({"Id": network.id, "Warning": ""}, 201)


@routes.delete("/networks/{id}")
async def remove(request: web.Request) -> web.StreamResponse:
    await engine(request).network.remove(request.match_info["id"])
    return web.Response(status=204)


@routes.post("/networks/prune")
async def prune(request: web.Request) -> web.StreamResponse:
    wanted = filters.parse(request.query.get("filters"), _PRUNE_FILTERS)
    until = filters.until(wanted.get("until", []))

    def keep(network: Network) -> bool:
        if until is not None and network.created > rfc3339(until):
            return True
        return not filters.prune_labels_match(network.labels, wanted)

    removed = await engine(request).network.prune(keep)
    return json_response({"NetworksDeleted": removed or None})


@routes.post("/networks/{id}/connect")
async def connect(request: web.Request) -> web.StreamResponse:
    body = schema.decode(NetworkConnectRequest, await read_json(request, required=True))
    await engine(request).containers.networking.connect(
        request.match_info["id"],
        _container(body.container),
        body.endpoint_config or EndpointSettings(),
    )
    return web.Response(status=200)


@routes.post("/networks/{id}/disconnect")
async def disconnect(request: web.Request) -> web.StreamResponse:
    body = schema.decode(NetworkDisconnectRequest, await read_json(request, required=True))
    await engine(request).containers.networking.disconnect(
        request.match_info["id"], _container(body.container), body.force
    )
    return web.Response(status=200)


def _container(ref: str) -> str:
    if not ref:
        raise InvalidArgument("invalid JSON: Container must be a container name or ID")
    return ref
