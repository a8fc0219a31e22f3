"""/sys/fs/cgroup inside a container: read-only unless privileged, as under Docker."""

from __future__ import annotations

import pytest

from tests.harness import Daemon

IMAGE = "demo/busybox:1"

# Tries to write at the top of /sys/fs/cgroup and in every directory under it (on
# cgroup v1 hosts the top is a tmpfs holding one mount per controller), then shows
# the options of the mount a process there sees at /sys/fs/cgroup.
SCRIPT = """
writable=no
touch /sys/fs/cgroup/probe 2>/dev/null && writable=yes
for d in /sys/fs/cgroup/*/; do mkdir "${d}probe" 2>/dev/null && writable=yes; done
echo "writable=$writable"
echo "entries=$(ls /sys/fs/cgroup | wc -l)"
awk '$5 == "/sys/fs/cgroup" {options = $6} END {print "options=" options}' /proc/self/mountinfo
"""


def inspect(result_stdout: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in result_stdout.split())


def test_sys_fs_cgroup_is_read_only(daemon: Daemon) -> None:
    result = daemon.cli("run", "--rm", IMAGE, "sh", "-c", SCRIPT)
    assert result.returncode == 0, result.stderr
    seen = inspect(result.stdout)
    assert seen["writable"] == "no"
    assert seen["options"].split(",")[0] == "ro"
    assert int(seen["entries"]) > 0  # still there to read


def test_system_paths_unconfined_keeps_it_read_only(daemon: Daemon) -> None:
    # docker's CLI turns this option into empty MaskedPaths and ReadonlyPaths.
    result = daemon.docker(
        "run", "--rm", "--security-opt", "systempaths=unconfined", IMAGE, "sh", "-c", SCRIPT
    )
    assert result.returncode == 0, result.stderr
    assert inspect(result.stdout)["writable"] == "no"


def test_a_users_own_mount_there_is_left_as_asked(daemon: Daemon) -> None:
    result = daemon.cli("run", "--rm", "--tmpfs", "/sys/fs/cgroup", IMAGE, "sh", "-c", SCRIPT)
    assert result.returncode == 0, result.stderr
    assert inspect(result.stdout)["writable"] == "yes"


def test_privileged_containers_may_write(daemon: Daemon) -> None:
    result = daemon.cli("run", "--rm", "--privileged", IMAGE, "sh", "-c", SCRIPT)
    if "unable to apply caps" in result.stderr:
        pytest.skip("this host withholds a capability from the daemon; --privileged cannot start")
    assert result.returncode == 0, result.stderr
    assert inspect(result.stdout)["options"].split(",")[0] == "rw"
