"""Compose projects beyond `up`/`down`, with the real compose v1 (1.29) and v2 (2.26).

Recreation: when a service's configuration changes, `up` replaces its container and
hands the old container's anonymous volumes to the new one, so data in an image's
`VOLUME` survives. Compose v2 passes them as `HostConfig.Mounts`; compose v1 finds
them through the image's `ContainerConfig.Volumes` (image inspect up to API 1.44)
and passes them as `Binds`.

A multi-service project: a service that waits for its dependency's healthcheck
(`depends_on: condition: service_healthy`), a legacy link, `exec -T`, and in compose v2
`cp` and `stats`.
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


PROJECT_FILE = """\
services:
  db:
    image: demo/busybox:1
    command: sh -c "sleep 2; touch /tmp/ready; exec sleep 300"
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s
      timeout: 2s
      retries: 60
  app:
    image: demo/busybox:1
    command: sleep 300
    depends_on:
      db:
        condition: service_healthy
    links:
      - db:database
"""


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_multi_service_project_with_a_healthy_dependency_and_links(
    daemon: Daemon, client: Any, tmp_path: Path, version: str
) -> None:
    project = "app" + secrets.token_hex(4)
    compose = [*ecosystem.compose_command(version), "-p", project]
    (tmp_path / "docker-compose.yml").write_text(PROJECT_FILE)

    def run(*args: str) -> Any:
        return ecosystem.run_client(daemon, [*compose, *args], cwd=tmp_path)

    try:
        up = run("up", "-d")
        assert up.returncode == 0, up.stderr
        containers = {
            c.labels["com.docker.compose.service"]: c for c in project_containers(client, project)
        }
        db, app = containers["db"], containers["app"]
        # `up` started the app only once the database reported healthy.
        assert db.attrs["State"]["Health"]["Status"] == "healthy"
        first_success = min(
            entry["End"] for entry in db.attrs["State"]["Health"]["Log"] if entry["ExitCode"] == 0
        )
        assert app.attrs["State"]["StartedAt"] > first_success
        # The link's alias resolves for the app; exec -T runs without a terminal.
        looked_up = run("exec", "-T", "app", "nslookup", "database")
        assert looked_up.returncode == 0, looked_up.stdout + looked_up.stderr
        said = run("exec", "-T", "app", "sh", "-c", "echo from-exec")
        assert (said.returncode, said.stdout) == (0, "from-exec\n"), said.stderr
        if version == "v2":  # cp and stats exist in compose v2 only
            (tmp_path / "note").write_text("copied in\n")
            assert run("cp", str(tmp_path / "note"), "app:/tmp/note").returncode == 0
            back = run("exec", "-T", "app", "cat", "/tmp/note")
            assert back.stdout == "copied in\n", back.stderr
            assert run("cp", "app:/tmp/note", str(tmp_path / "out")).returncode == 0
            assert (tmp_path / "out").read_text() == "copied in\n"
            stats = run("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}")
            assert stats.returncode == 0, stats.stderr
            names = {line.split()[0] for line in stats.stdout.splitlines() if line.strip()}
            assert names == {db.name, app.name}, stats.stdout
            assert "MiB" in stats.stdout or "KiB" in stats.stdout
    finally:
        down = run("down", "-v")
    assert down.returncode == 0, down.stderr
    assert project_containers(client, project) == []
