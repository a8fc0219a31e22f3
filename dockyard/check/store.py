"""`system check` of the image store: blobs, unpacked layers and image records.

* Every blob is hashed again (streamed, on a worker thread) and must hash to
  its name. A corrupt blob is moved to the quarantine directory, never
  deleted; when it was a layer's uncompressed form and an intact compressed
  form is stored, the uncompressed one is made again from it.
* Every layer record has its directory and short link, its ChainID follows
  from its parent and DiffID, and its parent is recorded; a layer whose
  directory is gone is unpacked again from a stored blob when one is intact.
  Layer directories and links that no record names are leftovers.
* Every image has its config and manifest and every layer of its chain. A
  layer without any stored blob is only noted: the image runs, but `save` and
  `push` need it pulled or loaded again (a pull skips the download of a layer
  that is already unpacked, as Docker's does).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dockyard.check.report import ERROR, INFO, WARNING, Finding, Report
from dockyard.content.store import DIGEST_RE, DigestingReader
from dockyard.errors import InvalidArgument, NotFound
from dockyard.layers.compression import open_decompressed
from dockyard.snapshots.layers import EMPTY_LAYER, Layer, chain_ids

if TYPE_CHECKING:
    from dockyard.engine import Engine

AREA = "store"
_CHUNK = 1 << 20
# Files younger than this that no record names may belong to an operation that
# publishes the file first and records it next (unpack, create): left alone.
GRACE = 60.0


def quarantine_dir(engine: Engine) -> str:
    return os.path.join(engine.config.data_root, "check", "quarantine")


def old_enough(path: str) -> bool:
    try:
        return time.time() - os.lstat(path).st_ctime >= GRACE
    except FileNotFoundError:
        return False


def _hash_file(path: str) -> str | None:
    """The sha256 digest of a file's content; None if it has gone meanwhile."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        return None
    return "sha256:" + digest.hexdigest()


@dataclass
class _Blobs:
    """What hashing the blob directory found."""

    present: set[str] = field(default_factory=set)
    corrupt: dict[str, str] = field(default_factory=dict)  # digest -> what it hashes to
    strays: list[str] = field(default_factory=list)  # names that are no digest

    def intact(self, digest: str) -> bool:
        return digest in self.present and digest not in self.corrupt


def _verify_blobs(blob_dir: str) -> _Blobs:
    found = _Blobs()
    for name in sorted(os.listdir(blob_dir)):
        digest = "sha256:" + name
        if not DIGEST_RE.match(digest):
            found.strays.append(name)
            continue
        actual = _hash_file(os.path.join(blob_dir, name))
        if actual is None:
            continue  # collected meanwhile
        found.present.add(digest)
        if actual != digest:
            found.corrupt[digest] = actual
    return found


@dataclass
class _ImageRow:
    id: str
    manifest_digest: str
    names: list[str]
    diff_ids: list[str] | None = None  # None: the config cannot be read
    manifest_layers: list[str] = field(default_factory=list)

    @property
    def shown(self) -> str:
        short = self.id.removeprefix("sha256:")[:12]
        return f"image {', '.join(self.names)} ({short})" if self.names else f"image {short}"


def _read_json(path: str) -> Any:
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


def _image_rows(engine: Engine, blobs: _Blobs) -> list[_ImageRow]:
    """The image records, their names, and their configs' and manifests' layer lists
    (read only from intact blobs). Blocking."""
    db = engine.db
    names: dict[str, list[str]] = {}
    for row in db.all("SELECT ref, image_id FROM tags ORDER BY tagged"):
        names.setdefault(row["image_id"], []).append(row["ref"])
    rows = []
    for row in db.all("SELECT id, manifest_digest FROM images ORDER BY added"):
        image = _ImageRow(row["id"], row["manifest_digest"], names.get(row["id"], []))
        if blobs.intact(image.id):
            config = _read_json(engine.content.path(image.id))
            if isinstance(config, dict):
                rootfs = config.get("rootfs") or {}
                image.diff_ids = [str(d) for d in rootfs.get("diff_ids") or []]
        if blobs.intact(image.manifest_digest):
            manifest = _read_json(engine.content.path(image.manifest_digest))
            if isinstance(manifest, dict):
                image.manifest_layers = [
                    str(layer.get("digest", "")) for layer in manifest.get("layers") or []
                ]
        rows.append(image)
    return rows


