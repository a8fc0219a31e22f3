"""save and load: Docker 25's archive layout out, every common archive flavour in."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import docker
import pytest
import zstandard

from tests.harness import Daemon
from tests.registry import OCILayout, blob_names, digest_of, skopeo, store_problems, tar_of


def _members(archive: bytes) -> dict[str, bytes]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar:
            if member.isfile():
                f = tar.extractfile(member)
                assert f is not None
                out[member.name] = f.read()
    return out


def _tar(entries: list[tuple[str, bytes | None, str | None]]) -> bytes:
    """A tar of (name, data, symlink target) entries, written as given (hostile ones too)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data, link in entries:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type = tarfile.SYMTYPE
                info.linkname = link
                tar.addfile(info)
            else:
                assert data is not None
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _config(layers: list[bytes]) -> bytes:
    return json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["cat", "/id"]},
            "rootfs": {"type": "layers", "diff_ids": [digest_of(t) for t in layers]},
        }
    ).encode()


def _images(daemon: Daemon) -> set[str]:
    return set(daemon.cli("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split())


def test_saved_archive_is_dockers_layout_and_skopeo_reads_it(
    daemon: Daemon, app_image: str, tmp_path: Path
) -> None:
    daemon.cli("pull", app_image, check=True)
    out = tmp_path / "two.tar"
    saved = daemon.cli("save", "-o", str(out), app_image, "demo/busybox:1")
    assert saved.returncode == 0, saved.stderr
    files = _members(out.read_bytes())
    # Every blob is named by its digest (ARC-1, ARC-4).
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    manifest = json.loads(files["manifest.json"])
    assert sorted(tuple(m["RepoTags"]) for m in manifest) == sorted(
        [(app_image,), ("demo/busybox:1",)]
    )
    for entry in manifest:
        config = json.loads(files[entry["Config"]])
        diff_ids = [digest_of(files[path]) for path in entry["Layers"]]
        assert diff_ids == config["rootfs"]["diff_ids"]  # uncompressed, in order
    index = json.loads(files["index.json"])
    names = {m["annotations"]["io.containerd.image.name"] for m in index["manifests"]}
    assert names == {f"{app_image}", "docker.io/demo/busybox:1"}
    assert {m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]} == {
        "1"
    }
    assert "demo/busybox" in json.loads(files["repositories"])
    # skopeo reads both views of the same file.
    skopeo("copy", f"docker-archive:{out}:demo/busybox:1", f"oci:{tmp_path / 'bb'}:1")
    copied = json.loads(skopeo("inspect", f"oci:{tmp_path / 'bb'}:1").stdout)
    blobs = tmp_path / "bb" / "blobs" / "sha256"
    copied_diff_ids = [
        digest_of(gzip.decompress((blobs / layer.removeprefix("sha256:")).read_bytes()))
        for layer in copied["Layers"]
    ]
    busybox = next(e for e in manifest if e["RepoTags"] == ["demo/busybox:1"])
    assert copied_diff_ids == [p.replace("blobs/sha256/", "sha256:") for p in busybox["Layers"]]
    single = tmp_path / "single.tar"
    daemon.cli("save", "-o", str(single), "demo/busybox:1", check=True)
    as_oci = json.loads(skopeo("inspect", f"oci-archive:{single}:1").stdout)
    assert as_oci["Layers"] == [p.replace("blobs/sha256/", "sha256:") for p in busybox["Layers"]]
    # The same images saved twice give the same bytes.
    again = tmp_path / "again.tar"
    daemon.cli("save", "-o", str(again), app_image, "demo/busybox:1", check=True)
    assert again.read_bytes() == out.read_bytes()


def test_round_trip_through_every_client(
    own_daemon: Daemon, busybox_tar: Path, tmp_path: Path, app_image: str
) -> None:
    d = own_daemon
    d.cli("pull", app_image, check=True)
    ids = {
        n: json.loads(d.cli("inspect", n).stdout)[0]["Id"] for n in (app_image, "demo/busybox:1")
    }
    out = tmp_path / "all.tar"
    assert d.docker("save", "-o", str(out), app_image, "demo/busybox:1").returncode == 0
    d.cli("rmi", app_image, "demo/busybox:1", check=True)
    assert blob_names(d.data_root) == set()
    loaded = d.cli("load", "-i", str(out))
    assert loaded.returncode == 0, loaded.stderr
    assert f"Loaded image: {app_image}" in loaded.stdout
    assert "Loaded image: demo/busybox:1" in loaded.stdout
    for name, image_id in ids.items():
        assert json.loads(d.cli("inspect", name).stdout)[0]["Id"] == image_id
    assert d.cli("run", "--rm", app_image).stdout == "hello from the registry\n"
    # docker load (CLI) and docker-py load the same file.
    d.cli("rmi", app_image, check=True)
    docker_load = d.docker("load", "-i", str(out))
    assert docker_load.returncode == 0, docker_load.stderr
    assert f"Loaded image: {app_image}" in docker_load.stdout
    client = docker.DockerClient(base_url=d.host, timeout=120)
    try:
        client.images.remove(app_image)
        images = client.images.load(out.read_bytes())
        assert {t for i in images for t in i.tags} == {app_image, "demo/busybox:1"}
        data = b"".join(client.images.get("demo/busybox:1").save(named=True))
        assert "manifest.json" in _members(data)
    finally:
        client.close()
    assert store_problems(d.data_root) == []


def test_load_skopeo_archives_oci_archives_and_compressed_layers(
    daemon: Daemon, busybox_tar: Path, tmp_path: Path
) -> None:
    layout = OCILayout(tmp_path / "src")
    descriptor = layout.image(
        [busybox_tar.read_bytes(), tar_of({"id": b"skopeo\n"})], cmd=["cat", "/id"]
    )
    layout.tag(descriptor, "1")
    docker_archive = tmp_path / "docker-archive.tar"
    skopeo("copy", f"oci:{layout.path}:1", f"docker-archive:{docker_archive}:arch/skopeo:1")
    result = daemon.cli("load", "-i", str(docker_archive))
    assert result.returncode == 0, result.stderr
    assert "Loaded image: arch/skopeo:1" in result.stdout
    assert daemon.cli("run", "--rm", "arch/skopeo:1").stdout == "skopeo\n"
    # oci-archive: names come from the annotations; gzip layers stay compressed.
    oci_archive = tmp_path / "oci-archive.tar"
    skopeo("copy", f"oci:{layout.path}:1", f"oci-archive:{oci_archive}:arch/oci:2")
    result = daemon.cli("load", "-i", str(oci_archive))
    assert result.returncode == 0, result.stderr
    assert "Loaded image: arch/oci:2" in result.stdout
    assert daemon.cli("run", "--rm", "arch/oci:2").stdout == "skopeo\n"
    # The whole archive gzip-compressed, through the docker CLI.
    compressed = gzip.compress(docker_archive.read_bytes())
    daemon.cli("rmi", "arch/skopeo:1", check=True)
    loaded = daemon.docker("load", input=compressed)
    assert loaded.returncode == 0, loaded.stderr
    assert "arch/skopeo:1" in _images(daemon)


def test_load_legacy_archive_with_zstd_layers_and_symlinked_duplicates(
    daemon: Daemon, tmp_path: Path
) -> None:
    base = tar_of({"base": b"base\n"})
    top = tar_of({"id": b"legacy\n"})
    layers = [base, top, base]  # the same layer twice: Docker <= 24 writes a symlink
    config = _config(layers)
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    ids = [os.urandom(32).hex() for _ in layers]
    entries: list[tuple[str, bytes | None, str | None]] = [
        (f"{ids[0]}/VERSION", b"1.0", None),
        (f"{ids[0]}/layer.tar", base, None),
        (f"{ids[1]}/layer.tar", zstandard.ZstdCompressor().compress(top), None),
        (f"{ids[2]}/layer.tar", None, f"../{ids[0]}/layer.tar"),
        (config_name, config, None),
        (
            "manifest.json",
            json.dumps(
                [
                    {
                        "Config": config_name,
                        "RepoTags": ["legacy/img:1"],
                        "Layers": [f"{i}/layer.tar" for i in ids],
                    }
                ]
            ).encode(),
            None,
        ),
        ("repositories", json.dumps({"legacy/img": {"1": ids[2]}}).encode(), None),
    ]
    result = daemon.cli("load", input=_tar(entries))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Loaded image: legacy/img:1"
    inspect = json.loads(daemon.cli("inspect", "legacy/img:1").stdout)[0]
    assert inspect["Id"] == "sha256:" + config_name.removesuffix(".json")
    assert inspect["RootFS"]["Layers"] == [digest_of(t) for t in layers]


def _hostile(name: str) -> list[tuple[str, bytes | None, str | None]]:
    layer = tar_of({"x": b"x"})
    config = _config([layer])
    config_path = "blobs/sha256/" + hashlib.sha256(config).hexdigest()
    layer_path = "blobs/sha256/" + hashlib.sha256(layer).hexdigest()
    good = [{"Config": config_path, "RepoTags": ["hostile/img:1"], "Layers": [layer_path]}]
    manifest = json.dumps(good).encode()
    if name == "traversal":
        return [
            ("../../escape", b"x", None),
            (config_path, config, None),
            ("manifest.json", manifest, None),
        ]
    if name == "symlink-out":
        return [
            (config_path, config, None),
            (layer_path, None, "../../../etc/passwd"),
            ("manifest.json", manifest, None),
        ]
    if name == "missing-blob":
        return [(config_path, config, None), ("manifest.json", manifest, None)]
    if name == "bad-manifest":
        return [
            (config_path, config, None),
            (layer_path, layer, None),
            ("manifest.json", b"{[", None),
        ]
    if name == "layer-count":
        two = json.dumps([{**good[0], "Layers": [layer_path, layer_path]}]).encode()
        return [
            (config_path, config, None),
            (layer_path, layer, None),
            ("manifest.json", two, None),
        ]
    if name == "diffid-mismatch":
        other = tar_of({"y": b"not what the config says"})
        return [
            (config_path, config, None),
            (layer_path, other, None),
            ("manifest.json", manifest, None),
        ]
    if name == "no-manifest":
        return [(config_path, config, None), (layer_path, layer, None)]
    if name == "huge-config":
        huge = config[:-1] + b', "padding": "' + b"x" * (9 << 20) + b'"}'
        huge_path = "blobs/sha256/" + hashlib.sha256(huge).hexdigest()
        entry = [{**good[0], "Config": huge_path}]
        return [
            (huge_path, huge, None),
            (layer_path, layer, None),
            ("manifest.json", json.dumps(entry).encode(), None),
        ]
    raise AssertionError(name)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("traversal", "escapes the archive"),
        ("symlink-out", "escapes the archive"),
        ("missing-blob", "is missing"),
        ("bad-manifest", "manifest.json is not valid JSON"),
        ("layer-count", "lists 2 layers but its config 1 DiffIDs"),
        ("diffid-mismatch", "invalid diffID for layer 0"),
        ("no-manifest", "does not contain a manifest.json"),
        ("huge-config", "is too large"),
    ],
)
def test_hostile_archives_are_refused_and_leave_nothing(
    own_daemon: Daemon, case: str, message: str
) -> None:
    d = own_daemon
    before = blob_names(d.data_root)
    layers_before = set((d.data_root / "layers").iterdir())
    result = d.cli("load", input=_tar(_hostile(case)))
    assert result.returncode == 1
    assert "invalid archive" in result.stderr and message in result.stderr, result.stderr
    assert "hostile/img:1" not in _images(d)
    assert blob_names(d.data_root) == before
    assert set((d.data_root / "layers").iterdir()) == layers_before
    assert store_problems(d.data_root) == []
    assert not (d.base.parent / "escape").exists()


