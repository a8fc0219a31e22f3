"""The BuildKit endpoint (`/grpc`), driven by the real buildx (0.13, Debian's package).

buildx dials `/grpc` to choose its driver: when the engine answers the upgrade, the
default builder of a docker context is the engine itself (driver "docker"), as with
Docker; `ls`, `inspect`, `du` and `prune` then call the control service over it.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import h2.config
import h2.connection
import h2.events
import pytest

from dockyard.buildkit import rpc
from dockyard.buildkit.pb import control_pb2
from tests import ecosystem
from tests.harness import Daemon, new_base


def classic_build(daemon: Daemon, context: Path) -> None:
    """`docker build` with the classic builder (the path that fills the cache today)."""
    env = {**ecosystem.client_env(daemon), "DOCKER_BUILDKIT": "0"}
    result = subprocess.run(
        ["docker", "build", "-q", str(context)], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def buildx(daemon: Daemon, *args: str) -> str:
    result = ecosystem.run_client(daemon, ["docker", "buildx", *args])
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_buildx_ls_shows_the_engine_as_a_running_docker_builder(daemon: Daemon) -> None:
    out = buildx(daemon, "ls")
    lines = [line for line in out.splitlines() if line.strip()]
    # the default builder (named after the docker context) and its one node
    builder = next(line for line in lines if line.startswith("default"))
    assert re.search(r"\bdocker\b", builder), out
    node = lines[lines.index(builder) + 1]
    assert "running" in node, out
    assert "linux/" in node, out
    assert "error" not in out.lower(), out


def test_buildx_inspect_reports_driver_status_platform_and_version(daemon: Daemon) -> None:
    out = buildx(daemon, "inspect")
    fields = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition(":") for line in out.splitlines())
        if value
    )
    assert fields["Driver"] == "docker", out
    assert fields["Status"] == "running", out
    assert fields["Platforms"].startswith("linux/"), out
    assert fields["BuildKit version"], out
    assert "Error" not in fields, out


def test_buildx_du_lists_the_classic_builders_cache(daemon: Daemon, tmp_path: Path) -> None:
    marker = "du-" + tmp_path.name[-8:]
    (tmp_path / "Dockerfile").write_text(
        f"FROM demo/busybox:1\nRUN echo {marker} > /marker && head -c 300000 /dev/zero > /blob\n"
    )
    classic_build(daemon, tmp_path)

    out = buildx(daemon, "du", "--verbose")
    records = [block for block in out.split("\n\n") if marker in block]
    assert len(records) == 1, out
    record = dict(
        (k.strip(), v.strip())
        for k, _, v in (line.partition(":") for line in records[0].splitlines())
    )
    assert record["Reclaimable"] == "true"
    assert record["Type"] == "regular"
    assert record["Size"].endswith("kB") or record["Size"].endswith("MB"), record

    summary = buildx(daemon, "du")
    assert "Reclaimable:" in summary and "Total:" in summary, summary


def test_buildx_prune_frees_the_records_it_names(own_daemon: Daemon, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM demo/busybox:1\nRUN head -c 200000 /dev/zero > /blob\n"
    )
    classic_build(own_daemon, tmp_path)
    status, usage = own_daemon.api("GET", "/v1.45/system/df?type=build-cache")
    assert status == 200
    cached = {record["ID"]: record for record in usage["BuildCache"]}
    assert any(r["Size"] >= 200000 for r in cached.values()), usage
    assert build_cache_row(own_daemon)["TotalCount"] == str(len(cached))

    out = buildx(own_daemon, "prune", "-f", "--verbose")
    assert "Total:" in out, out
    assert "head -c 200000 /dev/zero" in out, out
    assert not re.search(r"Total:\s+0B", out), out

    # nothing is left: du lists no record, a second prune frees nothing
    assert "head -c 200000" not in buildx(own_daemon, "du", "--verbose")
    again = buildx(own_daemon, "prune", "-f")
    assert re.search(r"Total:\s+0B", again), again
    # the engine's own disk usage report sees the same cache, now empty
    assert all(record_id in out for record_id in cached)
    assert own_daemon.api("GET", "/v1.45/system/df?type=build-cache")[1]["BuildCache"] == []
    assert build_cache_row(own_daemon) == {
        "Type": "Build Cache",
        "TotalCount": "0",
        "Active": "0",
        "Size": "0B",
        "Reclaimable": "0B",
    }


def build_cache_row(daemon: Daemon) -> dict[str, str]:
    df = daemon.cli("system", "df", "--format", "json")
    assert df.returncode == 0, df.stderr
    rows = [json.loads(line) for line in df.stdout.splitlines()]
    return next(row for row in rows if row["Type"] == "Build Cache")


def test_buildx_prune_filter_that_does_not_parse_is_refused(daemon: Daemon) -> None:
    result = ecosystem.run_client(
        daemon, ["docker", "buildx", "prune", "-f", "--filter", "color=blue"]
    )
    assert result.returncode != 0
    assert "invalid filter" in result.stderr, result.stderr


def _raw_post(
    daemon: Daemon, headers: dict[str, str], path: str = "/grpc"
) -> tuple[int, dict[str, Any]]:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(daemon.socket)
        lines = [f"POST {path} HTTP/1.1", "Host: docker", "Content-Length: 0"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    return status, json.loads(body[body.index(b"{") :]) if b"{" in body else {}


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "no upgrade proto in request"),
        ({"Connection": "Upgrade", "Upgrade": "tcp"}, "protocol tcp not supported"),
    ],
)
def test_grpc_without_an_h2c_upgrade_is_refused_as_by_docker(
    daemon: Daemon, headers: dict[str, str], message: str
) -> None:
    status, body = _raw_post(daemon, headers)
    assert status == 500
    assert body["message"] == message


def test_docker_build_through_buildx_builds_in_the_engine(
    daemon: Daemon, client: Any, tmp_path: Path
) -> None:
    """With buildx installed `docker build` is `docker buildx build`: the engine's BuildKit
    door builds it (never a pull of a BuildKit image from a registry), and the build's
    steps leave no container behind. (`test_buildkit_build.py` covers builds in depth.)"""
    (tmp_path / "Dockerfile").write_text("FROM demo/busybox:1\nRUN touch /x\n")
    containers = {c.id for c in client.containers.list(all=True)}

    result = ecosystem.run_client(daemon, ["docker", "build", "-t", "bk/endpoint:1", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    assert "docker driver" in result.stderr
    assert "registry-1.docker.io" not in result.stderr
    assert "moby/buildkit" not in result.stderr
    assert client.images.get("bk/endpoint:1").attrs["Config"]
    assert {c.id for c in client.containers.list(all=True)} == containers


def test_solving_a_frontend_or_definition_directly_is_refused(daemon: Daemon) -> None:
    """BuildKit clients other than buildx's gateway path (`buildctl build --frontend`)
    get a plain answer, not a hang."""
    result = _grpc_unary(
        daemon,
        "/moby.buildkit.v1.Control/Solve",
        control_pb2.SolveRequest(Ref="direct", Frontend="dockerfile.v0").SerializeToString(),
    )
    assert result[0] == rpc.Status.UNIMPLEMENTED
    assert "frontend bridge that buildx drives" in result[1]


def _grpc_unary(daemon: Daemon, method: str, request: bytes) -> tuple[int, str]:
    """One unary call over `/grpc` with h2's client; the status and message."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(daemon.socket)
        sock.sendall(
            b"POST /grpc HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        conn.initiate_connection()
        stream = conn.get_next_available_stream_id()
        conn.send_headers(
            stream,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", method),
                (":authority", "docker"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ],
        )
        conn.send_data(stream, rpc.frame(request), end_stream=True)
        sock.sendall(conn.data_to_send())
        trailers: dict[str, str] = {}
        while "grpc-status" not in trailers:
            data = sock.recv(65536)
            assert data, trailers
            for event in conn.receive_data(data):
                if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    trailers.update({str(k): str(v) for k, v in event.headers})
            sock.sendall(conn.data_to_send())
    return int(trailers["grpc-status"]), unquote(trailers.get("grpc-message", ""))


def _raw_session(daemon: Daemon, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    return _raw_post(daemon, headers, path="/session")


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"X-Docker-Expose-Session-Uuid": "s1"}, "no upgrade proto in request"),
        (
            {"X-Docker-Expose-Session-Uuid": "s1", "Connection": "Upgrade", "Upgrade": "tcp"},
            "protocol tcp not supported",
        ),
    ],
)
def test_session_without_an_h2c_upgrade_is_refused_as_by_docker(
    daemon: Daemon, headers: dict[str, str], message: str
) -> None:
    status, body = _raw_session(daemon, headers)
    assert status == 400
    assert body["message"] == message