async def check(engine: Engine, report: Report) -> None:
    blobs = await asyncio.to_thread(_verify_blobs, engine.content.blob_dir)
    report.count("blobs", len(blobs.present))
    images = await asyncio.to_thread(_image_rows, engine, blobs)
    report.count("images", len(images))
    layer_rows = engine.layers.all()
    report.count("layers", len(layer_rows))
    # Every stored blob known to hold a layer: DiffID -> blob digests.
    holders: dict[str, set[str]] = {}
    for row in engine.db.all("SELECT diff_id, digest FROM layer_blobs"):
        holders.setdefault(row["diff_id"], set()).add(row["digest"])
    for image in images:
        for diff_id, digest in zip(image.diff_ids or [], image.manifest_layers, strict=False):
            holders.setdefault(diff_id, set()).add(digest)
    for diff_id, digests in holders.items():
        digests.add(diff_id)

    for digest, actual in sorted(blobs.corrupt.items()):
        report.add([_corrupt_blob(engine, digest, actual, holders)])
    for name in blobs.strays:
        report.add([_stray_blob(engine, name)])
    report.add(await _layers(engine, layer_rows, images, blobs, holders))
    report.add(_images(engine, images, blobs, holders))


# -- blobs -------------------------------------------------------------------------


def _quarantine(engine: Engine, path: str, name: str) -> str:
    target_dir = quarantine_dir(engine)
    os.makedirs(target_dir, mode=0o700, exist_ok=True)
    target = os.path.join(target_dir, name)
    if os.path.exists(target):
        target += "." + secrets.token_hex(4)
    os.rename(path, target)
    return target


def _corrupt_blob(
    engine: Engine, digest: str, actual: str, holders: dict[str, set[str]]
) -> Finding:
    siblings = sorted(holders.get(digest, set()) - {digest})
    regenerate = f" and make it again from {siblings[0]}" if siblings else ""

    async def fix() -> str:
        path = engine.content.path(digest)
        now = await asyncio.to_thread(_hash_file, path)
        if now is None:
            return "it has gone meanwhile"
        if now == digest:
            return "verified again: it is intact now"
        target = await asyncio.to_thread(_quarantine, engine, path, digest.removeprefix("sha256:"))
        done = f"moved it to {target}"
        for sibling in siblings:
            try:
                await asyncio.to_thread(_regenerate, engine, digest, sibling)
            except (OSError, EOFError, InvalidArgument, NotFound):
                continue
            return done + f"; made it again from {sibling}"
        return done

    return Finding(
        AREA,
        ERROR,
        f"blob {digest}",
        f"the blob is corrupt: its content hashes to {actual}",
        repair=f"move it to {quarantine_dir(engine)}{regenerate}",
        fix=fix,
    )


def _regenerate(engine: Engine, diff_id: str, source: str) -> None:
    """Store a layer's uncompressed tar again, decompressed from another stored form and
    verified against its DiffID. Blocking."""
    with engine.images.hold() as lease:
        lease.pin(blobs=[diff_id, source])
        with engine.content.open(source) as raw, open_decompressed(raw) as tar:
            engine.content.ingest(tar, expected=diff_id)


def _stray_blob(engine: Engine, name: str) -> Finding:
    path = os.path.join(engine.content.blob_dir, name)

    async def fix() -> str:
        if not os.path.lexists(path):
            return "it has gone meanwhile"
        target = await asyncio.to_thread(_quarantine, engine, path, name)
        return f"moved it to {target}"

    return Finding(
        AREA,
        WARNING,
        f"file {path}",
        "a file in the blob directory whose name is no sha256 digest",
        repair=f"move it to {quarantine_dir(engine)}",
        fix=fix,
    )


# -- layers ------------------------------------------------------------------------


def _expected_chain(layer: Layer) -> str:
    if layer.parent is None:
        return layer.diff_id
    text = f"{layer.parent} {layer.diff_id}".encode()
    return "sha256:" + hashlib.sha256(text).hexdigest()


def _depth(layer: Layer, by_chain: dict[str, Layer]) -> int:
    depth = 0
    current = layer.parent
    while current and current in by_chain and depth < 1000:
        depth += 1
        current = by_chain[current].parent
    return depth


def _users_of_chain(engine: Engine, chain: str, images: list[_ImageRow]) -> list[str]:
    """Images and containers whose layer stack includes `chain`."""
    users = [
        image.shown for image in images if image.diff_ids and chain in chain_ids(image.diff_ids)
    ]
    by_chain = {layer.chain_id: layer for layer in engine.layers.all()}
    for container in engine.containers.all():
        current = container.chain_id
        while current:
            if current == chain:
                users.append(f"container {container.name}")
                break
            found = by_chain.get(current)
            current = found.parent if found else None
    return users


