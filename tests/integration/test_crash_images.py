"""Crash consistency of the image store: the daemon is killed (`kill -9`) between the
steps that make an image (a layer's directory renamed into place, its short link made,
its row written, the image recorded, the image tagged), and the next daemon shows
either the whole image or none of it, with nothing left on disk that no record owns.

Pull, load, import and commit all go through the same two steps (`LayerStore.publish`
and `ImageService.record`), so `load` stands for all of them here.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from tests.faults import (
    FaultyDaemon,
    assert_check_clean,
    interrupt,
)

IMAGE = "demo/busybox:1"


@pytest.fixture
def saved(faulty: FaultyDaemon, tmp_path: Path) -> tuple[Path, str]:
    """An image with a layer of its own, saved to an archive and then deleted."""
    d = faulty
    layer = tmp_path / "layer.tar"
    with tarfile.open(layer, "w") as tar:
        data = b"made before the crash\n"
        info = tarfile.TarInfo("greeting")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    d.cli("import", str(layer), "demo/greeting:1", check=True)
    image_id = d.cli("inspect", "--format", "{{.Id}}", "demo/greeting:1", check=True).stdout
    archive = tmp_path / "greeting.tar"
    d.cli("save", "-o", str(archive), "demo/greeting:1", check=True)
    d.cli("rmi", "demo/greeting:1", check=True)
    return archive, image_id.strip()


def _image_ids(d: FaultyDaemon) -> set[str]:
    status, listed = d.api("GET", "/images/json?all=1")
    assert status == 200, listed
    return {image["Id"] for image in listed}


def assert_store_clean(d: FaultyDaemon) -> None:
    """Every unpacked layer on disk is a recorded one (it has its short link), every link
    leads to a layer, and no temporary or ingest file is left."""
    layers = d.data_root / "layers"
    links = [os.path.realpath(link) for link in (layers / "l").iterdir()]
    assert len(links) == len(set(links)), "a layer with two short links"
    assert not [e.name for e in layers.iterdir() if e.name.startswith("tmp-")]
    unpacked = {str(e / "diff") for e in layers.iterdir() if len(e.name) == 64}
    assert set(links) == unpacked, "layers on disk and recorded layers differ"
    ingest = d.data_root / "content" / "ingest"
    assert not ingest.exists() or list(ingest.iterdir()) == [], list(ingest.iterdir())
    assert_check_clean(d)


@pytest.mark.parametrize("point", ["layer:published", "layer:linked"])
def test_load_killed_before_the_layer_is_recorded_leaves_nothing(
    faulty: FaultyDaemon, saved: tuple[Path, str], point: str
) -> None:
    d = faulty
    archive, image_id = saved
    before = _image_ids(d)
    interrupt(d, f"point:{point}", "load", "-i", str(archive))
    assert _image_ids(d) == before
    assert_store_clean(d)
    loaded = d.cli("load", "-i", str(archive), check=True)
    assert "demo/greeting:1" in loaded.stdout
    assert _image_ids(d) == before | {image_id}
    assert_store_clean(d)


def test_load_killed_after_the_image_is_recorded_keeps_a_whole_image(
    faulty: FaultyDaemon, saved: tuple[Path, str]
) -> None:
    d = faulty
    archive, image_id = saved
    before = _image_ids(d)
    interrupt(d, "point:image:recorded", "load", "-i", str(archive))
    # The image is whole (config, manifest and layer present), only its name is missing.
    assert _image_ids(d) == before | {image_id}
    doc = json.loads(d.cli("inspect", image_id, check=True).stdout)[0]
    assert doc["RepoTags"] == []
    assert_store_clean(d)
    d.cli("load", "-i", str(archive), check=True)
    assert _image_ids(d) == before | {image_id}
    doc = json.loads(d.cli("inspect", image_id, check=True).stdout)[0]
    assert doc["RepoTags"] == ["demo/greeting:1"]
    exported = d.cli("save", "demo/greeting:1", "-o", str(archive.with_suffix(".again")))
    assert exported.returncode == 0, exported.stderr


def test_commit_killed_between_layer_and_record_leaves_nothing(faulty: FaultyDaemon) -> None:
    d = faulty
    d.cli("run", "--name", "src", IMAGE, "sh", "-c", "echo data > /made", check=True)
    before = _image_ids(d)
    interrupt(d, "point:layer:published", "commit", "src", "demo/committed:1")
    assert _image_ids(d) == before
    assert_store_clean(d)
    d.cli("commit", "src", "demo/committed:1", check=True)
    result = d.cli("run", "--rm", "demo/committed:1", "cat", "/made", check=True)
    assert result.stdout == "data\n"
    assert_store_clean(d)
