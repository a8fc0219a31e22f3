"""Interactive terminals: `run -it` and `exec -it` under a real pty, and resizing."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import sys
import termios
import time

import pytest

from tests.harness import REPO, Daemon

IMAGE = "demo/busybox:1"


def drive(
    argv: list[str], env: dict[str, str], steps: list[bytes], size: tuple[int, int] = (30, 100)
) -> tuple[int, str]:
    """Run argv on a new pty of the given size, type each step, return (exit code, screen)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(REPO)
        os.execvpe(argv[0], argv, env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
    output = b""

    def read_for(seconds: float) -> None:
        nonlocal output
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    return
                if not chunk:
                    return
                output += chunk

    read_for(1.0)
    for step in steps:
        if isinstance(step, tuple):  # the user resizes their terminal window
            fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", step[0], step[1], 0, 0))
        else:
            os.write(fd, step)
        read_for(0.7)
    read_for(3.0)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


@pytest.mark.parametrize("tool", ["cli", "docker"])
def test_run_it_gives_a_real_terminal(daemon: Daemon, tool: str) -> None:
    if tool == "cli":
        argv = [sys.executable, "-m", "dockyard", "run", "-it", "--rm", IMAGE, "sh"]
        env = {**os.environ, "DOCKYARD_HOST": daemon.host}
    else:
        argv = ["docker", "run", "-it", "--rm", IMAGE, "sh"]
        env = {**os.environ, "DOCKER_HOST": daemon.host}
    code, screen = drive(argv, env, [b"tty; stty size\r", (50, 132), b"stty size\r", b"exit 5\r"])
    assert code == 5, screen
    assert "/dev/pts/0" in screen
    assert "30 100" in screen  # the client's terminal size reached the container
    assert "50 132" in screen  # and so did the resize


def test_exec_it_and_resize(daemon: Daemon, name: str) -> None:
    daemon.cli("run", "-d", "--name", name, IMAGE, "sleep", "60", check=True)
    try:
        argv = [sys.executable, "-m", "dockyard", "exec", "-it", name, "sh"]
        env = {**os.environ, "DOCKYARD_HOST": daemon.host}
        code, screen = drive(argv, env, [b"stty size; tty\r", b"exit 3\r"], size=(40, 120))
        assert code == 3, screen
        assert "40 120" in screen
        assert "/dev/pts/" in screen
        argv = ["docker", "exec", "-it", name, "sh", "-c", "stty size"]
        code, screen = drive(argv, {**os.environ, "DOCKER_HOST": daemon.host}, [], size=(33, 77))
        assert code == 0 and "33 77" in screen
    finally:
        daemon.cli("rm", "-f", name)


def _running(daemon: Daemon, name: str) -> bool:
    result = daemon.docker("inspect", "-f", "{{.State.Running}}", name)
    return result.stdout.strip() == "true"


def test_docker_cli_detach_keys_leave_the_container_running(daemon: Daemon, name: str) -> None:
    env = {**os.environ, "DOCKER_HOST": daemon.host}
    try:
        # `docker run -it`, then ctrl-p ctrl-q: the CLI leaves quietly, the shell runs on.
        code, screen = drive(
            ["docker", "run", "-it", "--name", name, IMAGE, "sh"],
            env,
            [b"echo first\r", b"\x10\x11"],
        )
        assert code == 0, screen
        assert "first" in screen
        assert _running(daemon, name)
        # Attach again: the terminal still takes input (detaching closed nothing), and a
        # sequence from the config file detaches (docker sends it as detachKeys).
        config = daemon.base / "docker-detach"
        config.mkdir(exist_ok=True)
        (config / "config.json").write_text(json.dumps({"detachKeys": "ctrl-x"}))
        code, screen = drive(
            ["docker", "--config", str(config), "attach", name],
            env,
            [b"echo $((6 * 7))\r", b"\x18"],
        )
        assert code == 1 and "read escape sequence" in screen, screen
        assert "42" in screen
        assert _running(daemon, name)
        # `docker exec -it` likewise: the exec'd shell runs on after the CLI leaves.
        code, screen = drive(
            ["docker", "exec", "-it", name, "sh", "-c", "echo in-exec; exec sleep 555"],
            env,
            [b"\x10\x11"],
        )
        assert code == 1 and "read escape sequence" in screen, screen
        assert "in-exec" in screen
        top = daemon.docker("top", name).stdout
        assert "sleep 555" in top
        assert _running(daemon, name)
    finally:
        daemon.docker("rm", "-f", name)


def test_our_cli_detach_keys(daemon: Daemon, name: str) -> None:
    env = {**os.environ, "DOCKYARD_HOST": daemon.host}
    cli = [sys.executable, "-m", "dockyard"]
    try:
        code, screen = drive(
            [*cli, "run", "-it", "--name", name, "--detach-keys", "ctrl-a,x", IMAGE, "sh"],
            env,
            [b"echo first\r", b"\x01x"],
        )
        assert code == 0, screen
        assert _running(daemon, name)
        code, screen = drive([*cli, "exec", "-it", name, "sh"], env, [b"\x10\x11"])
        assert code == 1 and "read escape sequence" in screen, screen
        assert _running(daemon, name)
        result = daemon.cli("attach", "--detach-keys", "ctrl-", name)
        assert result.returncode != 0 and "invalid detach keys" in result.stderr
    finally:
        daemon.docker("rm", "-f", name)


@pytest.mark.parametrize("how", ["run", "exec"])
def test_terminal_output_has_crlf(daemon: Daemon, name: str, how: str) -> None:
    # The docker CLI puts the local terminal in raw mode: a "\n" reaches the screen as
    # "\r\n" only if the container's own pty translated it, as a real terminal does.
    env = {**os.environ, "DOCKER_HOST": daemon.host}
    command = ["printf", "one\\ntwo\\n"]
    try:
        if how == "run":
            argv = ["docker", "run", "-it", "--name", name, IMAGE, *command]
        else:
            daemon.docker("run", "-d", "--name", name, IMAGE, "sleep", "60")
            argv = ["docker", "exec", "-it", name, *command]
        code, screen = drive(argv, env, [])
        assert code == 0, screen
        assert "one\r\ntwo\r\n" in screen
    finally:
        daemon.docker("rm", "-f", name)
