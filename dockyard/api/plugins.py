"""Plugin routes: managed plugins (`/plugins...`), from and to registries, and the check."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dockyard.api import filters
from dockyard.api.app import (
    Routes,
    body_chunks,
    engine,
    json_response,
    query_bool,
    query_int,
    read_json_value,
)
from dockyard.api.distribution import registry_credentials
from dockyard.api.streams import progress_stream
from dockyard.errors import InvalidArgument
from dockyard.images import reference
from dockyard.images.reference import Reference
from dockyard.plugins.distribution import local_name
from dockyard.plugins.managed import ManagedPlugin
from dockyard.registry.progress import Report

routes = Routes()


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


def _remote(request: web.Request) -> Reference:
    remote = request.query.get("remote") or ""
    if not remote:
        raise InvalidArgument("a remote reference is required (remote=)")
    return reference.parse(remote)


async def _granted(request: web.Request) -> Any:
    """The privileges the user accepted (the request body, a JSON list; none if empty)."""
    granted = await read_json_value(request)
    return [] if granted is None else granted


@routes.get("/plugins/privileges")
async def privileges(request: web.Request) -> web.StreamResponse:
    found = await engine(request).plugin_distribution.privileges(
        _remote(request), registry_credentials(request)
    )
    return json_response(found)


@routes.get("/plugins/{name:.+}/json")
async def inspect(request: web.Request) -> web.StreamResponse:
    return json_response(
        plugin_json(engine(request).plugins.managed.find(request.match_info["name"]))
    )


@routes.post("/plugins/create")
async def create(request: web.Request) -> web.StreamResponse:
    name = request.query.get("name") or ""
    if not name:
        raise InvalidArgument("a plugin name is required")
    await engine(request).plugins.managed.create(name, body_chunks(request))
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
    items = await read_json_value(request)
    items = [] if items is None else items
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
    """`plugin install`: a disabled plugin, its name in `Docker-Plugin-Name`."""
    remote = _remote(request)
    name = local_name(remote, request.query.get("name") or "")
    granted = await _granted(request)
    credentials = registry_credentials(request)
    distribution = engine(request).plugin_distribution
    distribution.managed.check_available(name)

    async def install(report: Report) -> None:
        await distribution.install(remote, name, granted, credentials, report)

    stream, _ = await progress_stream(request, install, {"Docker-Plugin-Name": name})
    return await stream.finish()


@routes.post("/plugins/{name:.+}/push")
async def push(request: web.Request) -> web.StreamResponse:
    distribution = engine(request).plugin_distribution
    plugin = distribution.managed.find(request.match_info["name"])
    credentials = registry_credentials(request)

    async def upload(report: Report) -> None:
        await distribution.push(plugin, credentials, report)

    stream, _ = await progress_stream(request, upload)
    return await stream.finish()


@routes.post("/plugins/{name:.+}/upgrade")
async def upgrade(request: web.Request) -> web.StreamResponse:
    distribution = engine(request).plugin_distribution
    plugin = distribution.managed.find(request.match_info["name"])
    remote = _remote(request)
    granted = await _granted(request)
    credentials = registry_credentials(request)

    async def replace(report: Report) -> None:
        await distribution.upgrade(plugin.name, remote, granted, credentials, report)

    stream, _ = await progress_stream(request, replace, {"Docker-Plugin-Name": plugin.name})
    return await stream.finish()


@routes.post("/plugins/{name:.+}/check")
async def check(request: web.Request) -> web.StreamResponse:
    """Dockyard's own: run the conformance checker against a plugin the engine can reach;
    each `opt=KEY=VALUE` is a driver option for the volumes the check creates."""
    options = {}
    for item in request.query.getall("opt", []):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"invalid option {item!r}: expected KEY=VALUE")
        options[key] = value
    report = await engine(request).check_plugin(request.match_info["name"], options)
    return json_response(report.to_json())