def test_a_session_id_in_use_is_refused(daemon: Daemon) -> None:
    headers = {"X-Docker-Expose-Session-Uuid": "twice", "Connection": "Upgrade", "Upgrade": "h2c"}
    with socket.socket(socket.AF_UNIX) as first:
        first.connect(daemon.socket)
        lines = [
            "POST /session HTTP/1.1",
            "Host: docker",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        first.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        assert first.recv(65536).startswith(b"HTTP/1.1 101")
        status, body = _raw_session(daemon, headers)
        assert status == 400
        assert body["message"] == "session twice already exists"
    # once the first connection is gone, the ID is free again
    for _ in range(100):
        with socket.socket(socket.AF_UNIX) as again:
            again.connect(daemon.socket)
            again.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            if again.recv(65536).startswith(b"HTTP/1.1 101"):
                break
    else:
        raise AssertionError("the session ID stayed taken after its connection closed")


@pytest.mark.parametrize(("features", "advertised"), [(None, "1"), ({"buildkit": True}, "2")])
def test_ping_advertises_buildkit_only_when_the_daemon_is_configured_to(
    tmp_path: Path, features: dict[str, bool] | None, advertised: str
) -> None:
    own = Daemon(new_base())
    if features is not None:
        own.config["features"] = features
    own.start()
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(own.socket)
            sock.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        assert f"Builder-Version: {advertised}\r\n".encode() in reply, reply
    finally:
        own.cleanup()
