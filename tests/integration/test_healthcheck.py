"""Healthchecks as Docker runs them, through the docker CLI, docker-py and our CLI.

Probes run every second here; every wait polls with a generous deadline.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.harness import Daemon

IMAGE = "demo/busybox:1"
S = 1_000_000_000
# The main process reaps whatever a probe leaves behind (busybox sh waits for any child).
REAPER = ["sh", "-c", "while :; do sleep 1; done"]

T = TypeVar("T")


def wait_for(probe: Callable[[], T], deadline: float = 120.0) -> T:
    end = time.monotonic() + deadline
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"still {value!r}")
        time.sleep(0.1)


def docker(daemon: Daemon, *args: str) -> str:
    result = daemon.docker(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def health_of(daemon: Daemon, name: str) -> Any:
    return json.loads(docker(daemon, "inspect", "--format", "{{json .State.Health}}", name))


def status_is(daemon: Daemon, name: str, status: str) -> Callable[[], Any]:
    def probe() -> Any:
        current = health_of(daemon, name)
        return current if current and current["Status"] == status else None

    return probe


def ps_status(daemon: Daemon, name: str) -> str:
    return docker(daemon, "ps", "-a", "--filter", f"name={name}", "--format", "{{.Status}}")


def names_with(daemon: Daemon, health: str) -> list[str]:
    out = docker(daemon, "ps", "-a", "--filter", f"health={health}", "--format", "{{.Names}}")
    return out.split()


@pytest.fixture
def cleanup(daemon: Daemon) -> Iterator[list[str]]:
    """Names of containers to remove after the test."""
    names: list[str] = []
    yield names
    if names:
        daemon.docker("rm", "-f", *names)


def test_health_cmd_starting_unhealthy_then_healthy(
    daemon: Daemon, client: Any, name: str, cleanup: list[str]
) -> None:
    since = time.time() - 1
    cleanup.append(name)
    docker(
        daemon,
        "run",
        "-d",
        "--name",
        name,
        "--health-cmd",
        "test -f /tmp/ok",
        "--health-interval",
        "1s",
        "--health-retries",
        "2",
        IMAGE,
        *REAPER,
    )
    unhealthy = wait_for(status_is(daemon, name, "unhealthy"))
    assert unhealthy["FailingStreak"] >= 2
    assert all(entry["ExitCode"] == 1 for entry in unhealthy["Log"])
    assert ps_status(daemon, name).strip().endswith("(unhealthy)")
    assert name in names_with(daemon, "unhealthy")
    assert name not in names_with(daemon, "healthy")

    docker(daemon, "exec", name, "touch", "/tmp/ok")
    healthy = wait_for(status_is(daemon, name, "healthy"))
    assert healthy["FailingStreak"] == 0 and healthy["Log"][-1]["ExitCode"] == 0
    assert ps_status(daemon, name).startswith("Up ")
    assert ps_status(daemon, name).strip().endswith("(healthy)")
    assert name in names_with(daemon, "healthy")
    assert name not in names_with(daemon, "unhealthy") + names_with(daemon, "none")

    events = client.events(
        since=since, until=time.time() + 0.5, decode=True, filters={"container": name}
    )
    actions = [e["Action"] for e in events]
    assert "health_status: unhealthy" in actions and "health_status: healthy" in actions
    assert actions.index("health_status: unhealthy") < actions.index("health_status: healthy")
    # `event=health_status` selects every status change, as with Docker.
    changes = docker(
        daemon,
        "events",
        "--since",
        f"{since:.3f}",
        "--until",
        f"{time.time():.3f}",
        "--filter",
        f"container={name}",
        "--filter",
        "event=health_status",
        "--format",
        "{{.Action}}",
    )
    assert changes.splitlines() == ["health_status: unhealthy", "health_status: healthy"]
    # Probes are execs, announced as Docker announces them.
    assert "exec_create: /bin/sh -c test -f /tmp/ok" in actions
    assert "exec_start: /bin/sh -c test -f /tmp/ok" in actions
    assert "exec_die" in actions
    # ... and are not kept once they have run.
    ids = docker(daemon, "inspect", "--format", "{{json .ExecIDs}}", name).strip()
    assert ids == "null" or len(json.loads(ids)) == 1  # at most the probe running now


def test_health_starting_shows_in_ps_and_filters(
    daemon: Daemon, name: str, cleanup: list[str]
) -> None:
    cleanup.append(name)
    # The first probe is 30 s (the default interval) away: "starting" until then.
    docker(daemon, "run", "-d", "--name", name, "--health-cmd", "true", IMAGE, *REAPER)
    assert health_of(daemon, name) == {"Status": "starting", "FailingStreak": 0, "Log": None}
    assert ps_status(daemon, name).strip().endswith("(health: starting)")
    assert name in names_with(daemon, "starting")
    config = docker(daemon, "inspect", "--format", "{{json .Config.Healthcheck}}", name)
    assert json.loads(config) == {"Test": ["CMD-SHELL", "true"]}
    bad = daemon.docker("ps", "--filter", "health=sick")
    assert bad.returncode != 0
    assert (
        "invalid filter 'health=sick': invalid value for health (sick): "
        "must be one of none, starting, healthy, unhealthy"
    ) in bad.stderr


def test_image_healthcheck_is_run_and_flags_override_it(
    daemon: Daemon, tmp_path: Path, name: str, cleanup: list[str]
) -> None:
    (tmp_path / "Dockerfile").write_text(
        f"FROM {IMAGE}\n"
        'HEALTHCHECK --interval=1s --timeout=20s --retries=4 CMD ["cat", "/etc/hostname"]\n'
    )
    tag = f"{name}:hc"
    env = {
        **os.environ,
        "DOCKER_HOST": daemon.host,
        "DOCKER_CONFIG": str(daemon.base / "docker"),
        "DOCKER_BUILDKIT": "0",
    }
    built = subprocess.run(
        ["docker", "build", "-q", "-t", tag, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    cleanup += [name, name + "-off", name + "-none"]
    docker(daemon, "run", "-d", "--name", name, "--health-timeout", "5s", tag, *REAPER)
    config = docker(daemon, "inspect", "--format", "{{json .Config.Healthcheck}}", name)
    assert json.loads(config) == {
        "Test": ["CMD", "cat", "/etc/hostname"],
        "Interval": 1 * S,
        "Timeout": 5 * S,
        "Retries": 4,
    }
    healthy = wait_for(status_is(daemon, name, "healthy"))
    container_id = docker(daemon, "inspect", "--format", "{{.Id}}", name).strip()
    # The probe ran inside the container: it read the container's own hostname.
    assert healthy["Log"][0]["Output"] == container_id[:12] + "\n"

    docker(daemon, "run", "-d", "--name", name + "-off", "--no-healthcheck", tag, *REAPER)
    status, body = daemon.api(
        "POST",
        f"/containers/create?name={name}-none",
        {"Image": tag, "Cmd": REAPER, "Healthcheck": {"Test": ["NONE"]}},
    )
    assert status == 201, body
    docker(daemon, "start", name + "-none")
    for disabled in (name + "-off", name + "-none"):
        assert health_of(daemon, disabled) is None
        assert ps_status(daemon, disabled).startswith("Up ")
        assert "(" not in ps_status(daemon, disabled)
        assert disabled in names_with(daemon, "none")


def test_hanging_probe_is_killed_and_counts_as_failure(
    daemon: Daemon, name: str, cleanup: list[str]
) -> None:
    cleanup.append(name)
    docker(
        daemon,
        "run",
        "-d",
        "--name",
        name,
        "--health-cmd",
        "echo started; sleep 100 | cat",
        "--health-timeout",
        "1s",
        "--health-interval",
        "1s",
        "--health-retries",
        "2",
        IMAGE,
        *REAPER,
    )
    unhealthy = wait_for(status_is(daemon, name, "unhealthy"))
    for entry in unhealthy["Log"]:
        assert entry["ExitCode"] == -1
        assert entry["Output"] == "Health check exceeded timeout (1s): started\n"
    wait_for(lambda: len(health_of(daemon, name)["Log"]) >= 3)
    # Each timed-out probe was killed with what it started: at most the probe running
    # now has a `sleep 100`.
    processes = docker(daemon, "exec", name, "ps", "-o", "pid,stat,args")
    assert processes.count("sleep 100") <= 1, processes


def test_the_log_keeps_the_last_five_probes(daemon: Daemon, name: str, cleanup: list[str]) -> None:
    cleanup.append(name)
    docker(
        daemon,
        "run",
        "-d",
        "--name",
        name,
        "--health-cmd",
        "echo x >> /tmp/probes; wc -l < /tmp/probes",
        "--health-interval",
        "1s",
        IMAGE,
        *REAPER,
    )

    def seventh_probe_seen() -> Any:
        log = health_of(daemon, name)["Log"] or []
        return log if log and int(log[-1]["Output"]) >= 7 else None

    log = wait_for(seventh_probe_seen)
    assert len(log) == 5
    counts = [int(entry["Output"]) for entry in log]
    assert counts == list(range(counts[-1] - 4, counts[-1] + 1))
    for entry in log:
        assert entry["Start"] <= entry["End"] and entry["ExitCode"] == 0


def test_start_period_and_start_interval(daemon: Daemon, name: str, cleanup: list[str]) -> None:
    cleanup.append(name)
    docker(
        daemon,
        "run",
        "-d",
        "--name",
        name,
        "--health-cmd",
        "test -f /tmp/ok",
        "--health-interval",
        "1h",
        "--health-start-period",
        "1h",
        "--health-start-interval",
        "1s",
        "--health-retries",
        "1",
        IMAGE,
        *REAPER,
    )
    # Probes every second (the start interval, not the hour-long interval), and their
    # failures inside the start period do not count.
    starting = wait_for(lambda: (h := health_of(daemon, name))["Log"] and len(h["Log"]) >= 2 and h)
    assert starting["Status"] == "starting" and starting["FailingStreak"] == 0
    assert all(entry["ExitCode"] == 1 for entry in starting["Log"])
    docker(daemon, "exec", name, "touch", "/tmp/ok")
    wait_for(status_is(daemon, name, "healthy"))


def test_pause_stop_and_restart(daemon: Daemon, name: str, cleanup: list[str]) -> None:
    cleanup.append(name)
    docker(
        daemon,
        "run",
        "-d",
        "--name",
        name,
        "--health-cmd",
        "true",
        "--health-interval",
        "1s",
        IMAGE,
        *REAPER,
    )
    wait_for(status_is(daemon, name, "healthy"))
    # As Docker: a container whose checks stopped reads "unhealthy", without an event.
    docker(daemon, "pause", name)
    assert health_of(daemon, name)["Status"] == "unhealthy"
    assert ps_status(daemon, name).strip().endswith("(Paused)")
    probes = len(health_of(daemon, name)["Log"])
    time.sleep(1.5)
    assert len(health_of(daemon, name)["Log"]) == probes  # no probe while paused
    docker(daemon, "unpause", name)
    wait_for(status_is(daemon, name, "healthy"))

    docker(daemon, "stop", "-t", "1", name)
    stopped = health_of(daemon, name)
    assert stopped["Status"] == "unhealthy"
    assert ps_status(daemon, name).startswith("Exited")
    assert name in names_with(daemon, "unhealthy")

    docker(daemon, "start", name)
    restarted = health_of(daemon, name)
    # Every start begins at "starting"; the log of earlier probes is kept.
    assert restarted["Status"] == "starting" and restarted["FailingStreak"] == 0
    assert restarted["Log"] == stopped["Log"]
    wait_for(status_is(daemon, name, "healthy"))


def test_health_survives_a_daemon_crash(own_daemon: Daemon, name: str) -> None:
    d = own_daemon
    docker(
        d,
        "run",
        "-d",
        "--name",
        name,
        "--health-cmd",
        "true",
        "--health-interval",
        "1s",
        IMAGE,
        *REAPER,
    )
    before = wait_for(lambda: (h := health_of(d, name))["Log"] and len(h["Log"]) >= 2 and h)
    assert before["Status"] == "healthy"
    d.kill9()
    d.start()
    after = health_of(d, name)
    assert after["Status"] == "healthy"
    assert before["Log"][0] in after["Log"]  # at most one more probe finished before the kill
    assert ps_status(d, name).strip().endswith("(healthy)")
    # Probes resume: a probe newer than any before the restart.
    wait_for(lambda: health_of(d, name)["Log"][-1]["Start"] != after["Log"][-1]["Start"])
    docker(d, "rm", "-f", name)


def test_docker_py_healthcheck_and_attrs(client: Any, name: str, cleanup: list[str]) -> None:
    cleanup.append(name)
    container = client.containers.run(
        IMAGE,
        REAPER,
        name=name,
        detach=True,
        healthcheck={"test": ["CMD", "true"], "interval": S, "retries": 1},
    )
    assert container.attrs["Config"]["Healthcheck"] == {
        "Test": ["CMD", "true"],
        "Interval": S,
        "Retries": 1,
    }

    def healthy() -> bool:
        container.reload()
        return container.attrs["State"]["Health"]["Status"] == "healthy"

    wait_for(healthy)
    state = container.attrs["State"]
    assert list(state)[-1] == "Health"
    assert state["Health"]["Log"][-1]["ExitCode"] == 0
    assert [c.name for c in client.containers.list(filters={"health": "healthy"})].count(name) == 1


@pytest.mark.parametrize(
    ("healthcheck", "message"),
    [
        ({"Interval": 1}, "Interval in Healthcheck cannot be less than 1ms"),
        ({"Timeout": 999_999}, "Timeout in Healthcheck cannot be less than 1ms"),
        ({"Retries": -1}, "Retries in Healthcheck cannot be negative"),
        ({"StartPeriod": -S}, "StartPeriod in Healthcheck cannot be less than 1ms"),
        ({"StartInterval": 5}, "StartInterval in Healthcheck cannot be less than 1ms"),
        (
            {"Interval": "1s"},
            "invalid JSON: json: cannot unmarshal string into Healthcheck.Interval",
        ),
    ],
)
def test_bad_healthchecks_are_400_and_create_nothing(
    daemon: Daemon, name: str, healthcheck: dict[str, Any], message: str
) -> None:
    status, body = daemon.api(
        "POST",
        f"/containers/create?name={name}",
        {"Image": IMAGE, "Cmd": ["true"], "Healthcheck": {"Test": ["CMD", "true"], **healthcheck}},
    )
    assert status == 400
    assert message in body["message"]
    assert daemon.docker("inspect", name).returncode != 0


def test_docker_cli_bad_durations(daemon: Daemon, name: str) -> None:
    result = daemon.docker("run", "--name", name, "--health-interval", "1ns", IMAGE, "true")
    assert result.returncode != 0
    assert "Interval in Healthcheck cannot be less than 1ms" in result.stderr
    assert daemon.docker("inspect", name).returncode != 0


def test_start_interval_needs_api_1_44(daemon: Daemon, name: str, cleanup: list[str]) -> None:
    cleanup += [name + "-old", name + "-new"]
    request = {
        "Image": IMAGE,
        "Cmd": ["true"],
        "Healthcheck": {"Test": ["NONE"], "StartInterval": S},
    }
    for version, suffix in (("1.43", "-old"), ("1.44", "-new")):
        status, body = daemon.api(
            "POST", f"/v{version}/containers/create?name={name}{suffix}", request
        )
        assert status == 201, body
    old = json.loads(
        docker(daemon, "inspect", "--format", "{{json .Config.Healthcheck}}", name + "-old")
    )
    new = json.loads(
        docker(daemon, "inspect", "--format", "{{json .Config.Healthcheck}}", name + "-new")
    )
    assert old == {"Test": ["NONE"]}
    assert new == {"Test": ["NONE"], "StartInterval": S}


def test_our_cli_health_flags(daemon: Daemon, name: str, cleanup: list[str]) -> None:
    cleanup += [name, name + "-off"]
    daemon.cli(
        "run",
        "-d",
        "--name",
        name,
        "--health-cmd",
        "true",
        "--health-interval",
        "1s",
        "--health-timeout",
        "2s",
        "--health-start-period",
        "3s",
        "--health-start-interval",
        "500ms",
        "--health-retries",
        "5",
        IMAGE,
        *REAPER,
        check=True,
    )
    config = docker(daemon, "inspect", "--format", "{{json .Config.Healthcheck}}", name)
    assert json.loads(config) == {
        "Test": ["CMD-SHELL", "true"],
        "Interval": S,
        "Timeout": 2 * S,
        "StartPeriod": 3 * S,
        "StartInterval": S // 2,
        "Retries": 5,
    }
    wait_for(status_is(daemon, name, "healthy"))
    ps = daemon.cli("ps", "--filter", "health=healthy", "--format", "{{.Names}} {{.Status}}")
    assert f"{name} Up" in ps.stdout and "(healthy)" in ps.stdout
    conflict = daemon.cli("run", "--no-healthcheck", "--health-cmd", "true", IMAGE, "true")
    assert conflict.returncode != 0
    assert "--no-healthcheck conflicts with --health-* options" in conflict.stderr
    daemon.cli("create", "--name", name + "-off", "--no-healthcheck", IMAGE, "true", check=True)
    config = docker(daemon, "inspect", "--format", "{{json .Config.Healthcheck}}", name + "-off")
    assert json.loads(config) == {"Test": ["NONE"]}