def test_truncated_archive_is_refused(daemon: Daemon, tmp_path: Path) -> None:
    out = tmp_path / "bb.tar"
    daemon.cli("save", "-o", str(out), "demo/busybox:1", check=True)
    data = out.read_bytes()
    result = daemon.cli("load", input=data[: len(data) // 2])
    assert result.returncode == 1
    assert "invalid archive" in result.stderr


def test_a_new_blob_for_a_layer_already_here_must_hold_that_layer(own_daemon: Daemon) -> None:
    d = own_daemon
    layer = tar_of({"id": os.urandom(8).hex().encode()})
    config = _config([layer])

    def archive(layer_file: bytes, tag: str) -> bytes:
        config_path = "blobs/sha256/" + hashlib.sha256(config).hexdigest()
        layer_path = "blobs/sha256/" + hashlib.sha256(layer_file).hexdigest()
        entry = {"Config": config_path, "RepoTags": [tag], "Layers": [layer_path]}
        return _tar(
            [
                (config_path, config, None),
                (layer_path, layer_file, None),
                ("manifest.json", json.dumps([entry]).encode(), None),
            ]
        )

    first = d.cli("load", input=archive(layer, "known/layer:1"))
    assert first.returncode == 0, first.stderr
    before = blob_names(d.data_root)
    # Same config (so the layer is unpacked already), but a gzip blob of other content.
    other = gzip.compress(tar_of({"id": b"something else"}), mtime=0)
    result = d.cli("load", input=archive(other, "known/layer:2"))
    assert result.returncode == 1
    assert "invalid diffID for layer 0" in result.stderr, result.stderr
    assert blob_names(d.data_root) == before
    assert "known/layer:2" not in _images(d)
    # The right content, compressed, is accepted.
    good = d.cli("load", input=archive(gzip.compress(layer, mtime=0), "known/layer:3"))
    assert good.returncode == 0, good.stderr
    assert store_problems(d.data_root) == []


def test_an_image_removed_while_it_is_saved_still_saves_whole(own_daemon: Daemon) -> None:
    import http.client
    import socket

    d = own_daemon
    before = blob_names(d.data_root)
    layers = [tar_of({f"big{i}": os.urandom(20 << 20)}) for i in range(2)]
    config = _config(layers)
    config_path = "blobs/sha256/" + hashlib.sha256(config).hexdigest()
    paths = ["blobs/sha256/" + hashlib.sha256(t).hexdigest() for t in layers]
    entry = {"Config": config_path, "RepoTags": ["saved/while:1"], "Layers": paths}
    entries = [(config_path, config, None)] + [
        (p, t, None) for p, t in zip(paths, layers, strict=True)
    ]
    entries.append(("manifest.json", json.dumps([entry]).encode(), None))
    d.cli("load", input=_tar(entries), check=True)

    class Conn(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(d.socket)

    conn = Conn("localhost", timeout=120)
    conn.request("GET", "/v1.45/images/get?names=saved/while:1")
    resp = conn.getresponse()
    assert resp.status == 200
    head = resp.read(64 << 10)  # the save has started; most of it is still to come
    removed = d.cli("rmi", "saved/while:1")
    assert removed.returncode == 0 and "Deleted:" in removed.stdout, removed.stderr
    archive = head + resp.read()
    conn.close()
    members = _members(archive)
    for path, layer in zip(paths, layers, strict=True):
        assert hashlib.sha256(members[path]).digest() == hashlib.sha256(layer).digest()
    assert "manifest.json" in members
    # Its content goes at the next collection after the save.
    d.cli("image", "prune", "-f", check=True)
    assert blob_names(d.data_root) == before
    assert store_problems(d.data_root) == []
