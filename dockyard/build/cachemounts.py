"""`RUN --mount=type=cache`: directories kept between builds, keyed by cache ID.

Each cache is a directory under `<data-root>/build/cache-mounts/`, named by a hash of
its ID, with a `<name>.json` beside it recording the ID and a description (whose
modification time is the cache's last use). A step mounts the directory read-write
(or read-only) at its target; nothing in it ever becomes part of a layer.

Sharing, as BuildKit's: `shared` (the default) lets any number of steps use the
directory at once; `locked` lets one step at a time use it (the others wait, an
asyncio lock per cache ID, in this daemon); `private` gives a step the directory when
nobody uses it, else another instance of the same ID (`<name>.1`, `.2`, ...) that
is kept too and handed to later private or shared users when it is free.

`docker buildx du` lists each instance as BuildKit lists cache mounts
(`exec.cachemount`, mutable, in use while a step has it); `buildx prune` and
`builder prune` remove the ones no step uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from dockyard.usage import tree_size

RECORD_TYPE = "exec.cachemount"
DEFAULT_MODE = 0o755


@dataclass(frozen=True)
class CacheMountRecord:
    """A cache mount instance as `du` and `prune` report it."""

    key: str
    size: int
    created: float
    last_used: float
    description: str
    in_use: bool
    record_type: str = RECORD_TYPE


class CacheMounts:
    def __init__(self, root: str) -> None:
        self.root = root
        self._users: dict[str, int] = {}  # instance path -> steps using it
        self._locks: dict[str, asyncio.Lock] = {}  # cache ID -> `sharing=locked` lock
        # made by the first cache mount, so that a build tree without any stays empty

    def _base(self, cache_id: str) -> str:
        return os.path.join(self.root, hashlib.sha256(cache_id.encode()).hexdigest()[:32])

    @contextlib.asynccontextmanager
    async def use(
        self,
        cache_id: str,
        sharing: str,
        description: str,
        *,
        seed: Callable[[str], None] | None = None,
        mode: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
    ) -> AsyncIterator[str]:
        """The directory of cache `cache_id` for one step. A new cache is made with
        `mode` (0755), `uid`/`gid` (0) and, when given, filled by `seed(path)`."""
        lock: asyncio.Lock | None = None
        if sharing == "locked":
            lock = self._locks.setdefault(cache_id, asyncio.Lock())
            await lock.acquire()
        try:
            path = self._pick(cache_id, sharing)
            self._users[path] = self._users.get(path, 0) + 1
            try:
                await asyncio.to_thread(_prepare, path, cache_id, description, seed, mode, uid, gid)
                yield path
            finally:
                self._users[path] -= 1
                if not self._users[path]:
                    del self._users[path]
                with contextlib.suppress(OSError):
                    os.utime(path + ".json")
        finally:
            if lock is not None:
                lock.release()

    def _pick(self, cache_id: str, sharing: str) -> str:
        base = self._base(cache_id)
        if sharing != "private" or base not in self._users:
            return base
        n = 1
        while f"{base}.{n}" in self._users:
            n += 1
        return f"{base}.{n}"

    def records(self) -> list[CacheMountRecord]:
        """Every instance with its size (blocking: it walks them)."""
        found = []
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        for name in names:
            if not name.endswith(".json"):
                continue
            path = os.path.join(self.root, name.removesuffix(".json"))
            try:
                with open(path + ".json") as f:
                    meta = json.load(f)
                st = os.stat(path + ".json")
                size = tree_size(path)
            except (OSError, ValueError):
                continue
            found.append(
                CacheMountRecord(
                    key=os.path.basename(path),
                    size=size,
                    created=float(meta.get("created", st.st_ctime)),
                    last_used=st.st_mtime,
                    description=str(meta.get("description", "")),
                    in_use=path in self._users,
                )
            )
        return found

    def prune(self, drop: Callable[[CacheMountRecord], bool]) -> list[CacheMountRecord]:
        """Remove the instances no step is using that `drop` picks (blocking)."""
        dropped = []
        for record in self.records():
            path = os.path.join(self.root, record.key)
            if path in self._users or not drop(record):
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path + ".json")
            shutil.rmtree(path, ignore_errors=True)
            dropped.append(record)
        return dropped


def _prepare(
    path: str,
    cache_id: str,
    description: str,
    seed: Callable[[str], None] | None,
    mode: int | None,
    uid: int | None,
    gid: int | None,
) -> None:
    if os.path.isdir(path) and os.path.exists(path + ".json"):
        return
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    shutil.rmtree(path, ignore_errors=True)  # half-made (daemon stopped): start afresh
    staging = path + ".new"
    shutil.rmtree(staging, ignore_errors=True)
    if seed is not None:
        seed(staging)
    else:
        os.mkdir(staging)
    os.chmod(staging, DEFAULT_MODE if mode is None else mode)
    os.chown(staging, uid or 0, gid or 0)
    meta = {"id": cache_id, "description": description, "created": time.time()}
    with open(path + ".json.new", "w") as f:
        json.dump(meta, f)
    os.rename(staging, path)
    os.rename(path + ".json.new", path + ".json")
