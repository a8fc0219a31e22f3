"""`GET /containers/{id}/stats` on the real host's cgroups, through docker-py, the docker
CLI and our CLI: CPU, memory, pids and network figures that move as the containers do."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from typing import Any

import docker
import pytest

from tests.harness import Daemon

IMAGE = "demo/busybox:1"
MiB = 1 << 20
ZERO_TIME = "0001-01-01T00:00:00Z"
BURN = ["sh", "-c", "while :; do :; done"]


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def run(client, name: str, command: list[str], **kwargs: Any):
    return client.containers.run(IMAGE, command, name=name, detach=True, **kwargs)


def used_memory(stats: dict[str, Any]) -> int:
    """Memory as the docker CLI counts it: usage without the inactive file cache."""
    memory = stats["memory_stats"]
    raw = memory["stats"]
    return memory["usage"] - raw.get("total_inactive_file", raw.get("inactive_file", 0))


def go_time_ns(text: str) -> int:
    """An RFC 3339 time with up to nine fractional digits, in ns since the epoch."""
    import calendar

    whole, _, fraction = text.rstrip("Z").partition(".")
    seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return seconds * 1_000_000_000 + int((fraction or "0").ljust(9, "0"))


# -- docker-py ---------------------------------------------------------------------------


def test_cpu_time_grows_between_two_streamed_samples(client, name: str) -> None:
    container = run(client, name, BURN)
    try:
        samples = container.stats(stream=True, decode=True)
        first, second = next(samples), next(samples)
        samples.close()
        assert first["name"] == f"/{name}" and first["id"] == container.id
        # The first sample of a stream has no previous one; the next carries the first.
        assert first["preread"] == ZERO_TIME
        assert second["preread"] == first["read"]
        assert second["precpu_stats"] == first["cpu_stats"]
        cpu, pre = second["cpu_stats"], second["precpu_stats"]
        elapsed = go_time_ns(second["read"]) - go_time_ns(first["read"])
        assert 0.5e9 < elapsed < 3e9
        # A busy loop keeps one CPU busy: well over a third of the time between samples.
        assert cpu["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"] > elapsed / 3
        assert cpu["system_cpu_usage"] > pre["system_cpu_usage"]
        assert cpu["online_cpus"] == os.cpu_count()
        assert cpu["cpu_usage"]["usage_in_usermode"] > 0
    finally:
        container.remove(force=True)


def test_memory_usage_and_the_memory_limit(client, name: str) -> None:
    # 40 MiB written to the container's /dev/shm (tmpfs) are charged to its cgroup.
    container = run(
        client,
        name,
        ["sh", "-c", "dd if=/dev/zero of=/dev/shm/fill bs=1M count=40 && echo filled && sleep 600"],
        mem_limit="128m",
    )
    try:
        wait_for(lambda: b"filled" in container.logs())
        stats = container.stats(stream=False)
        memory = stats["memory_stats"]
        assert memory["limit"] == 128 * MiB
        assert used_memory(stats) >= 40 * MiB
        assert used_memory(stats) < 128 * MiB
        if "total_inactive_file" in memory["stats"]:  # cgroup v1 (and hybrid) figures
            assert memory["max_usage"] >= memory["usage"]
            assert memory["stats"]["hierarchical_memory_limit"] == 128 * MiB
        else:
            assert "inactive_file" in memory["stats"] and "anon" in memory["stats"]
    finally:
        container.remove(force=True)


def test_a_container_without_a_memory_limit_reports_the_hosts_memory(client, name: str) -> None:
    container = run(client, name, ["sleep", "600"])
    try:
        stats = container.stats(stream=False, one_shot=True)
        host_memory = client.info()["MemTotal"]
        assert stats["memory_stats"]["limit"] == host_memory
    finally:
        container.remove(force=True)


def test_the_pids_limit_and_the_processes_counted(client, name: str) -> None:
    container = run(client, name, ["sh", "-c", "sleep 600 & sleep 600 & wait"], pids_limit=50)
    try:
        wait_for(lambda: len(container.top()["Processes"]) == 3)
        stats = container.stats(stream=False, one_shot=True)
        assert stats["pids_stats"] == {"current": 3, "limit": 50}
    finally:
        container.remove(force=True)


def test_a_single_sample_has_the_one_before_it_unless_one_shot(client, name: str) -> None:
    container = run(client, name, BURN)
    try:
        stats = container.stats(stream=False)
        assert stats["preread"] != ZERO_TIME
        elapsed = go_time_ns(stats["read"]) - go_time_ns(stats["preread"])
        assert 0.5e9 < elapsed < 3e9  # about a second, as Docker waits
        assert (
            stats["cpu_stats"]["cpu_usage"]["total_usage"]
            > stats["precpu_stats"]["cpu_usage"]["total_usage"]
        )
        quick = container.stats(stream=False, one_shot=True)
        assert quick["preread"] == ZERO_TIME
        assert quick["precpu_stats"]["cpu_usage"]["total_usage"] == 0
        assert "system_cpu_usage" not in quick["precpu_stats"]
        assert quick["cpu_stats"]["cpu_usage"]["total_usage"] > 0
    finally:
        container.remove(force=True)


def test_network_traffic_between_two_containers(client, name: str, daemon: Daemon) -> None:
    network = client.networks.create(name, ipam=_ipam(daemon, 61))
    server = client_ = None
    try:
        server = run(
            client,
            f"{name}-server",
            [
                "sh",
                "-c",
                "mkdir /www && dd if=/dev/zero of=/www/big bs=1M count=5 && "
                "httpd -f -p 8080 -h /www",
            ],
            network=name,
        )
        wait_for(lambda: b"records out" in server.logs())
        client_ = run(
            client,
            f"{name}-client",
            ["sh", "-c", f"wget -q -O /dev/null http://{name}-server:8080/big && sleep 600"],
            network=name,
        )

        def fetched() -> dict[str, Any] | None:
            stats = client_.stats(stream=False, one_shot=True)
            return stats if stats["networks"]["eth0"]["rx_bytes"] >= 5 * MiB else None

        received = wait_for(fetched)["networks"]
        sent = server.stats(stream=False, one_shot=True)["networks"]
        assert list(received) == ["eth0"] and list(sent) == ["eth0"]  # never `lo`
        assert sent["eth0"]["tx_bytes"] >= 5 * MiB
        assert received["eth0"]["rx_packets"] > 100
        assert received["eth0"]["tx_bytes"] < 1 * MiB  # the request and its ACKs only
    finally:
        for container in (client_, server):
            if container is not None:
                container.remove(force=True)
        network.remove()


def _ipam(daemon: Daemon, n: int) -> docker.types.IPAMConfig:
    return docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=daemon.subnet(n))])


@pytest.mark.parametrize("mode", ["none", "host"])
def test_no_networks_without_interfaces_of_its_own(client, name: str, mode: str) -> None:
    container = run(client, name, ["sleep", "600"], network_mode=mode)
    try:
        stats = container.stats(stream=False, one_shot=True)
        assert "networks" not in stats
        assert stats["memory_stats"]["usage"] > 0
    finally:
        container.remove(force=True)


def test_a_container_sharing_anothers_network_reports_its_interfaces(client, name: str) -> None:
    owner = run(client, name, ["sleep", "600"])
    guest = run(client, f"{name}-guest", ["sleep", "600"], network_mode=f"container:{name}")
    try:
        assert list(guest.stats(stream=False, one_shot=True)["networks"]) == ["eth0"]
    finally:
        guest.remove(force=True)
        owner.remove(force=True)


def test_a_paused_container_still_reports(client, name: str) -> None:
    container = run(client, name, ["sleep", "600"])
    try:
        container.pause()
        stats = container.stats(stream=False)
        assert stats["read"] != ZERO_TIME and stats["memory_stats"]["usage"] > 0
        assert stats["pids_stats"]["current"] == 1
    finally:
        container.remove(force=True)


def test_a_container_that_is_not_running_reports_zeros(client, name: str) -> None:
    container = client.containers.create(IMAGE, ["true"], name=name)
    try:
        stats = container.stats(stream=False)
        assert stats["read"] == ZERO_TIME and stats["preread"] == ZERO_TIME
        assert stats["name"] == f"/{name}" and stats["id"] == container.id
        assert stats["memory_stats"] == {} and stats["pids_stats"] == {}
        assert stats["cpu_stats"]["cpu_usage"]["total_usage"] == 0
        assert stats["blkio_stats"]["io_service_bytes_recursive"] is None
        assert "networks" not in stats
        container.start()
        container.wait()
        assert container.stats(stream=False)["read"] == ZERO_TIME  # exited: the same
    finally:
        container.remove(force=True)


def test_a_stream_of_a_stopped_container_sends_zeros_and_ends_when_it_is_removed(
    client, name: str
) -> None:
    container = client.containers.create(IMAGE, ["true"], name=name)
    samples = container.stats(stream=True, decode=True)
    try:
        first = next(samples)
        assert first["read"] == ZERO_TIME and first["name"] == f"/{name}"
        container.remove()
        assert [s["read"] for s in samples] in ([], [ZERO_TIME])  # then the end
    finally:
        samples.close()
        if name in [c.name for c in client.containers.list(all=True)]:
            container.remove(force=True)


def test_unknown_container_and_bad_parameters(daemon: Daemon, name: str) -> None:
    status, body = daemon.api("GET", "/v1.45/containers/nosuch/stats?stream=0")
    assert (status, body) == (404, {"message": "No such container: nosuch"})
    daemon.cli("run", "-d", "--name", name, IMAGE, "sleep", "600", check=True)
    try:
        status, body = daemon.api("GET", f"/v1.45/containers/{name}/stats?stream=1&one-shot=1")
        assert (status, body) == (400, {"message": "cannot have stream=true and one-shot=true"})
        # Before API 1.41 there is no `one-shot`: a single sample comes with the one before.
        status, body = daemon.api("GET", f"/v1.40/containers/{name}/stats?stream=0&one-shot=1")
        assert status == 200 and body["preread"] != ZERO_TIME
    finally:
        daemon.cli("rm", "-f", name)


# -- the docker CLI and ours -------------------------------------------------------------


def test_docker_stats_no_stream_prints_real_figures(daemon: Daemon, client, name: str) -> None:
    burner = run(client, name, BURN, mem_limit="64m")
    idle = run(client, f"{name}-idle", ["sleep", "600"])
    try:
        result = daemon.docker("stats", "--no-stream", "--format", "{{json .}}", name, idle.name)
        assert result.returncode == 0, result.stderr
        rows = {row["Name"]: row for row in map(json.loads, result.stdout.splitlines())}
        busy = rows[name]
        assert busy["ID"] == burner.id[:12] and busy["Container"] == name
        assert float(busy["CPUPerc"].rstrip("%")) > 30
        usage, limit = busy["MemUsage"].split(" / ")
        assert limit == "64MiB" and re.fullmatch(r"[\d.]+(B|KiB|MiB)", usage)
        assert float(busy["MemPerc"].rstrip("%")) > 0
        assert re.fullmatch(r"[\d.]+k?B / [\d.]+k?B", busy["NetIO"])
        assert busy["PIDs"] == "1"
        assert float(rows[idle.name]["CPUPerc"].rstrip("%")) < 5
    finally:
        burner.remove(force=True)
        idle.remove(force=True)


def test_docker_stats_streams_and_lists_running_containers(
    daemon: Daemon, client, name: str
) -> None:
    burner = run(client, name, BURN)
    stopped = client.containers.create(IMAGE, ["true"], name=f"{name}-stopped")
    try:
        proc = subprocess.Popen(
            ["docker", "stats", "--format", "{{json .}}", name],
            env={**os.environ, "DOCKER_HOST": daemon.host},
            stdout=subprocess.PIPE,
            text=True,
        )
        rows = []
        assert proc.stdout is not None
        for line in proc.stdout:
            text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", line).strip()
            if text.startswith("{"):
                rows.append(json.loads(text))
            if len(rows) >= 4 and float(rows[-1]["CPUPerc"].rstrip("%")) > 30:
                break
        proc.kill()  # the docker CLI keeps drawing after a first SIGTERM
        proc.wait()
        assert rows[-1]["Name"] == name and rows[-1]["PIDs"] == "1"

        # No names: the running containers; with -a also the stopped one, all zeros.
        listed = daemon.docker("stats", "--no-stream", "--format", "{{.Name}} {{.CPUPerc}}")
        assert name in listed.stdout and stopped.name not in listed.stdout
        every = daemon.docker("stats", "--no-stream", "-a", "--format", "{{.Name}} {{.MemUsage}}")
        assert f"{stopped.name} 0B / 0B" in every.stdout.splitlines()
    finally:
        burner.remove(force=True)
        stopped.remove(force=True)


def test_docker_stats_of_an_unknown_container_fails(daemon: Daemon) -> None:
    result = daemon.docker("stats", "--no-stream", "nosuch")
    assert result.returncode == 1
    assert "No such container: nosuch" in result.stderr


def test_our_stats_command(daemon: Daemon, client, name: str) -> None:
    burner = run(client, name, BURN, mem_limit="64m")
    stopped = client.containers.create(IMAGE, ["true"], name=f"{name}-stopped")
    try:
        result = daemon.cli("stats", "--no-stream", name, stopped.name)
        assert result.returncode == 0, result.stderr
        header, *lines = result.stdout.splitlines()
        assert re.split(r"\s{2,}", header) == [
            "CONTAINER ID",
            "NAME",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "NET I/O",
            "BLOCK I/O",
            "PIDS",
        ]
        rows = {fields[1]: fields for fields in (re.split(r"\s{2,}", line) for line in lines)}
        busy = rows[name]
        assert busy[0] == burner.id[:12]
        assert float(busy[2].rstrip("%")) > 30
        assert busy[3].endswith(" / 64MiB") and busy[7] == "1"
        assert rows[stopped.name][2:] == ["0.00%", "0B / 0B", "0.00%", "0B / 0B", "0B / 0B", "0"]

        listed = daemon.cli("stats", "--no-stream", "--format", "{{.Name}}")
        assert name in listed.stdout.split() and stopped.name not in listed.stdout.split()
        every = daemon.cli("stats", "--no-stream", "-a", "--format", "{{.Name}}")
        assert stopped.name in every.stdout.split()

        as_json = daemon.cli("stats", "--no-stream", "--format", "json", name)
        docker_json = daemon.docker("stats", "--no-stream", "--format", "json", name)
        assert list(json.loads(as_json.stdout)) == list(json.loads(docker_json.stdout))

        missing = daemon.cli("stats", "--no-stream", "nosuch")
        assert missing.returncode == 1
        assert missing.stderr.strip() == "Error response from daemon: No such container: nosuch"
    finally:
        burner.remove(force=True)
        stopped.remove(force=True)
