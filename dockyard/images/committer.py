"""Turning the changes in an overlay upper directory into an image layer.

The builder (after each RUN, COPY, ADD, WORKDIR) and `commit` share this:
the upper directory is read against the layers below it, written once as an
uncompressed layer tar straight into the content store (hashed as it is
written, so the DiffID is the digest of exactly the bytes stored), and the
layer is registered in the layer store under its ChainID.

A build step owns its upper directory, so `take=True` moves that directory
into the layer store as the unpacked layer, noise removed, instead of
extracting the tar again. A running container's upper directory (`commit`)
is left alone and the layer is unpacked from the stored tar.

An empty changeset gives no layer (the step's history entry is then marked
`empty_layer`, as Docker does). Blocking; run in a worker thread.
"""

from __future__ import annotations

import errno
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dockyard.content.store import ContentStore
from dockyard.images import oci
from dockyard.layers import diff
from dockyard.snapshots.layers import LayerStore


@dataclass(frozen=True)
class NewLayer:
    descriptor: dict[str, Any]  # the manifest's entry for the layer blob
    diff_id: str
    chain_id: str
    size: int  # unpacked bytes of file content


def chain_id(parent: str | None, diff_id: str) -> str:
    if parent is None:
        return diff_id
    return "sha256:" + hashlib.sha256(f"{parent} {diff_id}".encode()).hexdigest()


class Committer:
    def __init__(self, content: ContentStore, layers: LayerStore) -> None:
        self.content = content
        self.layers = layers

    def lowers(self, parent: str | None) -> list[str]:
        return [self.layers.dir(layer.chain_id) for layer in self.layers.stack(parent)]

    def commit(
        self,
        upper: str,
        parent: str | None,
        *,
        take: bool,
        pin: Callable[[str, str], None] | None = None,
        mountpoints: Sequence[str] = (),
    ) -> NewLayer | None:
        """Store the changes of `upper` over the chain `parent` as a layer; None if none.

        `pin(chain_id, blob_digest)` is called before the layer becomes visible,
        so that the caller can keep it from garbage collection. `mountpoints` (relative
        paths) are the container's own mounts: what the runtime made for them is no change.
        """
        stubs = (*diff.RUNTIME_STUBS, *mountpoints)
        changeset = diff.scan(upper, self.lowers(parent), stubs=stubs)
        if changeset.empty:
            return None
        with self.content.writer() as writer:
            hashing = _Hashing(writer)
            result = diff.write_tar(changeset, hashing)  # type: ignore[arg-type]
            diff_id = "sha256:" + hashing.hash.hexdigest()
            chain = chain_id(parent, diff_id)
            if pin is not None:
                pin(chain, diff_id)  # before the blob is visible to garbage collection
            writer.commit()
            blob_size = writer.size
        descriptor = oci.descriptor(oci.LAYER, diff_id, blob_size)
        existing = self.layers.get(chain)
        if existing is not None:
            return NewLayer(descriptor, diff_id, chain, existing.size)
        staged = None
        if take:
            diff.prune(changeset)
            diff.strip_overlay_xattrs(upper)
            try:
                staged = self.layers.adopt(upper, result.size)
            except OSError as e:
                if e.errno != errno.EXDEV:
                    raise
        if staged is None:
            with self.content.open(diff_id) as stream:
                staged = self.layers.stage(stream, parent)
        try:
            layer = self.layers.publish(staged, chain, diff_id, parent)
        except BaseException:
            self.layers.discard(staged)
            raise
        return NewLayer(descriptor, diff_id, chain, layer.size)


class _Hashing:
    """Passes writes through, hashing them: the digest is known before the blob is published."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self.hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.sink.write(data)
        return len(data)
