"""Pull: from a reference in a registry to a runnable image in the stores (spec §5.3).

1. Fetch the manifest by tag or digest (all four manifest and index types
   accepted), verify its digest (the one asked for, else the registry's
   `Docker-Content-Digest`, else the computed one becomes the RepoDigest).
2. An index: choose the platform's entry (attestations skipped) and fetch it.
3. Fetch and verify the config.
4. Layers: already-unpacked chains are skipped; missing blobs download in
   parallel (bounded), streamed into the content store, which publishes a
   blob only once its size and digest match; layers unpack in order as their
   blobs arrive, each checked against its DiffID before it is published.
5. Record the image, its tag and its RepoDigest.

Everything stored along the way is held by a lease until the image is
recorded; a pull that fails or is cancelled at any point drops the lease and
collects garbage, so it leaves no partial image, and the content store never
holds a blob whose digest was not verified.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from dockyard.content.store import (
    ContentStore,
    DigestingReader,
    DigestMismatch,
    sha256_digest,
    validate_digest,
)
from dockyard.errors import InvalidArgument, NotFound
from dockyard.events.bus import EventBus
from dockyard.images import oci
from dockyard.images.platform import Platform, is_attestation, select
from dockyard.images.reference import Reference
from dockyard.images.service import Image, ImageService, LayerBlob, Lease
from dockyard.layers.compression import open_decompressed
from dockyard.registry.auth import Credentials
from dockyard.registry.client import (
    MAX_DOCUMENT_SIZE,
    RegistryError,
    RegistryService,
    Repository,
    read_limited,
)
from dockyard.registry.progress import Event, Meter, Report, short_id
from dockyard.snapshots.layers import LayerStore, Staged, chain_ids
from dockyard.streams import consume_in_thread, in_thread

MAX_CONFIG_SIZE = 8 << 20


@dataclass(frozen=True)
class Document:
    """A manifest or index exactly as the registry sent it."""

    digest: str
    media_type: str
    body: bytes
    doc: dict[str, Any]


def not_found_message(error: RegistryError, ref: Reference) -> str:
    """Docker's wording for a missing repository or tag (moby's translatePullError)."""
    if error.code == "MANIFEST_UNKNOWN":
        return f"manifest for {ref.familiar()} not found: {error.message}"
    if error.code == "NAME_UNKNOWN":
        return f"repository {ref.familiar_repository} not found: {error.message}"
    return (
        f"pull access denied for {ref.familiar_repository}, repository does not exist or "
        f"may require 'docker login': {error.message}"
    )


def checked_descriptor(value: Any, what: str) -> dict[str, Any]:
    """A manifest's descriptor, refused unless it has a valid sha256 digest and a size."""
    if not isinstance(value, dict):
        raise InvalidArgument(f"invalid manifest: {what} is not a descriptor")
    digest = value.get("digest")
    size = value.get("size")
    if not isinstance(digest, str) or not isinstance(size, int) or size < 0:
        raise InvalidArgument(f"invalid manifest: {what} has no valid digest and size")
    try:
        validate_digest(digest)
    except InvalidArgument:
        raise InvalidArgument(f"invalid manifest: unsupported digest {digest!r}") from None
    return value


async def fetch_manifest(repo: Repository, target: str, expected: str | None) -> Document:
    """The manifest or index `target` (a tag or digest), verified against `expected` (else
    the registry's `Docker-Content-Digest`); schema 1 and unknown types are refused."""
    url = await repo.url(f"manifests/{target}")
    async with repo.request("GET", url, headers={"Accept": oci.ACCEPT}) as resp:
        body = await read_limited(resp, MAX_DOCUMENT_SIZE, f"manifest {target}")
        announced = resp.headers.get("Docker-Content-Digest", "")
        content_type = resp.headers.get("Content-Type", "")
    digest = sha256_digest(body)
    if expected is None and announced.startswith("sha256:"):
        expected = announced
    if expected is not None and digest != expected:
        raise DigestMismatch(
            f"manifest verification failed for {target}: expected {expected}, got {digest}"
        )
    try:
        doc = json.loads(body)
        media_type = oci.document_type(doc, content_type)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"invalid manifest {target}: {e}") from None
    if media_type in oci.SCHEMA1_TYPES:
        raise InvalidArgument(
            f"{target}: image manifest schema 1 is not supported (deprecated since Docker "
            "1.10); push the image again with a current client"
        )
    if media_type not in oci.MANIFEST_TYPES:
        raise InvalidArgument(f"{target}: unsupported manifest media type {media_type}")
    return Document(digest, media_type, body, doc)


