"""Interactive terminals: `run -it` and `exec -it` under a real pty, and resizing."""

from __future__ import annotations

import fcntl
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
