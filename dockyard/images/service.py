"""Images: records, tags, import, removal and garbage collection.

An image is an OCI manifest and config in the content store plus a row keyed
by its ID (the config digest). Tags map canonical references
(`docker.io/library/busybox:latest`) to image IDs. Layers are unpacked by the
layer store when an image arrives, so that creating a container never waits
for extraction.

Removal follows Docker: untag first, delete the image when its last tag goes,
refuse while containers use it (a stopped user can be overridden with force,
a running one cannot). Unreferenced layers and blobs are collected afterwards.

Garbage collection runs on a worker thread, alongside operations that write
blobs and layers before they record the image that references them (pull,
load, import, commit, save, build). Such an operation holds a `Lease` and
pins every blob and layer in it *before* publishing or reusing it; the
collector holds `gc_lock` from listing what exists to deleting what is dead,
and pins take the same lock. So a pin either comes first (the item is kept)
or after the deletion (the operation finds the item gone and writes it
again); the collector reads leases before the image records, so an image
recorded just before its lease is dropped is seen in one or the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from dockyard.content.store import ContentStore, sha256_digest
from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.events.bus import EventBus
from dockyard.images import oci, reference
from dockyard.images.changes import apply_changes
from dockyard.images.reference import Reference
from dockyard.layers.compression import open_decompressed
from dockyard.snapshots.layers import LayerStore, chain_ids
from dockyard.state.db import Database
from dockyard.streams import consume_in_thread


@dataclass
class Image(oci.ConfigAccessors):
    id: str
    manifest_digest: str
    config: dict[str, Any]
    created: str
    size: int
    added: float
    tags: list[Reference] = field(default_factory=list)
    repo_digests: list[Reference] = field(default_factory=list)
    parent: str = ""  # the image a committed container was made from ("" for the rest)

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]


@dataclass
class Lease:
    """Content an operation in progress has stored or reused but not yet recorded.

    Garbage collection keeps leased blobs and layers; an operation that fails
    drops its lease and collects, which removes what it alone had stored.
    Pin before publishing (or finding) an item: see the module's docstring.
    """

    lock: threading.Lock
    blobs: set[str] = field(default_factory=set)
    chains: set[str] = field(default_factory=set)

    def pin(self, *, blobs: Iterable[str] = (), chains: Iterable[str] = ()) -> None:
        with self.lock:
            self.blobs.update(blobs)
            self.chains.update(chains)


@dataclass(frozen=True)
class LayerBlob:
    """A blob in the content store that holds one layer, in some compression."""

    diff_id: str
    digest: str
    media_type: str
    size: int
    diff_size: int | None = None  # bytes of the uncompressed tar, when known


# (container id, running) pairs of the containers that use an image
ImageUsers = Callable[[str], list[tuple[str, bool]]]
# chain IDs that containers still stack on
ContainerChains = Callable[[], set[str]]
# chain IDs and blob digests that others (the build cache) keep alive
ExtraRoots = Callable[[], tuple[set[str], set[str]]]


class ImageService:
    def __init__(
        self,
        db: Database,
        content: ContentStore,
        layers: LayerStore,
        events: EventBus,
    ) -> None:
        self.db = db
        self.content = content
        self.layers = layers
        self.events = events
        self.image_users: ImageUsers = lambda image_id: []
        self.container_chains: ContainerChains = set
        self.extra_roots: ExtraRoots = lambda: (set(), set())
        self._configs: dict[str, dict[str, Any]] = {}
        self._leases: list[Lease] = []
        self.gc_lock = threading.Lock()  # held by a collection; pins take it too
        self._collecting = threading.Lock()  # one collection at a time

    # -- lookup --------------------------------------------------------------

    def _load(self, image_id: str) -> Image:
        row = self.db.one("SELECT * FROM images WHERE id=?", (image_id,))
        if row is None:
            raise NotFound(f"No such image: {image_id}")
        config = self._configs.get(image_id)
        if config is None:
            config = json.loads(self.content.read(image_id))
            self._configs[image_id] = config
        tags = [
            reference.parse(r["ref"])
            for r in self.db.all(
                "SELECT ref FROM tags WHERE image_id=? ORDER BY tagged", (image_id,)
            )
        ]
        digests = [
            reference.parse(r["ref"])
            for r in self.db.all(
                "SELECT ref FROM repo_digests WHERE image_id=? ORDER BY added", (image_id,)
            )
        ]
        parent = self.db.one("SELECT parent FROM image_parents WHERE image_id=?", (image_id,))
        return Image(
            row["id"],
            row["manifest_digest"],
            config,
            row["created"],
            row["size"],
            row["added"],
            tags,
            digests,
            parent["parent"] if parent is not None else "",
        )

    def resolve(self, name: str) -> Image:
        """Find an image by reference, full ID or unique ID prefix."""
        image_id = self._resolve_id(name)
        if image_id is None:
            shown = name
            try:
                shown = reference.parse(name).familiar()
            except InvalidArgument:
                pass
            raise NotFound(f"No such image: {shown}")
        return self._load(image_id)

    def _resolve_id(self, name: str) -> str | None:
        if not name:
            return None
        hex_part = name.removeprefix("sha256:")
        if name.startswith("sha256:") or reference.is_full_image_id(name):
            row = self.db.one("SELECT id FROM images WHERE id=?", ("sha256:" + hex_part,))
            if row:
                return str(row["id"])
            if name.startswith("sha256:") and len(hex_part) == 64:
                return None
        try:
            ref = reference.parse(name)
        except InvalidArgument:
            ref = None
        if ref is not None and ref.digest:
            by_digest = Reference(ref.domain, ref.path, None, ref.digest)
            row = self.db.one("SELECT image_id FROM repo_digests WHERE ref=?", (str(by_digest),))
            if row:
                return str(row["image_id"])
        elif ref is not None:
            row = self.db.one("SELECT image_id FROM tags WHERE ref=?", (str(ref),))
            if row:
                return str(row["image_id"])
        if all(c in "0123456789abcdef" for c in hex_part) and 1 <= len(hex_part) < 64:
            rows = self.db.all("SELECT id FROM images WHERE id LIKE ?", (f"sha256:{hex_part}%",))
            if len(rows) == 1:
                return str(rows[0]["id"])
            if len(rows) > 1:
                raise InvalidArgument(f"multiple IDs found with provided prefix: {hex_part}")
        return None

    def all(self) -> list[Image]:
        rows = self.db.all("SELECT id FROM images ORDER BY added DESC")
        return [self._load(r["id"]) for r in rows]

    def children(self, image_id: str) -> list[str]:
        """The images recorded as made from `image_id` (Docker's child images)."""
        rows = self.db.all("SELECT image_id FROM image_parents WHERE parent=?", (image_id,))
        return [r["image_id"] for r in rows]

    def set_parent(self, image_id: str, parent: str) -> None:
        """Record that `image_id` was made from `parent` (a commit), unless it is itself."""
        if parent and parent != image_id:
            with self.db.transaction():
                self.db.execute(
                    "INSERT OR IGNORE INTO image_parents(image_id, parent) VALUES (?,?)",
                    (image_id, parent),
                )

    def exists(self, image_id: str) -> bool:
        return self.db.one("SELECT 1 FROM images WHERE id=?", (image_id,)) is not None

    # -- creation ------------------------------------------------------------

    async def import_tar(
        self,
        body: AsyncIterator[bytes],
        *,
        repo: str = "",
        tag: str = "",
        message: str = "",
        changes: list[str] | None = None,
        platform: str = "",
    ) -> Image:
        """Make a one-layer image from a root filesystem tarball (plain or compressed)."""
        ref = None
        if repo:
            name, tag_part = reference.split_repo_tag(repo, tag or None)
            ref = reference.parse(name if not tag_part else f"{name}:{tag_part}")
        os_name, _, arch = (platform or f"linux/{oci.host_arch()}").partition("/")
        if os_name != "linux":
            raise InvalidArgument(f"unsupported platform: {platform}")
        run_config = apply_changes({}, changes or [])

        def ingest(raw: BinaryIO, lease: Lease) -> tuple[str, int, Any]:
            # The uncompressed tar is hashed and stored while it is unpacked:
            # one pass over the data gives the blob, the DiffID and the layer.
            with self.content.writer() as writer:
                tee = _Tee(open_decompressed(raw), writer)
                staged = self.layers.stage(tee, None)  # type: ignore[arg-type]
                try:
                    tee.drain()
                    digest = writer.commit(pin=lambda d: lease.pin(blobs=[d], chains=[d]))
                    layer = self.layers.publish(staged, digest, digest, None)
                except BaseException:
                    self.layers.discard(staged)
                    raise
            return digest, writer.size, layer

        async with self.lease() as lease:
            try:
                diff_id, blob_size, layer = await consume_in_thread(
                    body, lambda raw: ingest(raw, lease)
                )
            except (OSError, EOFError, ValueError) as e:
                if isinstance(e, InvalidArgument):
                    raise
                # Truncated or corrupt compressed input: nothing was published.
                raise InvalidArgument(f"invalid image tarball: {e}") from e
            image = self._add_imported(diff_id, blob_size, layer.size, arch, run_config, message)
        if ref is not None:
            self.tag(image.id, ref)
        self.emit("import", image.id, image.id)
        return self._load(image.id)

    def _add_imported(
        self,
        diff_id: str,
        blob_size: int,
        size: int,
        arch: str,
        run_config: dict[str, Any],
        message: str,
    ) -> Image:
        created = oci.now_rfc3339()
        config = {
            "architecture": arch or oci.host_arch(),
            "os": "linux",
            "created": created,
            "config": run_config,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [
                {"created": created, "created_by": "", "comment": message or "Imported from -"}
            ],
        }
        return self.add(config, [oci.descriptor(oci.LAYER, diff_id, blob_size)], size)

    def add(self, config: dict[str, Any], layers: list[dict[str, Any]], size: int) -> Image:
        """Store a config and manifest for layers already in the stores; returns the image."""
        config_bytes = oci.canonical_json(config)
        with self.hold() as lease:
            lease.pin(blobs=[sha256_digest(config_bytes)])
            config_digest = self.content.put(config_bytes)
            return self.add_stored(config_digest, len(config_bytes), layers, size)

    def add_stored(
        self, config_digest: str, config_size: int, layers: list[dict[str, Any]], size: int
    ) -> Image:
        """Write a manifest for a config and layers already stored (exact config bytes kept)."""
        manifest = oci.canonical_json(
            oci.manifest(oci.descriptor(oci.CONFIG, config_digest, config_size), layers)
        )
        with self.hold() as lease:
            lease.pin(blobs=[sha256_digest(manifest)])
            manifest_digest = self.content.put(manifest)
            return self.record(config_digest, manifest_digest, size)

    def record(self, config_digest: str, manifest_digest: str, size: int) -> Image:
        """Record an image whose config, manifest and layers are all stored already.

        An image that exists keeps the manifest it was first recorded with.
        """
        config = json.loads(self.content.read(config_digest))
        with self.db.transaction():
            self.db.execute(
                "INSERT OR IGNORE INTO images(id, manifest_digest, created, size, added) "
                "VALUES (?,?,?,?,?)",
                (config_digest, manifest_digest, config.get("created") or "", size, time.time()),
            )
        return self._load(config_digest)

    def manifest(self, image: Image) -> dict[str, Any]:
        manifest: dict[str, Any] = json.loads(self.content.read(image.manifest_digest))
        return manifest

    # -- what registries and archives taught us -------------------------------

    def add_repo_digest(self, image_id: str, ref: Reference) -> None:
        """Remember that `ref` (repository@digest) names this image in a registry."""
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO repo_digests(ref, image_id, added) VALUES (?,?,?) "
                "ON CONFLICT(ref) DO UPDATE SET image_id=excluded.image_id",
                (str(ref), image_id, time.time()),
            )

    def has_repo_digest(self, image_id: str, ref: Reference) -> bool:
        row = self.db.one(
            "SELECT 1 FROM repo_digests WHERE ref=? AND image_id=?", (str(ref), image_id)
        )
        return row is not None

    def add_layer_blob(self, blob: LayerBlob) -> None:
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO layer_blobs(diff_id, digest, media_type, size, diff_size) "
                "VALUES (?,?,?,?,?) ON CONFLICT(diff_id, digest) DO UPDATE SET "
                "diff_size=coalesce(excluded.diff_size, layer_blobs.diff_size)",
                (blob.diff_id, blob.digest, blob.media_type, blob.size, blob.diff_size),
            )

    def layer_blobs(self, diff_id: str) -> list[LayerBlob]:
        """The stored blobs holding a layer, compressed forms first."""
        rows = self.db.all(
            "SELECT * FROM layer_blobs WHERE diff_id=? ORDER BY digest=diff_id, rowid",
            (diff_id,),
        )
        return [
            LayerBlob(r["diff_id"], r["digest"], r["media_type"], r["size"], r["diff_size"])
            for r in rows
            if self.content.exists(r["digest"])
        ]

    def add_blob_source(self, digest: str, repository: str) -> None:
        with self.db.transaction():
            self.db.execute(
                "INSERT OR IGNORE INTO blob_sources(digest, repository) VALUES (?,?)",
                (digest, repository),
            )

    def blob_sources(self, digest: str) -> list[str]:
        rows = self.db.all("SELECT repository FROM blob_sources WHERE digest=?", (digest,))
        return [r["repository"] for r in rows]

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[Lease]:
        """Protect what an operation stores until it is recorded; undo it on failure."""
        try:
            with self.hold() as lease:
                yield lease
        except BaseException:
            await asyncio.shield(self.collect())
            raise

    @contextmanager
    def hold(self) -> Iterator[Lease]:
        """A lease without clean-up on failure (what it pins is cached content, or
        recorded before it ends); the next collection removes any leftovers."""
        lease = Lease(self.gc_lock)
        self._leases.append(lease)
        try:
            yield lease
        finally:
            self._leases.remove(lease)

    # -- events --------------------------------------------------------------

    def emit(self, action: str, actor: str, name: str = "") -> None:
        """An image event as Docker logs one: the actor (an image ID, or for pull and
        push the reference), the image's labels while it exists, and `name`."""
        attributes: dict[str, str] = {}
        try:
            image_id = self._resolve_id(actor)
        except InvalidArgument:
            image_id = None
        if image_id is not None:
            with contextlib.suppress(NotFound):
                attributes.update(self._load(image_id).run_config.get("Labels") or {})
        if name:
            attributes["name"] = name
        self.events.emit("image", action, actor, attributes)

    # -- tags ----------------------------------------------------------------

    def tag(self, image_id: str, ref: Reference, *, event: bool = True) -> None:
        """Point `ref` at the image; `event=False` for the tags that pull and load set,
        which Docker records without a `tag` event."""
        if ref.digest:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        if ref.tag is None:
            ref = ref.with_tag("latest")
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO tags(ref, image_id, tagged) VALUES (?,?,?) "
                "ON CONFLICT(ref) DO UPDATE SET image_id=excluded.image_id, tagged=excluded.tagged",
                (str(ref), image_id, time.time()),
            )
        if event:
            self.emit("tag", image_id, ref.familiar())

    # -- removal -------------------------------------------------------------

    async def remove(
        self, name: str, *, force: bool = False, prune: bool = True
    ) -> list[dict[str, str]]:
        """Docker's `rmi`: returns the Untagged/Deleted report, in moby's order and rules.

        By name, that tag or digest reference goes (a repository's last tag takes
        that repository's digest references along); refused without `force` when it
        is the image's single reference (one tag, and digests of its repository) and
        a container uses the image. When no reference is left the image itself goes,
        quietly: a container using it keeps it (a running one always, a stopped one
        unless forced; with `-f` the stopped container keeps only its layers).
        By ID, the image goes with all its references; refused while a container
        runs it (even forced), and without `force` while a stopped container uses
        it or it has tags in several repositories. An image with child images
        (committed from it) is never deleted (a hard conflict); deleting an image
        also deletes its untagged, unused parents unless `prune` is off
        (`--no-prune`).
        """
        image = self.resolve(name)
        report: list[dict[str, str]] = []
        references = [*image.tags, *image.repo_digests]
        quiet = False
        if not self._is_id(name, image):
            ref = reference.parse(name)
            users = self.image_users(image.id)
            if not force and _single_reference(references) and users:
                raise Conflict(
                    f'conflict: unable to remove repository reference "{name}" (must force) - '
                    f"container {users[0][0][:12]} is using its referenced image {image.short_id}"
                )
            if ref.digest:
                ref = Reference(ref.domain, ref.path, None, ref.digest)
            self._untag(image.id, ref, report)
            remaining = [r for r in references if r != ref]
            if not ref.digest and not any(
                r.repository == ref.repository and not r.digest for r in remaining
            ):
                # The repository's last tag takes its digest references with it.
                for item in [r for r in remaining if r.digest and r.repository == ref.repository]:
                    self._untag(image.id, item, report)
                    remaining.remove(item)
            if remaining:
                return report
            quiet = True
        elif _single_reference(references):
            self._check_delete(image, hard_only=force, references=False)
            for item in references:
                self._untag(image.id, item, report)
        try:
            self._check_delete(image, hard_only=force, references=True)
        except _DeleteConflict:
            if quiet:
                return report  # what is left is in use: it stays, untagged
            raise
        current = self._load(image.id)
        for item in [*current.tags, *current.repo_digests]:
            self._untag(image.id, item, report)
        self._delete(image, report)
        gone = [image, *(self._prune_parents(image, report) if prune else [])]
        removed = await self.collect()
        # Docker lists the layers that went with the image, top first.
        for each in gone:
            for chain in reversed(chain_ids(each.diff_ids)):
                if chain in removed:
                    report.append({"Deleted": chain})
                    removed.discard(chain)
        return report

    def _check_delete(self, image: Image, *, hard_only: bool, references: bool) -> None:
        """moby's delete conflicts: a running container is a hard one (never forced);
        references and stopped containers are soft ones (`force` overrides)."""
        if self.children(image.id):
            raise _DeleteConflict(
                f"conflict: unable to delete {image.short_id} (cannot be forced) - image has "
                "dependent child images"
            )
        users = self.image_users(image.id)
        for container_id, running in users:
            if running:
                raise _DeleteConflict(
                    f"conflict: unable to delete {image.short_id} (cannot be forced) - image "
                    f"is being used by running container {container_id[:12]}"
                )
        if hard_only:
            return
        current = self._load(image.id)
        if references and (current.tags or current.repo_digests):
            raise _DeleteConflict(
                f"conflict: unable to delete {image.short_id} (must be forced) - "
                "image is referenced in multiple repositories"
            )
        if users:
            raise _DeleteConflict(
                f"conflict: unable to delete {image.short_id} (must be forced) - image is "
                f"being used by stopped container {users[0][0][:12]}"
            )

    def _is_id(self, name: str, image: Image) -> bool:
        """Whether `name` designates the image by (a prefix of) its ID rather than a tag."""
        canonical = _canonical_or_none(name)
        if canonical is not None and any(str(t) == canonical for t in image.tags):
            return False
        return image.id.removeprefix("sha256:").startswith(name.removeprefix("sha256:"))

    def _untag(self, image_id: str, ref: Reference, report: list[dict[str, str]]) -> None:
        """Remove a tag, or a digest reference (`name@sha256:...`)."""
        with self.db.transaction():
            table = "repo_digests" if ref.digest else "tags"
            self.db.execute(f"DELETE FROM {table} WHERE ref=?", (str(ref),))
        report.append({"Untagged": ref.familiar()})
        self.emit("untag", image_id, image_id)  # Docker names the image, not the tag

    def _delete(self, image: Image, report: list[dict[str, str]]) -> None:
        with self.db.transaction():
            self.db.execute("DELETE FROM tags WHERE image_id=?", (image.id,))
            self.db.execute("DELETE FROM repo_digests WHERE image_id=?", (image.id,))
            self.db.execute("DELETE FROM image_parents WHERE image_id=?", (image.id,))
            self.db.execute("DELETE FROM images WHERE id=?", (image.id,))
        self._configs.pop(image.id, None)
        report.append({"Deleted": image.id})
        self.emit("delete", image.id, image.id)

    def _prune_parents(self, image: Image, report: list[dict[str, str]]) -> list[Image]:
        """After `image` went, its parents that have no reference, child or container go
        too (Docker's `rmi` without `--no-prune`); returns those deleted."""
        deleted: list[Image] = []
        parent_id = image.parent
        while parent_id and self.exists(parent_id):
            parent = self._load(parent_id)
            if parent.tags or parent.repo_digests or self.children(parent.id):
                break
            if self.image_users(parent.id):
                break
            self._delete(parent, report)
            deleted.append(parent)
            parent_id = parent.parent
        return deleted

    async def prune(
        self, *, all: bool = False, chosen: Callable[[Image], bool] = lambda image: True
    ) -> tuple[list[dict[str, str]], int]:
        """Remove dangling images (every unused image with `all`) that are `chosen`."""
        report: list[dict[str, str]] = []
        # Garbage left by earlier operations goes first: what is reclaimed is this prune's.
        await self.collect()
        before = await asyncio.to_thread(self.disk_usage)
        deleted: list[Image] = []
        for image in self.all():
            if image.tags and not all:
                continue
            if self.image_users(image.id) or self.children(image.id) or not chosen(image):
                continue
            for name_ref in [*image.tags, *image.repo_digests]:
                self._untag(image.id, name_ref, report)
            self._delete(image, report)
            deleted.append(image)
        removed = await self.collect()
        for image in deleted:
            for chain in reversed(chain_ids(image.diff_ids)):
                if chain in removed:
                    report.append({"Deleted": chain})
                    removed.discard(chain)
        reclaimed = max(0, before - await asyncio.to_thread(self.disk_usage))
        self.events.emit("image", "prune", "", {"reclaimed": str(reclaimed)})
        return report, reclaimed

    def disk_usage(self) -> int:
        """Bytes of unpacked layers plus the blobs in the content store."""
        blobs = 0
        for digest in self.content.digests():
            try:
                blobs += self.content.size(digest)
            except NotFound:
                pass
        return sum(layer.size for layer in self.layers.all()) + blobs

    async def collect(self) -> set[str]:
        """Collect garbage on a worker thread; returns the chain IDs of the layers removed."""
        return await asyncio.to_thread(self.collect_garbage)

    def collect_garbage(self) -> set[str]:
        """Drop layers and blobs that no image, container or operation in progress references.

        A layer's blobs in other compressions (kept so that pushing again
        sends the same bytes) live as long as the layer does. Blocking: run it
        on a worker thread (`collect()`). Returns the chain IDs of the layers removed.
        """
        with self._collecting:
            with self.gc_lock:
                trash, chains = self._collect_locked()
            for path in trash:
                shutil.rmtree(path, ignore_errors=True)
        return chains

    def _collect_locked(self) -> tuple[list[str], set[str]]:
        # What exists first, then what is alive: leases before image records.
        blobs = list(self.content.digests())
        layers = self.layers.all()
        live_blobs: set[str] = set()
        live_chains: set[str] = set()
        for lease in list(self._leases):
            live_blobs |= lease.blobs
            live_chains |= lease.chains
        extra_chains, extra_blobs = self.extra_roots()
        live_blobs |= extra_blobs
        live_diffs: set[str] = set()
        for row in self.db.all("SELECT id, manifest_digest FROM images"):
            try:
                image = self._load(row["id"])
            except NotFound:
                continue
            for chain in chain_ids(image.diff_ids):
                live_chains.add(chain)
            live_diffs.update(image.diff_ids)
            live_blobs.add(image.id)
            live_blobs.add(image.manifest_digest)
            live_blobs.update(ref.digest for ref in image.repo_digests if ref.digest)
            try:
                manifest = json.loads(self.content.read(image.manifest_digest))
            except NotFound:
                continue
            live_blobs.update(layer["digest"] for layer in manifest.get("layers", []))
        for row in self.db.all("SELECT diff_id, digest FROM layer_blobs"):
            if row["diff_id"] in live_diffs:
                live_blobs.add(row["digest"])
        for top in self.container_chains() | extra_chains:
            current: str | None = top
            while current:
                live_chains.add(current)
                found = self.layers.get(current)
                current = found.parent if found else None
        trash = []
        removed: set[str] = set()
        for layer in layers:
            if layer.chain_id not in live_chains:
                path = self.layers.detach(layer.chain_id)
                if path is not None:
                    trash.append(path)
                    removed.add(layer.chain_id)
        dead = [digest for digest in blobs if digest not in live_blobs]
        trash.append(self.content.discard(dead))  # deleted once the lock is released
        with self.db.transaction():
            for digest in dead:
                self.db.execute("DELETE FROM layer_blobs WHERE digest=?", (digest,))
                self.db.execute("DELETE FROM blob_sources WHERE digest=?", (digest,))
        return trash, removed


class _DeleteConflict(Conflict):
    """A reason not to delete an image (a 409 unless the removal was by name)."""


def _single_reference(references: list[Reference]) -> bool:
    """moby's isSingleReference: at most one tag, and every reference of one repository."""
    tags = [r for r in references if not r.digest]
    return bool(references) and len(tags) <= 1 and len({r.repository for r in references}) == 1


def _canonical_or_none(name: str) -> str | None:
    try:
        return str(reference.parse(name))
    except InvalidArgument:
        return None


class _Tee:
    """A read-only stream that copies everything read through it into a writer."""

    def __init__(self, source: BinaryIO, sink: Any) -> None:
        self._source = source
        self._sink = sink

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        if data:
            self._sink.write(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        while self.read(1 << 20):
            pass

    def readable(self) -> bool:
        return True
