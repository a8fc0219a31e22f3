"""`--privileged` on a host that withholds capabilities from the daemon (a CI sandbox,
a nested engine): the container gets every capability the daemon holds, as Podman
grants it, instead of failing to start; `info` says what the host withholds
(issue 14, defect 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import Daemon

IMAGE = "demo/busybox:1"
# Capability numbers, in the kernel's order (CAP_CHOWN is 0).
NAMES = (
    "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP "
    "LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER "
    "SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE "
    "SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP "
    "MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF "
    "CHECKPOINT_RESTORE"
).split()


def _mask(status: str, field: str) -> int:
    line = next(x for x in status.splitlines() if x.startswith(field + ":"))
    return int(line.split()[1], 16)


def _ours() -> int:
    """The test's (and so the daemon's) bounding set, within the capabilities named."""
    return _mask(Path("/proc/self/status").read_text(), "CapBnd") & ((1 << len(NAMES)) - 1)


def _withheld() -> list[str]:
    return [f"CAP_{n}" for i, n in enumerate(NAMES) if not _ours() >> i & 1]


@pytest.mark.parametrize("flags", [["--privileged"], ["--cap-add", "ALL"]])
def test_all_capabilities_are_those_the_daemon_holds(daemon: Daemon, flags: list[str]) -> None:
    result = daemon.docker("run", "--rm", *flags, IMAGE, "cat", "/proc/self/status")
    assert result.returncode == 0, result.stderr
    assert _mask(result.stdout, "CapEff") == _ours()
    assert _mask(result.stdout, "CapBnd") == _ours()


def test_info_names_what_the_host_withholds(daemon: Daemon) -> None:
    warnings = daemon.api("GET", "/v1.45/info")[1]["Warnings"] or []
    about = [w for w in warnings if "withholds capabilities" in w]
    if not _withheld():
        assert about == []
        return
    assert about == [
        "WARNING: this host withholds capabilities from the daemon, so privileged "
        f"containers run without them: {', '.join(_withheld())}"
    ]


def test_a_withheld_capability_asked_for_by_name_is_refused_at_create(daemon: Daemon) -> None:
    if not _withheld():
        pytest.skip("this host withholds no capability from the daemon")
    missing = _withheld()[0]
    before = daemon.docker("ps", "-aq").stdout.split()
    result = daemon.docker("create", "--cap-add", missing.removeprefix("CAP_"), IMAGE, "true")
    assert result.returncode != 0
    assert f"capability {missing} is not available" in result.stderr
    assert daemon.docker("ps", "-aq").stdout.split() == before  # nothing half made
