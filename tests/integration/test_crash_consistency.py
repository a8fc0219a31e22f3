"""Crash consistency: the daemon is killed (`kill -9`) at each step of each container
operation, and what it shows after the restart is what really exists.

Faults come from `tests/faults.py`: a wrapper in front of runc and one in front of
conmon that hold a chosen call (the daemon is killed while it waits, then the call
goes on with no daemon to see it), and the daemon's own crash points between steps.
After every restart: `ps -a` matches the processes, running containers still run,
log and take `exec`, exit codes are right, `--rm` is honoured and nothing is left on
the host (`assert_matches_reality`).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from tests.faults import (
    Background,
    FaultyDaemon,
    assert_matches_reality,
    gone,
    interrupt,
    wait_for,
)
from tests.harness import Daemon

IMAGE = "demo/busybox:1"
# Counts once every 0.1 s; a TERM ends it with status 0, so a stop is seen as a stop.
COUNTER = "trap 'exit 0' TERM; i=0; while :; do echo $i; i=$((i+1)); sleep 0.1; done"


def _inspect(d: Daemon, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(d.cli("inspect", name, check=True).stdout)[0]
    return doc


def _state(d: Daemon, name: str) -> dict[str, Any]:
    state: dict[str, Any] = _inspect(d, name)["State"]
    return state


def _names(d: Daemon) -> list[str]:
    return sorted(d.cli("ps", "-a", "--format", "{{.Names}}", check=True).stdout.split())


def _counts(d: Daemon, name: str) -> list[int]:
    return [int(n) for n in d.cli("logs", name, check=True).stdout.split()]


def _assert_runs(d: Daemon, name: str) -> None:
    """Shown running, and really so: its log grows and it takes an exec."""
    state = _state(d, name)
    assert state["Status"] == "running" and state["Pid"] > 0, state
    before = len(_counts(d, name))
    wait_for(f"{name} logging", lambda: len(_counts(d, name)) > before + 2)
    result = d.cli("exec", name, "echo", "hi")
    assert result.stdout == "hi\n", result.stderr


# -- create -------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["point:create:volumes", "point:create:files"])
def test_interrupted_create_leaves_nothing(faulty: FaultyDaemon, fault: str) -> None:
    d = faulty
    interrupt(d, fault, "create", "--name", "new", "-v", "/data", IMAGE, "sh", "-c", COUNTER)
    assert _names(d) == []
    assert d.cli("volume", "ls", "-q").stdout.split() == []  # its anonymous volume went
    assert os.listdir(d.data_root / "containers") == []
    assert_matches_reality(d)
    d.cli("run", "-d", "--name", "new", IMAGE, "sh", "-c", COUNTER, check=True)
    _assert_runs(d, "new")


# -- start --------------------------------------------------------------------------

STARTS = [
    # (fault, whether the container runs afterwards)
    ("point:start:mounted", False),
    ("point:start:network", False),
    ("point:start:volumes", False),
    ("point:start:bundle", False),
    ("monitor:create", False),
    ("runtime:create", False),
    ("point:start:created", False),
    ("runtime:start", True),
    ("point:start:started", True),
]


@pytest.mark.parametrize(("fault", "runs"), STARTS)
def test_interrupted_start_is_adopted_or_undone(
    faulty: FaultyDaemon, fault: str, runs: bool
) -> None:
    d = faulty
    d.cli("volume", "create", "keep", check=True)
    d.cli(
        "create", "--name", "box", "-p", "127.0.0.1::80", "-v", "keep:/keep", IMAGE,
        "sh", "-c", COUNTER, check=True,
    )  # fmt: skip
    interrupt(d, fault, "start", "box")
    state = _state(d, "box")
    if runs:
        _assert_runs(d, "box")
        assert state["Error"] == ""
    else:
        # Undone like a failed start: Docker's "created" for a container that never ran.
        assert state["Status"] == "created" and state["ExitCode"] == 128, state
        assert "interrupted" in state["Error"], state
    assert_matches_reality(d)
    if not runs:
        d.cli("start", "box", check=True)
        _assert_runs(d, "box")
    stop = d.cli("stop", "box")
    assert stop.returncode == 0, stop.stderr
    assert _state(d, "box")["ExitCode"] == 0
    assert_matches_reality(d)


@pytest.mark.parametrize(
    ("fault", "runs"), [("point:start:bundle", False), ("runtime:start", True)]
)
def test_interrupted_start_of_an_auto_removed_container(
    faulty: FaultyDaemon, fault: str, runs: bool
) -> None:
    d = faulty
    interrupt(d, fault, "run", "-d", "--rm", "--name", "gone", IMAGE, "sh", "-c", COUNTER)
    if runs:
        _assert_runs(d, "gone")
        d.cli("stop", "gone", check=True)
        wait_for("auto-removal", lambda: "gone" not in _names(d))
    assert _names(d) == []
    assert_matches_reality(d)


def test_a_start_whose_runtime_fails_after_the_crash_is_undone(faulty: FaultyDaemon) -> None:
    d = faulty
    d.cli("create", "--name", "box", IMAGE, "sh", "-c", COUNTER, check=True)
    d.runtime.stall("start")
    client = Background(d, "start", "box")
    held = d.runtime.wait_stalled("start", d)
    d.kill9()
    d.runtime.fail("start")  # the held `runc start` fails: the container never runs
    wait_for("the held start to finish", lambda: gone(held))
    d.runtime.clear("start")
    client.join()
    d.start()
    state = _state(d, "box")
    assert state["Status"] == "created" and "interrupted" in state["Error"]
    assert_matches_reality(d)


# -- stop, kill, restart --------------------------------------------------------------


@pytest.mark.parametrize("fault", ["point:stop:recorded", "point:stop:signalled", "runtime:kill"])
def test_interrupted_stop_is_finished(faulty: FaultyDaemon, fault: str) -> None:
    d = faulty
    d.cli(
        "run", "-d", "--name", "box", "-p", "127.0.0.1::80", IMAGE, "sh", "-c", COUNTER, check=True
    )
    interrupt(d, fault, "stop", "box")
    wait_for("the stop to finish", lambda: not _state(d, "box")["Running"])
    state = _state(d, "box")
    assert state["Status"] == "exited" and state["ExitCode"] == 0, state
    assert_matches_reality(d)


def test_system_check_while_an_interrupted_stop_finishes(faulty: FaultyDaemon) -> None:
    """A stop cut short waits out the rest of its grace period after the restart, in the
    background: a `system check` meanwhile does not call it unsettled."""
    d = faulty
    stubborn = "trap '' TERM; while :; do sleep 0.1; done"
    d.cli("run", "-d", "--name", "box", IMAGE, "sh", "-c", stubborn, check=True)
    # Down long enough that the stop began clearly before the new daemon did.
    interrupt(d, "point:stop:signalled", "stop", "-t", "30", "box", down=2)
    assert _state(d, "box")["Running"]  # still in its grace period
    check = d.cli("system", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "never settled" not in check.stdout
    wait_for("the stop to finish", lambda: not _state(d, "box")["Running"], 60)
    assert _state(d, "box")["ExitCode"] == 137
    assert_matches_reality(d)


@pytest.mark.parametrize("fault", ["point:kill:recorded", "point:kill:signalled", "runtime:kill"])
def test_interrupted_kill_is_finished(faulty: FaultyDaemon, fault: str) -> None:
    d = faulty
    d.cli("run", "-d", "--name", "box", IMAGE, "sh", "-c", COUNTER, check=True)
    interrupt(d, fault, "kill", "box")
    wait_for("the kill to finish", lambda: not _state(d, "box")["Running"])
    assert _state(d, "box")["ExitCode"] == 137
    assert_matches_reality(d)


@pytest.mark.parametrize(
    "fault",
    ["point:stop:signalled", "point:restart:stopped", "point:start:network", "runtime:start"],
)
def test_interrupted_restart_is_finished(faulty: FaultyDaemon, fault: str) -> None:
    d = faulty
    d.cli("run", "-d", "--name", "box", IMAGE, "sh", "-c", COUNTER, check=True)
    first = _state(d, "box")["Pid"]
    interrupt(d, fault, "restart", "box")
    wait_for("the restart to finish", lambda: _state(d, "box")["Running"])
    _assert_runs(d, "box")
    assert _state(d, "box")["Pid"] != first
    assert_matches_reality(d)


# -- remove ---------------------------------------------------------------------------

REMOVALS = [
    "point:remove:recorded",
    "point:remove:released",
    "point:remove:files",
    "point:remove:volumes",
    "runtime:delete",
]


@pytest.mark.parametrize("fault", REMOVALS)
def test_interrupted_removal_is_finished(faulty: FaultyDaemon, fault: str) -> None:
    d = faulty
    d.cli("run", "--name", "box", "-v", "/data", IMAGE, "true", check=True)
    interrupt(d, fault, "rm", "-v", "box")
    assert _names(d) == []
    assert d.cli("volume", "ls", "-q").stdout.split() == []
    assert_matches_reality(d)
    d.cli("run", "-d", "--name", "box", IMAGE, "sh", "-c", COUNTER, check=True)  # the name is free
    _assert_runs(d, "box")


@pytest.mark.parametrize("fault", ["point:stop:killed", "point:remove:released", "runtime:kill"])
def test_interrupted_forced_removal_is_finished(faulty: FaultyDaemon, fault: str) -> None:
    d = faulty
    d.cli(
        "run", "-d", "--name", "box", "-p", "127.0.0.1::80", IMAGE, "sh", "-c", COUNTER, check=True
    )
    d.cli("run", "-d", "--name", "other", IMAGE, "sh", "-c", COUNTER, check=True)
    interrupt(d, fault, "rm", "-f", "box")
    wait_for("the removal to finish", lambda: _names(d) == ["other"])
    _assert_runs(d, "other")
    assert_matches_reality(d)


@pytest.mark.parametrize("fault", ["point:stop:signalled", "point:remove:files"])
def test_interrupted_stop_of_an_auto_removed_container(faulty: FaultyDaemon, fault: str) -> None:
    d = faulty
    d.cli("run", "-d", "--rm", "--name", "gone", IMAGE, "sh", "-c", COUNTER, check=True)
    interrupt(d, fault, "stop", "gone")
    wait_for("auto-removal", lambda: _names(d) == [])
    assert_matches_reality(d)


# -- rename, network connect and disconnect -------------------------------------------


def test_interrupted_rename_keeps_one_name(faulty: FaultyDaemon) -> None:
    d = faulty
    d.cli("network", "create", "--subnet", d.subnet(5), "net", check=True)
    d.cli("run", "-d", "--name", "old", "--network", "net", IMAGE, "sh", "-c", COUNTER, check=True)
    d.cli("run", "-d", "--name", "peer", "--network", "net", IMAGE, "sh", "-c", COUNTER, check=True)
    interrupt(d, "point:rename:recorded", "rename", "old", "new")
    assert _names(d) == ["old", "peer"]
    # The network's DNS answers to the name the container has.
    assert d.cli("exec", "peer", "nslookup", "old").returncode == 0
    assert d.cli("exec", "peer", "nslookup", "new").returncode != 0
    d.cli("rename", "old", "new", check=True)
    assert d.cli("exec", "peer", "nslookup", "new").returncode == 0
    assert_matches_reality(d)


def test_interrupted_connect_settles_on_the_endpoint(faulty: FaultyDaemon) -> None:
    d = faulty
    d.cli("network", "create", "--subnet", d.subnet(6), "extra", check=True)
    d.cli("run", "-d", "--name", "box", IMAGE, "sh", "-c", COUNTER, check=True)
    interrupt(d, "point:connect:endpoint", "network", "connect", "extra", "box")
    networks = _inspect(d, "box")["NetworkSettings"]["Networks"]
    assert sorted(networks) == ["bridge", "extra"] and networks["extra"]["IPAddress"]
    interfaces = d.cli("exec", "box", "ip", "-o", "-4", "addr").stdout
    assert networks["extra"]["IPAddress"] in interfaces
    assert_matches_reality(d)
    d.cli("network", "disconnect", "extra", "box", check=True)
    assert_matches_reality(d)


def test_interrupted_disconnect_settles_on_the_endpoint(faulty: FaultyDaemon) -> None:
    d = faulty
    d.cli("network", "create", "--subnet", d.subnet(7), "extra", check=True)
    d.cli("run", "-d", "--name", "box", IMAGE, "sh", "-c", COUNTER, check=True)
    d.cli("network", "connect", "extra", "box", check=True)
    interrupt(d, "point:disconnect:endpoint", "network", "disconnect", "extra", "box")
    assert sorted(_inspect(d, "box")["NetworkSettings"]["Networks"]) == ["bridge"]
    assert_matches_reality(d)
    d.cli("network", "rm", "extra", check=True)  # nothing holds it any more


# -- exec, and a monitor killed while the daemon is down ------------------------------


@pytest.mark.parametrize("fault", ["point:exec:recorded", "monitor:exec", "point:exec:started"])
def test_interrupted_exec_leaves_nothing(faulty: FaultyDaemon, fault: str) -> None:
    d = faulty
    d.cli("run", "-d", "--name", "box", IMAGE, "sh", "-c", COUNTER, check=True)
    interrupt(d, fault, "exec", "box", "sleep", "1")
    _assert_runs(d, "box")
    # A process the exec left running finishes; then its directory and link go.
    wait_for("the exec to settle", lambda: len(os.listdir(d.exec_root / "attach")) == 1)
    bundle = d.exec_root / "containers" / _inspect(d, "box")["Id"]
    wait_for("the exec's directory to go", lambda: not list(bundle.glob("exec/*")))
    assert_matches_reality(d)


def test_a_container_whose_monitor_died_with_the_daemon_is_stopped(
    faulty: FaultyDaemon,
) -> None:
    """Without its monitor nobody logs it nor records its exit: it is stopped, and shown
    exited with the monitor's failure."""
    d = faulty
    d.cli("run", "-d", "--name", "box", IMAGE, "sh", "-c", COUNTER, check=True)
    d.cli("run", "-d", "--name", "ok", IMAGE, "sh", "-c", COUNTER, check=True)
    monitor_pid = int(
        (d.exec_root / "containers" / _inspect(d, "box")["Id"] / "conmon.pid").read_text()
    )
    d.kill9()
    os.kill(monitor_pid, 9)
    d.start()
    state = _state(d, "box")
    assert state["Status"] == "exited" and state["ExitCode"] == 255
    assert "monitor" in state["Error"]
    _assert_runs(d, "ok")
    assert_matches_reality(d)


