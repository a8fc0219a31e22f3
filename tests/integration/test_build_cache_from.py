"""The classic builder's `cachefrom`, and what a built image records of its last step.

With `cachefrom` Docker's classic builder takes cache hits only from the images
named (the steps of their history), never from the rest of the build cache; an
unknown name means no hits at all. docker-py's test_build_with_cache_from is the
first case here.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.harness import Daemon

DOCKERFILE = b"FROM demo/busybox:1\nENV FOO=bar\nRUN touch baz\nRUN touch bax\n"


def hits(stream: Any) -> int:
    return sum("Using cache" in chunk.get("stream", "") for chunk in stream)


def build(client: Any, tag: str, dockerfile: bytes = DOCKERFILE, **options: Any) -> int:
    """Build with docker-py's low-level API; returns the number of cache hits."""
    return hits(client.api.build(fileobj=io.BytesIO(dockerfile), tag=tag, decode=True, **options))


def test_docker_py_build_with_cache_from(daemon: Daemon, client: Any) -> None:
    build(client, "cachefrom/one:1")
    assert build(client, "cachefrom/two:1", cache_from=["cachefrom/one:1"]) == 3
    client.images.remove("cachefrom/two:1")
    # Only the images named give hits: an unknown one, none at all.
    assert build(client, "cachefrom/two:1", cache_from=["nosuchtag"]) == 0
    # Without cachefrom the whole build cache serves again.
    assert build(client, "cachefrom/three:1") == 3
    for tag in ("cachefrom/one:1", "cachefrom/two:1", "cachefrom/three:1"):
        client.images.remove(tag)


def test_cache_from_an_image_whose_build_cache_is_gone(daemon: Daemon, client: Any) -> None:
    """The steps are found in the image's history (as for an image pulled from a
    registry), so the build gives the very same image."""
    dockerfile = DOCKERFILE + b"LABEL from=history\n"
    build(client, "cachefrom/hist:1", dockerfile)
    first = client.images.get("cachefrom/hist:1")
    pruned = client.api.prune_builds()
    assert pruned["CachesDeleted"]
    assert build(client, "cachefrom/hist:2", dockerfile) == 0  # the cache is empty
    assert build(client, "cachefrom/hist:3", dockerfile, cache_from=["cachefrom/hist:1"]) == 4
    assert client.images.get("cachefrom/hist:3").id == first.id
    # A different step stops the hits there; the steps before it still hit.
    changed = dockerfile.replace(b"RUN touch bax", b"RUN touch other")
    assert build(client, "cachefrom/hist:4", changed, cache_from=["cachefrom/hist:1"]) == 2
    for tag in ("cachefrom/hist:1", "cachefrom/hist:2", "cachefrom/hist:4"):
        client.images.remove(tag)


def test_a_built_image_shows_its_last_steps_container_config(daemon: Daemon) -> None:
    dockerfile = b"FROM demo/busybox:1\nARG WHO=me\nRUN echo $WHO > /who\nVOLUME /data\n"
    # Raw API calls: the API version is part of what is tested.
    status, body = daemon.api(
        "POST",
        "/v1.44/build?t=ccfg/built:1&buildargs=" + quote(json.dumps({"WHO": "you"})),
        _tar(dockerfile),
        headers={"Content-Type": "application/x-tar"},
    )
    assert status == 200, body
    status, old = daemon.api("GET", "/v1.44/images/ccfg/built:1/json")
    assert status == 200
    container_config = old["ContainerConfig"]
    # The VOLUME step: the run config, its command the `#(nop)` line Docker records.
    assert container_config["Cmd"] == ["/bin/sh", "-c", "#(nop) ", "VOLUME [/data]"]
    assert container_config["Volumes"] == {"/data": {}}
    assert container_config["Env"] == old["Config"]["Env"]
    assert container_config["Image"].startswith("sha256:")
    assert old["Config"]["Volumes"] == {"/data": {}}
    # API 1.44 dropped VirtualSize. (dockerd 26 drops ContainerConfig at 1.45; Dockyard
    # keeps it, which compose v1 needs: see test_compose.py.)
    status, new = daemon.api("GET", "/v1.45/images/ccfg/built:1/json")
    assert "VirtualSize" not in new
    assert new["ContainerConfig"] == container_config
    # The last step ran no container (Docker makes one it never starts): no Container.
    assert "Container" not in new
    status, older = daemon.api("GET", "/v1.43/images/ccfg/built:1/json")
    assert older["VirtualSize"] == older["Size"]
    # Docker's Config leaves its optional fields out when they are unset.
    assert "Healthcheck" not in new["Config"] and "StopSignal" not in new["Config"]
    assert list(new["Config"])[:6] == [
        "Hostname",
        "Domainname",
        "User",
        "AttachStdin",
        "AttachStdout",
        "AttachStderr",
    ]
    # A RUN step records the command with its build arguments, and no entrypoint.
    history = [h["CreatedBy"] for h in daemon_history(daemon, "ccfg/built:1")]
    assert "|1 WHO=you /bin/sh -c echo $WHO > /who" in history
    daemon.cli("rmi", "ccfg/built:1", check=True)


def test_committed_and_imported_images_container_config(daemon: Daemon, client: Any) -> None:
    container = client.containers.run(
        "demo/busybox:1", ["sh", "-c", "echo hi > /f"], environment={"A": "1"}, detach=True
    )
    container.wait()
    image = container.commit("ccfg/committed", "1")
    status, body = daemon.api("GET", "/v1.44/images/ccfg/committed:1/json")
    assert status == 200
    assert body["Container"] == container.id
    assert body["ContainerConfig"] == client.api.inspect_container(container.id)["Config"]
    container.remove()
    client.images.remove(image.id)
    # An image no container made (imported) has an empty one, as in Docker.
    status, body = daemon.api("GET", "/v1.44/images/demo/busybox:1/json")
    assert "Container" not in body
    assert body["ContainerConfig"]["Cmd"] is None and body["ContainerConfig"]["Volumes"] is None
    assert body["ContainerConfig"]["Hostname"] == "" and body["ContainerConfig"]["Image"] == ""


def daemon_history(daemon: Daemon, name: str) -> list[dict[str, Any]]:
    status, body = daemon.api("GET", f"/v1.45/images/{name}/history")
    assert status == 200
    return list(body)


def _tar(dockerfile: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    return buffer.getvalue()


def test_cache_from_on_the_command_lines(daemon: Daemon, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_bytes(DOCKERFILE)
    assert daemon.cli("build", "-t", "cachefrom/cli:1", str(tmp_path)).returncode == 0
    ours = daemon.cli(
        "build", "--cache-from", "cachefrom/cli:1", "-t", "cachefrom/cli:2", str(tmp_path)
    )
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout.count("---> Using cache") == 3
    env = {
        **os.environ,
        "DOCKER_HOST": daemon.host,
        "DOCKER_CONFIG": str(daemon.base / "docker"),
        "DOCKER_BUILDKIT": "0",
    }
    theirs = subprocess.run(
        ["docker", "build", "--cache-from", "nosuchtag", "-t", "cachefrom/cli:3", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert theirs.returncode == 0, theirs.stderr
    assert "Using cache" not in theirs.stdout
    for tag in ("1", "2", "3"):
        daemon.cli("rmi", f"cachefrom/cli:{tag}", check=True)
