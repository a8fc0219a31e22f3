"""Image routes: list, inspect, history, tag, remove, prune, import, pull, push, save, load."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dockyard.api import filters
from dockyard.api.app import (
    Routes,
    api_version,
    body_chunks,
    engine,
    json_response,
    query_bool,
)
from dockyard.api.container_json import parse_time
from dockyard.api.distribution import registry_credentials
from dockyard.api.streams import JSONStream, progress_stream
from dockyard.containers.schema import ContainerConfig
from dockyard.errors import DockyardError, InvalidArgument, NotImplementedByEngine
from dockyard.images import reference
from dockyard.images.oci import ZERO_TIME
from dockyard.images.platform import Platform
from dockyard.images.reference import Reference
from dockyard.images.service import Image, ImageService
from dockyard.registry.progress import Report
from dockyard.snapshots.layers import chain_ids
from dockyard.wire import WireError

routes = Routes()

_LIST_FILTERS = ("dangling", "label", "before", "since", "reference", "until")


def container_config(raw: Any) -> dict[str, Any]:
    """A run configuration stored in an image config (`config`, `container_config`) in
    Docker's `Config` shape: every field in moby's order, the optional ones only when
    set. A field that does not fit Docker's type (a hand-made image) is left out."""
    data = raw if isinstance(raw, dict) else {}
    try:
        return ContainerConfig.decode(data).to_wire()
    except WireError:
        fitting = {}
        for key, value in data.items():
            try:
                ContainerConfig.decode({key: value})
            except WireError:
                continue
            fitting[key] = value
        return ContainerConfig.decode(fitting).to_wire()


def inspect_json(image: Image, version: tuple[int, int] = (1, 45)) -> dict[str, Any]:
    """Docker's ImageInspect, `VirtualSize` up to API 1.43 as in dockerd 26.

    `Container` and `ContainerConfig` (the container that made the image: the
    builder's last step, the committed container) are shown at every version,
    although dockerd 26 drops them from API 1.45 on: compose v1, which asks for
    the server's version, reads `ContainerConfig` whenever it recreates a
    container and fails with KeyError 'ContainerConfig' without it."""
    config = image.config
    result: dict[str, Any] = {
        "Id": image.id,
        "RepoTags": [t.familiar() for t in image.tags],
        "RepoDigests": [d.familiar() for d in image.repo_digests],
        "Parent": image.parent,
        "Comment": (config.get("history") or [{}])[-1].get("comment", ""),
        "Created": image.created or ZERO_TIME,
    }
    if config.get("container"):
        result["Container"] = config["container"]
    result["ContainerConfig"] = container_config(config.get("container_config"))
    result.update(
        {
            "DockerVersion": config.get("docker_version", ""),
            "Author": config.get("author", ""),
            "Config": container_config(image.run_config),
            "Architecture": config.get("architecture", ""),
        }
    )
    if config.get("variant"):
        result["Variant"] = config["variant"]
    result["Os"] = config.get("os", "linux")
    if config.get("os.version"):
        result["OsVersion"] = config["os.version"]
    result["Size"] = image.size
    if version < (1, 44):
        result["VirtualSize"] = image.size
    result.update(
        {
            "GraphDriver": {"Name": "overlay2", "Data": {}},
            "RootFS": {"Type": "layers", "Layers": image.diff_ids},
            "Metadata": {"LastTagTime": ZERO_TIME},
        }
    )
    return result


def summary_json(image: Image, containers: int) -> dict[str, Any]:
    return {
        "Id": image.id,
        "ParentId": image.parent,
        "RepoTags": [t.familiar() for t in image.tags],
        "RepoDigests": [d.familiar() for d in image.repo_digests],
        "Created": int(parse_time(image.created)) if image.created else 0,
        "Size": image.size,
        "VirtualSize": image.size,
        "SharedSize": -1,
        "Labels": image.run_config.get("Labels") or None,
        "Containers": containers,
    }


