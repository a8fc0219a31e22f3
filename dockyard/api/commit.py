"""Container changes and commit: `GET /containers/{id}/changes`, `POST /commit`."""

from __future__ import annotations

from aiohttp import web

from dockyard.api.app import Routes, engine, json_response, query_bool, read_json
from dockyard.containers import commit as commits
from dockyard.errors import InvalidArgument
from dockyard.images import reference

routes = Routes()


@routes.get("/containers/{id}/changes")
async def changes(request: web.Request) -> web.StreamResponse:
    eng = engine(request)
    return json_response(await commits.changes(eng.containers, request.match_info["id"]))


@routes.post("/commit")
async def commit(request: web.Request) -> web.StreamResponse:
    eng = engine(request)
    q = request.query
    name = q.get("container", "")
    if not name:
        raise InvalidArgument("No container name or ID supplied")
    container = eng.containers.get(name)
    tag = None
    if q.get("repo"):
        repo, tag_text = reference.split_repo_tag(q["repo"], q.get("tag"))
        tag = reference.parse(repo if not tag_text else f"{repo}:{tag_text}")
        if tag.digest:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        if tag.tag is None:
            tag = tag.with_tag("latest")
    elif q.get("tag"):
        raise InvalidArgument("tag requires a repository (repo)")
    config = await read_json(request)
    image = await commits.commit(
        eng.containers,
        eng.images,
        eng.committer,
        container.id,
        tag=tag,
        author=q.get("author", ""),
        comment=q.get("comment", ""),
        changes=list(q.getall("changes", ())),
        config=config,
        pause=query_bool(request, "pause", default=True),
    )
    return json_response({"Id": image.id}, status=201)
