"""The container lifecycle beyond run and stop: update, kill, commit, forced removal, exec
failures, attach replay, detach keys, exec terminals and shared pid/ipc namespaces.

Driven through the docker CLI, docker-py and our CLI against a real daemon; resource
limits are read back from the container's real cgroup files.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import docker
import pytest

from dockyard.runtime import cgroups
from tests.harness import Daemon

IMAGE = "demo/busybox:1"
MiB = 1 << 20


# -- reading a container's cgroup ------------------------------------------------


class Cgroup:
    """One container's cgroup on this host, whatever its layout (v1, hybrid or v2)."""

    def __init__(self, daemon: Daemon, container_id: str) -> None:
        self.layout = cgroups.detect()
        self.path = f"{daemon.cgroup_parent}/{container_id}"

    def _read(self, controller: str, v1_name: str, v2_name: str) -> str:
        if self.layout.mode == "v2":
            assert self.layout.v2 is not None
            return Path(self.layout.v2, self.path, v2_name).read_text().strip()
        return Path(self.layout.v1[controller], self.path, v1_name).read_text().strip()

    def memory_limit(self) -> int:
        text = self._read("memory", "memory.limit_in_bytes", "memory.max")
        return -1 if text == "max" or int(text) >= 1 << 62 else int(text)

    def cpu_quota(self) -> int:
        text = self._read("cpu", "cpu.cfs_quota_us", "cpu.max").split()[0]
        return -1 if text == "max" else int(text)

    def cpu_shares(self) -> int:
        if self.layout.mode == "v2":  # runc's conversion of shares to a weight
            return int(self._read("cpu", "", "cpu.weight"))
        return int(self._read("cpu", "cpu.shares", ""))

    def pids_max(self) -> str:
        return self._read("pids", "pids.max", "pids.max")

    def cpuset_cpus(self) -> str:
        return self._read("cpuset", "cpuset.cpus", "cpuset.cpus")


def shares_as_seen(shares: int) -> int:
    """What `Cgroup.cpu_shares` reads for `shares` on this host (v2 keeps a weight)."""
    if cgroups.detect().mode != "v2":
        return shares
    return 1 + ((shares - 2) * 9999) // 262142


def events(daemon: Daemon, since: float, container_id: str) -> list[str]:
    status, body = daemon.api(
        "GET",
        f"/v1.45/events?since={since:.3f}&until={time.time():.3f}"
        + "&filters="
        + urllib.parse.quote(json.dumps({"container": [container_id]})),
    )
    assert status == 200
    text = body.decode() if isinstance(body, bytes) else json.dumps(body)
    return [json.loads(line)["Action"] for line in text.splitlines() if line.strip()]


