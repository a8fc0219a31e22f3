"""Images: import through every client, listing, tags, removal rules, prune."""

from __future__ import annotations

import gzip
import io
import json
import time
from pathlib import Path
from urllib.parse import quote

import docker
import pytest

from tests.harness import Daemon


def test_import_records_a_real_oci_manifest(daemon: Daemon, busybox_tar: Path) -> None:
    image_id = daemon.cli("import", str(busybox_tar), "imp/cli:1", check=True).stdout.strip()
    assert image_id.startswith("sha256:")
    inspect = json.loads(daemon.cli("image", "inspect", "imp/cli:1", check=True).stdout)[0]
    assert inspect["Id"] == image_id
    assert inspect["RepoTags"] == ["imp/cli:1"]
    assert inspect["RootFS"]["Type"] == "layers" and len(inspect["RootFS"]["Layers"]) == 1
    assert inspect["Os"] == "linux" and inspect["Architecture"]
    # The config and manifest are stored as OCI documents in the content store.
    blobs = daemon.data_root / "content" / "blobs" / "sha256"
    config = json.loads((blobs / image_id.removeprefix("sha256:")).read_bytes())
    assert config["rootfs"]["diff_ids"] == inspect["RootFS"]["Layers"]
    manifests = []
    for path in blobs.iterdir():
        if path.stat().st_size < 4096:
            try:
                manifests.append(json.loads(path.read_bytes()))
            except ValueError:  # a small compressed layer of some other image
                pass
    manifest = next(
        m
        for m in manifests
        if isinstance(m, dict) and m.get("config", {}).get("digest") == image_id
    )
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["layers"][0]["digest"] == inspect["RootFS"]["Layers"][0]
    daemon.cli("rmi", "imp/cli:1", check=True)


def test_import_gzip_through_docker_cli_with_changes(daemon: Daemon, busybox_tar: Path) -> None:
    compressed = gzip.compress(busybox_tar.read_bytes())
    result = daemon.docker(
        "import",
        "--change",
        'CMD ["echo", "from-change"]',
        "--change",
        "ENV GREETING=hi",
        "-",
        "imp/docker:2",
        input=compressed,
    )
    assert result.returncode == 0, result.stderr
    run = daemon.docker("run", "--rm", "imp/docker:2")
    assert run.stdout.strip() == "from-change"
    env = daemon.docker("run", "--rm", "imp/docker:2", "sh", "-c", "echo $GREETING")
    assert env.stdout.strip() == "hi"
    assert daemon.docker("rmi", "imp/docker:2").returncode == 0


def test_import_through_docker_py(client, busybox_tar: Path) -> None:
    result = client.api.import_image(src=str(busybox_tar), repository="imp/py", tag="3")
    last = json.loads(result.strip().splitlines()[-1])
    image = client.images.get("imp/py:3")
    assert image.id == last["status"]
    assert client.containers.run("imp/py:3", "echo ok", remove=True) == b"ok\n"
    client.images.remove("imp/py:3")
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get("imp/py:3")


def test_truncated_import_stores_nothing(daemon: Daemon, busybox_tar: Path) -> None:
    before = set((daemon.data_root / "content" / "blobs" / "sha256").iterdir())
    data = busybox_tar.read_bytes()[:50_000] + b"\x00garbage" * 10
    result = daemon.cli("import", "-", "bad/import:1", input=data)
    assert result.returncode != 0
    assert "bad/import" not in daemon.cli("images").stdout
    after = set((daemon.data_root / "content" / "blobs" / "sha256").iterdir())
    assert after == before
    assert not list((daemon.data_root / "layers").glob("tmp-*"))


