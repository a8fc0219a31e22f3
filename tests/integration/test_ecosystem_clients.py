"""Compose v1 and v2 and buildx, the real programs, drive a Dockyard daemon.

They come from tests/ecosystem.py (Debian's packages unpacked into a private cache,
compose v1 in a private virtualenv) and run with the daemon's own DOCKER_CONFIG, so
the host's docker configuration is never read or changed.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from tests import ecosystem
from tests.harness import Daemon

IMAGE = "demo/busybox:1"

COMPOSE_FILE = f"""\
services:
  sleeper:
    image: {IMAGE}
    command: sleep 300
"""


def test_compose_v2_and_buildx_run_as_docker_cli_plugins(daemon: Daemon) -> None:
    compose = ecosystem.run_client(daemon, ["docker", "compose", "version"])
    assert compose.returncode == 0, compose.stderr
    assert compose.stdout.startswith("Docker Compose version 2.26.")

    buildx = ecosystem.run_client(daemon, ["docker", "buildx", "version"])
    assert buildx.returncode == 0, buildx.stderr
    assert buildx.stdout.startswith("github.com/docker/buildx 0.13.")

    # The plugins live in the daemon's private config dir, which the harness's own
    # docker CLI runs use too.
    assert (ecosystem.docker_config(daemon) / "cli-plugins" / "docker-compose").exists()
    assert daemon.docker("compose", "version").returncode == 0


def test_compose_v1_runs(daemon: Daemon) -> None:
    result = ecosystem.run_client(daemon, [str(ecosystem.compose_v1()), "version"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("docker-compose version 1.29.2")


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_compose_project_up_ps_down(
    daemon: Daemon, client: Any, tmp_path: Path, version: str
) -> None:
    (tmp_path / "docker-compose.yml").write_text(COMPOSE_FILE)
    project = "eco" + secrets.token_hex(4)
    compose = [*ecosystem.compose_command(version), "-p", project]

    up = ecosystem.run_client(daemon, [*compose, "up", "-d"], cwd=tmp_path)
    try:
        assert up.returncode == 0, up.stderr

        ps = ecosystem.run_client(daemon, [*compose, "ps", "-q"], cwd=tmp_path)
        assert ps.returncode == 0, ps.stderr
        ids = ps.stdout.split()
        assert len(ids) == 1
        container = client.containers.get(ids[0])
        assert container.status == "running"
        assert container.labels["com.docker.compose.project"] == project
        assert container.labels["com.docker.compose.service"] == "sleeper"
        assert container.attrs["Config"]["Cmd"] == ["sleep", "300"]
        assert f"{project}_default" in container.attrs["NetworkSettings"]["Networks"]
    finally:
        down = ecosystem.run_client(daemon, [*compose, "down"], cwd=tmp_path)
    assert down.returncode == 0, down.stderr

    labelled = {"label": f"com.docker.compose.project={project}"}
    assert client.containers.list(all=True, filters=labelled) == []
    assert client.networks.list(names=[f"{project}_default"]) == []
    after = ecosystem.run_client(daemon, [*compose, "ps", "-q"], cwd=tmp_path)
    assert after.returncode == 0, after.stderr
    assert after.stdout.split() == []
