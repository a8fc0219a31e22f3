"""Plugin routes: managed plugins (`/plugins...`) and the conformance check."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from dockyard.api import filters
from dockyard.api.app import Routes, engine, json_response, query_bool, query_int
from dockyard.errors import InvalidArgument, NotImplementedByEngine
from dockyard.plugins import config as plugin_config
from dockyard.plugins.managed import ManagedPlugin

routes = Routes()

REGISTRY_PENDING = (
    "installing, pushing and upgrading plugins through a registry is not supported by "
    "Dockyard yet; use `plugin create NAME DIR`"
)


def plugin_json(plugin: ManagedPlugin) -> dict[str, Any]:
    return {
        "Id": plugin.id,
        "Name": plugin.name,
        "Enabled": plugin.enabled,
        "PluginReference": plugin.reference,
        "Settings": plugin.settings.to_wire(),
        "Config": plugin.config.to_wire(),
    }


def _capabilities(plugin: ManagedPlugin) -> set[str]:
    return {t.partition(".")[2].partition("/")[0].lower() for t in plugin.config.interface.types}


@routes.get("/plugins")
async def list_plugins(request: web.Request) -> web.StreamResponse:
    wanted = filters.parse(request.query.get("filters"), ("enabled", "capability"))
    out = []
    for plugin in engine(request).plugins.managed.all():
        if "enabled" in wanted and plugin.enabled != filters.bool_value(
            wanted["enabled"], "enabled"
        ):
            continue
        if wanted.get("capability") and not _capabilities(plugin) & {
            c.lower() for c in wanted["capability"]
        }:
            continue
        out.append(plugin_json(plugin))
    return json_response(out)


@routes.get("/plugins/privileges")
async def privileges(request: web.Request) -> web.StreamResponse:
    remote = request.query.get("remote") or ""
    local = engine(request).plugins.managed.lookup(remote)
    if local is None:
        raise NotImplementedByEngine(REGISTRY_PENDING)
    return json_response(plugin_config.privileges(local.config))


@routes.get("/plugins/{name:.+}/json")
async def inspect(request: web.Request) -> web.StreamResponse:
    return json_response(
        plugin_json(engine(request).plugins.managed.find(request.match_info["name"]))
    )


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(1 << 20):
        yield chunk


@routes.post("/plugins/create")
async def create(request: web.Request) -> web.StreamResponse:
    name = request.query.get("name") or ""
    if not name:
        raise InvalidArgument("a plugin name is required")
    await engine(request).plugins.managed.create(name, _body(request))
    return web.Response(status=204)


@routes.post("/plugins/{name:.+}/enable")
async def enable(request: web.Request) -> web.StreamResponse:
    timeout = query_int(request, "timeout", 0) or 0
    await engine(request).plugins.managed.enable(request.match_info["name"], float(timeout))
    return web.Response(status=200)


@routes.post("/plugins/{name:.+}/disable")
async def disable(request: web.Request) -> web.StreamResponse:
    await engine(request).plugins.managed.disable(
        request.match_info["name"], force=query_bool(request, "force")
    )
    return web.Response(status=200)


@routes.post("/plugins/{name:.+}/set")
async def set_(request: web.Request) -> web.StreamResponse:
    raw = await request.read()
    try:
        items = json.loads(raw) if raw.strip() else []
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"invalid JSON: {e}") from e
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise InvalidArgument("invalid JSON: expected a list of name=value strings")
    engine(request).plugins.managed.set(request.match_info["name"], items)
    return web.Response(status=204)


@routes.delete("/plugins/{name:.+}")
async def remove(request: web.Request) -> web.StreamResponse:
    await engine(request).plugins.managed.remove(
        request.match_info["name"], force=query_bool(request, "force")
    )
    return web.Response(status=200)


@routes.post("/plugins/pull")
async def pull(request: web.Request) -> web.StreamResponse:
    raise NotImplementedByEngine(REGISTRY_PENDING)


@routes.post("/plugins/{name:.+}/push")
async def push(request: web.Request) -> web.StreamResponse:
    engine(request).plugins.managed.find(request.match_info["name"])
    raise NotImplementedByEngine(REGISTRY_PENDING)


@routes.post("/plugins/{name:.+}/upgrade")
async def upgrade(request: web.Request) -> web.StreamResponse:
    engine(request).plugins.managed.find(request.match_info["name"])
    raise NotImplementedByEngine(REGISTRY_PENDING)


@routes.post("/plugins/{name:.+}/check")
async def check(request: web.Request) -> web.StreamResponse:
    """Dockyard's own: run the conformance checker against a plugin the engine can reach."""
    report = await engine(request).check_plugin(request.match_info["name"])
    return json_response(report.to_json())
