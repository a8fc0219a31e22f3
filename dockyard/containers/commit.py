"""A container's changes: `docker diff` and `docker commit`.

Both read the container's overlay upper directory against its image's layers
(`layers.diff`). Commit turns the changes into a layer (`images.committer`,
the builder's code) on top of the image's, and the container's configuration
(`--change` applied) into the new image's runtime config, as Docker does.
A running container is paused meanwhile unless asked not to be; one that is
exiting, stopped or never started is committed as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
from typing import Any

from dockyard.containers.model import RUNNING
from dockyard.containers.service import ContainerService
from dockyard.errors import Conflict, DockyardError, NotFound
from dockyard.images import oci
from dockyard.images.changes import apply_changes
from dockyard.images.committer import Committer
from dockyard.images.reference import Reference
from dockyard.images.service import Image, ImageService
from dockyard.layers import diff

# Container config keys an image keeps (the rest describe one container).
_IMAGE_KEYS = (
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Volumes",
    "WorkingDir",
    "Labels",
    "StopSignal",
    "Healthcheck",
    "OnBuild",
    "Shell",
)


def _upper(containers: ContainerService, container_id: str) -> str:
    container = containers.get(container_id)
    return containers.rootfs.upper(os.path.join(containers.dir(container), "rootfs"))


async def changes(containers: ContainerService, ref: str) -> list[dict[str, Any]]:
    container = containers.get(ref)
    layers = containers.images.layers
    lowers = [layers.dir(layer.chain_id) for layer in layers.stack(container.chain_id)]
    upper = _upper(containers, container.id)

    def scan() -> list[tuple[str, int]]:
        return diff.changes(diff.scan(upper, lowers), lowers)

    return [{"Path": path, "Kind": kind} for path, kind in await asyncio.to_thread(scan)]


async def commit(
    containers: ContainerService,
    images: ImageService,
    committer: Committer,
    ref: str,
    *,
    tag: Reference | None = None,
    author: str = "",
    comment: str = "",
    changes: list[str] | None = None,
    config: dict[str, Any] | None = None,
    pause: bool = True,
) -> Image:
    container = containers.get(ref)
    async with images.lease() as lease:
        base_config: dict[str, Any] = {"architecture": oci.host_arch(), "os": "linux"}
        manifest_layers: list[dict[str, Any]] = []
        if container.chain_id is not None:
            try:
                base = images.resolve(container.image_id)
            except NotFound:
                raise Conflict(
                    f"cannot commit container {container.short_id}: its image was removed"
                ) from None
            base_config = copy.deepcopy(base.config)
            manifest = json.loads(images.content.read(base.manifest_digest))
            manifest_layers = list(manifest.get("layers") or [])
            lease.pin(blobs=[layer["digest"] for layer in manifest_layers])
        run_config = {k: v for k, v in container.config.to_wire().items() if k in _IMAGE_KEYS and v}
        for key, value in (config or {}).items():
            if key in _IMAGE_KEYS and value:
                run_config[key] = value
        run_config = apply_changes(run_config, changes or [])
        paused = False
        if pause and container.state.status == RUNNING:
            try:
                await containers.pause(container.id)
                paused = True
            except Conflict:
                # Exiting as we speak (`docker run` of a short command, then commit):
                # nothing runs any more to change the files, so there is nothing to pause.
                pass
        try:
            layer = await asyncio.to_thread(
                committer.commit,
                _upper(containers, container.id),
                container.chain_id,
                take=False,
                pin=lambda chain, blob: lease.pin(blobs=[blob], chains=[chain]),
            )
        finally:
            if paused:
                with contextlib.suppress(DockyardError):
                    await containers.unpause(container.id)
        now = oci.now_rfc3339()
        rootfs = dict(base_config.get("rootfs") or {"type": "layers", "diff_ids": []})
        diff_ids = list(rootfs.get("diff_ids") or [])
        history = list(base_config.get("history") or [])
        entry: dict[str, Any] = {
            "created": now,
            "created_by": " ".join([container.path, *container.args]).strip(),
        }
        if author:
            entry["author"] = author
        if comment:
            entry["comment"] = comment
        if layer is None:
            entry["empty_layer"] = True
        else:
            diff_ids.append(layer.diff_id)
        history.append(entry)
        new_config = {
            **{k: v for k, v in base_config.items() if k not in ("config", "rootfs", "history")},
            "created": now,
            "config": run_config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        }
        if author:
            new_config["author"] = author
        # What image inspect shows as Container and ContainerConfig (up to API 1.44).
        new_config["container"] = container.id
        new_config["container_config"] = container.config.to_wire()
        if layer is not None:
            manifest_layers.append(layer.descriptor)
        chain = layer.chain_id if layer is not None else container.chain_id
        size = sum(item.size for item in images.layers.stack(chain))
        image = images.add(new_config, manifest_layers, size)
        if container.chain_id is not None:
            images.set_parent(image.id, container.image_id)
            image = images.resolve(image.id)
    if tag is not None:
        images.tag(image.id, tag)
    containers.emit(
        container,
        "commit",
        comment=comment,
        imageID=image.id,
        imageRef=tag.familiar() if tag is not None else "",
    )
    return image
