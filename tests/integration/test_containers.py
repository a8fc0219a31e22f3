"""Running containers through our CLI, the docker CLI and docker-py."""

from __future__ import annotations

import json
import time

import docker
import pytest

from tests.harness import Daemon

IMAGE = "demo/busybox:1"


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


# -- run ---------------------------------------------------------------------


@pytest.mark.parametrize("tool", ["cli", "docker"])
def test_run_prints_output_and_returns_the_exit_code(daemon: Daemon, tool: str) -> None:
    run = daemon.cli if tool == "cli" else daemon.docker
    result = run("run", "--rm", IMAGE, "echo", "hello")
    assert (result.returncode, result.stdout) == (0, "hello\n")
    result = run("run", "--rm", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert result.returncode == 3
    assert result.stdout == "out\n" and result.stderr == "err\n"


@pytest.mark.parametrize("tool", ["cli", "docker"])
def test_missing_command_exits_127_with_the_runtime_message(
    daemon: Daemon, tool: str, name: str
) -> None:
    run = daemon.cli if tool == "cli" else daemon.docker
    result = run("run", "--rm", "--name", name, IMAGE, "nosuchcommand")
    assert result.returncode == 127
    assert "executable file not found" in result.stderr
    # --rm also removes a container whose start failed.
    assert daemon.api("GET", f"/v1.45/containers/{name}/json")[0] == 404


def test_command_that_is_not_executable_exits_126(daemon: Daemon) -> None:
    result = daemon.cli("run", "--rm", IMAGE, "/etc/passwd")
    assert result.returncode == 126, result.stderr


def test_exec_runs_a_program_from_a_bind_mount(daemon: Daemon, name: str, tmp_path) -> None:
    """The command is looked for where the container sees it, mounts included."""
    tool = tmp_path / "tools" / "hello"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\necho hello from the mount\n")
    tool.chmod(0o755)
    daemon.cli(
        "run", "-d", "--name", name, "-v", f"{tool.parent}:/tools:ro", IMAGE, "sleep", "600",
        check=True,
    )  # fmt: skip
    try:
        result = daemon.docker("exec", name, "/tools/hello")
        assert (result.returncode, result.stdout) == (0, "hello from the mount\n"), result.stderr
        result = daemon.docker("exec", "-e", "PATH=/tools:/bin", name, "hello")
        assert (result.returncode, result.stdout) == (0, "hello from the mount\n"), result.stderr
        missing = daemon.docker("exec", name, "/tools/absent")
        assert missing.returncode == 127 and "no such file or directory" in missing.stdout
    finally:
        daemon.cli("rm", "-f", name)


def test_docker_py_run_exec_logs_wait_remove(client) -> None:
    assert client.containers.run(IMAGE, "echo hi", remove=True) == b"hi\n"
    container = client.containers.run(IMAGE, "sh -c 'echo started; sleep 60'", detach=True)
    try:
        wait_for(lambda: b"started" in container.logs())
        exit_code, output = container.exec_run("sh -c 'echo in-exec; exit 4'")
        assert (exit_code, output) == (4, b"in-exec\n")
        container.reload()
        assert container.status == "running"
        assert container.attrs["HostConfig"]["LogConfig"]["Type"] == "json-file"
        container.kill()
        assert container.wait()["StatusCode"] == 137
    finally:
        container.remove(force=True)
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(container.id)
    with pytest.raises(docker.errors.ContainerError) as failure:
        client.containers.run(IMAGE, "sh -c 'echo bad >&2; exit 2'", remove=True)
    assert failure.value.exit_status == 2 and b"bad" in failure.value.stderr


def test_environment_workdir_user_entrypoint_hostname(daemon: Daemon) -> None:
    result = daemon.cli(
        "run",
        "--rm",
        "-e",
        "A=1",
        "-w",
        "/tmp",
        "-u",
        "app",
        "-h",
        "box",
        "--entrypoint",
        "sh",
        IMAGE,
        "-c",
        "echo $A $(pwd) $(id -u):$(id -g) $(hostname) $HOME",
    )
    assert result.stdout.split() == ["1", "/tmp", "1000:1000", "box", "/home/app"], result.stderr
    groups = daemon.cli("run", "--rm", "-u", "app", IMAGE, "id", "-G").stdout.split()
    assert "2000" in groups  # supplementary group from /etc/group


def test_env_file_and_labels(daemon: Daemon, tmp_path, name: str) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=yes\n")
    daemon.cli(
        "run",
        "--name",
        name,
        "--env-file",
        str(env_file),
        "-l",
        "team=a",
        IMAGE,
        "sh",
        "-c",
        "echo $FROM_FILE",
        check=True,
    )
    info = json.loads(daemon.cli("inspect", name).stdout)[0]
    assert "FROM_FILE=yes" in info["Config"]["Env"]
    assert info["Config"]["Labels"] == {"team": "a"}
    assert daemon.cli("logs", name).stdout == "yes\n"
    listed = daemon.cli("ps", "-a", "--filter", "label=team=a", "--format", "{{.Names}}").stdout
    assert name in listed.split()
    daemon.cli("rm", name, check=True)


# -- lifecycle -----------------------------------------------------------------


def test_detached_lifecycle_ps_logs_exec_top_stop_start_rm(daemon: Daemon, name: str) -> None:
    result = daemon.cli(
        "run",
        "-d",
        "--name",
        name,
        IMAGE,
        "sh",
        "-c",
        "trap 'exit 0' TERM; i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.1; done",
    )
    assert result.returncode == 0, result.stderr
    container_id = result.stdout.strip()
    assert len(container_id) == 64
    wait_for(lambda: daemon.cli("logs", name).stdout.count("tick") >= 3)
    ps = daemon.cli("ps", "--format", "{{.ID}} {{.Names}} {{.Status}}").stdout
    assert f"{container_id[:12]} {name} Up" in ps
    tail = daemon.cli("logs", "--tail", "2", name).stdout.splitlines()
    assert len(tail) == 2 and all(line.startswith("tick") for line in tail)
    stamped = daemon.cli("logs", "-t", "--tail", "1", name).stdout
    assert stamped[4] == "-" and stamped[29] == "Z" and "tick" in stamped
    assert daemon.cli("exec", name, "echo", "from-exec").stdout == "from-exec\n"
    top = daemon.cli("top", name)
    assert "PID" in top.stdout and "while" in top.stdout
    stop = daemon.cli("stop", "-t", "5", name)
    assert stop.returncode == 0 and stop.stdout.strip() == name
    info = json.loads(daemon.cli("inspect", name).stdout)[0]
    assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 0
    assert daemon.cli("start", name).returncode == 0
    assert json.loads(daemon.cli("inspect", name).stdout)[0]["State"]["Running"] is True
    refused = daemon.cli("rm", name)
    assert refused.returncode == 1 and "stop the container before removing" in refused.stderr
    assert daemon.cli("rm", "-f", name).returncode == 0
    assert daemon.cli("ps", "-a", "-q").stdout.find(container_id[:12]) == -1


def test_logs_follow_streams_until_exit(daemon: Daemon, name: str) -> None:
    daemon.cli(
        "run",
        "-d",
        "--name",
        name,
        IMAGE,
        "sh",
        "-c",
        "for i in 1 2 3; do echo n$i; sleep 0.3; done",
        check=True,
    )
    follow = daemon.cli("logs", "-f", name, timeout=30)
    assert follow.stdout.split() == ["n1", "n2", "n3"]
    daemon.cli("rm", name, check=True)


def test_stop_uses_the_stop_signal_then_kills(daemon: Daemon, name: str) -> None:
    daemon.cli(
        "run",
        "-d",
        "--name",
        name,
        "--stop-signal",
        "USR1",
        IMAGE,
        "sh",
        "-c",
        "trap 'echo got-usr1; exit 7' USR1; while :; do sleep 0.1; done",
        check=True,
    )
    time.sleep(0.3)
    daemon.cli("stop", name, check=True)
    info = json.loads(daemon.cli("inspect", name).stdout)[0]
    assert info["State"]["ExitCode"] == 7
    assert "got-usr1" in daemon.cli("logs", name).stdout
    # A process that ignores the signal is killed after the timeout: 137.
    daemon.cli("start", name, check=True)
    daemon.cli("stop", "-t", "1", "-s", "CONT", name, check=True)
    assert json.loads(daemon.cli("inspect", name).stdout)[0]["State"]["ExitCode"] == 137
    daemon.cli("rm", name, check=True)


def test_kill_with_signal_and_invalid_signal(daemon: Daemon, name: str) -> None:
    daemon.cli(
        "run",
        "-d",
        "--name",
        name,
        IMAGE,
        "sh",
        "-c",
        "trap 'exit 12' HUP; while :; do sleep 0.1; done",
        check=True,
    )
    time.sleep(0.3)
    bad = daemon.cli("kill", "-s", "NOPE", name)
    assert bad.returncode == 1 and "Invalid signal" in bad.stderr
    daemon.cli("kill", "-s", "HUP", name, check=True)
    assert daemon.cli("wait", name).stdout.strip() == "12"
    not_running = daemon.cli("kill", name)
    assert "is not running" in not_running.stderr
    daemon.cli("rm", name, check=True)


def test_wait_conditions_over_the_api(daemon: Daemon, client, name: str) -> None:
    container = client.containers.create(IMAGE, "sh -c 'exit 9'", name=name)
    assert client.api.wait(container.id, condition="not-running")["StatusCode"] == 0
    container.start()
    assert client.api.wait(container.id)["StatusCode"] == 9
    status, body = daemon.api("POST", f"/v1.45/containers/{name}/wait?condition=bogus")
    assert status == 400 and "invalid condition" in body["message"]
    container.remove()


def test_rename_and_name_conflicts(daemon: Daemon, name: str) -> None:
    other = name + "-b"
    daemon.cli("create", "--name", name, IMAGE, "true", check=True)
    conflict = daemon.cli("create", "--name", name, IMAGE, "true")
    assert conflict.returncode == 125
    assert f'The container name "/{name}" is already in use' in conflict.stderr
    daemon.cli("rename", name, other, check=True)
    assert json.loads(daemon.cli("inspect", other).stdout)[0]["Name"] == "/" + other
    bad = daemon.cli("rename", other, "bad name!")
    assert "Invalid container name" in bad.stderr
    daemon.cli("rm", other, check=True)


def test_references_by_prefix_and_unknown_container(daemon: Daemon, name: str) -> None:
    container_id = daemon.cli("create", "--name", name, IMAGE, "true", check=True).stdout.strip()
    info = json.loads(daemon.cli("inspect", container_id[:8]).stdout)[0]
    assert info["Id"] == container_id
    status, body = daemon.api("GET", "/v1.45/containers/doesnotexist/json")
    assert status == 404 and body["message"] == "No such container: doesnotexist"
    daemon.cli("rm", container_id, check=True)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--memory", "12q"], "invalid size"),
        (["--restart", "sometimes"], "invalid restart policy"),
        (["--restart", "always:3"], "maximum retry count can only be used with 'on-failure'"),
        (["--memory", "1m"], "Minimum memory limit allowed is 6MB"),
        (["--cpus", "99"], "Range of CPUs"),
        (["--cap-add", "CAP_NOPE"], "unknown capability"),
        (["--stop-signal", "SIGNOPE"], "Invalid signal"),
        (["--security-opt", "bogus"], "invalid --security-opt"),
        (["--name", "no/slash"], "Invalid container name"),
        (["--rm", "--restart", "always"], "can't create 'AutoRemove' container with restart"),
    ],
)
def test_invalid_values_are_refused_before_anything_is_created(
    daemon: Daemon, flags: list[str], message: str
) -> None:
    before = daemon.cli("ps", "-aq").stdout
    result = daemon.cli("run", *flags, IMAGE, "true")
    assert result.returncode == 125
    assert message in result.stderr
    assert daemon.cli("ps", "-aq").stdout == before


