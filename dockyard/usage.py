"""Disk usage: what `system df` reports about images and containers.

Image sizes are the unpacked layers an image stacks (shared layers counted in
each image and reported as `shared`); `layers_size` is what the stores really
hold on disk: every unpacked layer once, plus the content store's blobs
(compressed layers kept for pushing, configs, manifests). A container's size
is its writable layer (the overlay upper directory).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dockyard.containers.model import Container
from dockyard.images.service import Image
from dockyard.snapshots.layers import chain_ids

if TYPE_CHECKING:
    from dockyard.engine import Engine


@dataclass(frozen=True)
class ImageUsage:
    image: Image
    shared: int  # bytes of layers other images use too
    containers: int


@dataclass(frozen=True)
class ContainerUsage:
    container: Container
    size_rw: int
    size_root_fs: int


@dataclass(frozen=True)
class DiskUsage:
    layers_size: int
    images: list[ImageUsage]
    containers: list[ContainerUsage]


def tree_size(path: str) -> int:
    """Bytes of the regular files under `path` (hard links counted once); blocking."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if st.st_nlink > 1:
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


async def disk_usage(engine: Engine, *, images: bool = True, containers: bool = True) -> DiskUsage:
    all_images = engine.images.all()
    users: dict[str, int] = {}
    for container in engine.containers.all():
        users[container.image_id] = users.get(container.image_id, 0) + 1
    chains_of = {image.id: set(chain_ids(image.diff_ids)) for image in all_images}
    use_count: dict[str, int] = {}
    for chains in chains_of.values():
        for chain in chains:
            use_count[chain] = use_count.get(chain, 0) + 1
    sizes = {layer.chain_id: layer.size for layer in engine.layers.all()}
    image_rows = []
    if images:
        for image in all_images:
            shared = sum(sizes.get(c, 0) for c in chains_of[image.id] if use_count[c] > 1)
            image_rows.append(ImageUsage(image, shared, users.get(image.id, 0)))
    container_rows = []
    if containers:
        sizes_by_id = {image.id: image.size for image in all_images}
        for container in engine.containers.all():
            upper = os.path.join(engine.containers.dir(container), "rootfs", "upper")
            size_rw = await asyncio.to_thread(tree_size, upper)
            root = size_rw + sizes_by_id.get(container.image_id, 0)
            container_rows.append(ContainerUsage(container, size_rw, root))
    blobs = await asyncio.to_thread(tree_size, engine.content.blob_dir)
    return DiskUsage(sum(sizes.values()) + blobs, image_rows, container_rows)