async def fetch_small_blob(
    repo: Repository, desc: dict[str, Any], max_size: int, what: str
) -> bytes:
    """A small blob (a config) read into memory, its size and digest verified."""
    if desc["size"] > max_size:
        raise InvalidArgument(f"{what} {desc['digest']} is too large")
    url = await repo.url(f"blobs/{desc['digest']}")
    async with repo.request("GET", url) as resp:
        body = await read_limited(resp, desc["size"], f"{what} {desc['digest']}")
    if len(body) != desc["size"]:
        raise DigestMismatch(
            f"size mismatch for {desc['digest']}: expected {desc['size']} bytes, got {len(body)}"
        )
    if sha256_digest(body) != desc["digest"]:
        raise DigestMismatch(f"digest mismatch for {what} {desc['digest']}")
    return body


async def download_blob(
    repo: Repository,
    desc: dict[str, Any],
    content: ContentStore,
    limit: asyncio.Semaphore,
    report: Report,
) -> None:
    """Stream a blob into `content` (published only once its size and digest match),
    reporting byte progress."""
    digest, size = desc["digest"], desc["size"]
    item = short_id(digest)
    async with limit:
        url = await repo.url(f"blobs/{digest}")
        async with repo.request("GET", url) as resp:
            meter = Meter(report, item, "Downloading", size)

            async def body() -> AsyncIterator[bytes]:
                async for chunk in resp.content.iter_any():
                    meter.add(len(chunk))
                    yield chunk

            await consume_in_thread(body(), lambda reader: content.ingest(reader, digest, size))
    report(Event("Verifying Checksum", item))
    report(Event("Download complete", item))


