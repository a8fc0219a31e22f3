"""The create request as clients send it and inspect as they read it back (typed models)."""

from __future__ import annotations

import json
from typing import Any

from tests.harness import Daemon

IMAGE = "demo/busybox:1"


def create(daemon: Daemon, name: str, body: dict[str, Any], version: str = "1.45") -> str:
    status, reply = daemon.api(
        "POST", f"/v{version}/containers/create?name={name}", {"Image": IMAGE, **body}
    )
    assert status == 201, reply
    return str(reply["Id"])


def inspect(daemon: Daemon, ref: str) -> dict[str, Any]:
    status, data = daemon.api("GET", f"/v1.45/containers/{ref}/json")
    assert status == 200, data
    return dict(data)


def test_inspect_echoes_what_was_sent_and_null_for_what_was_not(daemon: Daemon, name: str) -> None:
    create(
        daemon,
        name,
        {
            "Cmd": ["true"],
            "HostConfig": {"CapAdd": ["SYS_ADMIN"], "CapDrop": ["net_raw"], "DnsSearch": []},
            "unknownField": 1,  # Go's decoder drops what it does not know
        },
    )
    try:
        data = inspect(daemon, name)
        host_config = data["HostConfig"]
        assert host_config["CapAdd"] == ["SYS_ADMIN"]  # as written, not CAP_SYS_ADMIN
        assert host_config["CapDrop"] == ["net_raw"]
        assert host_config["Dns"] is None and host_config["Binds"] is None
        assert host_config["DnsSearch"] == []
        assert host_config["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
        assert "unknownField" not in data["Config"]
        # The capabilities still take effect, however they are spelled.
        assert daemon.cli("start", name).returncode == 0
    finally:
        daemon.cli("rm", "-f", name)


def test_keys_in_any_case_and_wrong_types_as_go_decodes_them(daemon: Daemon, name: str) -> None:
    create(daemon, name, {"cmd": "true", "hostconfig": {"memory": 64 << 20}})
    try:
        data = inspect(daemon, name)
        assert data["Config"]["Cmd"] == ["true"]  # a string is a one-word StrSlice
        assert data["HostConfig"]["Memory"] == 64 << 20
    finally:
        daemon.cli("rm", "-f", name)
    status, reply = daemon.api(
        "POST", "/v1.45/containers/create", {"Image": IMAGE, "HostConfig": {"Memory": "64m"}}
    )
    assert status == 400
    assert reply["message"].startswith("invalid JSON: json: cannot unmarshal string into")
    assert "HostConfig.Memory" in reply["message"]


def test_gpus_are_refused_rather_than_silently_ignored(daemon: Daemon, name: str) -> None:
    result = daemon.docker("run", "--rm", "--name", name, "--gpus", "all", IMAGE, "true")
    assert result.returncode != 0
    assert 'could not select device driver "" with capabilities: [[gpu]]' in result.stderr
    assert daemon.api("GET", f"/v1.45/containers/{name}/json")[0] == 404  # nothing was made


def test_an_empty_entrypoint_resets_the_images(daemon: Daemon, name: str) -> None:
    build = daemon.cli(
        "build",
        "-t",
        f"{name}-img",
        "-",
        input=f'FROM {IMAGE}\nENTRYPOINT ["echo", "from-entrypoint"]\n'.encode(),
    )
    assert build.returncode == 0, build.stderr
    try:
        result = daemon.docker("run", "--rm", "--entrypoint", "", f"{name}-img", "echo", "plain")
        assert (result.returncode, result.stdout) == (0, "plain\n"), result.stderr
    finally:
        daemon.cli("rmi", f"{name}-img")


def test_env_entries_without_a_value_stay_in_config_only(daemon: Daemon, name: str) -> None:
    create(daemon, name, {"Cmd": ["env"], "Env": ["NOVALUE", "SET=1"]})
    try:
        assert "NOVALUE" in inspect(daemon, name)["Config"]["Env"]
        result = daemon.cli("start", "-a", name)
        assert result.returncode == 0, result.stderr
        assert "SET=1" in result.stdout and "NOVALUE" not in result.stdout
    finally:
        daemon.cli("rm", "-f", name)


def test_old_clients_get_shareable_ipc_and_bad_isolation_is_refused(
    daemon: Daemon, name: str
) -> None:
    create(daemon, name, {"Cmd": ["true"]}, version="1.39")
    try:
        assert inspect(daemon, name)["HostConfig"]["IpcMode"] == "shareable"
    finally:
        daemon.cli("rm", "-f", name)
    create(daemon, name, {"Cmd": ["true"]})
    try:
        assert inspect(daemon, name)["HostConfig"]["IpcMode"] == "private"
    finally:
        daemon.cli("rm", "-f", name)
    status, reply = daemon.api(
        "POST", "/v1.45/containers/create", {"Image": IMAGE, "HostConfig": {"Isolation": "hyperv"}}
    )
    assert (status, reply["message"]) == (400, "invalid isolation: hyperv on linux")


def test_the_container_wide_mac_address_moves_to_the_endpoint(daemon: Daemon, name: str) -> None:
    mac = "02:42:ac:11:00:0a"
    create(daemon, name, {"Cmd": ["cat", "/sys/class/net/eth0/address"], "MacAddress": mac})
    try:
        result = daemon.cli("start", "-a", name)
        assert (result.returncode, result.stdout.strip()) == (0, mac), result.stderr
        networks = inspect(daemon, name)["NetworkSettings"]["Networks"]
        assert json.dumps(networks).count(mac) >= 1
    finally:
        daemon.cli("rm", "-f", name)
    status, reply = daemon.api(
        "POST",
        "/v1.45/containers/create",
        {
            "Image": IMAGE,
            "MacAddress": mac,
            "NetworkingConfig": {
                "EndpointsConfig": {"default": {"MacAddress": "02:42:ac:11:00:0b"}}
            },
        },
    )
    assert status == 400 and "must match the endpoint-specific MAC address" in reply["message"]
