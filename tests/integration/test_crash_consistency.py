"""Crash consistency: the daemon is killed (`kill -9`) at each step of each container
operation, and what it shows after the restart is what really exists.

Faults come from `tests/faults.py`: a wrapper in front of runc and one in front of
conmon that stall a chosen call (the daemon is killed while it waits, then the call
goes on with no daemon to see it), and the daemon's own crash points between steps.
After every restart: `ps -a` matches the processes, running containers still run
and log, exit codes are right, `--rm` is honoured and nothing is left on the host.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults import (
    Background,
    FaultyDaemon,
    assert_matches_reality,
    wait_for,
)
from tests.harness import Daemon, new_base

IMAGE = "demo/busybox:1"
# Counts once every 0.1 s; a TERM ends it with status 0, so a stop is seen as a stop.
COUNTER = "trap 'exit 0' TERM; i=0; while :; do echo $i; i=$((i+1)); sleep 0.1; done"


@pytest.fixture
def faulty(busybox_tar: Path) -> Iterator[FaultyDaemon]:
    d = FaultyDaemon(new_base())
    d.start()
    d.cli("import", str(busybox_tar), IMAGE, check=True)
    yield d
    d.cleanup()


def _state(d: Daemon, name: str) -> dict:
    return json.loads(d.cli("inspect", name, check=True).stdout)[0]["State"]


def _counts(d: Daemon, name: str) -> list[int]:
    return [int(n) for n in d.cli("logs", name, check=True).stdout.split()]


def _still_logging(d: Daemon, name: str) -> None:
    before = len(_counts(d, name))
    wait_for(f"{name} logging", lambda: len(_counts(d, name)) > before + 2)


def _restart(d: FaultyDaemon) -> None:
    """Kill the daemon unless a crash point did, and start it again."""
    if d.proc is not None and d.proc.poll() is None:
        d.kill9()
    d.crash.disarm()
    d.start()


# -- defect 1: a crash while a container starts ----------------------------------


def test_a_start_finished_after_the_crash_is_adopted_as_running(faulty: FaultyDaemon) -> None:
    """Killed while `runc start` runs: the container runs, so it is shown running, its
    stop works and its exit code is recorded; its logs go on."""
    d = faulty
    d.cli("create", "--name", "late", IMAGE, "sh", "-c", COUNTER, check=True)
    d.runtime.stall("start")
    client = Background(d, "start", "late")
    d.runtime.wait_stalled("start", d)
    d.kill9()
    d.runtime.release("start")
    client.join()
    # runc start finishes with no daemon to see it.
    time.sleep(0.5)
    d.start()
    state = _state(d, "late")
    assert state["Status"] == "running" and state["Pid"] > 0
    _still_logging(d, "late")
    assert d.cli("exec", "late", "echo", "hi").stdout == "hi\n"
    assert_matches_reality(d)
    stop = d.cli("stop", "late")
    assert stop.returncode == 0, stop.stderr
    state = _state(d, "late")
    assert state["Status"] == "exited" and state["ExitCode"] == 0
    assert_matches_reality(d)


def test_a_start_cut_short_is_undone(faulty: FaultyDaemon) -> None:
    """Killed while the runtime creates the container: nothing of the start stays (mount,
    cgroup, runtime state, sandbox, veth, monitor) and the container says why."""
    d = faulty
    d.cli("create", "--name", "half", "-p", "8080", IMAGE, "sh", "-c", COUNTER, check=True)
    d.runtime.stall("create")
    client = Background(d, "start", "half")
    d.runtime.wait_stalled("create", d)
    d.kill9()
    d.runtime.release("create")
    client.join()
    time.sleep(0.5)
    d.start()
    state = _state(d, "half")
    assert not state["Running"]
    assert state["Status"] == "created" and state["ExitCode"] == 128
    assert "start" in state["Error"] and "daemon" in state["Error"]
    assert_matches_reality(d)
    # The container can be started again, and runs.
    d.cli("start", "half", check=True)
    _still_logging(d, "half")
    assert_matches_reality(d)


def test_an_auto_removed_container_whose_start_was_undone_is_removed(
    faulty: FaultyDaemon,
) -> None:
    d = faulty
    d.runtime.stall("start")
    client = Background(d, "run", "-d", "--rm", "--name", "gone", IMAGE, "sh", "-c", COUNTER)
    d.runtime.wait_stalled("start", d)
    d.kill9()
    # The runtime's start fails: the container never runs.
    d.runtime.fail("start")
    client.join()
    time.sleep(0.5)
    d.runtime.clear("start")
    d.start()
    assert "gone" not in d.cli("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert_matches_reality(d)


# -- defect 4: the runtime's binary is gone at restart ----------------------------


def test_containers_of_a_runtime_whose_binary_is_gone_can_be_stopped_and_removed(
    own_daemon: Daemon,
) -> None:
    d = own_daemon
    spare = d.base / "spare-runc"
    spare.write_text('#!/bin/sh\nexec runc "$@"\n')
    spare.chmod(0o755)
    d.stop()
    d.config["runtimes"] = {"spare": {"path": str(spare)}}
    d.start()
    for name in ("sa", "sb", "sc"):
        d.cli(
            "run",
            "-d",
            "--runtime",
            "spare",
            "--name",
            name,
            IMAGE,
            "sh",
            "-c",
            COUNTER,
            check=True,
        )
    d.cli("create", "--runtime", "spare", "--name", "sd", IMAGE, "true", check=True)
    d.kill9()
    spare.unlink()
    d.start()
    log = d.log_path.read_text()
    warning = [line for line in log.splitlines() if "spare" in line and "sa" in line]
    assert warning, log[-2000:]
    assert all(name in warning[-1] for name in ("sa", "sb", "sc", "sd"))
    running = d.cli("ps", "--format", "{{.Names}}").stdout.split()
    assert sorted(running) == ["sa", "sb", "sc"]
    _still_logging(d, "sa")

    stop = d.cli("stop", "sa")
    assert stop.returncode == 0, stop.stderr
    assert _state(d, "sa")["Status"] == "exited" and _state(d, "sa")["ExitCode"] == 0
    kill = d.cli("kill", "sb")
    assert kill.returncode == 0, kill.stderr
    assert _state(d, "sb")["ExitCode"] == 137
    rm = d.cli("rm", "-f", "sc")
    assert rm.returncode == 0, rm.stderr
    status, body = d.api("POST", "/containers/sd/start")
    assert status == 500 and "spare" in body["message"], body
    status, body = d.api("POST", "/containers/sa/start")
    assert status == 500 and "spare" in body["message"], body
    assert_matches_reality(d)
    d.cli("rm", "sa", "sb", "sd", check=True)
    assert d.cli("ps", "-a", "-q").stdout.split() == []
    assert_matches_reality(d)