class Puller:
    def __init__(self, registry: RegistryService, images: ImageService, events: EventBus) -> None:
        self.registry = registry
        self.images = images
        self.content = images.content
        self.layers: LayerStore = images.layers
        self.events = events

    async def pull(
        self,
        ref: Reference,
        *,
        platform: Platform | None,
        credentials: Credentials,
        report: Report,
    ) -> Image:
        repo = self.registry.repository(ref.domain, ref.path, credentials, ("pull",))
        wanted = platform or Platform.host()
        target = ref.digest or ref.tag or "latest"
        try:
            top = await self._manifest(repo, target, ref.digest)
        except RegistryError as e:
            if e.http_status in (401, 403, 404):
                raise NotFound(not_found_message(e, ref)) from None
            raise
        report(Event(f"Pulling from {ref.path}", ref.digest or ref.tag or "latest", detail=False))
        manifest = top
        while manifest.media_type in oci.INDEX_TYPES:
            entry = select(manifest.doc, wanted)
            manifest = await self._manifest(repo, entry["digest"], entry["digest"])
        if manifest.media_type not in oci.IMAGE_MANIFEST_TYPES:
            raise InvalidArgument(f"unsupported manifest media type {manifest.media_type}")
        config_desc = checked_descriptor(manifest.doc.get("config"), "config")
        layer_descs = manifest.doc.get("layers")
        if not isinstance(layer_descs, list):
            raise InvalidArgument("invalid manifest: no layers")
        layer_descs = [checked_descriptor(d, f"layer {i}") for i, d in enumerate(layer_descs)]
        if config_desc.get("mediaType") not in oci.CONFIG_TYPES:
            raise InvalidArgument(
                f"{ref.familiar()} is not a container image (config media type "
                f"{config_desc.get('mediaType')!r}); Dockyard only runs images"
            )
        repo_digest = Reference(ref.domain, ref.path, None, top.digest)
        async with self.images.lease() as lease:
            for document in {top.digest: top, manifest.digest: manifest}.values():
                await self._store(lease, document.body, document.digest)
            config_digest = config_desc["digest"]
            known = self.images.exists(config_digest)
            diff_sizes: dict[str, int] = {}
            if known:
                image = self.images.resolve(config_digest)
                _check_platform(ref, platform, image.config)
            else:
                config = await self._config(repo, config_desc, lease)
                _check_platform(ref, platform, config)
                diff_ids = _diff_ids(config, len(layer_descs))
                diff_sizes = await self._layers(repo, layer_descs, diff_ids, lease, report)
                top_chain = chain_ids(diff_ids)[-1] if diff_ids else None
                size = sum(layer.size for layer in self.layers.stack(top_chain))
                image = self.images.record(config_digest, manifest.digest, size)
            if ref.tag and not ref.digest:
                up_to_date = known and any(str(t) == str(ref) for t in image.tags)
                self.images.tag(image.id, ref, event=False)
            else:
                up_to_date = known
            for desc, diff_id in zip(layer_descs, image.diff_ids, strict=False):
                if diff_id not in diff_sizes:
                    continue  # not unpacked now: that the blob holds this layer is unchecked
                media_type = str(desc.get("mediaType", ""))
                self.images.add_layer_blob(
                    LayerBlob(
                        diff_id, desc["digest"], media_type, desc["size"], diff_sizes.get(diff_id)
                    )
                )
                self.images.add_blob_source(desc["digest"], ref.repository)
            self.images.add_repo_digest(image.id, repo_digest)
        self.images.emit("pull", ref.familiar(), ref.familiar_repository)
        report(Event(f"Digest: {top.digest}"))
        if up_to_date:
            report(Event(f"Status: Image is up to date for {ref.familiar()}"))
        else:
            report(Event(f"Status: Downloaded newer image for {ref.familiar()}"))
        return self.images.resolve(image.id)

    async def resolve(
        self, ref: Reference, credentials: Credentials
    ) -> tuple[Document, list[Platform]]:
        """The top-level document `ref` names and the platforms it offers (no download)."""
        repo = self.registry.repository(ref.domain, ref.path, credentials, ("pull",))
        try:
            top = await self._manifest(repo, ref.digest or ref.tag or "latest", ref.digest)
        except RegistryError as e:
            if e.http_status in (401, 403, 404):
                raise NotFound(not_found_message(e, ref)) from None
            raise
        if top.media_type in oci.INDEX_TYPES:
            platforms = [
                Platform.of(entry.get("platform") or {})
                for entry in top.doc.get("manifests") or []
                if isinstance(entry, dict) and not is_attestation(entry)
            ]
            return top, platforms
        config_desc = checked_descriptor(top.doc.get("config"), "config")
        config = await self._config(repo, config_desc, None)
        return top, [Platform.of(config if isinstance(config, dict) else {})]

    # -- documents -----------------------------------------------------------

    async def _manifest(self, repo: Repository, target: str, expected: str | None) -> Document:
        return await fetch_manifest(repo, target, expected)

    async def _store(self, lease: Lease, data: bytes, digest: str) -> None:
        lease.pin(blobs=[digest])
        await asyncio.to_thread(self.content.put, data, digest)

    async def _config(self, repo: Repository, desc: dict[str, Any], lease: Lease | None) -> Any:
        body = await fetch_small_blob(repo, desc, MAX_CONFIG_SIZE, "image config")
        if lease is not None:
            await self._store(lease, body, desc["digest"])
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise InvalidArgument(f"invalid image config {desc['digest']}: {e}") from None

    # -- layers --------------------------------------------------------------

    async def _layers(
        self,
        repo: Repository,
        descs: list[dict[str, Any]],
        diff_ids: list[str],
        lease: Lease,
        report: Report,
    ) -> dict[str, int]:
        """Download and unpack what is missing; returns the unpacked layers' tar sizes."""
        chains = chain_ids(diff_ids)
        sizes: dict[str, int] = {}
        lease.pin(blobs=[d["digest"] for d in descs], chains=chains)
        limit = asyncio.Semaphore(self.registry.settings.max_concurrent_downloads)
        downloads: dict[str, asyncio.Task[None]] = {}
        for desc, chain in zip(descs, chains, strict=True):
            item = short_id(desc["digest"])
            if self.layers.has(chain):
                report(Event("Already exists", item))
            elif self.content.exists(desc["digest"]) or desc["digest"] in downloads:
                report(Event("Pulling fs layer", item))
            else:
                report(Event("Pulling fs layer", item))
                downloads[desc["digest"]] = asyncio.create_task(
                    self._download(repo, desc, limit, report)
                )
        try:
            parent: str | None = None
            for desc, diff_id, chain in zip(descs, diff_ids, chains, strict=True):
                if not self.layers.has(chain):
                    download = downloads.get(desc["digest"])
                    if download is not None:
                        await download
                    sizes[diff_id] = await self._unpack(desc, diff_id, chain, parent, report)
                parent = chain
            return sizes
        finally:
            for task in downloads.values():
                task.cancel()
            await asyncio.gather(*downloads.values(), return_exceptions=True)

    async def _download(
        self, repo: Repository, desc: dict[str, Any], limit: asyncio.Semaphore, report: Report
    ) -> None:
        await download_blob(repo, desc, self.content, limit, report)

    async def _unpack(
        self, desc: dict[str, Any], diff_id: str, chain: str, parent: str | None, report: Report
    ) -> int:
        """Unpack one layer from its blob, checking its DiffID; returns the tar's size."""
        digest = desc["digest"]
        item = short_id(digest)
        loop = asyncio.get_running_loop()

        def threadsafe(event: Event) -> None:
            loop.call_soon_threadsafe(report, event)

        def unpack() -> tuple[Staged, int]:
            meter = Meter(threadsafe, item, "Extracting", self.content.size(digest))
            with self.content.open(digest) as raw:
                counted = _Counted(raw, meter)
                with open_decompressed(counted) as tar:  # type: ignore[arg-type]
                    digesting = DigestingReader(tar)
                    staged = self.layers.stage(digesting, parent)  # type: ignore[arg-type]
            if digesting.digest != diff_id:
                self.layers.discard(staged)
                raise DigestMismatch(
                    f"failed to register layer {digest}: its content has DiffID "
                    f"{digesting.digest}, but the image config says {diff_id}"
                )
            return staged, digesting.size

        staged, size = await in_thread(unpack, lambda result: self.layers.discard(result[0]))
        self.layers.publish(staged, chain, diff_id, parent)
        report(Event("Pull complete", item))
        return size