def test_invalid_values_are_400_over_the_api(daemon: Daemon) -> None:
    status, body = daemon.api(
        "POST",
        "/v1.45/containers/create",
        {"Image": IMAGE, "Cmd": ["true"], "HostConfig": {"Memory": "12q"}},
    )
    assert status == 400 and "Memory" in body["message"]
    status, body = daemon.api("POST", "/v1.45/containers/create", {"Image": IMAGE})
    assert status == 400 and body["message"] == "No command specified"


# -- restart policies ------------------------------------------------------------


def test_on_failure_restart_policy_retries_then_gives_up(daemon: Daemon, name: str) -> None:
    daemon.cli(
        "run",
        "-d",
        "--name",
        name,
        "--restart",
        "on-failure:2",
        IMAGE,
        "sh",
        "-c",
        "echo attempt; exit 1",
        check=True,
    )

    def settled():
        info = json.loads(daemon.cli("inspect", name).stdout)[0]
        return info if info["State"]["Status"] == "exited" and info["RestartCount"] == 2 else None

    info = wait_for(settled)
    assert info["State"]["ExitCode"] == 1
    time.sleep(0.5)
    assert daemon.cli("logs", name).stdout.count("attempt") == 3
    daemon.cli("rm", name, check=True)


def test_always_restart_policy_and_explicit_stop(daemon: Daemon, name: str) -> None:
    daemon.cli(
        "run",
        "-d",
        "--name",
        name,
        "--restart",
        "always",
        IMAGE,
        "sh",
        "-c",
        "sleep 0.2; exit 3",
        check=True,
    )
    wait_for(lambda: json.loads(daemon.cli("inspect", name).stdout)[0]["RestartCount"] >= 2)
    daemon.cli("stop", name, check=True)
    time.sleep(1)
    info = json.loads(daemon.cli("inspect", name).stdout)[0]
    assert info["State"]["Status"] == "exited"
    daemon.cli("rm", "-f", name, check=True)


