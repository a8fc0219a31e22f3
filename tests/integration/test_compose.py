"""Compose projects beyond `up`/`down`, with the real compose v1 (1.29) and v2 (2.26).

Recreation: when a service's configuration changes, `up` replaces its container and
hands the old container's anonymous volumes to the new one, so data in an image's
`VOLUME` survives. Compose v2 passes them as `HostConfig.Mounts`; compose v1 finds
them through the image's `ContainerConfig.Volumes` (image inspect up to API 1.44)
and passes them as `Binds`.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from tests import ecosystem
from tests.harness import Daemon

COMPOSE_FILE = """\
services:
  store:
    image: {image}
    command: sleep 300
    environment:
      GENERATION: "{generation}"
"""


@pytest.fixture(scope="module")
def volume_image(daemon: Daemon, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An image that declares a VOLUME, built by the classic builder."""
    context = tmp_path_factory.mktemp("volume-image")
    (context / "Dockerfile").write_text("FROM demo/busybox:1\nVOLUME /data\n")
    built = daemon.cli("build", "-t", "compose/volume:1", str(context))
    assert built.returncode == 0, built.stderr
    return "compose/volume:1"


def project_containers(client: Any, project: str) -> list[Any]:
    return client.containers.list(
        all=True, filters={"label": f"com.docker.compose.project={project}"}
    )


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_recreation_keeps_the_data_of_image_volumes(
    daemon: Daemon, client: Any, tmp_path: Path, volume_image: str, version: str
) -> None:
    project = "rec" + secrets.token_hex(4)
    compose = [*ecosystem.compose_command(version), "-p", project]
    compose_file = tmp_path / "docker-compose.yml"

    def up(generation: int) -> Any:
        compose_file.write_text(COMPOSE_FILE.format(image=volume_image, generation=generation))
        result = ecosystem.run_client(daemon, [*compose, "up", "-d"], cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        (container,) = project_containers(client, project)
        return container

    try:
        first = up(1)
        written = first.exec_run(["sh", "-c", "echo kept > /data/file"])
        assert written.exit_code == 0, written.output
        (volume,) = [m["Name"] for m in first.attrs["Mounts"] if m["Destination"] == "/data"]

        second = up(2)  # the environment changed: compose recreates the container
        assert second.id != first.id
        assert "GENERATION=2" in second.attrs["Config"]["Env"]
        assert [m["Name"] for m in second.attrs["Mounts"] if m["Destination"] == "/data"] == [
            volume
        ]
        read = second.exec_run(["cat", "/data/file"])
        assert (read.exit_code, read.output) == (0, b"kept\n")
    finally:
        down = ecosystem.run_client(daemon, [*compose, "down", "-v"], cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert project_containers(client, project) == []
    # As with Docker, `down -v` leaves it: the new container named it (`rm -v` takes
    # only volumes a container created itself).
    client.volumes.get(volume).remove()
