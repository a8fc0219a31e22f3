"""Dependability: a daemon crash loses nothing, and failures leave nothing behind."""

from __future__ import annotations

import json
import time

from tests.harness import Daemon

IMAGE = "demo/busybox:1"


def _inspect(daemon: Daemon, name: str) -> dict:
    return json.loads(daemon.cli("inspect", name, check=True).stdout)[0]


def test_kill9_of_the_daemon_keeps_containers_and_logs(own_daemon: Daemon) -> None:
    d = own_daemon
    names = [f"crash{i}" for i in range(5)]
    for name in names:
        d.cli(
            "run",
            "-d",
            "--name",
            name,
            IMAGE,
            "sh",
            "-c",
            "trap 'exit 0' TERM; i=0; while :; do echo $i; i=$((i+1)); sleep 0.1; done",
            check=True,
        )
    d.cli("run", "-d", "--name", "short", IMAGE, "sh", "-c", "sleep 1; exit 42", check=True)
    pids = {name: _inspect(d, name)["State"]["Pid"] for name in names}
    time.sleep(0.5)
    d.kill9()
    time.sleep(2)  # "short" exits while no daemon is running; the others keep logging
    d.start()
    running = d.cli("ps", "--format", "{{.Names}}").stdout.split()
    assert sorted(running) == sorted(names)
    for name in names:
        assert _inspect(d, name)["State"]["Pid"] == pids[name]
    short = _inspect(d, "short")["State"]
    assert short["Status"] == "exited" and short["ExitCode"] == 42
    # No gap in the logs across the crash: the monitor kept writing them.
    numbers = [int(n) for n in d.cli("logs", names[0]).stdout.split()]
    assert numbers == list(range(len(numbers))) and len(numbers) > 20
    stop = d.cli("stop", *names)
    assert stop.returncode == 0, stop.stderr
    for name in names:
        assert _inspect(d, name)["State"]["ExitCode"] == 0
    d.cli("rm", *names, "short", check=True)
    leftovers = d.leftovers()
    assert leftovers["mounts"] == [] and leftovers["monitors"] == []


def test_attach_and_wait_work_on_adopted_containers(own_daemon: Daemon) -> None:
    d = own_daemon
    d.cli(
        "run",
        "-d",
        "-i",
        "--name",
        "adopted2",
        IMAGE,
        "sh",
        "-c",
        "read line; echo got $line; exit 6",
        check=True,
    )
    d.kill9()
    d.start()
    result = d.docker("attach", "adopted2", input=b"hello\n")
    assert "got hello" in result.stdout
    assert _inspect(d, "adopted2")["State"]["ExitCode"] == 6


def test_failed_start_leaves_no_mount_cgroup_or_monitor(own_daemon: Daemon) -> None:
    d = own_daemon
    for _ in range(3):
        result = d.cli("run", "--name", "broken", IMAGE, "/no/such/binary")
        assert result.returncode == 127
        state = _inspect(d, "broken")["State"]
        assert state["Status"] == "created" and state["ExitCode"] == 127
        assert "no such file or directory" in state["Error"]
        assert d.leftovers()["mounts"] == []
        assert d.leftovers()["monitors"] == []
        d.cli("rm", "broken", check=True)
    leftovers = d.leftovers()
    assert leftovers["mounts"] == [] and leftovers["monitors"] == []


def test_stopped_daemon_leaves_no_cgroups(own_daemon: Daemon) -> None:
    d = own_daemon
    d.cli("run", "--rm", IMAGE, "true", check=True)
    d.cli("run", "-d", "--name", "xx", IMAGE, "sleep", "60", check=True)
    d.cli("rm", "-f", "xx", check=True)
    d.stop()
    assert d.leftovers() == {"mounts": [], "cgroups": [], "monitors": []}
