"""A container's files: `HEAD`/`GET`/`PUT /containers/{id}/archive` and
`GET /containers/{id}/export` (`docker cp`, `docker export`)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from dockyard.api.app import Routes, body_chunks, engine, query_bool
from dockyard.containers.copyrules import STAT_HEADER
from dockyard.errors import DockyardError, InvalidArgument

log = logging.getLogger(__name__)

routes = Routes()


def _path(request: web.Request) -> str:
    path = request.query.get("path", "")
    if not path:
        raise InvalidArgument("bad parameter: path cannot be empty")
    if "\0" in path:  # no file name holds one: the system calls would refuse it
        raise InvalidArgument(f"bad parameter: path {path!r} contains a NUL byte")
    # Nor can a name be longer than NAME_MAX bytes, or a path than PATH_MAX.
    encoded = path.encode("utf-8", "surrogateescape")
    if len(encoded) >= 4096 or any(len(part) > 255 for part in encoded.split(b"/")):
        raise InvalidArgument(f"bad parameter: path {path!r}: file name too long")
    return path


@routes.head("/containers/{id}/archive")
async def stat(request: web.Request) -> web.StreamResponse:
    found = await engine(request).container_archive.stat(request.match_info["id"], _path(request))
    resp = web.Response(status=200)
    resp.headers[STAT_HEADER] = found.header()
    return resp


@routes.get("/containers/{id}/archive")
async def get_archive(request: web.Request) -> web.StreamResponse:
    archives = engine(request).container_archive
    async with archives.archive(request.match_info["id"], _path(request)) as archive:
        resp = web.StreamResponse(status=200)
        resp.headers[STAT_HEADER] = archive.stat.header()
        resp.headers["Content-Type"] = "application/x-tar"
        return await _stream(request, resp, archive.chunks)


@routes.put("/containers/{id}/archive")
async def put_archive(request: web.Request) -> web.StreamResponse:
    try:
        await engine(request).container_archive.extract(
            request.match_info["id"],
            _path(request),
            body_chunks(request),
            copy_uid_gid=query_bool(request, "copyUIDGID"),
            no_overwrite_dir_non_dir=query_bool(request, "noOverwriteDirNonDir"),
        )
    except ConnectionError as e:  # the client went away mid-upload: no one to answer
        log.info("%s %s: %s", request.method, request.path, e)
        return web.Response(status=400)
    return web.Response(status=200)


@routes.get("/containers/{id}/export")
async def export(request: web.Request) -> web.StreamResponse:
    async with engine(request).container_archive.export(request.match_info["id"]) as chunks:
        resp = web.StreamResponse(status=200)
        resp.headers["Content-Type"] = "application/x-tar"
        return await _stream(request, resp, chunks)


async def _stream(
    request: web.Request, resp: web.StreamResponse, chunks: AsyncIterator[bytes]
) -> web.StreamResponse:
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    try:
        async for chunk in chunks:
            await resp.write(chunk)
        await resp.write_eof()
    except ConnectionError:
        pass  # the client has what it wanted (a tar reader stops at the end marker)
    except DockyardError as e:
        # The reply has started: all a client can still be told is that the archive
        # is incomplete, by a connection that ends without the final chunk.
        log.warning("%s %s failed mid-stream: %s", request.method, request.path, e.message)
        resp.force_close()
        if request.transport is not None:
            request.transport.abort()
    return resp
