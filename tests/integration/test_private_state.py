"""The daemon's state is private to root: no other local user can read a container's
environment, its log, its configuration or a plugin's settings from the data root or
the exec root (issue 14, defect 2).

Every file the daemon keeps is listed as root, then each is opened as `nobody`; none
that opens may hold what the test put in: an `-e` value, a line the container logged,
a plugin setting. Knowing a path is not enough: the check tries every file, as an
attacker who knows the layout would.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_plugin_managed import make_plugin_dir, plugin_config
from tests.plugin_env import PluginDaemon

IMAGE = "demo/busybox:1"

# Run as nobody: which of the files named on stdin it can read, and which of those hold
# one of the markers (argv). Non-blocking opens: a FIFO or socket must not hang it.
_PROBE = r"""
import json, os, stat, sys
markers = [m.encode() for m in sys.argv[1:]]
readable, leaking = [], []
for path in json.load(sys.stdin):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        continue
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            continue
        readable.append(path)
        data = b""
        while chunk := os.read(fd, 1 << 20):
            data += chunk
        if any(m in data for m in markers):
            leaking.append(path)
    except OSError:
        pass
    finally:
        os.close(fd)
json.dump({"readable": readable, "leaking": leaking}, sys.stdout)
"""


def _files(*roots: Path) -> list[str]:
    """Every regular file under `roots`, as root sees them (mounts are skipped: what is in
    a container's root file system is the container's, a namespace file holds no data)."""
    found = []
    for root in roots:
        for directory, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not os.path.ismount(os.path.join(directory, d))]
            for name in filenames:
                path = os.path.join(directory, name)
                if stat.S_ISREG(os.lstat(path).st_mode) and not os.path.ismount(path):
                    found.append(path)
    return found


def _as_nobody(paths: list[str], markers: list[str]) -> dict[str, list[str]]:
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
         sys.executable, "-c", _PROBE, *markers],
        input=json.dumps(paths), capture_output=True, text=True, check=True,
    )  # fmt: skip
    probe: dict[str, list[str]] = json.loads(result.stdout)
    return probe


@pytest.fixture
def daemon(busybox_tar: Path) -> Iterator[PluginDaemon]:
    d = PluginDaemon()
    d.start_with()
    d.cli("import", str(busybox_tar), IMAGE, check=True)
    yield d
    d.cleanup()


def test_no_other_user_reads_environment_logs_configuration_or_plugin_settings(
    daemon: PluginDaemon, busybox_tar: Path
) -> None:
    password, logged, setting = (f"marker-{secrets.token_hex(8)}" for _ in range(3))
    # The test's base directory is private (mkdtemp); /var/lib and /run are not.
    for directory in (daemon.base, daemon.data_root.parent, daemon.exec_root.parent):
        os.chmod(directory, 0o755)
    # a running container and a stopped one, with an environment value and a log line
    daemon.cli(
        "run", "-d", "--name", "web", "-e", f"DB_PASSWORD={password}", "-p", "127.0.0.1::80",
        "-v", "data:/data", IMAGE, "sh", "-c", f"echo {logged}; exec sleep 600", check=True,
    )  # fmt: skip
    daemon.cli(
        "run", "--name", "done", "--log-driver", "local", "-e", f"TOKEN={password}",
        IMAGE, "echo", logged, check=True,
    )  # fmt: skip
    daemon.cli("exec", "-e", f"EXEC_SECRET={password}", "web", "true", check=True)
    assert logged in daemon.cli("logs", "web", check=True).stdout
    # a managed plugin with a setting
    config = plugin_config(daemon.base / "plugin-logs")
    (daemon.base / "plugin-logs").mkdir()
    source = make_plugin_dir(daemon.base / "plugin", busybox_tar, config)
    daemon.cli("plugin", "create", "dy/private:1", str(source), check=True)
    daemon.cli("plugin", "set", "dy/private:1", f"LOG_DIR=/{setting}", check=True)

    files = _files(daemon.data_root, daemon.exec_root)
    holding = [p for p in files if any(m.encode() in Path(p).read_bytes() for m in
                                       (password, logged, setting))]  # fmt: skip
    assert holding, "the test put nothing the daemon keeps"
    probe = _as_nobody(files, [password, logged, setting])
    assert probe["leaking"] == []
    # and every file that holds one is root's alone, from its directory down
    for path in holding:
        mode = os.stat(path).st_mode
        assert mode & 0o077 == 0, f"{path} is {stat.filemode(mode)}"
