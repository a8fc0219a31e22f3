"""Resource limits and security defaults, checked from inside real containers."""

from __future__ import annotations

import json
from pathlib import Path

from tests.harness import Daemon

IMAGE = "demo/busybox:1"


def test_memory_cpu_and_pids_limits_apply(daemon: Daemon, name: str) -> None:
    daemon.cli(
        "run",
        "-d",
        "--name",
        name,
        "--memory",
        "64m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "50",
        IMAGE,
        "sleep",
        "60",
        check=True,
    )
    try:
        container_id = json.loads(daemon.cli("inspect", name).stdout)[0]["Id"]
        info = daemon.api("GET", "/v1.45/info")[1]
        path = f"{daemon.cgroup_parent}/{container_id}"
        if info["CgroupVersion"] == "2":
            base = f"/sys/fs/cgroup/{path}"
            assert Path(f"{base}/memory.max").read_text().strip() == str(64 << 20)
            assert Path(f"{base}/cpu.max").read_text().split() == ["50000", "100000"]
            assert Path(f"{base}/pids.max").read_text().strip() == "50"
        else:
            assert Path(
                f"/sys/fs/cgroup/memory/{path}/memory.limit_in_bytes"
            ).read_text().strip() == str(64 << 20)
            assert (
                Path(f"/sys/fs/cgroup/cpu/{path}/cpu.cfs_quota_us").read_text().strip() == "50000"
            )
            assert Path(f"/sys/fs/cgroup/pids/{path}/pids.max").read_text().strip() == "50"
        hc = json.loads(daemon.cli("inspect", name).stdout)[0]["HostConfig"]
        assert (hc["Memory"], hc["NanoCpus"], hc["PidsLimit"]) == (64 << 20, 500_000_000, 50)
    finally:
        daemon.cli("rm", "-f", name, check=True)


def test_pids_limit_stops_fork_bombs(daemon: Daemon) -> None:
    result = daemon.cli(
        "run",
        "--rm",
        "--pids-limit",
        "10",
        IMAGE,
        "sh",
        "-c",
        "for i in $(seq 30); do sleep 5 & done 2>&1; echo done",
    )
    assert "can't fork" in result.stdout + result.stderr or "Resource" in result.stdout


def test_oom_kill_is_reported(daemon: Daemon, name: str) -> None:
    # tail buffers its whole input: /dev/zero has no newline, so it grows until killed.
    result = daemon.cli(
        "run",
        "--name",
        name,
        "--memory",
        "16m",
        "--memory-swap",
        "16m",
        IMAGE,
        "sh",
        "-c",
        "tail /dev/zero",
    )
    assert result.returncode == 137
    state = json.loads(daemon.cli("inspect", name).stdout)[0]["State"]
    assert state["OOMKilled"] is True
    daemon.cli("rm", name, check=True)


def test_default_capabilities_and_cap_drop(daemon: Daemon) -> None:
    # CAP_NET_RAW (bit 13) is in docker's default set, CAP_SYS_ADMIN (bit 21) is not.
    script = "grep CapEff /proc/self/status | cut -f2"
    default = int(daemon.cli("run", "--rm", IMAGE, "sh", "-c", script).stdout.strip(), 16)
    assert default & (1 << 13) and not default & (1 << 21)
    dropped = int(
        daemon.cli(
            "run", "--rm", "--cap-drop", "NET_RAW", IMAGE, "sh", "-c", script
        ).stdout.strip(),
        16,
    )
    assert not dropped & (1 << 13)
    added = int(
        daemon.cli(
            "run", "--rm", "--cap-add", "SYS_ADMIN", IMAGE, "sh", "-c", script
        ).stdout.strip(),
        16,
    )
    assert added & (1 << 21)


def test_no_new_privileges_and_seccomp(daemon: Daemon) -> None:
    nnp = daemon.cli(
        "run",
        "--rm",
        "--security-opt",
        "no-new-privileges",
        IMAGE,
        "sh",
        "-c",
        "grep NoNewPrivs /proc/self/status",
    ).stdout.split()
    assert nnp == ["NoNewPrivs:", "1"]
    seccomp = daemon.cli("run", "--rm", IMAGE, "sh", "-c", "grep Seccomp: /proc/self/status")
    info = daemon.api("GET", "/v1.45/info")[1]
    if any(opt.startswith("name=seccomp") for opt in info["SecurityOptions"]):
        assert seccomp.stdout.split() == ["Seccomp:", "2"]
    unconfined = daemon.cli(
        "run",
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        IMAGE,
        "sh",
        "-c",
        "grep Seccomp: /proc/self/status",
    )
    assert unconfined.stdout.split() == ["Seccomp:", "0"]


def test_read_only_rootfs_and_masked_paths(daemon: Daemon) -> None:
    result = daemon.cli("run", "--rm", "--read-only", IMAGE, "touch", "/newfile")
    assert result.returncode == 1 and "Read-only file system" in result.stderr
    assert daemon.cli("run", "--rm", "--read-only", IMAGE, "touch", "/dev/shm/x").returncode == 0
    # Masked: /proc/interrupts reads as /dev/null, /sys/firmware as an empty directory.
    masked = daemon.cli(
        "run", "--rm", IMAGE, "sh", "-c", "wc -c < /proc/interrupts; ls -A /sys/firmware | wc -l"
    )
    assert masked.stdout.split() == ["0", "0"], masked.stderr
    sysrq = daemon.cli("run", "--rm", IMAGE, "sh", "-c", "echo h > /proc/sysrq-trigger")
    assert sysrq.returncode != 0


def test_namespaces_are_private_by_default(daemon: Daemon) -> None:
    ps = daemon.cli("run", "--rm", IMAGE, "ps", "-o", "pid").stdout.split()
    assert ps[:2] == ["PID", "1"]
    links = daemon.cli("run", "--rm", "--network", "none", IMAGE, "ls", "/sys/class/net").stdout
    assert links.split() == ["lo"]
    host_net = daemon.cli("run", "--rm", "--network", "host", IMAGE, "ls", "/sys/class/net")
    assert len(host_net.stdout.split()) > 1
    hostname = daemon.cli("run", "--rm", "--hostname", "inside", IMAGE, "hostname").stdout
    assert hostname.strip() == "inside"


def test_resolv_conf_hosts_and_dns_flags(daemon: Daemon) -> None:
    result = daemon.cli(
        "run",
        "--rm",
        "--dns",
        "10.9.9.9",
        "--dns-search",
        "example.test",
        "--add-host",
        "db.local:10.1.2.3",
        IMAGE,
        "sh",
        "-c",
        "cat /etc/resolv.conf /etc/hosts",
    )
    assert "nameserver 10.9.9.9" in result.stdout
    assert "search example.test" in result.stdout
    assert "10.1.2.3\tdb.local" in result.stdout
    assert "127.0.0.1\tlocalhost" in result.stdout


def test_ulimits(daemon: Daemon) -> None:
    result = daemon.cli(
        "run", "--rm", "--ulimit", "nofile=512:1024", IMAGE, "sh", "-c", "ulimit -n; ulimit -Hn"
    )
    assert result.stdout.split() == ["512", "1024"]
