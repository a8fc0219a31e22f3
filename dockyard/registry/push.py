"""Push: a local image to a repository of a registry (spec §5.4).

Blobs first, the manifest last. For each layer blob and the config:

* `HEAD` it: a blob the repository has is skipped ("Layer already exists");
* a blob known to live in another repository of the same registry is
  mounted from there (201), or uploaded through the session the registry
  opened instead (202);
* otherwise it is uploaded: one `PUT` for blobs up to the chunk size, else
  `PATCH` chunks with `Content-Range` (resuming from the registry's `Range`
  after a 416) and a closing `PUT ?digest=`.

Then the manifest goes up by tag, with its own media type as Content-Type,
and the registry's `Docker-Content-Digest` is checked against ours.

Which manifest: an image whose stored manifest lists only compressed,
stored blobs (a pulled image) is pushed byte for byte, so its digest is
preserved. Otherwise (an imported image, whose layers are stored
uncompressed) an OCI manifest with gzip layers is made. A layer without a
gzip form is compressed while it is uploaded (one streamed `PATCH`, as
Docker does, closed by `PUT ?digest=` once the digest is known) and the
compressed bytes are kept beside the uncompressed blob (the DiffID -> blob
map), so pushing again sends the same bytes and finds them already there.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from yarl import URL

from dockyard.content.store import ContentStore, DigestingReader, sha256_digest
from dockyard.errors import InvalidArgument, NotFound, Unavailable
from dockyard.events.bus import EventBus
from dockyard.images import oci
from dockyard.images.reference import Reference
from dockyard.images.service import Image, ImageService, LayerBlob
from dockyard.layers.compression import compress_gzip, open_decompressed
from dockyard.registry.auth import Credentials
from dockyard.registry.client import (
    RegistryError,
    RegistryService,
    Repository,
    resolve_location,
    with_query,
)
from dockyard.registry.progress import Event, Meter, Report, short_id

_READ = 1 << 20
_COMPRESSED = {
    oci.LAYER_GZIP,
    oci.LAYER_ZSTD,
    oci.DOCKER_LAYER_GZIP,
}


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    media_type: str
    layer: bool  # layers get progress lines; the config does not


class Pusher:
    def __init__(self, registry: RegistryService, images: ImageService, events: EventBus) -> None:
        self.registry = registry
        self.images = images
        self.content = images.content
        self.events = events
        self.uploads = BlobUploads(registry, images.content, images.blob_sources)

    async def push(self, ref: Reference, *, credentials: Credentials, report: Report) -> None:
        """Push `ref`'s tag, or every local tag of its repository when it has none."""
        if ref.tag:
            refs = [ref]
        else:
            refs = sorted(
                (
                    t
                    for image in self.images.all()
                    for t in image.tags
                    if t.repository == ref.repository
                ),
                key=str,
            )
        images: list[tuple[Reference, Image]] = []
        for tagged in refs:
            try:
                images.append((tagged, self.images.resolve(str(tagged))))
            except NotFound:
                pass
        if not images:
            shown = ref.familiar() if ref.tag else ref.familiar_repository
            raise NotFound(f"An image does not exist locally with the tag: {shown}")
        repo = self.registry.repository(ref.domain, ref.path, credentials, ("pull", "push"))
        report(Event(f"The push refers to repository [{ref.repository}]"))
        for tagged, image in images:
            await self._push_image(repo, tagged, image, report)

    async def _push_image(
        self, repo: Repository, ref: Reference, image: Image, report: Report
    ) -> None:
        limit = asyncio.Semaphore(self.registry.settings.max_concurrent_uploads)
        stored = self.images.manifest(image)
        config = stored["config"]
        config_blob = Blob(config["digest"], config["size"], config["mediaType"], False)
        layers = stored.get("layers") or []
        verbatim = all(
            d.get("mediaType") in _COMPRESSED and self.content.exists(d["digest"]) for d in layers
        )
        jobs: list[Coroutine[Any, Any, Blob]] = []
        items: list[str] = []
        if verbatim:
            for d in layers:
                blob = Blob(d["digest"], d["size"], d["mediaType"], True)
                jobs.append(self.uploads.push(repo, blob, limit, report))
                items.append(short_id(blob.digest))
        else:
            for diff_id in image.diff_ids:
                gzipped = self._gzip_form(diff_id)
                if gzipped is None:
                    jobs.append(self._compress_and_upload(repo, diff_id, limit, report))
                    items.append(short_id(diff_id))
                else:
                    blob = Blob(gzipped.digest, gzipped.size, oci.LAYER_GZIP, True)
                    jobs.append(self.uploads.push(repo, blob, limit, report))
                    items.append(short_id(blob.digest))
        for item in reversed(items):
            report(Event("Preparing", item))
        tasks = [
            asyncio.create_task(job)
            for job in [*jobs, self.uploads.push(repo, config_blob, limit, report)]
        ]
        try:
            blobs = await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if verbatim:
            body = self.content.read(image.manifest_digest)
            media_type = str(stored.get("mediaType") or oci.MANIFEST)
        else:
            descriptors = [oci.descriptor(b.media_type, b.digest, b.size) for b in blobs[:-1]]
            config_desc = oci.descriptor(oci.CONFIG, config["digest"], config["size"])
            body = oci.canonical_json(oci.manifest(config_desc, descriptors))
            media_type = oci.MANIFEST
            await asyncio.to_thread(self.content.put, body)
        digest = sha256_digest(body)
        url = await repo.url(f"manifests/{ref.tag}")
        async with repo.request(
            "PUT", url, headers={"Content-Type": media_type}, body=body, ok=(200, 201)
        ) as resp:
            announced = resp.headers.get("Docker-Content-Digest", "")
        if announced and announced != digest:
            raise Unavailable(
                f"registry stored the manifest as {announced}, but its digest is {digest}"
            )
        for blob in blobs:
            self.images.add_blob_source(blob.digest, ref.repository)
        self.images.add_repo_digest(image.id, Reference(ref.domain, ref.path, None, digest))
        self.images.emit("push", ref.familiar(), ref.familiar_repository)
        report(Event(f"{ref.tag}: digest: {digest} size: {len(body)}"))
        report(Event("", aux={"Tag": ref.tag, "Digest": digest, "Size": len(body)}))

    def _gzip_form(self, diff_id: str) -> LayerBlob | None:
        for blob in self.images.layer_blobs(diff_id):
            if blob.media_type in (oci.LAYER_GZIP, oci.DOCKER_LAYER_GZIP):
                return blob
        return None

    async def _compress_and_upload(
        self, repo: Repository, diff_id: str, limit: asyncio.Semaphore, report: Report
    ) -> Blob:
        """Gzip a layer while uploading it (one streamed PATCH), keeping the result.

        The compressed digest is only known at the end, which is all the
        upload protocol needs (`PUT ?digest=` closes it). Compression runs on
        worker threads, writing each member both to the content store and to
        a bounded queue that the request body reads, so compressing and
        sending overlap.
        """
        stored = self.images.layer_blobs(diff_id)
        if not stored and not self.content.exists(diff_id):
            raise InvalidArgument(f"layer {diff_id} has no stored blob; cannot push it")
        source = diff_id if self.content.exists(diff_id) else stored[0].digest
        item = short_id(diff_id)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=8)
        stop = threading.Event()

        def emit(chunk: bytes) -> None:
            if stop.is_set():
                raise Unavailable("upload cancelled")
            asyncio.run_coroutine_threadsafe(queue.put(chunk), loop).result()

        def compress() -> tuple[str, int, int]:
            try:
                with (
                    self.content.open(source) as raw,
                    open_decompressed(raw) as tar,
                    self.content.writer() as writer,
                ):
                    counted = DigestingReader(tar)

                    def tee(chunk: bytes) -> None:
                        writer.write(chunk)
                        emit(chunk)

                    compress_gzip(counted, tee)  # type: ignore[arg-type]
                    return writer.commit(), writer.size, counted.size
            finally:
                if not stop.is_set():
                    asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

        async with limit:
            location = await self.uploads.new_upload(repo)
            meter = Meter(report, item, "Pushing", 0)
            producer = loop.run_in_executor(None, compress)

            async def body() -> AsyncIterator[bytes]:
                while (chunk := await queue.get()) is not None:
                    meter.add(len(chunk))
                    yield chunk

            try:
                async with repo.request(
                    "PATCH",
                    location,
                    headers={"Content-Type": "application/octet-stream"},
                    body=body,
                    ok=(202,),
                ) as resp:
                    location = resolve_location(location, resp.headers.get("Location", ""))
                digest, size, diff_size = await producer
                async with repo.request(
                    "PUT",
                    with_query(location, digest=digest),
                    headers={"Content-Length": "0"},
                    ok=(201,),
                ):
                    pass
            except BaseException:
                stop.set()
                while not queue.empty():
                    queue.get_nowait()
                await asyncio.gather(producer, return_exceptions=True)
                await self.uploads.cancel(repo, location)
                raise
        self.images.add_layer_blob(LayerBlob(diff_id, digest, oci.LAYER_GZIP, size, diff_size))
        report(Event("Pushed", item))
        return Blob(digest, size, oci.LAYER_GZIP, True)