def test_tag_and_untag(daemon: Daemon) -> None:
    assert daemon.cli("tag", "demo/busybox:1", "127.0.0.1:5000/x/y:2").returncode == 0
    assert daemon.docker("tag", "demo/busybox:1", "other:latest").returncode == 0
    listing = daemon.cli("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert {"127.0.0.1:5000/x/y:2", "other:latest", "demo/busybox:1"} <= set(listing)
    removed = daemon.cli("rmi", "other")
    assert removed.stdout.strip() == "Untagged: other:latest"
    daemon.cli("rmi", "127.0.0.1:5000/x/y:2", check=True)
    assert "demo/busybox" in daemon.cli("images").stdout


def test_unknown_image_is_a_404_with_dockers_text(daemon: Daemon) -> None:
    status, body = daemon.api("GET", "/v1.45/images/no/such:img/json")
    assert status == 404 and body["message"] == "No such image: no/such:img"
    status, body = daemon.api("POST", "/v1.45/containers/create", {"Image": "nope:1"})
    assert status == 404 and body["message"] == "No such image: nope:1"


def test_rmi_refuses_while_a_container_uses_the_image(
    daemon: Daemon, busybox_tar: Path, name: str
) -> None:
    image_id = daemon.cli("import", str(busybox_tar), "inuse/img:1", check=True).stdout.strip()
    daemon.cli("create", "--name", name, "inuse/img:1", "true", check=True)
    refused = daemon.cli("rmi", "inuse/img:1")
    assert refused.returncode == 1
    assert "must force" in refused.stderr and "is using its referenced image" in refused.stderr
    by_id = daemon.cli("rmi", image_id)
    assert "image is being used by stopped container" in by_id.stderr
    # Forced, the image goes but the container keeps working: its layers stay.
    forced = daemon.cli("rmi", "-f", image_id)
    assert forced.returncode == 0, forced.stderr
    assert f"Deleted: {image_id}" in forced.stdout
    assert daemon.cli("start", "-a", name).returncode == 0
    daemon.cli("rm", name, check=True)


def test_rmi_refuses_running_container_even_with_force(
    daemon: Daemon, busybox_tar: Path, name: str
) -> None:
    image_id = daemon.cli("import", str(busybox_tar), "running/img:1", check=True).stdout.strip()
    daemon.cli("run", "-d", "--name", name, "running/img:1", "sleep", "60", check=True)
    result = daemon.cli("rmi", "-f", image_id)
    assert result.returncode == 1 and "cannot be forced" in result.stderr
    daemon.cli("rm", "-f", name, check=True)
    daemon.cli("rmi", "running/img:1", check=True)


def test_prune_removes_dangling_images_only(daemon: Daemon, busybox_tar: Path) -> None:
    tar = io.BytesIO(busybox_tar.read_bytes())
    dangling = daemon.cli("import", "-", input=tar.getvalue(), check=True).stdout.strip()
    kept = daemon.cli("import", str(busybox_tar), "keep/me:1", check=True).stdout.strip()
    ids = daemon.cli("images", "-q", "--no-trunc").stdout.split()
    assert dangling in ids
    result = daemon.cli("image", "prune", "-f")
    assert dangling in result.stdout
    ids = daemon.cli("images", "-q", "--no-trunc").stdout.split()
    assert dangling not in ids and kept in ids
    daemon.cli("rmi", "keep/me:1", check=True)


def test_history_lists_the_import(daemon: Daemon) -> None:
    result = daemon.cli("image", "history", "demo/busybox:1")
    assert result.returncode == 0, result.stderr
    assert "Imported from -" in result.stdout


def test_prune_until_and_label_filters(daemon: Daemon, busybox_tar: Path) -> None:
    data = busybox_tar.read_bytes()

    def dangling(label: str) -> str:
        made = daemon.cli("import", "-c", f"LABEL {label}", "-", input=data, check=True)
        return made.stdout.strip()

    def ids() -> set[str]:
        return set(daemon.cli("images", "-q", "--no-trunc").stdout.split())

    old, new = dangling("keep=0"), dangling("keep=1")
    assert {old, new} <= ids()
    # Created before a time long ago: none of them.
    result = daemon.docker("image", "prune", "-f", "--filter", "until=2001-01-01T00:00:00Z")
    assert result.returncode == 0, result.stderr
    assert {old, new} <= ids()
    # Created more than an hour ago (a Go duration): none either.
    daemon.cli("image", "prune", "-f", "--filter", "until=1h", check=True)
    assert {old, new} <= ids()
    # Only those with the label, then only those without it.
    pruned = daemon.cli("image", "prune", "-f", "--filter", "label=keep=0", check=True)
    assert old in pruned.stdout and new not in pruned.stdout
    assert old not in ids() and new in ids()
    daemon.cli("image", "prune", "-f", "--filter", "label!=keep=1", check=True)
    assert new in ids()
    # Before now (a Unix time): gone.
    later = f"until={time.time() + 5:.3f}"
    daemon.cli("image", "prune", "-f", "--filter", later, check=True)
    assert new not in ids()
    for bad in ("until=yesterday", "until=1h&until=2h", "colour=red"):
        key, _, value = bad.partition("=")
        values = value.split("&until=")
        query = json.dumps({key: {v: True for v in values}})
        status, body = daemon.api("POST", "/v1.45/images/prune?filters=" + quote(query))
        assert status == 400, body
    status, body = daemon.api(
        "POST", "/v1.45/images/prune?filters=" + quote('{"until":{"yesterday":true}}')
    )
    assert body["message"] == 'failed to parse value as time or duration: "yesterday"'