def _matches(image: Image, wanted: filters.Filters) -> bool:
    for key, values in wanted.items():
        if key == "dangling" and filters.bool_value(values, key) != (not image.tags):
            return False
        if key == "label" and not filters.label_matches(
            image.run_config.get("Labels") or {}, values
        ):
            return False
        if key == "reference":
            import fnmatch

            names = [t.familiar() for t in image.tags] + [t.familiar_repository for t in image.tags]
            if not any(fnmatch.fnmatch(n, pattern) for n in names for pattern in values):
                return False
    return True


@routes.get("/images/json")
async def list_images(request: web.Request) -> web.StreamResponse:
    eng = engine(request)
    wanted = filters.parse(request.query.get("filters"), _LIST_FILTERS)
    users: dict[str, int] = {}
    for container in eng.containers.all():
        users[container.image_id] = users.get(container.image_id, 0) + 1
    show_all = query_bool(request, "all")
    return json_response(
        [
            summary_json(image, users.get(image.id, 0))
            for image in eng.images.all()
            if _matches(image, wanted)
            # An untagged parent of other images is an intermediate one: shown with `-a` only.
            and (show_all or image.tags or not eng.images.children(image.id))
        ]
    )


@routes.get("/images/{name:.+}/json")
async def inspect(request: web.Request) -> web.StreamResponse:
    image = engine(request).images.resolve(request.match_info["name"])
    return json_response(inspect_json(image, api_version(request)))


@routes.get("/images/{name:.+}/history")
async def history(request: web.Request) -> web.StreamResponse:
    eng = engine(request)
    image = eng.images.resolve(request.match_info["name"])
    entries = []
    # Each history entry that is not an empty layer added the next layer.
    sizes = iter(_layer_sizes(eng.images, image))
    for item in image.config.get("history") or []:
        size = 0 if item.get("empty_layer") else next(sizes, 0)
        entries.append(
            {
                "Id": "<missing>",
                "Created": int(parse_time(item.get("created", ""))) if item.get("created") else 0,
                "CreatedBy": item.get("created_by", ""),
                "Tags": None,
                "Size": size,
                "Comment": item.get("comment", ""),
            }
        )
    entries.reverse()
    if entries:
        entries[0]["Id"] = image.id
        entries[0]["Tags"] = [t.familiar() for t in image.tags] or None
    return json_response(entries)


def _layer_sizes(images: ImageService, image: Image) -> list[int]:
    sizes = []
    for chain in chain_ids(image.diff_ids):
        layer = images.layers.get(chain)
        sizes.append(layer.size if layer else 0)
    return sizes


@routes.post("/images/{name:.+}/tag")
async def tag(request: web.Request) -> web.StreamResponse:
    eng = engine(request)
    image = eng.images.resolve(request.match_info["name"])
    repo, tag_text = reference.split_repo_tag(
        request.query.get("repo", ""), request.query.get("tag")
    )
    if not repo:
        raise InvalidArgument("invalid reference format")
    ref = reference.parse(repo if not tag_text else f"{repo}:{tag_text}")
    eng.images.tag(image.id, ref)
    return web.Response(status=201)


@routes.delete("/images/{name:.+}")
async def remove(request: web.Request) -> web.StreamResponse:
    report = await engine(request).images.remove(
        request.match_info["name"],
        force=query_bool(request, "force"),
        prune=not query_bool(request, "noprune"),
    )
    return json_response(report)


@routes.post("/images/prune")
async def prune(request: web.Request) -> web.StreamResponse:
    wanted = filters.parse(request.query.get("filters"), ("dangling", "until", "label", "label!"))
    dangling_only = True
    if "dangling" in wanted:
        dangling_only = filters.bool_value(wanted["dangling"], "dangling")
    until = filters.until(wanted.get("until", []))

    def chosen(image: Image) -> bool:
        if until is not None and (not image.created or parse_time(image.created) * 1e9 > until):
            return False
        return filters.prune_labels_match(image.run_config.get("Labels") or {}, wanted)

    report, space = await engine(request).images.prune(all=not dangling_only, chosen=chosen)
    return json_response({"ImagesDeleted": report or None, "SpaceReclaimed": space})


