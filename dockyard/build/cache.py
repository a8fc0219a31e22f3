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
from collections.abc import Callable
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

    def prune(
        self,
        *,
        keep_storage: int = 0,
        keep_duration: float = 0,
        selected: Callable[[CacheRecord], bool] | None = None,
    ) -> list[CacheRecord]:
        """Drop cache records (least recently used first) until at most `keep_storage` bytes
        stay, sparing those used in the last `keep_duration` seconds and those `selected`
        (when given) does not choose. Returns the dropped records; their sizes are the
        bytes of layers their steps had added.
        """
        records = sorted(self.records(), key=lambda record: record.last_used)
        total = sum(record.size for record in records)
        reclaimed = 0
        recent = time.time() - keep_duration
        dropped: list[CacheRecord] = []
        with self.db.transaction():
            for record in records:
                if keep_storage and total - reclaimed <= keep_storage:
                    break
                if keep_duration and record.last_used > recent:
                    continue
                if selected is not None and not selected(record):
                    continue
                self.db.execute("DELETE FROM build_cache WHERE key=?", (record.key,))
                dropped.append(record)
                reclaimed += record.size
        return dropped

    def records(self) -> list[CacheRecord]:
        """Every cache record, as `docker buildx du` and `system df` show them."""
        return [
            CacheRecord(
                key=row["key"],
                size=row["size"],
                created=row["created"],
                last_used=row["last_used"],
                description=_step_of(json.loads(row["config"])),
            )
            for row in self.db.all(
                "SELECT key, config, size, created, last_used FROM build_cache ORDER BY created"
            )
        ]


@dataclass(frozen=True)
class CacheRecord:
    """One cached step result, as reported to users."""

    key: str
    size: int  # bytes of the layer the step added (0 for config-only steps)
    created: float  # seconds since the epoch
    last_used: float
    description: str  # the step, as its image history records it


def _step_of(config: dict[str, Any]) -> str:
    history = config.get("history") or []
    return str(history[-1].get("created_by", "")) if history else ""
