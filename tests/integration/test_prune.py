"""Prune reports as Docker's: what went, the space it freed, and Docker's filters."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any
from urllib.parse import quote

from tests.harness import Daemon

IMAGE = "demo/busybox:1"


def prune(daemon: Daemon, what: str, filters: dict[str, list[str]]) -> tuple[int, Any]:
    query = quote(json.dumps(filters))
    return daemon.api("POST", f"/v1.45/{what}/prune?filters={query}")


def test_container_prune_reports_the_writable_layers_it_freed(daemon: Daemon, client: Any) -> None:
    token = secrets.token_hex(4)
    labels = {"prune": token}
    writer = client.containers.run(
        IMAGE, ["sh", "-c", "head -c 100000 /dev/zero > /data.bin"], labels=labels, detach=True
    )
    quiet = client.containers.run(IMAGE, "true", labels=labels, detach=True)
    runner = client.containers.run(IMAGE, "sleep 300", labels=labels, detach=True)
    writer.wait()
    quiet.wait()
    try:
        report = client.containers.prune(filters={"label": f"prune={token}"})
        assert sorted(report["ContainersDeleted"]) == sorted([writer.id, quiet.id])
        # The file written plus the few bytes the runtime leaves (mountpoints are empty).
        assert 100_000 <= report["SpaceReclaimed"] < 110_000
        assert runner.id in [
            c.id for c in client.containers.list(filters={"label": f"prune={token}"})
        ]
    finally:
        runner.remove(force=True)
    # Nothing left to prune: Docker's null list and zero.
    status, body = prune(daemon, "containers", {"label": [f"prune={token}"]})
    assert (status, body) == (200, {"ContainersDeleted": None, "SpaceReclaimed": 0})


def test_container_prune_filters(daemon: Daemon, client: Any) -> None:
    token = secrets.token_hex(4)
    keep = client.containers.create(IMAGE, "true", labels={"prune": token, "keep": "yes"})
    drop = client.containers.create(IMAGE, "true", labels={"prune": token})
    try:
        # Created more than an hour ago, or before 2001: none of them.
        for until in ("1h", "2001-01-01T00:00:00Z", "978307200"):
            status, body = prune(
                daemon, "containers", {"label": [f"prune={token}"], "until": [until]}
            )
            assert status == 200 and body["ContainersDeleted"] is None, (until, body)
        # `label!`: all but those with the label.
        status, body = prune(
            daemon,
            "containers",
            {"label": [f"prune={token}"], "label!": ["keep"], "until": [f"{time.time() + 5:.3f}"]},
        )
        assert status == 200 and body["ContainersDeleted"] == [drop.id]
        assert [
            c.id for c in client.containers.list(all=True, filters={"label": f"prune={token}"})
        ] == [keep.id]
    finally:
        keep.remove(force=True)
    # Docker's refusals.
    status, body = prune(daemon, "containers", {"colour": ["red"]})
    assert (status, body["message"]) == (400, "invalid filter 'colour'")
    status, body = prune(daemon, "containers", {"until": ["1h", "2h"]})
    assert (status, body["message"]) == (400, "more than one until filter specified")
    status, body = prune(daemon, "containers", {"until": ["yesterday"]})
    assert status == 400
    assert body["message"] == 'failed to parse value as time or duration: "yesterday"'


def test_docker_cli_container_prune(daemon: Daemon, name: str) -> None:
    made = daemon.docker(
        "run", "--name", name, "--label", f"cli={name}", IMAGE, "sh", "-c", "echo hi > /f"
    )
    assert made.returncode == 0, made.stderr
    result = daemon.docker("container", "prune", "-f", "--filter", f"label=cli={name}")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Deleted Containers:" and len(lines[1]) == 64
    assert lines[-1].startswith("Total reclaimed space: ") and not lines[-1].endswith(" 0B")


def test_other_prune_replies_have_dockers_shape(daemon: Daemon) -> None:
    nothing = {"label": [f"none-has-{secrets.token_hex(4)}"]}
    assert prune(daemon, "images", nothing) == (200, {"ImagesDeleted": None, "SpaceReclaimed": 0})
    assert prune(daemon, "volumes", nothing) == (
        200,
        {"VolumesDeleted": None, "SpaceReclaimed": 0},
    )
    assert prune(daemon, "networks", nothing) == (200, {"NetworksDeleted": None})
    status, body = daemon.api("POST", "/v1.45/build/prune?keep-storage=1099511627776")
    assert status == 200 and body == {"CachesDeleted": None, "SpaceReclaimed": 0}
    for what in ("images", "networks"):
        status, body = prune(daemon, what, {"colour": ["red"]})
        assert (status, body["message"]) == (400, "invalid filter 'colour'"), what


def test_docker_cli_container_prune_honours_until_and_label(own_daemon: Daemon) -> None:
    daemon = own_daemon

    def stopped() -> set[str]:
        out = daemon.docker("ps", "-a", "-q", "--no-trunc").stdout.split()
        return set(out)

    old = daemon.docker("create", "--label", "keep=1", IMAGE, "true").stdout.strip()
    new = daemon.docker("create", IMAGE, "true").stdout.strip()
    assert old and new
    # nothing here is older than a day: nothing goes
    result = daemon.docker("container", "prune", "-f", "--filter", "until=24h")
    assert result.returncode == 0, result.stderr
    assert stopped() == {old, new}
    # only what is labelled keep=1
    result = daemon.docker("container", "prune", "-f", "--filter", "label=keep=1")
    assert result.returncode == 0, result.stderr
    assert old in result.stdout
    assert stopped() == {new}
    # label!= keeps what carries the label; until in the future takes the rest
    kept = daemon.docker("create", "--label", "keep=1", IMAGE, "true").stdout.strip()
    result = daemon.docker("container", "prune", "-f", "--filter", "label!=keep=1")
    assert result.returncode == 0, result.stderr
    assert stopped() == {kept}
    time.sleep(1.1)  # `until` has a resolution of a second
    result = daemon.docker("container", "prune", "-f", "--filter", f"until={int(time.time())}")
    assert result.returncode == 0, result.stderr
    assert stopped() == set()
