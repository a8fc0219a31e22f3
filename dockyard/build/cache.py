"""The build cache: what each build step produced, by what went into it.

A step's key is the SHA-256 of the state it started from (the ID of the image
config it was applied to, which names all the layers below and the whole
config), its instruction after variable expansion, and the content of what
it copies (see `Builder`). The value is the resulting state: the image config
(its exact bytes, so a cached rebuild gives the same image ID) and the
descriptors of its layers. Keys chain on results, not on parent keys, so once
a step misses every later step of the stage misses too.

Rows live in the metadata database, so the cache survives daemon restarts.
The layers and blobs they name are kept alive by the garbage collector
(`refs()`) until `prune()` drops the rows.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from dockyard.images import oci
from dockyard.snapshots.layers import chain_ids
from dockyard.state.db import Database


@dataclass(frozen=True)
class State(oci.ConfigAccessors):
    """An image state during a build: its config, layers and the ID naming both."""

    id: str  # sha256:<hex> of the config bytes ("" for FROM scratch before any step)
    config: dict[str, Any]
    layers: tuple[dict[str, Any], ...]  # manifest descriptors, bottom first

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]

    @classmethod
    def of(cls, config: dict[str, Any], layers: tuple[dict[str, Any], ...]) -> State:
        """A state whose ID is the digest of its config as stored."""
        data = oci.canonical_json(config)
        return cls("sha256:" + hashlib.sha256(data).hexdigest(), config, layers)


def key(parent: State, *parts: str) -> str:
    digest = hashlib.sha256(parent.id.encode())
    for part in parts:
        digest.update(b"\0" + part.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


class BuildCache:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, cache_key: str) -> State | None:
        row = self.db.one("SELECT * FROM build_cache WHERE key=?", (cache_key,))
        if row is None:
            return None
        with self.db.transaction():
            self.db.execute(
                "UPDATE build_cache SET last_used=? WHERE key=?", (time.time(), cache_key)
            )
        return State(row["state_id"], json.loads(row["config"]), tuple(json.loads(row["layers"])))

    def put(self, cache_key: str, state: State, size: int) -> None:
        now = time.time()
        with self.db.transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO build_cache"
                "(key, state_id, config, layers, size, created, last_used) "
                "VALUES (?,?,?,?,?,?,?)",
                (
                    cache_key,
                    state.id,
                    oci.canonical_json(state.config).decode(),
                    json.dumps(list(state.layers)),
                    size,
                    now,
                    now,
                ),
            )

    def refs(self) -> tuple[set[str], set[str]]:
        """Chain IDs and blob digests the cache keeps alive."""
        chains: set[str] = set()
        blobs: set[str] = set()
        for row in self.db.all("SELECT config, layers FROM build_cache"):
            config = json.loads(row["config"])
            chains.update(chain_ids(list((config.get("rootfs") or {}).get("diff_ids") or [])))
            blobs.update(layer["digest"] for layer in json.loads(row["layers"]))
        return chains, blobs

    def prune(self, *, keep_storage: int = 0) -> tuple[list[str], int]:
        """Drop cache records (least recently used first) until at most `keep_storage` bytes stay.

        Returns the dropped keys and the bytes of layers their steps had added.
        """
        rows = self.db.all("SELECT key, size FROM build_cache ORDER BY last_used")
        total = sum(row["size"] for row in rows)
        dropped: list[str] = []
        reclaimed = 0
        with self.db.transaction():
            for row in rows:
                if keep_storage and total - reclaimed <= keep_storage:
                    break
                self.db.execute("DELETE FROM build_cache WHERE key=?", (row["key"],))
                dropped.append(row["key"])
                reclaimed += row["size"]
        return dropped, reclaimed

    def usage(self) -> list[dict[str, Any]]:
        return [
            dict(row)
            for row in self.db.all(
                "SELECT key, state_id, size, created, last_used FROM build_cache"
            )
        ]