@routes.post("/images/create")
async def create(request: web.Request) -> web.StreamResponse:
    eng = engine(request)
    if request.query.get("fromSrc"):
        if request.query["fromSrc"] != "-":
            raise NotImplementedByEngine("importing from a URL is not supported by Dockyard")
        stream = JSONStream(request)
        try:
            image = await eng.images.import_tar(
                body_chunks(request),
                repo=request.query.get("repo", ""),
                tag=request.query.get("tag", ""),
                message=request.query.get("message", ""),
                changes=list(request.query.getall("changes", ())),
                platform=request.query.get("platform", ""),
            )
        except DockyardError as e:
            if not stream.started:
                raise
            await stream.error(e.message)
            return await stream.finish()
        await stream.send({"status": image.id})
        return await stream.finish()
    if request.query.get("fromImage"):
        return await _pull(request)
    raise InvalidArgument("either fromImage or fromSrc must be given")


def pull_reference(from_image: str, tag: str) -> Reference:
    """fromImage plus tag (a tag, or a digest as the docker CLI sends it) as one reference."""
    if tag:
        separator = "@" if ":" in tag else ":"
        return reference.parse(f"{from_image}{separator}{tag}")
    return reference.parse(from_image)


async def _pull(request: web.Request) -> web.StreamResponse:
    eng = engine(request)
    ref = pull_reference(request.query["fromImage"], request.query.get("tag", ""))
    text = request.query.get("platform", "")
    platform = Platform.parse(text) if text else None
    credentials = registry_credentials(request)

    async def pull(report: Report) -> Image:
        return await eng.puller.pull(ref, platform=platform, credentials=credentials, report=report)

    stream, _ = await progress_stream(request, pull)
    return await stream.finish()


@routes.post("/images/{name:.+}/push")
async def push(request: web.Request) -> web.StreamResponse:
    eng = engine(request)
    name, tag = reference.split_repo_tag(request.match_info["name"], request.query.get("tag"))
    ref = reference.parse(name, default_tag=None)
    if ref.digest:
        raise InvalidArgument("cannot push a digest reference")
    if tag:
        ref = ref.with_tag(tag)
    credentials = registry_credentials(request)

    async def push(report: Report) -> None:
        await eng.pusher.push(ref, credentials=credentials, report=report)

    stream, _ = await progress_stream(request, push)
    return await stream.finish()


@routes.get("/images/get")
async def save_many(request: web.Request) -> web.StreamResponse:
    return await _save(request, list(request.query.getall("names", ())))


@routes.get("/images/{name:.+}/get")
async def save_one(request: web.Request) -> web.StreamResponse:
    return await _save(request, [request.match_info["name"]])


async def _save(request: web.Request, names: list[str]) -> web.StreamResponse:
    if not names:
        raise InvalidArgument("no image names given")
    archive = engine(request).archives.save(names)
    first = await archive.__anext__()  # resolves every name before the reply starts
    resp = web.StreamResponse(status=200)
    resp.headers["Content-Type"] = "application/x-tar"
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    await resp.write(first)
    async for chunk in archive:
        await resp.write(chunk)
    await resp.write_eof()
    return resp


@routes.post("/images/load")
async def load(request: web.Request) -> web.StreamResponse:
    stream = JSONStream(request)
    try:
        loaded = await engine(request).archives.load(body_chunks(request))
    except DockyardError as e:
        await stream.error(e.message)
        return await stream.finish()
    for ref, image_id in loaded:
        text = f"Loaded image: {ref.familiar()}" if ref else f"Loaded image ID: {image_id}"
        await stream.send({"stream": text + "\n"})
    return await stream.finish()