class BlobUploads:
    """Uploading the blobs of one content store to repositories: `push` skips what the
    repository has, mounts what another repository of the registry has (`sources` says
    where a blob was seen), and uploads the rest."""

    def __init__(
        self,
        registry: RegistryService,
        content: ContentStore,
        sources: Callable[[str], list[str]] = lambda digest: [],
    ) -> None:
        self.registry = registry
        self.content = content
        self.sources = sources

    async def push(
        self, repo: Repository, blob: Blob, limit: asyncio.Semaphore, report: Report
    ) -> Blob:
        item = short_id(blob.digest)
        async with limit:
            url = await repo.url(f"blobs/{blob.digest}")
            async with repo.request("HEAD", url, ok=(200, 404)) as resp:
                exists = resp.status == 200
            if exists:
                if blob.layer:
                    report(Event("Layer already exists", item))
                return blob
            location = await self._start(repo, blob, report)
            if location is None:
                return blob
            try:
                await self._upload(repo, location, blob, report)
            except BaseException:
                await self.cancel(repo, location)
                raise
        if blob.layer:
            report(Event("Pushed", item))
        return blob

    async def _start(self, repo: Repository, blob: Blob, report: Report) -> URL | None:
        """An upload session, or None when the blob was mounted from another repository."""
        uploads = await repo.url("blobs/uploads/")
        for source in self.sources(blob.digest):
            domain, _, path = source.partition("/")
            if domain != repo.host or path == repo.path:
                continue
            repo.add_scope(f"repository:{path}:pull")
            url = with_query(uploads, mount=blob.digest, **{"from": path})
            async with repo.request(
                "POST", url, headers={"Content-Length": "0"}, ok=(201, 202)
            ) as resp:
                if resp.status == 201:
                    if blob.layer:
                        report(Event(f"Mounted from {path}", short_id(blob.digest)))
                    return None
                return resolve_location(url, resp.headers.get("Location", ""))
        return await self.new_upload(repo)

    async def new_upload(self, repo: Repository) -> URL:
        uploads = await repo.url("blobs/uploads/")
        async with repo.request(
            "POST", uploads, headers={"Content-Length": "0"}, ok=(202,)
        ) as resp:
            return resolve_location(uploads, resp.headers.get("Location", ""))

    async def _upload(self, repo: Repository, location: URL, blob: Blob, report: Report) -> None:
        meter = (
            Meter(report, short_id(blob.digest), "Pushing", blob.size)
            if blob.layer
            else Meter(lambda e: None, "", "", blob.size)
        )
        chunk = self.registry.settings.upload_chunk_size
        path = self.content.path(blob.digest)
        headers = {"Content-Type": "application/octet-stream"}
        if blob.size <= chunk:
            url = with_query(location, digest=blob.digest)
            async with repo.request(
                "PUT",
                url,
                headers={**headers, "Content-Length": str(blob.size)},
                body=lambda: _read_file(path, 0, blob.size, meter),
                ok=(201,),
            ):
                return
        offset = 0
        while offset < blob.size:
            end = min(blob.size, offset + chunk)
            start = offset
            try:
                async with repo.request(
                    "PATCH",
                    location,
                    headers={
                        **headers,
                        "Content-Length": str(end - start),
                        "Content-Range": f"{start}-{end - 1}",
                    },
                    body=lambda s=start, e=end: _read_file(path, s, e, meter),  # type: ignore[misc]
                    ok=(202,),
                ) as resp:
                    location = resolve_location(location, resp.headers.get("Location", ""))
                    offset = end
            except RegistryError as e:
                if e.http_status != 416:
                    raise
                offset = await self._upload_offset(repo, location)
                meter.current = offset
        async with repo.request(
            "PUT",
            with_query(location, digest=blob.digest),
            headers={"Content-Length": "0"},
            ok=(201,),
        ):
            pass

    async def _upload_offset(self, repo: Repository, location: URL) -> int:
        """Where an upload really is, after the registry refused a chunk (416)."""
        async with repo.request("GET", location, ok=(204,)) as resp:
            uploaded = resp.headers.get("Range", "")
        _, _, end = uploaded.partition("-")
        try:
            return int(end) + 1 if end else 0
        except ValueError:
            raise Unavailable(f"registry gave an invalid upload Range {uploaded!r}") from None

    async def cancel(self, repo: Repository, location: URL) -> None:
        try:
            async with repo.request("DELETE", location, ok=(200, 202, 204, 404)):
                pass
        except Exception:
            pass


async def _read_file(path: str, start: int, end: int, meter: Meter) -> AsyncIterator[bytes]:
    """Bytes `start`..`end` of a file, read in a worker thread, counted into `meter`."""
    file = await asyncio.to_thread(open, path, "rb")
    try:
        await asyncio.to_thread(file.seek, start, os.SEEK_SET)
        remaining = end - start
        while remaining > 0:
            data = await asyncio.to_thread(file.read, min(_READ, remaining))
            if not data:
                raise Unavailable(f"{path} is shorter than expected")
            remaining -= len(data)
            meter.add(len(data))
            yield data
    finally:
        file.close()
