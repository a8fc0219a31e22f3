"""A container's root filesystem: overlayfs on the image's unpacked layers.

Each container owns `<dir>/upper` and `<dir>/work` (its changes) and mounts
them with the image's layers as lower directories at `<dir>/merged`. The mount
lives while the container runs; its upper directory is the container's
changeset (what `diff` and `commit` read).
"""

from __future__ import annotations

import os
import shutil

from dockyard import mount
from dockyard.snapshots.layers import LayerStore


class RootfsManager:
    def __init__(self, layers: LayerStore) -> None:
        self.layers = layers

    def create(self, dir: str) -> None:
        for sub in ("upper", "work", "merged"):
            os.makedirs(os.path.join(dir, sub), exist_ok=True)

    def merged(self, dir: str) -> str:
        return os.path.join(dir, "merged")

    def upper(self, dir: str) -> str:
        return os.path.join(dir, "upper")

    def mount(self, dir: str, chain_id: str | None) -> str:
        merged = self.merged(dir)
        if mount.is_mountpoint(merged):
            return merged
        lowers = ":".join(self.layers.lower_dirs(chain_id))
        options = (
            f"lowerdir={lowers},upperdir={os.path.join(dir, 'upper')},"
            f"workdir={os.path.join(dir, 'work')},index=off"
        )
        mount.mount("overlay", merged, "overlay", 0, options)
        return merged

    def unmount(self, dir: str) -> None:
        mount.unmount(self.merged(dir))

    def remove(self, dir: str) -> None:
        self.unmount(dir)
        shutil.rmtree(dir, ignore_errors=True)