async def _layers(
    engine: Engine,
    rows: list[Layer],
    images: list[_ImageRow],
    blobs: _Blobs,
    holders: dict[str, set[str]],
) -> list[Finding]:
    store = engine.layers
    by_chain = {layer.chain_id: layer for layer in rows}
    findings = []

    def listing() -> tuple[list[str], list[str], dict[str, bool], dict[str, bool]]:
        dirs = sorted(os.listdir(store.root))
        links = sorted(os.listdir(store.links))
        has_dir = {layer.chain_id: os.path.isdir(store.dir(layer.chain_id)) for layer in rows}
        link_ok = {
            layer.chain_id: os.path.realpath(os.path.join(store.links, layer.link))
            == os.path.realpath(store.dir(layer.chain_id))
            and os.path.exists(os.path.join(store.links, layer.link))
            for layer in rows
        }
        return dirs, links, has_dir, link_ok

    dirs, links, has_dir, link_ok = await asyncio.to_thread(listing)
    for layer in sorted(rows, key=lambda item: _depth(item, by_chain)):
        subject = f"layer {layer.chain_id}"
        expected = _expected_chain(layer)
        if expected != layer.chain_id:
            findings.append(
                Finding(
                    AREA,
                    ERROR,
                    subject,
                    f"the layer record is inconsistent: its parent and DiffID {layer.diff_id} "
                    f"give the ChainID {expected}; remove the images that use it and pull or "
                    "load them again",
                )
            )
        if layer.parent is not None and layer.parent not in by_chain:
            findings.append(
                Finding(
                    AREA,
                    ERROR,
                    subject,
                    f"its parent layer {layer.parent} is not recorded: containers of the "
                    "images that use it cannot start",
                )
            )
        if not has_dir[layer.chain_id]:
            findings.append(_missing_layer_dir(engine, layer, images, blobs, holders))
        elif not link_ok[layer.chain_id]:
            findings.append(_broken_link(engine, layer))
    known_hex = {chain.removeprefix("sha256:") for chain in by_chain}
    for name in dirs:
        if name in ("l", EMPTY_LAYER) or name.startswith("tmp-") or name in known_hex:
            continue
        path = os.path.join(store.root, name)
        if old_enough(path):
            findings.append(_stray_layer_dir(engine, name, path))
    known_links = {layer.link for layer in rows}
    for name in links:
        path = os.path.join(store.links, name)
        if name not in known_links and old_enough(path):
            findings.append(_stray_link(engine, name, path))
    return findings


def _missing_layer_dir(
    engine: Engine,
    layer: Layer,
    images: list[_ImageRow],
    blobs: _Blobs,
    holders: dict[str, set[str]],
) -> Finding:
    sources = sorted(d for d in holders.get(layer.diff_id, {layer.diff_id}) if blobs.intact(d))
    users = _users_of_chain(engine, layer.chain_id, images)
    subject = f"layer {layer.chain_id}"
    message = "its unpacked directory is gone: containers of the images using it cannot start"
    if users:
        message += f" ({', '.join(users[:5])}{' ...' if len(users) > 5 else ''})"
    if sources:
        source = sources[0]

        async def unpack_again() -> str:
            await asyncio.to_thread(_unpack_again, engine, layer, source)
            return f"unpacked it again from blob {source}"

        return Finding(
            AREA,
            ERROR,
            subject,
            message,
            repair=f"unpack it again from blob {source}",
            fix=unpack_again,
        )
    if not users:

        async def forget() -> str:
            if engine.layers.get(layer.chain_id) is None:
                return "it has gone meanwhile"
            trash = await asyncio.to_thread(engine.layers.detach, layer.chain_id)
            if trash is not None:
                await asyncio.to_thread(shutil.rmtree, trash, True)
            return "forgot the layer record"

        return Finding(
            AREA,
            WARNING,
            subject,
            "its unpacked directory is gone, and no image or container uses it",
            repair="forget the layer record",
            fix=forget,
        )
    return Finding(
        AREA,
        ERROR,
        subject,
        message + "; no stored blob holds it: remove those images and pull or load them again",
    )


def _unpack_again(engine: Engine, layer: Layer, source: str) -> None:
    """Unpack a layer whose directory is gone from a stored blob, checked against its
    DiffID, and put it in place of the record. Blocking."""
    store = engine.layers
    with engine.images.hold() as lease:
        lease.pin(blobs=[source], chains=[layer.chain_id])
        with engine.content.open(source) as raw, open_decompressed(raw) as tar:
            digesting = DigestingReader(tar)
            staged = store.stage(digesting, layer.parent)  # type: ignore[arg-type]
            while digesting.read(_CHUNK):
                pass
        if digesting.digest != layer.diff_id:
            store.discard(staged)
            raise InvalidArgument(
                f"blob {source} does not hold layer {layer.diff_id} (got {digesting.digest})"
            )
        trash = store.detach(layer.chain_id)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        store.publish(staged, layer.chain_id, layer.diff_id, layer.parent)


