"""Pull and push against real registries, with skopeo as the independent peer."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest

from tests.harness import REPO, Daemon, new_base
from tests.registry import (
    OCILayout,
    Registry,
    blob_names,
    digest_of,
    skopeo,
    store_problems,
    tar_of,
)


def _inspect(daemon: Daemon, name: str) -> dict:
    return json.loads(daemon.cli("image", "inspect", name, check=True).stdout)[0]


def test_docker_run_pulls_an_image_skopeo_pushed(daemon: Daemon, app_image: str) -> None:
    daemon.cli("rmi", app_image)  # other tests may have pulled it into this shared daemon
    run = daemon.docker("run", "--rm", app_image)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "hello from the registry\n"
    assert "Unable to find image" in run.stderr and "Pull complete" in run.stderr
    manifest_digest = json.loads(
        skopeo("inspect", "--tls-verify=false", f"docker://{app_image}").stdout
    )["Digest"]
    image = _inspect(daemon, app_image)
    repository = app_image.rsplit(":", 1)[0]
    assert image["RepoDigests"] == [f"{repository}@{manifest_digest}"]
    assert image["RepoTags"] == [app_image]
    again = daemon.cli("pull", app_image)
    assert again.returncode == 0, again.stderr
    assert f"Status: Image is up to date for {app_image}" in again.stdout
    assert f"Digest: {manifest_digest}" in again.stdout
    assert store_problems(daemon.data_root) == []


def test_build_from_an_image_in_a_registry_pulls_it(
    daemon: Daemon, app_image: str, tmp_path: Path
) -> None:
    daemon.cli("rmi", app_image)
    (tmp_path / "Dockerfile").write_text(f"FROM {app_image}\nRUN cat /hello.txt > /copy.txt\n")
    built = daemon.cli("build", "-t", "from-registry:1", str(tmp_path))
    assert built.returncode == 0, built.stdout + built.stderr
    assert app_image in daemon.cli("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    run = daemon.cli("run", "--rm", "from-registry:1", "cat", "/copy.txt")
    assert run.stdout == "hello from the registry\n"
    daemon.cli("rmi", "from-registry:1", check=True)


def test_push_is_read_back_by_skopeo_with_the_same_layers(
    daemon: Daemon, repo: str, busybox_tar: Path, tmp_path: Path
) -> None:
    daemon.cli("tag", "demo/busybox:1", f"{repo}:1", check=True)
    pushed = daemon.cli("push", f"{repo}:1")
    assert pushed.returncode == 0, pushed.stderr
    assert f"The push refers to repository [{repo}]" in pushed.stdout
    digest = pushed.stdout.strip().splitlines()[-1].split("digest: ")[1].split()[0]
    inspect = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{repo}:1").stdout)
    assert inspect["Digest"] == digest
    raw = json.loads(skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{repo}:1").stdout)
    assert raw["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert [layer["mediaType"] for layer in raw["layers"]] == [
        "application/vnd.oci.image.layer.v1.tar+gzip"
    ]
    # skopeo copies it into an OCI layout; the layer decompresses to our DiffID.
    skopeo("copy", "--src-tls-verify=false", f"docker://{repo}:1", f"oci:{tmp_path / 'out'}:1")
    blob = tmp_path / "out/blobs/sha256" / raw["layers"][0]["digest"].removeprefix("sha256:")
    diff_id = "sha256:" + hashlib.sha256(gzip.decompress(blob.read_bytes())).hexdigest()
    assert [diff_id] == _inspect(daemon, "demo/busybox:1")["RootFS"]["Layers"]
    assert diff_id == digest_of(busybox_tar.read_bytes())
    # A second push finds everything there and produces the same manifest.
    again = daemon.cli("push", f"{repo}:1")
    assert "Layer already exists" in again.stdout
    assert f"1: digest: {digest}" in again.stdout
    assert f"{repo}@{digest}" in _inspect(daemon, f"{repo}:1")["RepoDigests"]


def test_push_to_a_second_repository_mounts_the_blobs(daemon: Daemon, registry: Registry) -> None:
    first, second = f"{registry.host}/mount/a:1", f"{registry.host}/mount/b:1"
    daemon.cli("tag", "demo/busybox:1", first, check=True)
    daemon.cli("push", first, check=True)
    daemon.cli("tag", "demo/busybox:1", second, check=True)
    pushed = daemon.cli("push", second)
    assert pushed.returncode == 0, pushed.stderr
    assert "Mounted from mount/a" in pushed.stdout
    skopeo("inspect", "--tls-verify=false", f"docker://{second}")


def test_pushing_an_unknown_tag_is_a_clear_error(daemon: Daemon, repo: str) -> None:
    result = daemon.docker("push", f"{repo}:nope")
    assert result.returncode != 0
    assert f"An image does not exist locally with the tag: {repo}" in result.stderr


def test_unknown_tag_and_repository_get_dockers_messages(
    daemon: Daemon, app_image: str, registry: Registry
) -> None:
    repository = app_image.rsplit(":", 1)[0]
    status, body = daemon.api(
        "POST", f"/v1.45/images/create?fromImage={repository}&tag=nope", headers={}
    )
    assert status == 404
    assert body["message"] == (
        f"manifest for {repository}:nope not found: manifest unknown: manifest unknown"
    )
    result = daemon.docker("pull", f"{registry.host}/no/such:1")
    assert result.returncode == 1
    assert f"{registry.host}/no/such" in result.stderr and "not found" in result.stderr


def test_multi_arch_index_pulls_the_host_platform_and_skips_attestations(
    daemon: Daemon, registry: Registry, busybox_tar: Path, tmp_path: Path
) -> None:
    layout = OCILayout(tmp_path / "multi")
    base = busybox_tar.read_bytes()
    amd64 = layout.image([base, tar_of({"arch": b"amd64\n"})], cmd=["cat", "/arch"])
    arm64 = layout.image([base, tar_of({"arch": b"arm64\n"})], arch="arm64", cmd=["cat", "/arch"])
    attestation = {
        **layout.image([tar_of({"sbom.json": b"{}"})], arch="unknown"),
        "platform": {"architecture": "unknown", "os": "unknown"},
        "annotations": {
            "vnd.docker.reference.type": "attestation-manifest",
            "vnd.docker.reference.digest": amd64["digest"],
        },
    }
    # The attestation comes first: choosing it would be a bug.
    index = layout.index([attestation, arm64, amd64])
    layout.tag(index, "multi")
    name = f"{registry.host}/multi/app"
    skopeo(
        "copy", "--all", "--dest-tls-verify=false", f"oci:{layout.path}:multi", f"docker://{name}:1"
    )
    by_digest = f"{name}@{index['digest']}"
    pulled = daemon.docker("pull", "--platform", "linux/amd64", by_digest)
    assert pulled.returncode == 0, pulled.stderr
    assert daemon.docker("run", "--rm", by_digest).stdout == "amd64\n"
    image = _inspect(daemon, by_digest)
    assert image["Architecture"] == "amd64"
    assert image["RepoTags"] == []  # a pull by digest tags nothing
    assert f"{name}@{index['digest']}" in image["RepoDigests"]
    arm = daemon.cli("pull", "--platform", "linux/arm64", f"{name}:1")
    assert arm.returncode == 0, arm.stderr
    assert _inspect(daemon, f"{name}:1")["Architecture"] == "arm64"
    missing = daemon.cli("pull", "--platform", "linux/s390x", f"{name}:1")
    assert missing.returncode == 1
    assert "no matching manifest for linux/s390x in the manifest list entries" in missing.stderr
    # A single-platform manifest asked for as another platform is refused, as Docker does.
    wrong = daemon.cli("pull", "--platform", "linux/arm64", f"{name}@{amd64['digest']}")
    assert wrong.returncode == 1
    assert "does not match the specified platform (linux/arm64/v8)" in wrong.stderr
    # distribution inspect lists the platforms without the attestation.
    status, found = daemon.api("GET", f"/v1.45/distribution/{name}:1/json")
    assert status == 200 and found["Descriptor"]["digest"] == index["digest"]
    assert sorted(p["architecture"] for p in found["Platforms"]) == ["amd64", "arm64"]


def test_docker_py_pull_and_push(client, daemon: Daemon, app_image: str, repo: str) -> None:
    repository, tag = app_image.rsplit(":", 1)
    messages = list(client.api.pull(repository, tag=tag, stream=True, decode=True))
    assert messages[0]["status"].startswith("Pulling from")
    assert any(m.get("status", "").startswith("Digest: sha256:") for m in messages)
    image = client.images.pull(repository, tag=tag)
    assert app_image in image.tags
    image.tag(repo, "2")
    pushed = list(client.images.push(repo, tag="2", stream=True, decode=True))
    aux = [m["aux"] for m in pushed if "aux" in m]
    assert aux and aux[0]["Tag"] == "2" and aux[0]["Digest"].startswith("sha256:")
    # What arrives is the same image: same config (image ID) and the same layers.
    raw = json.loads(
        skopeo(
            "inspect", "--tls-verify=false", "--raw", f"docker://{repo}@{aux[0]['Digest']}"
        ).stdout
    )
    assert raw["config"]["digest"] == image.id
    assert len(raw["layers"]) == len(image.attrs["RootFS"]["Layers"])
    with pytest.raises(docker.errors.NotFound, match="manifest unknown"):
        client.images.pull(repository, tag="missing")


def test_corrupt_blob_fails_the_pull_and_is_discarded(
    own_daemon: Daemon, registry: Registry, busybox_tar: Path, tmp_path: Path
) -> None:
    d = own_daemon
    layout = OCILayout(tmp_path / "bad")
    payload = os.urandom(300_000)
    descriptor = layout.image([busybox_tar.read_bytes(), tar_of({"data.bin": payload})])
    layout.tag(descriptor, "1")
    name = f"{registry.host}/corrupt/app:1"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout.path}:1", f"docker://{name}")
    manifest = json.loads((layout.path / "blobs/sha256" / descriptor["digest"][7:]).read_bytes())
    bad = manifest["layers"][1]["digest"]
    stored = registry.blob_path("corrupt/app", bad)
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    before = blob_names(d.data_root)
    result = d.cli("pull", name)
    assert result.returncode == 1
    assert bad in result.stderr and "digest mismatch" in result.stderr
    assert name not in d.cli("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    assert bad[7:] not in blob_names(d.data_root)
    assert blob_names(d.data_root) == before
    assert store_problems(d.data_root) == []


def test_daemon_killed_mid_pull_leaves_no_partial_image(
    busybox_tar: Path, registry: Registry, tmp_path: Path
) -> None:
    layout = OCILayout(tmp_path / "big")
    big = [tar_of({f"blob{i}.bin": os.urandom(24 << 20)}) for i in range(3)]
    descriptor = layout.image([busybox_tar.read_bytes(), *big], compress=False)
    layout.tag(descriptor, "1")
    name = f"{registry.host}/big/app:1"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout.path}:1", f"docker://{name}")
    d = Daemon(new_base())
    try:
        d.start()
        env = {**os.environ, "DOCKYARD_HOST": d.host}
        puller = subprocess.Popen(
            [sys.executable, "-m", "dockyard", "pull", name],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert puller.stdout is not None
        for line in puller.stdout:  # wait until bytes are flowing
            if "Downloading" in line or "Extracting" in line:
                break
        d.kill9()
        puller.wait(timeout=60)
        d.start()
        assert name not in d.cli("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
        assert store_problems(d.data_root) == []
        assert not list((d.data_root / "layers").glob("tmp-*"))
        # Only what a recorded image needs stays: nothing at all here.
        assert blob_names(d.data_root) == set()
        assert d.cli("pull", name).returncode == 0
        assert store_problems(d.data_root) == []
    finally:
        d.cleanup()


def test_client_disconnect_cancels_the_pull_cleanly(
    own_daemon: Daemon, registry: Registry, busybox_tar: Path, tmp_path: Path
) -> None:
    layout = OCILayout(tmp_path / "slow")
    descriptor = layout.image([tar_of({f"f{i}": os.urandom(16 << 20)}) for i in range(3)])
    layout.tag(descriptor, "1")
    name = f"{registry.host}/disconnect/app:1"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout.path}:1", f"docker://{name}")
    d = own_daemon
    before = blob_names(d.data_root)
    puller = subprocess.Popen(
        ["docker", "pull", name],
        env={**os.environ, "DOCKER_HOST": d.host, "DOCKER_CONFIG": str(d.base / "docker")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert puller.stdout is not None
    for line in puller.stdout:
        if "Downloading" in line or "Pulling fs layer" in line:
            break
    puller.kill()
    puller.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if blob_names(d.data_root) == before and not list(
            (d.data_root / "content" / "ingest").iterdir()
        ):
            break
        time.sleep(0.2)
    assert name not in d.cli("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    assert blob_names(d.data_root) == before
    assert store_problems(d.data_root) == []


def test_chunked_upload_and_prune_of_pulled_content(
    busybox_tar: Path, registry: Registry, tmp_path: Path
) -> None:
    d = Daemon(new_base())
    try:
        d.config["registry-chunk-size"] = 256 << 10
        d.start()
        d.cli("import", str(busybox_tar), "demo/busybox:1", check=True)
        name = f"{registry.host}/chunked/app:1"
        d.cli("tag", "demo/busybox:1", name, check=True)
        pushed = d.cli("push", name)
        assert pushed.returncode == 0, pushed.stderr
        skopeo("copy", "--src-tls-verify=false", f"docker://{name}", f"oci:{tmp_path / 'c'}:1")
        raw = json.loads(
            skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{name}").stdout
        )
        assert raw["layers"][0]["size"] > 256 << 10  # really went up in several chunks
        # Pull it back into a clean store, then prune everything.
        d.cli("rmi", name, "demo/busybox:1", check=True)
        assert d.cli("pull", name).returncode == 0
        df = json.loads(d.cli("system", "df", "--format", "json").stdout.splitlines()[0])
        assert df["Type"] == "Images" and df["TotalCount"] == "1"
        status, usage = d.api("GET", "/v1.45/system/df")
        assert status == 200 and usage["Volumes"] == [] and usage["BuildCache"] == []
        assert usage["Images"][0]["RepoTags"] == [name] and usage["LayersSize"] > 0
        pruned = d.cli("image", "prune", "-a", "-f")
        assert pruned.returncode == 0, pruned.stderr
        assert "deleted:" in pruned.stdout
        assert blob_names(d.data_root) == set()
        assert not [p for p in (d.data_root / "layers").iterdir() if p.name not in ("l", "empty")]
    finally:
        d.cleanup()


def test_unreachable_registry_is_a_clear_error(daemon: Daemon) -> None:
    from tests.registry import free_port

    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    result = daemon.cli("pull", f"{host}/team/app:1")
    assert result.returncode == 1
    assert f'Get "http://{host}/v2/"' in result.stderr and "connect" in result.stderr.lower()


def test_disk_full_mid_pull_leaves_a_consistent_store(
    busybox_tar: Path, registry: Registry, tmp_path: Path
) -> None:
    layout = OCILayout(tmp_path / "huge")
    layers = [
        busybox_tar.read_bytes(),
        *(tar_of({f"f{i}": os.urandom(20 << 20)}) for i in range(3)),
    ]
    descriptor = layout.image(layers)
    layout.tag(descriptor, "1")
    name = f"{registry.host}/huge/app:1"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout.path}:1", f"docker://{name}")
    d = Daemon(new_base())
    try:
        d.data_root.mkdir(parents=True)
        # 48 MiB: the 60 MiB of incompressible layers cannot fit, blobs plus unpacked.
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(d.data_root)], check=True
        )
        d.start()
        result = d.cli("pull", name)
        assert result.returncode == 1
        assert "No space left on device" in result.stderr
        assert name not in d.cli("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
        assert store_problems(d.data_root) == []
        assert blob_names(d.data_root) == set()
        # What the failed pull wrote is gone, so the space is back.
        assert shutil.disk_usage(d.data_root).used < 8 << 20
    finally:
        d.cleanup()


def test_push_all_tags_of_a_repository(daemon: Daemon, repo: str) -> None:
    for tag in ("a", "b"):
        daemon.cli("tag", "demo/busybox:1", f"{repo}:{tag}", check=True)
    missing = daemon.cli("push", repo)  # no tag means latest, as with docker
    assert missing.returncode == 1
    assert f"An image does not exist locally with the tag: {repo}:latest" in missing.stderr
    pushed = daemon.cli("push", "-a", repo)
    assert pushed.returncode == 0, pushed.stderr
    assert "a: digest: sha256:" in pushed.stdout and "b: digest: sha256:" in pushed.stdout
    tags = json.loads(skopeo("list-tags", "--tls-verify=false", f"docker://{repo}").stdout)
    assert sorted(tags["Tags"]) == ["a", "b"]


def test_large_manifest_and_config_arrive_whole(
    daemon: Daemon, registry: Registry, busybox_tar: Path, tmp_path: Path
) -> None:
    # Both far larger than one read of the socket: a short read must not truncate them.
    layout = OCILayout(tmp_path / "large")
    layer = layout.blob(gzip.compress(busybox_tar.read_bytes(), mtime=0))
    labels = {f"label.{i}": os.urandom(64).hex() for i in range(6000)}  # ~0.9 MB
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["true"], "Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": [digest_of(busybox_tar.read_bytes())]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **layout.blob(json.dumps(config).encode()),
        },
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
        "annotations": {f"note.{i}": os.urandom(64).hex() for i in range(3000)},  # ~0.4 MB
    }
    body = json.dumps(manifest).encode()
    layout.tag({"mediaType": manifest["mediaType"], **layout.blob(body)}, "1")
    name = f"{registry.host}/large/app:1"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout.path}:1", f"docker://{name}")
    pulled = daemon.cli("pull", name)
    assert pulled.returncode == 0, pulled.stderr
    assert f"Digest: {digest_of(body)}" in pulled.stdout
    assert _inspect(daemon, name)["Config"]["Labels"] == labels
    daemon.cli("rmi", name, check=True)


def test_rmi_by_digest_removes_only_that_reference(daemon: Daemon, app_image: str) -> None:
    daemon.cli("pull", app_image, check=True)
    image = _inspect(daemon, app_image)
    repository = app_image.rsplit(":", 1)[0]
    (by_digest,) = [d for d in image["RepoDigests"] if d.startswith(repository + "@")]
    removed = daemon.cli("rmi", by_digest)
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.strip() == f"Untagged: {by_digest}"
    after = _inspect(daemon, app_image)
    assert after["Id"] == image["Id"] and by_digest not in after["RepoDigests"]
    # A repository's last tag takes its digest references along (Docker's rule);
    # the image stays while another name holds it.
    daemon.cli("pull", app_image, check=True)
    daemon.cli("tag", app_image, "other/name:1", check=True)
    removed = daemon.cli("rmi", app_image)
    assert removed.stdout.split("\n")[:2] == [f"Untagged: {app_image}", f"Untagged: {by_digest}"]
    left = _inspect(daemon, "other/name:1")
    assert left["Id"] == image["Id"] and by_digest not in left["RepoDigests"]
    daemon.cli("rmi", "other/name:1", check=True)
    # By ID, every name goes, digest references too, each reported.
    daemon.cli("pull", app_image, check=True)
    removed = daemon.cli("rmi", "-f", image["Id"])
    assert removed.returncode == 0, removed.stderr
    assert f"Untagged: {app_image}" in removed.stdout
    assert f"Untagged: {by_digest}" in removed.stdout
    assert f"Deleted: {image['Id']}" in removed.stdout


def test_rmi_of_an_image_in_use_keeps_its_last_tag_and_digests(
    daemon: Daemon, app_image: str
) -> None:
    # A tag and the digest references it would take along are one reference (Docker's
    # rule): a container's image keeps it unless forced.
    daemon.cli("pull", app_image, check=True)
    image = _inspect(daemon, app_image)
    (by_digest,) = [d for d in image["RepoDigests"] if d.startswith(app_image.rsplit(":", 1)[0])]
    daemon.cli("create", "--name", "user-of-app", app_image, "true", check=True)
    try:
        for name in (app_image, by_digest):
            refused = daemon.cli("rmi", name)
            assert refused.returncode != 0
            assert f'unable to remove repository reference "{name}" (must force)' in refused.stderr
        assert _inspect(daemon, app_image)["RepoDigests"] == image["RepoDigests"]
        # Forced, the names go and so does the image (moby's rule for a stopped user):
        # the container keeps only its layers.
        forced = daemon.cli("rmi", "-f", app_image)
        assert forced.stdout.split()[:6] == [
            "Untagged:",
            app_image,
            "Untagged:",
            by_digest,
            "Deleted:",
            image["Id"],
        ]
        assert daemon.api("GET", f"/v1.45/images/{image['Id']}/json")[0] == 404
        assert daemon.cli("start", "-a", "user-of-app").returncode == 0
    finally:
        daemon.cli("rm", "-f", "user-of-app")
        daemon.cli("rmi", "-f", image["Id"])
