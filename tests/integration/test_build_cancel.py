"""A build whose client has gone stops at once: the running step's container is killed
and removed, and nothing of the build is left but what Docker keeps too (with `rm=0`,
the containers of the steps that finished)."""

from __future__ import annotations

import io
import socket
import tarfile
import time

from tests.harness import Daemon

DOCKERFILE = b"FROM demo/busybox:1\nRUN echo first\nRUN echo started && sleep 600\nRUN echo never\n"


def context_tar(dockerfile: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    return buffer.getvalue()


def container_ids(client) -> list[str]:
    return [c["Id"] for c in client.api.containers(all=True)]


def test_a_build_whose_client_went_away_stops_and_cleans_up(daemon: Daemon, client) -> None:
    before = set(container_ids(client))
    body = context_tar(DOCKERFILE)
    # What docker-py's low-level build() sends (rm=0), read as far as the long step.
    conn = socket.socket(socket.AF_UNIX)
    conn.connect(daemon.socket)
    conn.sendall(
        b"POST /v1.45/build?t=gone/rm0:1&rm=0 HTTP/1.1\r\nHost: d\r\n"
        b"Content-Type: application/x-tar\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )
    received = b""
    while b"started" not in received:
        chunk = conn.recv(4096)
        assert chunk, received
        received += chunk
    step_containers = [c for c in client.api.containers(all=True) if c["Id"] not in before]
    running = [c["Id"] for c in step_containers if c["State"] != "exited"]  # the long step's
    kept = [c["Id"] for c in step_containers if c["State"] == "exited"]
    assert len(running) == 1 and len(kept) == 1, step_containers
    conn.close()
    gone_at = time.monotonic()
    # The step sleeps for 10 minutes: it is stopped long before that.
    while running[0] in container_ids(client):
        assert time.monotonic() - gone_at < 60, "the build went on after its client left"
        time.sleep(0.02)
    # The finished step's container stays (rm=0, as Docker keeps it); nothing else does.
    assert [c for c in container_ids(client) if c not in before] == kept
    assert [m for m in daemon.leftovers()["mounts"] if "/build/" in m] == []
    assert list((daemon.data_root / "build").iterdir()) == []
    assert "gone/rm0" not in daemon.cli("images").stdout
    log = daemon.log_path.read_text()
    assert "build client went away" in log
    assert "Traceback" not in log.split("build client went away")[-1]
    client.api.remove_container(kept[0])