# -- defect 4: the runtime's binary is gone at restart ----------------------------------


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
    for name in ("sa", "sb", "sc", "sp"):
        d.cli(
            "run", "-d", "--runtime", "spare", "--name", name, IMAGE, "sh", "-c", COUNTER,
            check=True,
        )  # fmt: skip
    d.cli("pause", "sp", check=True)
    d.cli("create", "--runtime", "spare", "--name", "sd", IMAGE, "true", check=True)
    d.kill9()
    spare.unlink()
    d.start()
    warning = [line for line in d.log_path.read_text().splitlines() if "spare" in line]
    assert warning and all(n in warning[-1] for n in ("sa", "sb", "sc", "sd", "sp")), warning
    assert _names(d) == ["sa", "sb", "sc", "sd", "sp"]
    statuses = {name: _state(d, name)["Status"] for name in _names(d)}
    assert statuses == {
        "sa": "running", "sb": "running", "sc": "running", "sd": "created", "sp": "paused",
    }  # fmt: skip
    before = len(_counts(d, "sa"))
    wait_for("sa logging", lambda: len(_counts(d, "sa")) > before + 2)

    stop = d.cli("stop", "sa")
    assert stop.returncode == 0, stop.stderr
    assert _state(d, "sa")["Status"] == "exited" and _state(d, "sa")["ExitCode"] == 0
    kill = d.cli("kill", "sb")
    assert kill.returncode == 0, kill.stderr
    assert _state(d, "sb")["ExitCode"] == 137
    for name in ("sc", "sp"):  # running, and paused (frozen)
        rm = d.cli("rm", "-f", name)
        assert rm.returncode == 0, rm.stderr
    for name in ("sd", "sa"):
        status, body = d.api("POST", f"/containers/{name}/start")
        assert status == 500 and 'runtime "spare" is not available' in body["message"], body
    assert_matches_reality(d, check=False)
    report = d.cli("system", "check", "-q")  # the check names what is wrong, and why
    assert report.returncode == 1
    for name in ("sa", "sb", "sd"):
        assert f"container {name} (" in report.stdout, report.stdout
    assert report.stdout.count("its runtime 'spare' is not available") == 3, report.stdout
    d.cli("rm", "sa", "sb", "sd", check=True)
    assert _names(d) == []
    assert_matches_reality(d)
