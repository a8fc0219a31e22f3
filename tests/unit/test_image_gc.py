"""Garbage collection next to operations in flight, with the real stores on a temp dir."""

from __future__ import annotations

import asyncio
import io
import tarfile
import threading
from pathlib import Path

from dockyard.content.store import ContentStore
from dockyard.events.bus import EventBus
from dockyard.images.service import ImageService
from dockyard.snapshots.layers import LayerStore
from dockyard.state.db import Database


def _service(root: Path) -> ImageService:
    db = Database(str(root / "db.sqlite"))
    return ImageService(
        db, ContentStore(str(root / "content")), LayerStore(str(root / "layers"), db), EventBus()
    )


def _layer_tar() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("file")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"data"))
    return out.getvalue()


def test_what_a_lease_pins_survives_collection_until_the_lease_ends(tmp_path: Path) -> None:
    images = _service(tmp_path)
    collector_threads: list[int] = []
    images.extra_roots = lambda: (collector_threads.append(threading.get_ident()), (set(), set()))[
        1
    ]

    async def scenario() -> None:
        with images.hold() as lease:
            data = _layer_tar()
            with images.content.writer() as writer:
                writer.write(data)
                digest = writer.commit(pin=lambda d: lease.pin(blobs=[d], chains=[d]))
            staged = images.layers.stage(io.BytesIO(data), None)
            images.layers.publish(staged, digest, digest, None)
            await images.collect()  # e.g. an `rmi` elsewhere, while this import is in flight
            assert images.content.exists(digest) and images.layers.has(digest)
        await images.collect()  # the operation ended without recording an image
        assert not images.content.exists(digest) and not images.layers.has(digest)
        assert threading.get_ident() not in collector_threads  # never on the event loop

    asyncio.run(scenario())
    assert len(collector_threads) == 2
    assert [p.name for p in (tmp_path / "layers").iterdir() if p.name.startswith("tmp-")] == []
