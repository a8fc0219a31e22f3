"""Unpacked layers, one directory per ChainID.

A layer is unpacked once, into `<root>/<chain hex>/diff` in overlayfs form
(whiteouts as 0/0 character devices, opaque directories as xattrs), and shared
by every image and container stacked on it. Each layer also gets a short link
`<root>/l/<link>` so that the overlay mount options of a deep image stay within
the kernel's one-page limit.

Unpacking happens in a temporary directory that is renamed into place when the
tar has been applied completely, so a crash never leaves a half-unpacked layer
behind a valid name; the database row is written after the rename. What a crash
can leave between those steps (a temporary directory, a layer directory or a
short link without its row) is swept when the store opens.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from dockyard.errors import NotFound
from dockyard.layers.apply import apply_layer
from dockyard.state import crashpoints
from dockyard.state.db import Database

EMPTY_LAYER = "empty"


def chain_ids(diff_ids: list[str]) -> list[str]:
    """ChainID of each prefix of `diff_ids` (image-spec §2.5)."""
    chains: list[str] = []
    for diff_id in diff_ids:
        if not chains:
            chains.append(diff_id)
        else:
            text = f"{chains[-1]} {diff_id}".encode()
            chains.append("sha256:" + hashlib.sha256(text).hexdigest())
    return chains


@dataclass(frozen=True)
class Layer:
    chain_id: str
    diff_id: str
    parent: str | None
    link: str
    size: int


@dataclass(frozen=True)
class Staged:
    path: str
    size: int


def _is_chain_hex(name: str) -> bool:
    return len(name) == 64 and all(c in string.hexdigits for c in name)


def _new_link() -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(12))


class LayerStore:
    def __init__(self, root: str, db: Database) -> None:
        self.root = root
        self.db = db
        self.links = os.path.join(root, "l")
        os.makedirs(self.links, exist_ok=True)
        empty = os.path.join(root, EMPTY_LAYER)
        os.makedirs(empty, exist_ok=True)
        self._sweep()

    def _sweep(self) -> None:
        """Remove what a crash left between the steps of `publish` and `detach`."""
        rows = self.db.all("SELECT chain_id, link FROM layers")
        recorded = {row["chain_id"].removeprefix("sha256:") for row in rows}
        links = {row["link"] for row in rows}
        for name in os.listdir(self.root):
            path = os.path.join(self.root, name)
            if name.startswith("tmp-") or (_is_chain_hex(name) and name not in recorded):
                shutil.rmtree(path, ignore_errors=True)
        for name in os.listdir(self.links):
            if name not in links:
                os.unlink(os.path.join(self.links, name))

    def dir(self, chain_id: str) -> str:
        return os.path.join(self.root, chain_id.removeprefix("sha256:"), "diff")

    def get(self, chain_id: str) -> Layer | None:
        row = self.db.one("SELECT * FROM layers WHERE chain_id=?", (chain_id,))
        if row is None:
            return None
        return Layer(row["chain_id"], row["diff_id"], row["parent"], row["link"], row["size"])

    def has(self, chain_id: str) -> bool:
        return self.get(chain_id) is not None

    def stack(self, chain_id: str | None) -> list[Layer]:
        """The layers of a chain, topmost first."""
        layers: list[Layer] = []
        while chain_id:
            layer = self.get(chain_id)
            if layer is None:
                raise NotFound(f"layer {chain_id} is not unpacked")
            layers.append(layer)
            chain_id = layer.parent
        return layers

    def lower_dirs(self, chain_id: str | None) -> list[str]:
        """Overlay lowerdir entries for a chain, topmost first, as short link paths."""
        dirs = [os.path.join(self.links, layer.link) for layer in self.stack(chain_id)]
        return dirs or [os.path.join(self.root, EMPTY_LAYER)]

    def unpack(
        self,
        chain_id: str,
        diff_id: str,
        parent: str | None,
        open_tar: Callable[[], BinaryIO],
    ) -> Layer:
        """Unpack a layer if it is not there yet (blocking; run in a thread).

        `open_tar` returns the uncompressed tar stream; it is only called when
        the layer really has to be unpacked.
        """
        existing = self.get(chain_id)
        if existing is not None:
            return existing
        with open_tar() as stream:
            staged = self.stage(stream, parent)
        return self.publish(staged, chain_id, diff_id, parent)

    def stage(self, stream: BinaryIO, parent: str | None) -> Staged:
        """Apply a layer tar into a private directory; `publish` or `discard` it next."""
        lowers = [self.dir(layer.chain_id) for layer in self.stack(parent)]
        tmp = os.path.join(self.root, "tmp-" + secrets.token_hex(8))
        os.makedirs(os.path.join(tmp, "diff"))
        try:
            result = apply_layer(stream, os.path.join(tmp, "diff"), lowers=lowers)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return Staged(tmp, result.size)

    def adopt(self, directory: str, size: int) -> Staged:
        """Stage a directory that already holds a layer in overlay form (moved, not copied).

        A build step's upper directory is its layer: this saves re-extracting
        the tar that was just written from it. It must be on this filesystem.
        """
        tmp = os.path.join(self.root, "tmp-" + secrets.token_hex(8))
        os.makedirs(tmp)
        try:
            os.rename(directory, os.path.join(tmp, "diff"))
        except OSError:
            os.rmdir(tmp)
            raise
        return Staged(tmp, size)

    def publish(self, staged: Staged, chain_id: str, diff_id: str, parent: str | None) -> Layer:
        existing = self.get(chain_id)
        if existing is not None:
            self.discard(staged)
            return existing
        final = os.path.dirname(self.dir(chain_id))
        if os.path.exists(final):
            shutil.rmtree(final)  # leftover of a crash before the row was written
        os.rename(staged.path, final)
        crashpoints.reached("layer:published")
        return self.register(chain_id, diff_id, parent, staged.size)

    def discard(self, staged: Staged) -> None:
        shutil.rmtree(staged.path, ignore_errors=True)

    def register(self, chain_id: str, diff_id: str, parent: str | None, size: int) -> Layer:
        """Record a layer whose directory is already in place."""
        link = _new_link()
        link_path = os.path.join(self.links, link)
        target = os.path.relpath(self.dir(chain_id), self.links)
        os.symlink(target, link_path)
        crashpoints.reached("layer:linked")
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO layers(chain_id, diff_id, parent, link, size) VALUES (?,?,?,?,?)",
                (chain_id, diff_id, parent, link, size),
            )
        return Layer(chain_id, diff_id, parent, link, size)

    def remove(self, chain_id: str) -> None:
        path = self.detach(chain_id)
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)

    def detach(self, chain_id: str) -> str | None:
        """Forget a layer and move its directory aside (quick); returns it for deletion."""
        layer = self.get(chain_id)
        if layer is None:
            return None
        with self.db.transaction():
            self.db.execute("DELETE FROM layers WHERE chain_id=?", (chain_id,))
        try:
            os.unlink(os.path.join(self.links, layer.link))
        except FileNotFoundError:
            pass
        final = os.path.dirname(self.dir(chain_id))
        doomed = os.path.join(self.root, "tmp-" + secrets.token_hex(8))
        try:
            os.rename(final, doomed)
        except FileNotFoundError:
            return None
        return doomed

    def all(self) -> list[Layer]:
        rows = self.db.all("SELECT * FROM layers")
        return [Layer(r["chain_id"], r["diff_id"], r["parent"], r["link"], r["size"]) for r in rows]
