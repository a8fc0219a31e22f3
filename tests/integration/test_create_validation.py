"""Create requests the runtime would refuse at start are refused at create, with a 400.

Whatever a client sends to `POST /containers/create`, the answer is 201 or a 4xx
with Docker's message, never a 500, and nothing is left behind; values the
kernel or the runtime cannot take (a negative memory limit, a hostname longer
than the kernel's, a sysctl of the host's, a number larger than Go's int64)
are refused before anything is made, not found out at `start`.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.harness import Daemon

IMAGE = "demo/busybox:1"


def create(daemon: Daemon, body: dict[str, Any] | bytes) -> tuple[int, Any]:
    if isinstance(body, bytes):
        return daemon.api(
            "POST", "/v1.45/containers/create", body, {"Content-Type": "application/json"}
        )
    return daemon.api("POST", "/v1.45/containers/create", {"Image": IMAGE, "Cmd": ["true"], **body})


def names(daemon: Daemon) -> set[str]:
    status, listed = daemon.api("GET", "/v1.45/containers/json?all=1")
    assert status == 200
    return {n for c in listed for n in c["Names"]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"HostConfig": "memory=64m"},
            "invalid JSON: json: cannot unmarshal string into HostConfig",
        ),
        ({"HostConfig": ["x"]}, "invalid JSON: json: cannot unmarshal array into HostConfig"),
        ({"NetworkingConfig": 7}, "invalid JSON: json: cannot unmarshal number into Networking"),
        (
            b"[" * 10_000 + b"]" * 10_000,
            "invalid JSON: exceeded max depth",
        ),
        (
            b'{"Image": "x", "Labels": {"a": ' + b"[" * 10_000 + b"]" * 10_000 + b"}}",
            "invalid JSON: exceeded max depth",
        ),
        (
            {"HostConfig": {"Memory": 1e30}},
            "invalid JSON: json: cannot unmarshal number 1e+30 into HostConfig.Memory of type "
            "int64",
        ),
        (
            {"HostConfig": {"CpuShares": 2**63}},
            "into HostConfig.CpuShares of type int64",
        ),
        (
            {"HostConfig": {"Ulimits": [{"Name": "nofile", "Soft": 1, "Hard": 2**64}]}},
            "into HostConfig.Ulimits[0].Hard of type int64",
        ),
        (
            {
                "HostConfig": {
                    "Mounts": [{"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"Mode": 2**40}}]
                }
            },
            "into HostConfig.Mounts[0].TmpfsOptions.Mode of type uint32",
        ),
        (
            {"HostConfig": {"BlkioWeightDevice": [{"Path": "/dev/null", "Weight": 70000}]}},
            "of type uint16",
        ),
        ({"HostConfig": {"Memory": -5}}, "Minimum memory limit allowed is 6MB"),
        ({"HostConfig": {"MemoryReservation": 5}}, "Minimum memory reservation allowed is 6MB"),
        ({"HostConfig": {"MemoryReservation": -5}}, "Minimum memory reservation allowed is 6MB"),
        (
            {"HostConfig": {"Memory": 64 << 20, "MemorySwap": -5}},
            "invalid MemorySwap -5: -1 (unlimited) is the only negative value allowed",
        ),
        (
            {"Hostname": "h" * 1000},
            f'hostname "{"h" * 1000}" is too long (maximum 64 bytes)',
        ),
        (
            {"HostConfig": {"Sysctls": {"kernel.panic": "1"}}},
            'sysctl "kernel.panic" is not in a separate kernel namespace',
        ),
        (
            {"HostConfig": {"NetworkMode": "host", "Sysctls": {"net.ipv4.ip_forward": "1"}}},
            'sysctl "net.ipv4.ip_forward" not allowed in host network namespace',
        ),
        (
            {"HostConfig": {"IpcMode": "host", "Sysctls": {"kernel.shmmax": "1"}}},
            'sysctl "kernel.shmmax" is not allowed in the hosts ipc namespace',
        ),
        (
            {"HostConfig": {"IOMaximumIOps": 5}},
            "Invalid QoS settings: linux does not support Maximum IO Bandwidth or Maximum IO IOps",
        ),
        (
            {"HostConfig": {"CpusetMems": "0-99"}},
            "Requested memory nodes are not available - requested 0-99, available: ",
        ),
        (
            {"HostConfig": {"Binds": ["v" * 300 + ":/data"]}},
            "volume name is too long",
        ),
        (
            {"HostConfig": {"Mounts": [{"Type": "volume", "Source": "w" * 300, "Target": "/d"}]}},
            "volume name is too long",
        ),
        (
            {"HostConfig": {"Ulimits": [{"Name": "nofile", "Soft": 2**40, "Hard": 2**40}]}},
            "ulimit nofile: 1099511627776 is more than the kernel allows (fs.nr_open = ",
        ),
        (
            {"HostConfig": {"PidsLimit": 2**40}},
            "invalid PidsLimit 1099511627776: the kernel allows at most 4194304",
        ),
        ({"Cmd": ["a" * 5000]}, "is longer than the kernel allows for a program path"),
        ({"Cmd": ["sh", "a" * 200_000]}, "is longer than the kernel allows for one argument"),
        ({"WorkingDir": "/" + "a" * 5000}, "is longer than the kernel allows for a path"),
        ({"HostConfig": {"CgroupParent": "c" * 300}}, "invalid cgroup parent"),
        (
            {"HostConfig": {"SecurityOpt": ["seccomp={not json"]}},
            "Decoding seccomp profile failed",
        ),
    ],
)
def test_bad_create_requests_are_400s_and_leave_nothing(
    daemon: Daemon, body: dict[str, Any] | bytes, message: str
) -> None:
    before = names(daemon)
    status, reply = create(daemon, body)
    assert status == 400, reply
    assert message in reply["message"]
    assert names(daemon) == before


def test_a_cpuset_beyond_any_machine_is_refused_without_listing_it(daemon: Daemon) -> None:
    # 10^12 CPUs: expanding the list would take the daemon's memory; Docker caps it at 8192.
    status, reply = create(daemon, {"HostConfig": {"CpusetCpus": "0-999999999999"}})
    assert status == 400
    assert reply["message"] == (
        "Invalid value 0-999999999999 for cpuset cpus: value of out range, maximum is 8192"
    )
    assert daemon.api("GET", "/_ping")[0] == 200


def test_a_valid_request_near_the_limits_still_runs(daemon: Daemon, name: str) -> None:
    status, reply = daemon.api(
        "POST",
        f"/v1.45/containers/create?name={name}",
        {
            "Image": IMAGE,
            "Cmd": ["sh", "-c", "hostname; cat /proc/sys/kernel/shmmax"],
            "Hostname": "h" * 64,
            "HostConfig": {
                "Memory": 64 << 20,
                "MemorySwap": -1,
                "MemoryReservation": 32 << 20,
                "Sysctls": {"kernel.shmmax": "123456789", "net.ipv4.tcp_syncookies": "0"},
                "BlkioWeight": 0,
            },
        },
    )
    assert status == 201, reply
    try:
        assert daemon.cli("start", "-a", name).stdout.split() == ["h" * 64, "123456789"]
    finally:
        daemon.cli("rm", "-f", name)


def test_volume_create_with_an_overlong_name_is_a_400(daemon: Daemon) -> None:
    status, reply = daemon.api("POST", "/v1.45/volumes/create", {"Name": "v" * 300})
    assert status == 400
    assert reply["message"] == (
        f"create {'v' * 300}: volume name is too long, names should be at most 255 characters"
    )
    status, listed = daemon.api("GET", "/v1.45/volumes")
    assert "v" * 300 not in {v["Name"] for v in listed["Volumes"]}


def test_every_json_body_and_query_decoding_error_is_a_400(daemon: Daemon) -> None:
    deep = "[" * 1200 + "]" * 1200  # as deep as a request line (8 KiB) can carry
    filters = json.dumps({"label": ["x"]})[:-1] + ', "deep": ' + deep + "}"
    for method, path, body in (
        ("POST", "/v1.45/volumes/create", b"[" * 5000 + b"]" * 5000),
        (
            "POST",
            "/v1.45/networks/create",
            b'{"Name": "n", "Options": ' + b"[" * 9000 + b"]" * 9000 + b"}",
        ),
        ("GET", "/v1.45/containers/json?filters=" + _quote(filters), None),
        ("POST", "/v1.45/containers/create", b"\xff\xfe{}"),
        ("POST", "/v1.45/containers/create", b'{"Image": "x", "StopTimeout": NaN}'),
    ):
        status, reply = daemon.api(method, path, body, {"Content-Type": "application/json"})
        assert status == 400, (path, reply)
        assert isinstance(reply, dict) and reply["message"].startswith("invalid "), (path, reply)
    assert daemon.api("GET", "/_ping")[0] == 200


def _quote(text: str) -> str:
    import urllib.parse

    return urllib.parse.quote(text)