# -- init, pause, attach ------------------------------------------------------------


def test_init_runs_the_command_under_tini(daemon: Daemon) -> None:
    result = daemon.cli(
        "run", "--rm", "--init", IMAGE, "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("/sbin/docker-init -- sh")


def test_pause_and_unpause(daemon: Daemon, name: str) -> None:
    daemon.cli("run", "-d", "--name", name, IMAGE, "sleep", "60", check=True)
    daemon.cli("pause", name, check=True)
    assert json.loads(daemon.cli("inspect", name).stdout)[0]["State"]["Status"] == "paused"
    assert "(Paused)" in daemon.cli("ps", "--filter", f"name={name}").stdout
    assert "is paused" in daemon.cli("exec", name, "true").stderr
    daemon.cli("unpause", name, check=True)
    assert daemon.cli("exec", name, "true").returncode == 0
    daemon.cli("rm", "-f", name, check=True)


def test_stdin_is_delivered_and_closed(daemon: Daemon) -> None:
    result = daemon.cli("run", "--rm", "-i", IMAGE, "sh", "-c", "wc -c", input=b"12345")
    assert result.stdout.strip() == "5"
    docker_result = daemon.docker("run", "--rm", "-i", IMAGE, "cat", input=b"via docker\n")
    assert docker_result.stdout == "via docker\n"
    exec_in = daemon.docker("run", "--rm", IMAGE, "true")
    assert exec_in.returncode == 0


def test_events_record_the_lifecycle(daemon: Daemon, client, name: str) -> None:
    since = time.time() - 1
    daemon.cli("run", "--rm", "--name", name, IMAGE, "true", check=True)
    events = client.events(
        since=since, until=time.time() + 0.5, decode=True, filters={"container": name}
    )
    actions = [e["Action"] for e in events]
    for expected in ("create", "start", "die", "destroy"):
        assert expected in actions
    assert actions.index("create") < actions.index("start") < actions.index("die")
