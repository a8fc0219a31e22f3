"""The aiohttp application: routing, API versions, headers and error mapping.

Every route exists bare and under `/v<major>.<minor>`; the version selects
behaviour (`request["api_version"]`). Errors from the engine are typed
(`dockyard.errors`) and become Docker's `{"message": ...}` replies here, in one
place; anything unexpected is logged and answered with a 500 that carries the
error text but never a traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from dockyard import wire
from dockyard.engine import Engine
from dockyard.errors import DockyardError, InvalidArgument, NotModified
from dockyard.plugins.authorization import is_json_media

log = logging.getLogger(__name__)

API_VERSION = "1.45"
MIN_API_VERSION = "1.24"
MAX_API_VERSION = "1.50"
ENGINE_VERSION = "26.1.4"  # the Docker release whose API level Dockyard speaks

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ENGINE = web.AppKey("engine", Engine)


def version_tuple(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor or 0)


def api_version(request: web.Request) -> tuple[int, int]:
    return request.get("api_version", version_tuple(API_VERSION))


def engine(request: web.Request) -> Engine:
    return request.app[ENGINE]


def json_response(data: Any, status: int = 200) -> web.Response:
    # Exactly "application/json": the Go client only decodes error bodies with that type.
    body = json.dumps(data, separators=(",", ":")).encode()
    resp = web.Response(body=body, status=status)
    resp.headers["Content-Type"] = "application/json"
    return resp


def error_response(status: int, message: str) -> web.Response:
    return json_response({"message": message}, status)


async def read_json_value(request: web.Request) -> Any:
    """The JSON request body (None if empty), only if sent as `application/json`.

    Authorization plugins see a body only when it is JSON (`sends_body`): a body
    sent with any other Content-Type is refused rather than parsed behind their back.
    """
    raw = await request.read()
    if not raw.strip():
        return None
    content_type = request.headers.get("Content-Type", "")
    if not is_json_media(content_type):
        raise InvalidArgument(
            f"unsupported Content-Type header ({content_type}): must be 'application/json'"
        )
    try:
        # As Go reads it (UTF-8 only, which is also what an authorization plugin can
        # read; nesting bounded): any body that does not parse is a 400.
        return wire.loads(raw)
    except wire.WireError as e:
        raise InvalidArgument(f"invalid JSON: {e}") from e


async def body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    """A streamed request body (a tar: a build context, an image, a plugin), as it
    arrives; if a middleware read it already (authorization plugins are shown JSON
    bodies), the bytes it kept."""
    if request.body_exists and request.content.at_eof():
        yield await request.read()
        return
    async for chunk in request.content.iter_chunked(1 << 20):
        yield chunk


async def read_json(request: web.Request, *, required: bool = False) -> dict[str, Any]:
    if required and not (await request.read()).strip():
        raise InvalidArgument("invalid JSON: request body is empty")
    data = await read_json_value(request)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidArgument("invalid JSON: expected an object")
    return data


_FALSE = {"", "0", "false", "no", "none"}


def query_bool(request: web.Request, name: str, default: bool = False) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    return value.strip().lower() not in _FALSE


def query_int(request: web.Request, name: str, default: int | None = None) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise InvalidArgument(f"invalid value for {name}: {value!r}") from None
    if not -(2**63) <= number < 2**63:  # Docker's parameters are Go int64s
        raise InvalidArgument(f"invalid value for {name}: {value!r}: value out of range")
    return number


def _headers(resp: web.StreamResponse) -> None:
    resp.headers["Api-Version"] = API_VERSION
    resp.headers["Server"] = f"Docker/{ENGINE_VERSION} (linux)"
    resp.headers["Ostype"] = "linux"
    resp.headers["Docker-Experimental"] = "false"


@web.middleware
async def _middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    version = request.match_info.get("version")
    if version:
        try:
            parsed = version_tuple(version)
        except ValueError:
            return error_response(400, f"invalid API version: {version}")
        if parsed > version_tuple(MAX_API_VERSION):
            return error_response(
                400,
                f"client version {version} is too new. Maximum supported API version is "
                f"{MAX_API_VERSION}",
            )
        if parsed < version_tuple(MIN_API_VERSION):
            return error_response(
                400,
                f"client version {version} is too old. Minimum supported API version is "
                f"{MIN_API_VERSION}, please upgrade your client to a newer version",
            )
        request["api_version"] = parsed
    try:
        resp = await handler(request)
    except NotModified:
        resp = web.Response(status=304)
    except DockyardError as e:
        resp = error_response(e.status, e.message)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        text = "page not found" if e.status == 404 else (e.reason or "error")
        resp = error_response(e.status, text)
    except Exception as e:  # a bug: report it without leaking internals
        log.exception("%s %s failed", request.method, request.path)
        resp = error_response(500, f"internal error: {type(e).__name__}: {e}")
    if not resp.prepared:
        _headers(resp)
    return resp


async def _on_prepare(request: web.Request, resp: web.StreamResponse) -> None:
    _headers(resp)


class Routes:
    """Collects routes; each is served bare and under the `/v1.NN` prefix."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str, Handler]] = []

    def add(self, method: str, path: str, handler: Handler) -> None:
        self.entries.append((method, path, handler))

    def get(self, path: str) -> Callable[[Handler], Handler]:
        return self._decorator("GET", path)

    def post(self, path: str) -> Callable[[Handler], Handler]:
        return self._decorator("POST", path)

    def delete(self, path: str) -> Callable[[Handler], Handler]:
        return self._decorator("DELETE", path)

    def head(self, path: str) -> Callable[[Handler], Handler]:
        return self._decorator("HEAD", path)

    def put(self, path: str) -> Callable[[Handler], Handler]:
        return self._decorator("PUT", path)

    def _decorator(self, method: str, path: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.add(method, path, handler)
            return handler

        return register


def create_app(engine_: Engine) -> web.Application:
    from dockyard.api import (
        archive,
        authorization,
        build,
        buildkit,
        commit,
        containers,
        distribution,
        exec,
        images,
        networks,
        plugins,
        stats,
        system,
        volumes,
    )

    app = web.Application(middlewares=[_middleware, authorization.middleware], client_max_size=0)
    app[ENGINE] = engine_
    app.on_response_prepare.append(_on_prepare)
    for module in (
        system,
        containers,
        exec,
        images,
        distribution,
        networks,
        volumes,
        plugins,
        build,
        buildkit,
        commit,
        archive,
        stats,
    ):
        for method, path, handler in module.routes.entries:
            app.router.add_route(method, path, handler)
            app.router.add_route(method, r"/v{version:[0-9]+\.[0-9]+}" + path, handler)

    async def not_found(request: web.Request) -> web.StreamResponse:
        return error_response(404, "page not found")

    app.router.add_route("*", "/{tail:.*}", not_found)
    return app
