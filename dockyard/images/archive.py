"""Image archives: `save` and `load` (spec §4).

`save` writes what Docker 25+ writes: an OCI image layout (`oci-layout`,
`index.json` with one descriptor per tag, `blobs/sha256/...`) that also
carries Docker's `manifest.json` and `repositories`, with every layer as an
uncompressed tar named by its DiffID. Both `docker load` and OCI tools
(skopeo's `docker-archive:` and `oci-archive:`) read it. Entries are in a
fixed order with fixed times, so saving the same images twice gives the
same bytes. A layer stored only compressed (a pulled one) is decompressed
once, verified against its DiffID and kept.

`load` reads that layout, the legacy one of Docker <= 24 (`<id>/layer.tar`,
symlinked duplicates), podman's and skopeo's docker-archives, and bare OCI
layouts (`oci-archive:`); the archive itself may be compressed, and so may
each layer. The archive is hostile input: it is unpacked into a flat
staging area (entries become numbered files, hashed as they are written, so
no archive path ever names a place on disk), paths and symlinks are
resolved inside the archive only, every blob must match its digest and every
layer its DiffID. Images are recorded only once all their content is in;
anything stored before a failure is collected, so a bad archive leaves
nothing behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import posixpath
import shutil
import tarfile
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from dockyard.content.store import ContentStore, DigestingReader, validate_digest
from dockyard.errors import InvalidArgument, NotFound
from dockyard.events.bus import EventBus
from dockyard.images import oci, reference
from dockyard.images.platform import Platform, select
from dockyard.images.reference import Reference
from dockyard.images.service import Image, ImageService, LayerBlob, Lease
from dockyard.layers.compression import HEAD_SIZE, Compression, detect, open_decompressed
from dockyard.snapshots.layers import Staged, chain_ids
from dockyard.streams import consume_in_thread, in_thread, produce_in_thread

_CHUNK = 1 << 20
_BLOCK = 512
_MAX_DOCUMENT = 8 << 20  # manifest.json, index.json, configs, manifests
_MAX_LINKS = 16


def _bad(message: str) -> InvalidArgument:
    return InvalidArgument(f"invalid archive: {message}")


# -- save -----------------------------------------------------------------------


@dataclass
class _Saved:
    image: Image
    refs: list[Reference] = field(default_factory=list)


class Archives:
    def __init__(self, images: ImageService, events: EventBus) -> None:
        self.images = images
        self.content = images.content
        self.layers = images.layers
        self.events = events

    def _plan(self, names: list[str]) -> list[_Saved]:
        """The images to save, each with the tags that were asked for."""
        saved: dict[str, _Saved] = {}

        def add(image: Image, ref: Reference | None) -> None:
            entry = saved.setdefault(image.id, _Saved(image))
            if ref is not None and ref not in entry.refs:
                entry.refs.append(ref)

        for name in names:
            try:
                ref: Reference | None = reference.parse(name, default_tag=None)
            except InvalidArgument:
                ref = None
            if ref is not None and ref.tag is None and ref.digest is None:
                # A bare repository name saves every tag of that repository.
                tags = [
                    t for i in self.images.all() for t in i.tags if t.repository == ref.repository
                ]
                for tag in tags:
                    add(self.images.resolve(str(tag)), tag)
                if tags:
                    continue
            image = self.images.resolve(name)
            tagged = (
                ref.with_tag(ref.tag or "latest") if ref is not None and not ref.digest else None
            )
            add(image, tagged if tagged in image.tags else None)
        return list(saved.values())

    async def save(self, names: list[str]) -> AsyncIterator[bytes]:
        """The archive of `names`, chunk by chunk; names are resolved before the first."""
        plan = self._plan(names)
        with self.images.hold() as lease:  # what is written stays until it is sent
            # Everything of every image is pinned before the first await: a collection
            # while an earlier layer is decompressed must not take a later image's blobs.
            for entry in plan:
                diff_ids = entry.image.diff_ids
                lease.pin(
                    blobs=[
                        entry.image.id,
                        entry.image.manifest_digest,
                        *diff_ids,
                        *(b.digest for d in diff_ids for b in self.images.layer_blobs(d)),
                    ]
                )
            layers: dict[str, _LayerSource] = {}
            for entry in plan:
                for diff_id in entry.image.diff_ids:
                    if diff_id not in layers:
                        layers[diff_id] = await self._uncompressed(diff_id, lease)
            for entry in plan:
                self.images.emit("save", entry.image.id, entry.image.id)
            async for chunk in produce_in_thread(self._write(plan, layers)):
                yield chunk

    async def _uncompressed(self, diff_id: str, lease: Lease) -> _LayerSource:
        """Where the layer's uncompressed tar comes from, and its size.

        The uncompressed blob when stored; else a compressed one whose tar size
        is known (recorded when it was unpacked and its DiffID checked), which
        is decompressed while the archive is written; else one is decompressed
        now, verified against the DiffID and kept.
        """
        lease.pin(blobs=[diff_id, *(blob.digest for blob in self.images.layer_blobs(diff_id))])
        if self.content.exists(diff_id):
            return _LayerSource(self.content.path(diff_id), self.content.size(diff_id), False)
        stored = self.images.layer_blobs(diff_id)
        if not stored:
            raise NotFound(f"layer {diff_id} has no stored blob")
        for blob in stored:
            if blob.diff_size is not None:
                return _LayerSource(self.content.path(blob.digest), blob.diff_size, True)
        source = stored[0]

        def decompress() -> int:
            with self.content.open(source.digest) as raw, open_decompressed(raw) as tar:
                return self.content.ingest(tar, diff_id)[1]

        size = await in_thread(decompress, lambda _size: None)
        self.images.add_layer_blob(LayerBlob(diff_id, diff_id, oci.LAYER, size, size))
        return _LayerSource(self.content.path(diff_id), size, False)

    def _write(
        self, plan: list[_Saved], layers: dict[str, _LayerSource]
    ) -> Generator[bytes, None, None]:
        """The tar stream (blocking: runs in a worker thread)."""
        yield _dir("blobs/")
        yield _dir("blobs/sha256/")
        written: set[str] = set()
        manifest_json: list[dict[str, Any]] = []
        index_entries: list[dict[str, Any]] = []
        repositories: dict[str, dict[str, str]] = {}
        for entry in plan:
            image = entry.image
            config = self.content.read(image.id)
            layer_paths = []
            descriptors = []
            for diff_id in image.diff_ids:
                path = "blobs/sha256/" + diff_id.removeprefix("sha256:")
                layer_paths.append(path)
                descriptors.append(oci.descriptor(oci.LAYER, diff_id, layers[diff_id].size))
                if path not in written:
                    written.add(path)
                    yield from _file_from(path, layers[diff_id])
            config_path = "blobs/sha256/" + image.id.removeprefix("sha256:")
            if config_path not in written:
                written.add(config_path)
                yield from _file(config_path, config)
            manifest = oci.canonical_json(
                oci.manifest(oci.descriptor(oci.CONFIG, image.id, len(config)), descriptors)
            )
            manifest_digest = "sha256:" + _sha256(manifest)
            manifest_path = "blobs/sha256/" + manifest_digest.removeprefix("sha256:")
            if manifest_path not in written:
                written.add(manifest_path)
                yield from _file(manifest_path, manifest)
            descriptor = oci.descriptor(oci.MANIFEST, manifest_digest, len(manifest))
            for ref in entry.refs:
                index_entries.append(
                    {
                        **descriptor,
                        "annotations": {
                            oci.ANNOTATION_IMAGE_NAME: str(ref),
                            oci.ANNOTATION_REF_NAME: ref.tag or "latest",
                        },
                    }
                )
                top = image.diff_ids[-1].removeprefix("sha256:") if image.diff_ids else ""
                repositories.setdefault(ref.familiar_repository, {})[ref.tag or "latest"] = top
            if not entry.refs:
                index_entries.append(descriptor)
            manifest_json.append(
                {
                    "Config": config_path,
                    "RepoTags": [ref.familiar() for ref in entry.refs],
                    "Layers": layer_paths,
                }
            )
        index = {"schemaVersion": 2, "mediaType": oci.INDEX, "manifests": index_entries}
        yield from _file("index.json", oci.canonical_json(index) + b"\n")
        yield from _file("manifest.json", oci.canonical_json(manifest_json) + b"\n")
        yield from _file("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        if repositories:
            yield from _file("repositories", oci.canonical_json(repositories) + b"\n")
        yield b"\0" * (2 * _BLOCK)

    # -- load -----------------------------------------------------------------

    async def load(self, body: AsyncIterator[bytes]) -> list[tuple[Reference | None, str]]:
        """Load every image of an archive; returns (tag or None, image ID) per result."""
        staging = self.content.staging_dir()
        try:
            archive = await consume_in_thread(body, lambda r: _Archive.unpack(r, staging))
            async with self.images.lease() as lease:
                if archive.has("manifest.json"):
                    return await self._load_docker(archive, lease)
                if archive.has("index.json") and archive.has("oci-layout"):
                    return await self._load_oci(archive, lease)
                raise _bad("does not contain a manifest.json")
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    async def _load_docker(
        self, archive: _Archive, lease: Lease
    ) -> list[tuple[Reference | None, str]]:
        entries = await asyncio.to_thread(archive.json, "manifest.json")
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise _bad("manifest.json is not a list of images")
        loaded: list[tuple[Reference | None, str]] = []
        for number, item in enumerate(entries):
            config_path, layer_paths = item.get("Config"), item.get("Layers")
            repo_tags = item.get("RepoTags") or []
            if not isinstance(config_path, str) or not isinstance(layer_paths, list):
                raise _bad(f"manifest.json entry {number} has no Config or Layers")
            if not all(isinstance(p, str) for p in layer_paths) or not isinstance(repo_tags, list):
                raise _bad(f"manifest.json entry {number} is malformed")
            refs = [_repo_tag(tag) for tag in repo_tags]
            config_digest, config = await asyncio.to_thread(
                archive.config, self.content, config_path, lease
            )
            diff_ids = _diff_ids(config)
            if len(diff_ids) != len(layer_paths):
                raise _bad(
                    f"image {config_digest} lists {len(layer_paths)} layers but its config "
                    f"{len(diff_ids)} DiffIDs"
                )
            descriptors = []
            for index, (path, diff_id) in enumerate(zip(layer_paths, diff_ids, strict=True)):
                descriptors.append(
                    await self._layer(archive, path, diff_id, index, diff_ids, lease)
                )
            image = self.images.add_stored(
                config_digest,
                self.content.size(config_digest),
                descriptors,
                self._size(diff_ids),
            )
            loaded += self._name(image, refs)
        return loaded

    async def _load_oci(
        self, archive: _Archive, lease: Lease
    ) -> list[tuple[Reference | None, str]]:
        index = await asyncio.to_thread(archive.json, "index.json")
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            raise _bad("index.json is not an image index")
        loaded: list[tuple[Reference | None, str]] = []
        for entry in index["manifests"]:
            if not isinstance(entry, dict) or entry.get("mediaType") not in oci.MANIFEST_TYPES:
                continue
            annotations = entry.get("annotations") or {}
            ref = _oci_name(annotations)
            digest = _digest(entry)
            document = await asyncio.to_thread(archive.json, _blob_path(digest), digest)
            while oci.document_type(document) in oci.INDEX_TYPES:
                digest = _digest(select(document, Platform.host()))
                document = await asyncio.to_thread(archive.json, _blob_path(digest), digest)
            manifest_digest = await asyncio.to_thread(
                archive.store, self.content, _blob_path(digest), lease, digest
            )
            config_desc = document.get("config") if isinstance(document, dict) else None
            layers = document.get("layers") if isinstance(document, dict) else None
            if not isinstance(config_desc, dict) or not isinstance(layers, list):
                raise _bad(f"manifest {digest} has no config or layers")
            config_digest = _digest(config_desc)
            _, config = await asyncio.to_thread(
                archive.config, self.content, _blob_path(config_digest), lease, config_digest
            )
            diff_ids = _diff_ids(config)
            if len(diff_ids) != len(layers):
                raise _bad(
                    f"manifest {digest} has {len(layers)} layers, its config {len(diff_ids)}"
                )
            for number, (desc, diff_id) in enumerate(zip(layers, diff_ids, strict=True)):
                path = _blob_path(_digest(desc))
                await self._layer(archive, path, diff_id, number, diff_ids, lease, _digest(desc))
            image = self.images.record(config_digest, manifest_digest, self._size(diff_ids))
            loaded += self._name(image, [ref] if ref else [])
        if not loaded:
            raise _bad("index.json lists no image")
        return loaded

    async def _layer(
        self,
        archive: _Archive,
        path: str,
        diff_id: str,
        number: int,
        diff_ids: list[str],
        lease: Lease,
        expected: str | None = None,
    ) -> dict[str, Any]:
        """Unpack (unless present) and store one layer file; returns its descriptor."""
        chain = chain_ids(diff_ids)[number]
        parent = chain_ids(diff_ids)[number - 1] if number else None
        lease.pin(chains=[chain])  # before looking: see ImageService
        digest = await asyncio.to_thread(archive.store, self.content, path, lease, expected)
        size = self.content.size(digest)
        with self.content.open(digest) as head_file:
            kind = detect(head_file.read(HEAD_SIZE))
        media_type = {
            Compression.GZIP: oci.LAYER_GZIP,
            Compression.ZSTD: oci.LAYER_ZSTD,
        }.get(kind, oci.LAYER)
        if media_type == oci.LAYER and digest != diff_id:
            raise _bad(f"invalid diffID for layer {number}: expected {diff_id}, got {digest}")
        diff_size = size if media_type == oci.LAYER else None
        if not self.layers.has(chain):

            def unpack() -> tuple[Staged, int]:
                with self.content.open(digest) as raw, open_decompressed(raw) as tar:
                    digesting = DigestingReader(tar)
                    staged = self.layers.stage(digesting, parent)  # type: ignore[arg-type]
                if digesting.digest != diff_id:
                    self.layers.discard(staged)
                    raise _bad(
                        f"invalid diffID for layer {number}: expected {diff_id}, "
                        f"got {digesting.digest}"
                    )
                return staged, digesting.size

            staged, diff_size = await in_thread(unpack, lambda r: self.layers.discard(r[0]))
            self.layers.publish(staged, chain, diff_id, parent)
        elif media_type != oci.LAYER:
            # The layer is here already, but this blob is new: it must hold that layer.

            def uncompressed_digest() -> tuple[str, int]:
                with self.content.open(digest) as raw, open_decompressed(raw) as tar:
                    digesting = DigestingReader(tar)
                    while digesting.read(_CHUNK):
                        pass
                return digesting.digest, digesting.size

            found, diff_size = await asyncio.to_thread(uncompressed_digest)
            if found != diff_id:
                raise _bad(f"invalid diffID for layer {number}: expected {diff_id}, got {found}")
        self.images.add_layer_blob(LayerBlob(diff_id, digest, media_type, size, diff_size))
        return oci.descriptor(media_type, digest, size)

    def _size(self, diff_ids: list[str]) -> int:
        chains = chain_ids(diff_ids)
        return sum(layer.size for layer in self.layers.stack(chains[-1] if chains else None))

    def _name(self, image: Image, refs: list[Reference]) -> list[tuple[Reference | None, str]]:
        for ref in refs:
            self.images.tag(image.id, ref, event=False)
        self.images.emit("load", image.id, image.id)
        if not refs:
            return [(None, image.id)]
        return [(ref, image.id) for ref in refs]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _header(name: str, size: int, kind: bytes, mode: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.type = kind
    info.mode = mode
    info.mtime = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.USTAR_FORMAT)


def _dir(name: str) -> bytes:
    return _header(name, 0, tarfile.DIRTYPE, 0o755)


def _padding(size: int) -> bytes:
    return b"\0" * (-size % _BLOCK)


def _file(name: str, data: bytes) -> Generator[bytes, None, None]:
    yield _header(name, len(data), tarfile.REGTYPE, 0o644) + data + _padding(len(data))


@dataclass(frozen=True)
class _LayerSource:
    path: str
    size: int  # of the uncompressed tar
    compressed: bool


def _file_from(name: str, source: _LayerSource) -> Generator[bytes, None, None]:
    yield _header(name, source.size, tarfile.REGTYPE, 0o644)
    remaining = source.size
    with open(source.path, "rb") as raw:
        stream = open_decompressed(raw) if source.compressed else raw
        try:
            while remaining:
                data = stream.read(min(_CHUNK * 4, remaining))
                if not data:
                    raise NotFound(f"layer {name} is shorter than recorded")
                remaining -= len(data)
                yield data
            if source.compressed and stream.read(1):
                raise NotFound(f"layer {name} is longer than recorded")
        finally:
            if stream is not raw:
                stream.close()
    yield _padding(source.size)


def _blob_path(digest: str) -> str:
    algorithm, _, encoded = digest.partition(":")
    return f"blobs/{algorithm}/{encoded}"


def _digest(descriptor: Any) -> str:
    digest = descriptor.get("digest") if isinstance(descriptor, dict) else None
    if not isinstance(digest, str):
        raise _bad("a descriptor has no digest")
    try:
        return validate_digest(digest)
    except InvalidArgument:
        raise _bad(f"unsupported digest {digest!r}") from None


def _config(data: bytes, where: str) -> dict[str, Any]:
    try:
        config = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise _bad(f"config {where} is not JSON: {e}") from None
    if not isinstance(config, dict):
        raise _bad(f"config {where} is not an object")
    return config


def _diff_ids(config: dict[str, Any]) -> list[str]:
    rootfs = config.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise _bad('image config: rootfs.type must be "layers"')
    diff_ids = rootfs.get("diff_ids") or []
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise _bad("image config: bad rootfs.diff_ids")
    for diff_id in diff_ids:
        try:
            validate_digest(diff_id)
        except InvalidArgument:
            raise _bad(f"image config: unsupported DiffID {diff_id!r}") from None
    return diff_ids


def _repo_tag(text: Any) -> Reference:
    if not isinstance(text, str):
        raise _bad("RepoTags holds a non-string")
    ref = reference.parse(text, default_tag=None)
    if ref.digest or not ref.tag:
        raise _bad(f"RepoTags entry {text!r} is not a name:tag reference")
    return ref


def _oci_name(annotations: dict[str, Any]) -> Reference | None:
    """An image's name in an OCI layout: containerd's full name, else a full ref.name."""
    for key in (oci.ANNOTATION_IMAGE_NAME, oci.ANNOTATION_REF_NAME):
        value = annotations.get(key)
        if not isinstance(value, str) or not value:
            continue
        if key == oci.ANNOTATION_REF_NAME and not any(c in value for c in "/:"):
            return None  # just a tag: no repository to put it in
        try:
            ref = reference.parse(value)
        except InvalidArgument:
            continue
        if ref.digest is None:
            return ref
    return None


# -- unpacking a hostile archive ------------------------------------------------


@dataclass
class _Entry:
    path: str  # the staging file
    digest: str
    size: int


class _Archive:
    """An unpacked archive: its regular files by archive path, and its links."""

    def __init__(self, staging: str) -> None:
        self.staging = staging
        self.files: dict[str, _Entry] = {}
        self.links: dict[str, str] = {}  # archive path -> archive path it stands for
        self.stored: dict[str, str] = {}  # staging file -> digest, once moved to the store

    @classmethod
    def unpack(cls, raw: BinaryIO, staging: str) -> _Archive:
        archive = cls(staging)
        try:
            with (
                open_decompressed(raw) as stream,
                tarfile.open(fileobj=stream, mode="r|", encoding="utf-8") as tar,
            ):
                for member in tar:
                    archive._add(member, tar)
                    tar.members.clear()  # type: ignore[attr-defined]
        except tarfile.TarError as e:
            raise _bad(f"not a tar archive or truncated: {e}") from None
        except EOFError as e:
            raise _bad(f"truncated: {e}") from None
        if not archive.files:
            raise _bad("it is empty")
        return archive

    def _add(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        if ".." in member.name.split("/"):
            raise _bad(f"path {member.name!r} escapes the archive")
        name = _clean(member.name)
        if member.isdir() or not name:
            return
        if member.isfile():
            source = tar.extractfile(member)
            assert source is not None
            path = os.path.join(self.staging, str(len(self.files) + len(self.links)))
            with open(path, "wb") as out:
                reader = DigestingReader(source)  # type: ignore[arg-type]
                while chunk := reader.read(_CHUNK):
                    out.write(chunk)
            self.links.pop(name, None)
            self.files[name] = _Entry(path, reader.digest, reader.size)
        elif member.issym():
            # Resolved inside the archive: an absolute target starts at its root.
            target = member.linkname
            base = "" if target.startswith("/") else posixpath.dirname(name)
            self.links[name] = _clean(posixpath.join(base, target.lstrip("/")))
            self.files.pop(name, None)
        elif member.islnk():
            self.links[name] = _clean(member.linkname)
            self.files.pop(name, None)
        else:
            raise _bad(f"entry {member.name!r} is neither a file, a directory nor a link")

    def has(self, name: str) -> bool:
        return name in self.files or name in self.links

    def entry(self, name: str) -> _Entry:
        """The file an archive path names, links followed within the archive."""
        path = _clean(name)
        for _ in range(_MAX_LINKS):
            if path in self.files:
                return self.files[path]
            if path not in self.links:
                raise _bad(f"{name} is missing")
            path = self.links[path]
        raise _bad(f"{name}: too many levels of links")

    def json(self, name: str, digest: str | None = None) -> Any:
        entry = self.entry(name)
        if digest is not None and entry.digest != digest:
            raise _bad(f"blob {name} does not match its digest {digest}")
        if entry.size > _MAX_DOCUMENT:
            raise _bad(f"{name} is too large")
        try:
            with open(entry.path, "rb") as f:
                return json.loads(f.read())
        except (ValueError, UnicodeDecodeError) as e:
            raise _bad(f"{name} is not valid JSON: {e}") from None

    def config(
        self, content: ContentStore, name: str, lease: Lease, digest: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Store an image config; returns its digest and content (bounded in size)."""
        if self.entry(name).size > _MAX_DOCUMENT:
            raise _bad(f"{name} is too large")
        stored = self.store(content, name, lease, digest)
        return stored, _config(content.read(stored), name)

    def store(
        self, content: ContentStore, name: str, lease: Lease, digest: str | None = None
    ) -> str:
        """Move an archive file into the content store (it was hashed on the way in)."""
        entry = self.entry(name)
        if digest is not None and entry.digest != digest:
            raise _bad(f"blob {name} does not match its digest {digest}")
        lease.pin(blobs=[entry.digest])
        if entry.path not in self.stored:
            content.adopt(entry.path, entry.digest)
            self.stored[entry.path] = entry.digest
        return entry.digest


def _clean(name: str) -> str:
    """An archive path in canonical form; one that climbs out of the archive is refused."""
    path = posixpath.normpath(name) if name else "."
    if path.startswith("/") or path == ".." or path.startswith("../"):
        raise _bad(f"path {name!r} escapes the archive")
    return "" if path == "." else path
