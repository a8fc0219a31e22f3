"""The API surface every client relies on: ping, versions, info, errors."""

from __future__ import annotations

from tests.harness import Daemon


def test_ping_get_and_head(daemon: Daemon) -> None:
    status, body = daemon.api("GET", "/_ping")
    assert (status, body) == (200, b"OK")
    status, body = daemon.api("HEAD", "/v1.45/_ping")
    assert status == 200 and body == b""


def test_version_is_accepted_by_docker_cli_and_docker_py(daemon: Daemon, client) -> None:
    assert client.version()["ApiVersion"] == "1.45"
    result = daemon.docker("version", "--format", "{{.Server.APIVersion}} {{.Client.APIVersion}}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1.45", "1.45"]


def test_info_reports_runtime_and_cgroup_mode(daemon: Daemon) -> None:
    result = daemon.cli("info")
    assert result.returncode == 0, result.stderr
    assert "Default Runtime: " in result.stdout
    assert "Cgroup Version: " in result.stdout
    status, info = daemon.api("GET", "/info")
    assert status == 200
    assert info["DefaultRuntime"] in info["Runtimes"]
    assert info["CgroupMode"] in ("v1", "hybrid", "v2")
    assert info["Swarm"]["LocalNodeState"] == "inactive"


def test_versioned_paths_outside_the_range_are_refused(daemon: Daemon) -> None:
    status, body = daemon.api("GET", "/v1.51/version")
    assert status == 400 and "too new" in body["message"]
    status, body = daemon.api("GET", "/v1.12/version")
    assert status == 400 and "too old" in body["message"]
    assert daemon.api("GET", "/v1.24/version")[0] == 200


def test_unknown_endpoint_is_a_json_404(daemon: Daemon) -> None:
    status, body = daemon.api("GET", "/v1.45/nothing/here")
    assert status == 404
    assert body == {"message": "page not found"}


def test_malformed_json_is_a_400_without_traceback(daemon: Daemon) -> None:
    status, body = daemon.api(
        "POST", "/v1.45/containers/create", b"{not json", {"Content-Type": "application/json"}
    )
    assert status == 400
    assert body["message"].startswith("invalid JSON")
    assert "Traceback" not in body["message"]
    status, body = daemon.api("POST", "/v1.45/containers/create", [1, 2])
    assert status == 400


def test_swarm_endpoints_say_not_a_manager(daemon: Daemon) -> None:
    status, body = daemon.api("GET", "/v1.45/services")
    assert status == 503 and "not a swarm manager" in body["message"]


def test_every_reply_carries_docker_headers(daemon: Daemon) -> None:
    import http.client
    import socket

    class Conn(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(daemon.socket)

    conn = Conn("x")
    conn.request("GET", "/v1.45/containers/nope/json")
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 404
    assert resp.getheader("Content-Type") == "application/json"
    assert resp.getheader("Api-Version") == "1.45"
    assert resp.getheader("Server").endswith("(linux)")
    assert resp.getheader("Ostype") == "linux"