def _check_platform(ref: Reference, wanted: Platform | None, config: Any) -> None:
    """A platform asked for must be the image's, as Docker checks it."""
    if wanted is None or not isinstance(config, dict):
        return
    found = Platform.of(config)
    if not wanted.matches(found):
        raise NotFound(
            f"image with reference {ref.familiar()} was found but its platform ({found}) "
            f"does not match the specified platform ({wanted})"
        )


def _diff_ids(config: Any, layer_count: int) -> list[str]:
    rootfs = config.get("rootfs") if isinstance(config, dict) else None
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise InvalidArgument('invalid image config: rootfs.type must be "layers"')
    diff_ids = rootfs.get("diff_ids")
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise InvalidArgument("invalid image config: rootfs.diff_ids is not a list of digests")
    if len(diff_ids) != layer_count:
        raise InvalidArgument(
            f"invalid image: the manifest has {layer_count} layers but the config "
            f"{len(diff_ids)} DiffIDs"
        )
    for diff_id in diff_ids:
        validate_digest(diff_id)
    return diff_ids


class _Counted:
    """Counts bytes read from a blob into a progress meter."""

    def __init__(self, source: BinaryIO, meter: Meter) -> None:
        self._source = source
        self._meter = meter

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        if data:
            self._meter.add(len(data))
        return data

    def readable(self) -> bool:
        return True