def run_detached(daemon: Daemon, *args: str) -> str:
    result = daemon.docker("run", "-d", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


# -- update ------------------------------------------------------------------------


def test_docker_update_applies_live_persists_and_survives_restart(
    daemon: Daemon, name: str
) -> None:
    container_id = run_detached(daemon, "--name", name, "-m", "64m", IMAGE, "sleep", "600")
    try:
        cgroup = Cgroup(daemon, container_id)
        assert cgroup.memory_limit() == 64 * MiB
        since = time.time()
        result = daemon.docker(
            "update",
            "-m",
            "200m",
            "--memory-swap",
            "400m",
            "--cpus",
            "0.5",
            "--cpu-shares",
            "512",
            "--pids-limit",
            "50",
            "--cpuset-cpus",
            "0",
            "--memory-reservation",
            "32m",
            "--restart",
            "on-failure:3",
            name,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == name
        # Live: the running container's cgroup has the new limits at once.
        assert cgroup.memory_limit() == 200 * MiB
        assert cgroup.cpu_quota() == 50_000
        assert cgroup.cpu_shares() == shares_as_seen(512)
        assert cgroup.pids_max() == "50"
        assert cgroup.cpuset_cpus() == "0"
        hc = json.loads(daemon.docker("inspect", name).stdout)[0]["HostConfig"]
        assert (hc["Memory"], hc["MemorySwap"], hc["MemoryReservation"]) == (
            200 * MiB,
            400 * MiB,
            32 * MiB,
        )
        assert (hc["NanoCpus"], hc["CpuShares"], hc["PidsLimit"], hc["CpusetCpus"]) == (
            500_000_000,
            512,
            50,
            "0",
        )
        assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
        assert "update" in events(daemon, since, container_id)
        # A restart starts from the record: the new limits stay.
        assert daemon.docker("restart", "-t", "0", name).returncode == 0
        cgroup = Cgroup(daemon, container_id)
        assert cgroup.memory_limit() == 200 * MiB
        assert cgroup.cpu_quota() == 50_000
        assert cgroup.pids_max() == "50"
        # Unlimited pids (-1) is written out, not left at the old limit.
        assert daemon.docker("update", "--pids-limit", "-1", name).returncode == 0
        assert cgroup.pids_max() == "max"
        assert json.loads(daemon.docker("inspect", name).stdout)[0]["HostConfig"]["PidsLimit"] == 0
    finally:
        daemon.docker("rm", "-f", name)


def test_docker_py_update_container_and_restart_policy(client: Any) -> None:
    # docker-py's own integration tests: lower a memory limit, change a restart policy.
    api = client.api
    container = api.create_container(
        IMAGE,
        "top",
        host_config=api.create_host_config(
            mem_limit=400 * MiB, restart_policy={"Name": "always", "MaximumRetryCount": 0}
        ),
    )
    try:
        api.start(container)
        assert api.update_container(container, mem_limit=300 * MiB) == {"Warnings": []}
        assert api.inspect_container(container)["HostConfig"]["Memory"] == 300 * MiB
        api.update_container(
            container, restart_policy={"Name": "on-failure", "MaximumRetryCount": 42}
        )
        policy = api.inspect_container(container)["HostConfig"]["RestartPolicy"]
        assert policy == {"Name": "on-failure", "MaximumRetryCount": 42}
    finally:
        api.remove_container(container, force=True)


def test_update_of_a_stopped_container_is_stored_and_applied_at_start(
    daemon: Daemon, name: str
) -> None:
    assert daemon.docker("create", "--name", name, IMAGE, "sleep", "600").returncode == 0
    try:
        result = daemon.docker("update", "-m", "48m", "--memory-swap", "96m", name)
        assert result.returncode == 0, result.stderr
        hc = json.loads(daemon.docker("inspect", name).stdout)[0]["HostConfig"]
        assert (hc["Memory"], hc["MemorySwap"]) == (48 * MiB, 96 * MiB)
        assert daemon.docker("start", name).returncode == 0
        container_id = json.loads(daemon.docker("inspect", name).stdout)[0]["Id"]
        assert Cgroup(daemon, container_id).memory_limit() == 48 * MiB
    finally:
        daemon.docker("rm", "-f", name)


def test_update_refusals_use_docker_status_and_wording(daemon: Daemon, name: str) -> None:
    container_id = run_detached(
        daemon, "--name", name, "-m", "64m", "--cpus", "1", IMAGE, "sleep", "600"
    )
    auto = run_detached(daemon, "--rm", IMAGE, "sleep", "600")
    try:

        def update(body: dict[str, Any], target: str = name, version: str = "1.45") -> Any:
            return daemon.api("POST", f"/v{version}/containers/{target}/update", body)

        status, reply = update({"Memory": 256 * MiB})  # above the swap limit already set
        assert status == 409
        assert reply["message"] == (
            f"Cannot update container {container_id}: Memory limit should be smaller than "
            "already set memoryswap limit, update the memoryswap at the same time"
        )
        status, reply = update({"CpuQuota": 20000})
        assert status == 409
        assert reply["message"].endswith(
            "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set"
        )
        status, reply = update({"RestartPolicy": {"Name": "always"}}, target=auto)
        assert status == 409
        assert reply["message"].endswith(
            "Restart policy cannot be updated because AutoRemove is enabled for the container"
        )
        status, reply = update({"RestartPolicy": {"Name": "sometimes"}})
        assert status == 400 and "invalid restart policy" in reply["message"]
        status, reply = update({"Memory": 1024})
        assert (status, reply["message"]) == (400, "Minimum memory limit allowed is 6MB")
        status, reply = update({"BlkioWeight": 5})
        if cgroups.blkio_weight_supported(cgroups.detect()):
            assert (status, reply["message"]) == (400, "Range of blkio weight is from 10 to 1000")
        else:  # no I/O scheduler with weights here: Docker drops the value with a warning
            assert (status, reply) == (
                200,
                {
                    "Warnings": [
                        "Your kernel does not support Block I/O weight or the cgroup is not "
                        "mounted. Weight discarded."
                    ]
                },
            )
        cpus = os.sched_getaffinity(0)
        status, reply = update({"CpusetCpus": f"0-{max(cpus) + 8}"})
        assert status == 400
        assert reply["message"].startswith("Requested CPUs are not available - requested 0-")
        status, reply = update({"Memory": "64m"})  # a string where Go wants a number
        assert status == 400 and "cannot unmarshal string" in reply["message"]
        status, reply = update({"Memory": 32 * MiB}, target="no-such-container")
        assert status == 404
        # Kernel memory: ignored from API 1.42 on, discarded with Docker's warning before.
        assert update({"KernelMemory": 8 * MiB}) == (200, {"Warnings": []})
        status, reply = update({"KernelMemory": 8 * MiB}, version="1.41")
        assert status == 200
        assert reply["Warnings"] == [
            "Your kernel does not support kernel memory limit capabilities or the cgroup is not "
            "mounted. Limitation discarded."
        ]
        # Nothing refused changed the container.
        hc = json.loads(daemon.docker("inspect", name).stdout)[0]["HostConfig"]
        assert (hc["Memory"], hc["NanoCpus"], hc["RestartPolicy"]["Name"]) == (
            64 * MiB,
            1_000_000_000,
            "no",
        )
        assert Cgroup(daemon, container_id).memory_limit() == 64 * MiB
        # The docker CLI shows the daemon's message and exits 1.
        result = daemon.docker("update", "-m", "300m", name)
        assert result.returncode == 1
        assert "Memory limit should be smaller than already set memoryswap limit" in result.stderr
    finally:
        daemon.docker("rm", "-f", name, auto)


def test_update_the_kernel_refuses_keeps_the_old_limits(daemon: Daemon, name: str) -> None:
    # 40 MB in /dev/shm (tmpfs, charged to the container, no swap to push it to):
    # the kernel cannot bring the container under 10 MB and refuses the new limit.
    container_id = run_detached(
        daemon,
        "--name",
        name,
        "-m",
        "64m",
        IMAGE,
        "sh",
        "-c",
        "head -c 40000000 /dev/zero > /dev/shm/fill && touch /tmp/filled; sleep 600",
    )
    try:
        while daemon.docker("exec", name, "test", "-e", "/tmp/filled").returncode != 0:
            time.sleep(0.1)
        cgroup = Cgroup(daemon, container_id)
        status, reply = daemon.api(
            "POST",
            f"/v1.45/containers/{name}/update",
            {"Memory": 10 * MiB, "MemorySwap": 20 * MiB, "CpuShares": 300, "PidsLimit": 30},
        )
        assert status == 500, reply
        assert reply["message"].startswith(f"Cannot update container {container_id}: ")
        assert "memory limit" in reply["message"]
        # Nothing changed: the kernel's files and the record keep the old limits, including
        # those the runtime may have written before the kernel refused the memory limit.
        assert cgroup.memory_limit() == 64 * MiB
        assert cgroup.cpu_shares() == shares_as_seen(1024)
        assert cgroup.pids_max() == "max"
        hc = json.loads(daemon.docker("inspect", name).stdout)[0]["HostConfig"]
        assert (hc["Memory"], hc["CpuShares"], hc["PidsLimit"]) == (64 * MiB, 0, None)
        # And the container still takes an update the kernel accepts.
        assert daemon.docker("update", "-m", "100m", name).returncode == 0
        assert cgroup.memory_limit() == 100 * MiB
    finally:
        daemon.docker("rm", "-f", name)


def test_our_cli_update(daemon: Daemon, name: str) -> None:
    container_id = run_detached(daemon, "--name", name, IMAGE, "sleep", "600")
    try:
        result = daemon.cli("update", "--cpus", "0.25", "--pids-limit", "20", name)
        assert (result.returncode, result.stdout.strip()) == (0, name), result.stderr
        cgroup = Cgroup(daemon, container_id)
        assert (cgroup.cpu_quota(), cgroup.pids_max()) == (25_000, "20")
        result = daemon.cli("update", "-m", "32m", name)  # no swap limit to stay under
        assert result.returncode == 1
        assert "update the memoryswap at the same time" in result.stderr
        assert daemon.cli("update", "-m", "32m", "--memory-swap", "-1", name).returncode == 0
        assert cgroup.memory_limit() == 32 * MiB
        result = daemon.cli("update", name)
        assert result.returncode == 1
        assert "you must provide one or more flags" in result.stderr
    finally:
        daemon.cli("rm", "-f", name)


# -- kill ----------------------------------------------------------------------------


def test_kill_returns_once_the_container_is_dead(client: Any) -> None:
    api = client.api
    for signal in (None, "SIGKILL", 9):
        container = api.create_container(IMAGE, ["sleep", "9999"])
        try:
            api.start(container)
            if signal is None:
                api.kill(container)
            else:
                api.kill(container, signal=signal)
            # docker-py's tests inspect right after the kill: the exit must be recorded.
            state = api.inspect_container(container)["State"]
            assert (state["Running"], state["Status"], state["ExitCode"]) == (
                False,
                "exited",
                137,
            )
        finally:
            api.remove_container(container, force=True)


def test_kill_with_another_signal_returns_at_once(daemon: Daemon, name: str) -> None:
    script = 'trap "sleep 2; exit 7" TERM; touch /tmp/ready; while true; do sleep 1; done'
    run_detached(daemon, "--name", name, IMAGE, "sh", "-c", script)
    try:
        while daemon.docker("exec", name, "test", "-e", "/tmp/ready").returncode != 0:
            time.sleep(0.1)
        assert daemon.docker("kill", "-s", "SIGTERM", name).returncode == 0
        # Sent, not waited for: the trap is still sleeping.
        assert daemon.docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true"
        assert daemon.docker("wait", name).stdout.strip() == "7"
    finally:
        daemon.docker("rm", "-f", name)


def test_kill_of_a_paused_container(daemon: Daemon, name: str) -> None:
    run_detached(daemon, "--name", name, IMAGE, "sleep", "600")
    try:
        assert daemon.docker("pause", name).returncode == 0
        assert daemon.docker("kill", name).returncode == 0
        state = json.loads(daemon.docker("inspect", name).stdout)[0]["State"]
        assert (state["Status"], state["ExitCode"], state["Paused"]) == ("exited", 137, False)
    finally:
        daemon.docker("rm", "-f", name)


# -- commit ----------------------------------------------------------------------------


def test_commit_of_created_exited_and_exiting_containers(client: Any) -> None:
    api = client.api
    created = api.create_container(IMAGE, ["true"])
    images = []
    try:
        images.append(api.commit(created["Id"])["Id"])  # docker-py pauses by default
        for _ in range(5):
            # Committed while `touch` is exiting (docker-py's own test_commit).
            container = api.create_container(IMAGE, ["touch", "/committed"])
            api.start(container)
            images.append(api.commit(container["Id"], repository="t/commit")["Id"])
            api.wait(container)
            images.append(api.commit(container["Id"])["Id"])  # exited
            api.remove_container(container)
        out = client.containers.run(images[-1], ["ls", "/committed"], remove=True)
        assert out == b"/committed\n"
    finally:
        api.remove_container(created, force=True)
        for image in images:
            try:
                api.remove_image(image, force=True)
            except docker.errors.NotFound:
                pass


# -- forced removal ------------------------------------------------------------------------


def test_force_remove_racing_kill_and_auto_removal(client: Any) -> None:
    api = client.api
    failures: list[str] = []

    def kill(container: str) -> None:
        try:
            api.kill(container)
        except docker.errors.APIError as e:
            if e.status_code >= 500:
                failures.append(f"kill: {e}")

    def force_remove(container: str) -> None:
        try:
            api.remove_container(container, force=True)
        except docker.errors.NotFound:
            pass  # the auto-removal won: gone either way
        except docker.errors.APIError as e:
            failures.append(f"rm -f: {e}")

    created = []
    for i in range(20):
        container = api.create_container(IMAGE, ["sleep", "600"])["Id"]
        created.append(container)
        api.start(container)
        killer = threading.Thread(target=kill, args=(container,))
        killer.start()
        time.sleep(0.004 * (i % 5))
        force_remove(container)
        killer.join()
    for i in range(20):
        container = api.create_container(
            IMAGE, ["true"], host_config=api.create_host_config(auto_remove=True)
        )["Id"]
        created.append(container)
        api.start(container)
        time.sleep(0.01 * (i % 5))
        force_remove(container)
    assert failures == []
    for container in created:
        with pytest.raises(docker.errors.NotFound):
            api.inspect_container(container)


# -- exec that cannot start --------------------------------------------------------------


def test_an_exec_the_runtime_refuses_reports_126(daemon: Daemon, client: Any, name: str) -> None:
    run_detached(daemon, "--name", name, IMAGE, "sleep", "600")
    try:
        # The runtime cannot execute a file that is not executable.
        result = daemon.docker("exec", name, "/etc/passwd")
        assert result.returncode == 126
        # Written into the stream, as Docker does: the docker CLI prints it on stdout.
        assert result.stdout.startswith("OCI runtime exec failed: exec failed: ")
        assert "permission denied" in result.stdout
        exec_id = client.api.exec_create(name, ["/etc/passwd"])["Id"]
        out = client.api.exec_start(exec_id)
        assert out.startswith(b"OCI runtime exec failed: ") and out.endswith(b": unknown\r\n")
        assert client.api.exec_inspect(exec_id)["ExitCode"] == 126
    finally:
        daemon.docker("rm", "-f", name)


# -- attach replay ---------------------------------------------------------------------------


@pytest.mark.parametrize("tty", [False, True])
def test_attach_logs_without_stream_replays_the_log(client: Any, tty: bool) -> None:
    api = client.api
    newline = b"\r\n" if tty else b"\n"
    exited = api.create_container(IMAGE, "echo hello", tty=tty)
    running = api.create_container(IMAGE, ["sh", "-c", "echo running; sleep 600"], tty=tty)
    try:
        api.start(exited)
        api.wait(exited, condition="not-running")
        assert api.attach(exited, stream=False, logs=True) == b"hello" + newline
        api.start(running)
        while b"running" not in api.logs(running):
            time.sleep(0.05)
        assert api.attach(running, stream=False, logs=True) == b"running" + newline
    finally:
        api.remove_container(exited, force=True)
        api.remove_container(running, force=True)


# -- detach keys --------------------------------------------------------------------------


def _raw(sock: Any) -> Any:
    """The socket under docker-py's wrapper; a failure to close it shows up as a timeout
    rather than as a test that never ends."""
    raw = getattr(sock, "_sock", sock)
    raw.settimeout(60)
    return raw


def _detached(sock: Any, keys: list[bytes]) -> bool:
    """docker-py's check: after the keys, the daemon has closed the connection."""
    raw = _raw(sock)
    for key in keys:
        raw.sendall(key)
        time.sleep(0.3)
    try:
        raw.sendall(b"make sure the socket is closed\n")
        raw.sendall(b"make sure the socket is closed\n")
        return raw.recv(128) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


@pytest.mark.parametrize(
    ("params", "config", "keys"),
    [
        ({}, None, [b"\x10", b"\x11"]),  # ctrl-p ctrl-q, the default
        ({"detachKeys": "ctrl-x"}, "ctrl-p", [b"\x18"]),  # the parameter wins
        ({}, "ctrl-p", [b"\x10"]),  # the client's config file
        ({"detachKeys": "a,b"}, None, [b"a", b"b"]),
    ],
)
def test_attach_detach_keys(
    daemon: Daemon, client: Any, params: dict[str, str], config: str | None, keys: list[bytes]
) -> None:
    api = client.api
    if config:
        api._general_configs["detachKeys"] = config
    container = api.create_container(IMAGE, "cat", stdin_open=True, tty=True)["Id"]
    try:
        api.start(container)
        since = time.time()
        sock = api.attach_socket(container, {"stdin": True, "stream": True, **params})
        assert _detached(sock, keys)
        assert api.inspect_container(container)["State"]["Running"] is True
        assert "detach" in events(daemon, since, container)
    finally:
        api._general_configs.pop("detachKeys", None)
        api.remove_container(container, force=True)


def test_detach_keys_only_watch_a_terminal_and_split_across_reads(client: Any) -> None:
    api = client.api
    plain = api.create_container(IMAGE, "cat", stdin_open=True)["Id"]
    tty = api.create_container(IMAGE, "cat", stdin_open=True, tty=True)["Id"]
    try:
        api.start(plain)
        api.start(tty)
        # Without a terminal ctrl-p ctrl-q is data: cat echoes it back.
        sock = api.attach_socket(plain, {"stdin": True, "stdout": True, "stream": True})
        raw = _raw(sock)
        raw.sendall(b"x\x10\x11y\n")
        received = b""
        while b"y\n" not in received:
            received += raw.recv(4096)
        assert b"x\x10\x11y\n" in received
        raw.close()
        # A ctrl-p not followed by ctrl-q is typed through; the sequence split over two
        # writes still detaches.
        sock = api.attach_socket(tty, {"stdin": True, "stdout": True, "stream": True})
        raw = _raw(sock)
        raw.sendall(b"a\x10b\n")
        received = b""
        while b"a\x10b\r\n" not in received:  # what cat got, through the terminal
            received += raw.recv(4096)
        raw.sendall(b"\x10")
        time.sleep(0.3)
        raw.sendall(b"\x11")
        while chunk := raw.recv(4096):
            received += chunk
        assert b"a^Pb" in received  # the terminal echoed the ctrl-p that was not a detach
        assert api.inspect_container(tty)["State"]["Running"] is True
    finally:
        api.remove_container(plain, force=True)
        api.remove_container(tty, force=True)


def test_exec_detach_keys(daemon: Daemon, client: Any) -> None:
    api = client.api
    container = api.create_container(IMAGE, "cat", stdin_open=True)["Id"]
    try:
        api.start(container)
        for config, keys in ((None, [b"\x10", b"\x11"]), ("ctrl-p", [b"\x10"])):
            if config:
                api._general_configs["detachKeys"] = config
            since = time.time()
            exec_id = api.exec_create(container, "cat", stdin=True, tty=True, stdout=True)["Id"]
            sock = api.exec_start(exec_id, tty=True, socket=True)
            assert _detached(sock, keys)
            sock.close()
            assert api.exec_inspect(exec_id)["Running"] is True  # left running
            assert "exec_detach" in events(daemon, since, container)
        status, reply = daemon.api(
            "POST",
            f"/v1.45/containers/{container}/exec",
            {"Cmd": ["true"], "detachKeys": "ctrl-pq"},
        )
        assert (status, reply["message"]) == (400, "Invalid escape keys (ctrl-pq) provided")
        status, reply = daemon.api(
            "POST", f"/v1.45/containers/{container}/attach?stream=1&detachKeys=ctrl-", None
        )
        assert (status, reply["message"]) == (400, "Invalid detach keys (ctrl-) provided")
    finally:
        api._general_configs.pop("detachKeys", None)
        api.remove_container(container, force=True)


# -- exec terminals -----------------------------------------------------------------------


def test_exec_created_with_a_tty_runs_on_a_pty_whatever_the_start_framing(client: Any) -> None:
    api = client.api
    container = api.create_container(IMAGE, "cat", stdin_open=True)["Id"]
    try:
        api.start(container)
        command = ["sh", "-c", "echo hello out; echo hello err >&2"]
        # docker-py's exec_start defaults to tty=False: framed, but still the pty's output.
        exec_id = api.exec_create(container, command, tty=True)["Id"]
        assert api.exec_start(exec_id) == b"hello out\r\nhello err\r\n"
        exec_id = api.exec_create(container, command, tty=True)["Id"]
        assert api.exec_start(exec_id, tty=True) == b"hello out\r\nhello err\r\n"
        exec_id = api.exec_create(container, command)["Id"]
        assert api.exec_start(exec_id, demux=True) == (b"hello out\n", b"hello err\n")
    finally:
        api.remove_container(container, force=True)


# -- shared namespaces ------------------------------------------------------------------------


def test_pid_and_ipc_of_another_container(daemon: Daemon, name: str) -> None:
    donor = f"{name}-donor"
    other = f"{name}-private"
    run_detached(
        daemon,
        "--name",
        donor,
        "--ipc",
        "shareable",
        IMAGE,
        "sh",
        "-c",
        "echo shared > /dev/shm/note; exec sleep 601",
    )
    run_detached(daemon, "--name", other, IMAGE, "sleep", "602")
    try:
        while daemon.docker("exec", donor, "test", "-e", "/dev/shm/note").returncode != 0:
            time.sleep(0.1)
        result = daemon.docker(
            "run", "--rm", "--pid", f"container:{donor}", IMAGE, "ps", "-o", "args"
        )
        assert result.returncode == 0, result.stderr
        assert "sleep 601" in result.stdout
        assert "sleep 602" not in result.stdout
        # The IPC namespace and /dev/shm of the shareable donor.
        result = daemon.docker(
            "run",
            "--rm",
            "--ipc",
            f"container:{donor}",
            IMAGE,
            "sh",
            "-c",
            "cat /dev/shm/note; readlink /proc/self/ns/ipc",
        )
        assert result.returncode == 0, result.stderr
        note, namespace = result.stdout.split()
        donor_ns = daemon.docker("exec", donor, "readlink", "/proc/self/ns/ipc").stdout.strip()
        assert (note, namespace) == ("shared", donor_ns)
        # A private IPC namespace cannot be joined; a stopped or unknown container neither.
        result = daemon.docker("run", "--rm", "--ipc", f"container:{other}", IMAGE, "true")
        assert result.returncode == 125
        assert (
            f"failed to join IPC namespace: container {other}: non-shareable IPC "
            "(hint: use IpcMode:shareable for the donor container)"
        ) in result.stderr
        assert daemon.docker("stop", "-t", "0", other).returncode == 0
        result = daemon.docker("run", "--rm", "--pid", f"container:{other}", IMAGE, "true")
        assert result.returncode == 125
        assert f"failed to join PID namespace: container {other} is not running" in result.stderr
        result = daemon.docker("run", "--rm", "--pid", "container:no-such-one", IMAGE, "true")
        assert result.returncode == 125
        assert "failed to join PID namespace: No such container: no-such-one" in result.stderr
    finally:
        daemon.docker("rm", "-f", donor, other)
    # The donor's /dev/shm went with it.
    assert not [m for m in daemon.leftovers()["mounts"] if m.endswith("/shm")]


def test_ipc_none_has_no_dev_shm(daemon: Daemon) -> None:
    result = daemon.docker("run", "--rm", "--ipc", "none", IMAGE, "sh", "-c", "ls -d /dev/shm")
    assert result.returncode == 1
    assert "No such file or directory" in result.stderr
    result = daemon.docker("run", "--rm", "--ipc", "private", IMAGE, "ls", "-d", "/dev/shm")
    assert (result.returncode, result.stdout) == (0, "/dev/shm\n")