def _broken_link(engine: Engine, layer: Layer) -> Finding:
    store = engine.layers
    path = os.path.join(store.links, layer.link)

    async def fix() -> str:
        def relink() -> None:
            if os.path.lexists(path):
                os.unlink(path)
            os.symlink(os.path.relpath(store.dir(layer.chain_id), store.links), path)

        await asyncio.to_thread(relink)
        return f"made the link {path} again"

    return Finding(
        AREA,
        ERROR,
        f"layer {layer.chain_id}",
        f"its short link {path} is missing or points elsewhere: containers stacked on it "
        "cannot start",
        repair="make the link again",
        fix=fix,
    )


def _stray_layer_dir(engine: Engine, name: str, path: str) -> Finding:
    store = engine.layers

    async def fix() -> str:
        if store.get("sha256:" + name) is not None:
            return "it is recorded now: left alone"
        doomed = os.path.join(store.root, "tmp-" + secrets.token_hex(8))
        try:
            os.rename(path, doomed)
        except FileNotFoundError:
            return "it has gone meanwhile"
        await asyncio.to_thread(shutil.rmtree, doomed, True)
        return "removed it"

    return Finding(
        AREA,
        WARNING,
        f"directory {path}",
        "an unpacked layer that no record names (left by an interrupted unpack or removal)",
        repair="remove it",
        fix=fix,
    )


def _stray_link(engine: Engine, name: str, path: str) -> Finding:
    store = engine.layers

    async def fix() -> str:
        if any(layer.link == name for layer in store.all()):
            return "it is recorded now: left alone"
        try:
            os.unlink(path)
        except FileNotFoundError:
            return "it has gone meanwhile"
        return "removed it"

    return Finding(
        AREA,
        WARNING,
        f"link {path}",
        "a layer link that no layer record names",
        repair="remove it",
        fix=fix,
    )


# -- images ------------------------------------------------------------------------


def _images(
    engine: Engine, images: list[_ImageRow], blobs: _Blobs, holders: dict[str, set[str]]
) -> list[Finding]:
    findings = []
    unpacked = {layer.chain_id for layer in engine.layers.all()}
    for image in images:
        users = engine.containers.image_users(image.id)
        if image.diff_ids is None:
            findings.append(
                _broken_image(engine, image, f"its config is {_why(image.id, blobs)}", users)
            )
            continue
        if not blobs.intact(image.manifest_digest):
            why = _why(image.manifest_digest, blobs)
            findings.append(
                _broken_image(
                    engine, image, f"its manifest {image.manifest_digest} is {why}", users
                )
            )
            continue
        chains = chain_ids(image.diff_ids)
        missing = [chain for chain in chains if chain not in unpacked]
        if missing:
            findings.append(
                Finding(
                    AREA,
                    ERROR,
                    image.shown,
                    f"{len(missing)} of its layers are not unpacked ({missing[0]} ...): its "
                    "containers cannot start; remove it and pull or load it again",
                )
            )
        for number, diff_id in enumerate(image.diff_ids):
            if not any(blobs.intact(d) for d in holders.get(diff_id, {diff_id})):
                findings.append(
                    Finding(
                        AREA,
                        INFO,
                        image.shown,
                        f"layer {number} ({diff_id}) has no stored blob: the image runs, but "
                        "`save` and `push` need it pulled or loaded again",
                    )
                )
    return findings


def _why(digest: str, blobs: _Blobs) -> str:
    if digest not in blobs.present:
        return "missing"
    if digest in blobs.corrupt:
        return "corrupt"
    return "unreadable"


def _broken_image(engine: Engine, image: _ImageRow, why: str, users: list[Any]) -> Finding:
    if users:
        return Finding(
            AREA,
            ERROR,
            image.shown,
            f"{why}: inspect, save and push fail; it is used by "
            f"{len(users)} container(s): remove them, then the image, and pull or load it again",
        )

    async def forget() -> str:
        if engine.containers.image_users(image.id):
            return "a container uses it now: left alone"
        _forget_image(engine, image.id)
        await engine.images.collect()
        return "forgot the image record (and its tags)"

    return Finding(
        AREA,
        ERROR,
        image.shown,
        f"{why}: it cannot be used; no container uses it",
        repair="forget the image and its tags (pull or load it again to have it back)",
        fix=forget,
    )


def _forget_image(engine: Engine, image_id: str) -> None:
    """Drop the records of an image whose files are gone (`rmi` cannot: it reads the
    config first)."""
    with engine.db.transaction():
        engine.db.execute("DELETE FROM tags WHERE image_id=?", (image_id,))
        engine.db.execute("DELETE FROM repo_digests WHERE image_id=?", (image_id,))
        engine.db.execute("DELETE FROM images WHERE id=?", (image_id,))
    engine.events.emit("image", "delete", image_id, {"name": image_id})
