"""Serving plugins over HTTP on a unix socket (or TCP), as Docker's engine expects.

`run(plugin, ...)` blocks and serves; `serve(...)` is the same as a coroutine.
Several plugin objects can share one socket (a network driver and its IPAM
driver, for example): `/Plugin.Activate` then lists all their kinds.

The socket goes to `/run/docker/plugins/NAME.sock` unless told otherwise, which
is where Docker and Dockyard look for plugins. With `tcp="host:port"` the
plugin listens on TCP instead and, given `spec_dir`, writes `NAME.spec` there
so engines find it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from aiohttp import web

from dockyard.plugins.protocol import logentry
from dockyard.sdk.base import Plugin, PluginError
from dockyard.wire import Message, WireError

log = logging.getLogger("dockyard.sdk")

DEFAULT_SOCKET_DIR = "/run/docker/plugins"
CONTENT_TYPE = "application/vnd.docker.plugins.v1.1+json"


def _json(data: Any, status: int = 200) -> web.Response:
    body = json.dumps(data, separators=(",", ":")).encode() + b"\n"
    return web.Response(body=body, status=status, headers={"Content-Type": CONTENT_TYPE})


def _encode(result: Any) -> Any:
    if result is None:
        return {}
    if isinstance(result, Message):
        return result.to_wire()
    if isinstance(result, dict):
        return {k: v.to_wire() if isinstance(v, Message) else v for k, v in result.items()}
    raise TypeError(f"a plugin method returned {type(result).__name__}, not a reply")


def make_app(plugins: Sequence[Plugin]) -> web.Application:
    """The aiohttp application answering for `plugins`."""
    routes: dict[str, tuple[Plugin, Any]] = {}
    for plugin in plugins:
        for path, endpoint in plugin.endpoints.items():
            routes.setdefault(path, (plugin, endpoint))
    implements = list(dict.fromkeys(p.kind for p in plugins))

    async def handle(request: web.Request) -> web.StreamResponse:
        path = request.match_info["method"]
        if path == "Plugin.Activate":
            return _json({"Implements": implements})
        found = routes.get(path)
        if found is None:
            return _json({"Err": f"{path} is not implemented by this plugin"}, 404)
        plugin, endpoint = found
        handler = plugin.handler(endpoint)
        if handler is None:
            return _json({"Err": f"{path} is not implemented by this plugin"}, 404)
        raw = await request.read()
        args: list[Any] = []
        if endpoint.request is not None:
            try:
                data = json.loads(raw) if raw.strip() else {}
                args.append(endpoint.request.decode(data))
            except (json.JSONDecodeError, UnicodeDecodeError, WireError) as e:
                return _json({"Err": f"invalid request: {e}"}, 400)
        try:
            result = handler(*args)
            if hasattr(result, "__aiter__"):
                return await _stream_entries(request, result)
            if inspect.isawaitable(result):
                result = await result
            if endpoint.wrap is not None:
                result = endpoint.wrap(result)
            return _json(_encode(result))
        except PluginError as e:
            return _json({"Err": str(e) or type(e).__name__}, 500)
        except Exception as e:
            log.exception("%s failed", path)
            return _json({"Err": f"{type(e).__name__}: {e}"}, 500)

    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/{method}", handle)
    return app


async def _stream_entries(
    request: web.Request, entries: AsyncIterator[logentry.LogEntry]
) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/x-json-stream"})
    await resp.prepare(request)
    try:
        async for entry in entries:
            await resp.write(logentry.frame(entry))
    except PluginError as e:
        log.warning("ReadLogs: %s", e)
    except (ConnectionResetError, asyncio.CancelledError):
        return resp
    await resp.write_eof()
    return resp


def socket_path(name: str, socket_dir: str = DEFAULT_SOCKET_DIR) -> str:
    return os.path.join(socket_dir, name + ".sock")


async def serve(
    plugins: Plugin | Sequence[Plugin],
    name: str = "",
    *,
    socket: str | None = None,
    socket_dir: str = DEFAULT_SOCKET_DIR,
    tcp: str | None = None,
    spec_dir: str | None = None,
    ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until `stop` is set (or forever). `ready(address)` is called once listening."""
    group = [plugins] if isinstance(plugins, Plugin) else list(plugins)
    if not group:
        raise ValueError("no plugin to serve")
    runner = web.AppRunner(make_app(group), access_log=None, handle_signals=False)
    await runner.setup()
    spec_file = None
    site: web.BaseSite
    if tcp:
        host, _, port = tcp.rpartition(":")
        site = web.TCPSite(runner, host or "127.0.0.1", int(port))
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        bound = sockets[0].getsockname() if sockets else (host, int(port))
        address = f"tcp://{bound[0]}:{bound[1]}"
        if spec_dir:
            if not name:
                raise ValueError("a name is needed to write a spec file")
            os.makedirs(spec_dir, exist_ok=True)
            spec_file = os.path.join(spec_dir, name + ".spec")
            with open(spec_file, "w") as f:
                f.write(address + "\n")
    else:
        if socket is None:
            if not name:
                raise ValueError("a plugin needs a name or a socket path")
            socket = socket_path(name, socket_dir)
        os.makedirs(os.path.dirname(socket) or ".", exist_ok=True)
        if os.path.exists(socket):
            os.unlink(socket)
        site = web.UnixSite(runner, socket)
        await site.start()
        address = "unix://" + socket
    log.info("serving %s on %s", ", ".join(p.kind for p in group), address)
    if ready is not None:
        ready(address)
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        await runner.cleanup()
        if spec_file:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(spec_file)
        if socket and not tcp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(socket)


def run(plugins: Plugin | Sequence[Plugin], name: str = "", **options: Any) -> None:
    """Serve until SIGTERM or SIGINT. Options as for `serve`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(plugins, name, stop=stop, **options)

    asyncio.run(main())
