"""The seccomp policy seen from inside real containers, call by call.

A small static program (syscall_probe.c, built here with gcc) makes each call and
prints the errno it got. Several probes pass arguments the kernel refuses before
it looks at capabilities (a NULL path, a bad fd): EFAULT or EBADF then shows the
filter let the call through, EPERM that the filter (or a missing capability)
stopped it. What each container gets is Docker's default policy: allowed calls
work, namespace and mount calls need CAP_SYS_ADMIN, clone3 answers ENOSYS,
keyrings and io_uring are refused whatever the capabilities.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Daemon, new_base

IMAGE = "demo/busybox:1"
X86_64 = platform.machine() == "x86_64"

# What a container with Docker's default capabilities gets from each probe.
DEFAULT: dict[str, str] = {
    "getpid": "ok",
    "mkdir": "ok",
    "fork": "ok",  # clone without namespace flags
    "clone-user": "EPERM",
    "clone-mount": "EPERM",
    "clone3": "ENOSYS",  # so that glibc falls back to clone, whose flags the filter sees
    "clone3-user": "ENOSYS",
    "unshare-user": "EPERM",
    "unshare-mount": "EPERM",
    "mount-tmpfs": "EPERM",
    "mount-null": "EPERM",
    "umount-null": "EPERM",
    "setns": "EPERM",
    "setns-badfd": "EPERM",
    "pivot_root-null": "EPERM",
    "swapon-null": "EPERM",
    "sethostname-long": "EPERM",
    "keyctl": "EPERM",
    "add_key": "EPERM",
    "request_key": "EPERM",
    "socket-inet": "ok",
    "socket-unix": "ok",
    "socket-vsock": "EPERM",
    "socket-alg": "EPERM",
    "personality-query": "ok",
    "personality-linux32": "ok",
    "personality-norandom": "EPERM",
    "ptrace-self": "ESRCH",  # let through: the kernel says it is not being traced
    "process_vm_readv": "ok",
    "kcmp": "EPERM",
    "pidfd_getfd": "EPERM",
    "open_by_handle_at": "EPERM",
    "reboot-badmagic": "EPERM",
    "chroot-null": "EFAULT",  # CAP_SYS_CHROOT is a default capability
    "finit_module-badfd": "EPERM",
    "delete_module-null": "EPERM",
    "acct-badptr": "EPERM",
    "clock_settime-null": "EPERM",
    "ioperm-off": "EPERM",
    "get_mempolicy": "EPERM",
    "syslog-size": "EPERM",
    "bpf-badcmd": "EPERM",
    "perf_event_open-null": "EPERM",
    "vhangup": "EPERM",
    "io_uring_setup-null": "EPERM",
}
if X86_64:
    DEFAULT |= {
        "i386-getpid": "ok",  # the 32-bit table through int 0x80: the filter covers it too
        "i386-unshare-user": "EPERM",
        "i386-keyctl": "EPERM",
        "arch_prctl": "ok",
        "modify_ldt": "ok",
    }

# With CAP_SYS_ADMIN added: namespaces and mounts open, the rest stays as it was.
SYS_ADMIN = DEFAULT | {
    "clone-user": "ok",
    "clone-mount": "ok",
    "clone3": "ok",
    "clone3-user": "ok",
    "unshare-user": "ok",
    "unshare-mount": "ok",
    "mount-tmpfs": "ok",
    "mount-null": "EFAULT",
    "umount-null": "EFAULT",
    "setns": "ok",
    "setns-badfd": "EBADF",
    "sethostname-long": "EINVAL",
    "bpf-badcmd": "EINVAL",
    "perf_event_open-null": "EFAULT",
    **({"i386-unshare-user": "ok"} if X86_64 else {}),
}
NEVER_ALLOWED = ("keyctl", "add_key", "request_key", "io_uring_setup-null", "swapon-null")

# One probe per capability gate; "!EPERM": let through, whatever the kernel then says
# (module loading and I/O ports answer ENOSYS on kernels built without them).
GATES: dict[str, dict[str, str]] = {
    "SYS_PTRACE": {"kcmp": "ok", "pidfd_getfd": "ok"},
    "SYS_MODULE": {"finit_module-badfd": "!EPERM", "delete_module-null": "!EPERM"},
    "SYS_BOOT": {"reboot-badmagic": "EINVAL"},
    "SYS_TIME": {"clock_settime-null": "EFAULT"},
    "SYS_PACCT": {"acct-badptr": "EFAULT"},
    "SYS_RAWIO": {"ioperm-off": "!EPERM"},
    "SYS_NICE": {"get_mempolicy": "ok"},
    "SYSLOG": {"syslog-size": "ok"},
    "BPF": {"bpf-badcmd": "EINVAL"},
    "PERFMON": {"perf_event_open-null": "EFAULT"},
    "DAC_READ_SEARCH": {"open_by_handle_at": "ok"},
    "SYS_TTY_CONFIG": {"vhangup": "ok"},
}
GATED_PROBES = [p for probes in GATES.values() for p in probes]

CUSTOM = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}],
}


@pytest.fixture(scope="module")
def probe_dir() -> Iterator[Path]:
    """A directory holding the static probe, bind-mounted into containers at /probe."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the syscall probe")
    work = Path(tempfile.mkdtemp(prefix="dy-probe-", dir="/tmp"))
    work.chmod(0o755)
    source = Path(__file__).with_name("syscall_probe.c")
    subprocess.run(
        ["gcc", "-static", "-O2", "-o", str(work / "probe"), str(source)],
        check=True,
        capture_output=True,
    )
    yield work
    shutil.rmtree(work, ignore_errors=True)


def run_probes(daemon: Daemon, probe_dir: Path, probes: list[str], *options: str) -> dict[str, str]:
    result = daemon.cli(
        "run", "--rm", "-v", f"{probe_dir}:/probe:ro", *options, IMAGE, "/probe/probe", *probes
    )
    assert result.returncode == 0, result.stderr
    return dict(line.split(" ", 1) for line in result.stdout.splitlines())


def check(results: dict[str, str], expected: dict[str, str]) -> None:
    wrong = {
        probe: f"got {results.get(probe)}, want {want}"
        for probe, want in expected.items()
        if not (results.get(probe) != "EPERM" if want == "!EPERM" else results.get(probe) == want)
    }
    assert wrong == {}


def test_the_escape_in_the_issue_is_refused(daemon: Daemon) -> None:
    script = "mount -t tmpfs none /tmp && echo mounted"
    result = daemon.cli("run", "--rm", IMAGE, "unshare", "-Urm", "sh", "-c", script)
    assert result.returncode != 0
    assert "mounted" not in result.stdout
    assert "Operation not permitted" in result.stdout + result.stderr
    # Unconfined, the same user namespace and mount are made: the filter is what stops it.
    unconfined = daemon.cli(
        "run", "--rm", "--security-opt", "seccomp=unconfined", IMAGE, "unshare", "-Urm", "sh", "-c",
        script,
    )  # fmt: skip
    assert unconfined.stdout.strip() == "mounted", unconfined.stderr


def test_default_container_call_by_call(daemon: Daemon, probe_dir: Path) -> None:
    check(run_probes(daemon, probe_dir, list(DEFAULT)), DEFAULT)
    # `seccomp=builtin` names the same policy.
    named = run_probes(daemon, probe_dir, list(DEFAULT), "--security-opt", "seccomp=builtin")
    check(named, DEFAULT)


def test_cap_sys_admin_opens_namespaces_and_mounts_only(daemon: Daemon, probe_dir: Path) -> None:
    results = run_probes(daemon, probe_dir, list(SYS_ADMIN), "--cap-add", "SYS_ADMIN")
    check(results, SYS_ADMIN)
    for probe in NEVER_ALLOWED:
        assert results[probe] == "EPERM", probe


@pytest.mark.parametrize("cap", list(GATES))
def test_each_capability_opens_its_own_calls(daemon: Daemon, probe_dir: Path, cap: str) -> None:
    results = run_probes(daemon, probe_dir, [*GATED_PROBES, "keyctl"], "--cap-add", cap)
    others = {p: "EPERM" for p in GATED_PROBES if p not in GATES[cap]}
    check(results, {**GATES[cap], **others, "keyctl": "EPERM"})


def test_dropping_sys_chroot_takes_chroot_away(daemon: Daemon, probe_dir: Path) -> None:
    results = run_probes(daemon, probe_dir, ["chroot-null"], "--cap-drop", "SYS_CHROOT")
    assert results == {"chroot-null": "EPERM"}


def test_unconfined_lifts_the_filter_but_not_the_capabilities(
    daemon: Daemon, probe_dir: Path
) -> None:
    results = run_probes(daemon, probe_dir, list(DEFAULT), "--security-opt", "seccomp=unconfined")
    check(
        results,
        {
            "keyctl": "ok",
            "add_key": "ok",
            "request_key": "ok",
            "clone-user": "ok",
            "clone3": "ok",
            "unshare-user": "ok",
            "personality-norandom": "ok",
            "kcmp": "ok",
            "socket-vsock": "!EPERM",
            "mount-null": "EFAULT",
            "io_uring_setup-null": "EFAULT",
            # Without CAP_SYS_ADMIN the kernel itself still refuses these.
            "unshare-mount": "EPERM",
            "mount-tmpfs": "EPERM",
            "setns": "EPERM",
        },
    )


def test_privileged_containers_run_unfiltered(daemon: Daemon, probe_dir: Path) -> None:
    result = daemon.cli(
        "run", "--rm", "--privileged", "-v", f"{probe_dir}:/probe:ro", IMAGE,
        "/probe/probe", "keyctl", "swapon-null", "mount-null",
    )  # fmt: skip
    if "unable to apply caps" in result.stderr:
        pytest.skip("this host withholds a capability from the daemon; --privileged cannot start")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "keyctl", "ok", "swapon-null", "EFAULT", "mount-null", "EFAULT",
    ]  # fmt: skip


def test_exec_processes_get_the_containers_filter(
    daemon: Daemon, probe_dir: Path, name: str
) -> None:
    daemon.cli(
        "run", "-d", "--name", name, "-v", f"{probe_dir}:/probe:ro", IMAGE, "sleep", "60",
        check=True,
    )  # fmt: skip
    try:
        # Through sh: exec's check for the command looks in the image's files only, not
        # in bind mounts.
        probes = "/probe/probe keyctl unshare-user getpid"
        result = daemon.cli("exec", name, "sh", "-c", probes)
        assert result.stdout.split() == [
            "keyctl", "EPERM", "unshare-user", "EPERM", "getpid", "ok",
        ]  # fmt: skip
    finally:
        daemon.cli("rm", "-f", name)


def test_info_names_the_builtin_profile(daemon: Daemon, client: Any) -> None:
    info = daemon.api("GET", "/v1.45/info")[1]
    assert "name=seccomp,profile=builtin" in info["SecurityOptions"]
    assert not any("seccomp" in w for w in info["Warnings"] or [])
    assert "name=seccomp,profile=builtin" in client.info()["SecurityOptions"]
    shown = daemon.docker("info", "--format", "{{json .SecurityOptions}}")
    assert "name=seccomp,profile=builtin" in json.loads(shown.stdout)


def test_a_custom_profile_replaces_the_builtin_one(
    daemon: Daemon, probe_dir: Path, client: Any, tmp_path: Path
) -> None:
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(CUSTOM, indent=2))
    probes = ["mkdir", "keyctl", "getpid"]
    want = {"mkdir": "EACCES", "keyctl": "ok", "getpid": "ok"}
    # Our CLI and docker's both read the file and send its JSON.
    check(run_probes(daemon, probe_dir, probes, "--security-opt", f"seccomp={path}"), want)
    docker = daemon.docker(
        "run", "--rm", "--security-opt", f"seccomp={path}", "-v", f"{probe_dir}:/probe:ro",
        IMAGE, "/probe/probe", *probes,
    )  # fmt: skip
    assert docker.returncode == 0, docker.stderr
    check(dict(line.split(" ", 1) for line in docker.stdout.splitlines()), want)
    # docker-py passes the JSON itself.
    output = client.containers.run(
        IMAGE,
        ["/probe/probe", *probes],
        remove=True,
        security_opt=["seccomp=" + json.dumps(CUSTOM)],
        volumes={str(probe_dir): {"bind": "/probe", "mode": "ro"}},
    )
    check(dict(line.split(" ", 1) for line in output.decode().splitlines()), want)


def _names(daemon: Daemon) -> set[str]:
    return {c["Names"][0] for c in daemon.api("GET", "/v1.45/containers/json?all=1")[1]}


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        ("{not json", "Decoding seccomp profile failed"),
        ('{"defaultAction": "SCMP_ACT_DENY"}', "seccomp: unknown defaultAction 'SCMP_ACT_DENY'"),
        (
            '{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"]}]}',
            "seccomp: syscall rule for 'read' has no action",
        ),
        (
            json.dumps(
                {
                    "defaultAction": "SCMP_ACT_ERRNO",
                    "syscalls": [
                        {
                            "names": ["socket"],
                            "action": "SCMP_ACT_ALLOW",
                            "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQUAL"}],
                        }
                    ],
                }
            ),
            "seccomp: unknown operator 'SCMP_CMP_EQUAL' for 'socket'",
        ),
    ],
)
def test_an_invalid_profile_is_a_400_at_create(
    daemon: Daemon, name: str, profile: str, message: str
) -> None:
    before = _names(daemon)
    status, reply = daemon.api(
        "POST",
        f"/v1.45/containers/create?name={name}",
        {"Image": IMAGE, "HostConfig": {"SecurityOpt": [f"seccomp={profile}"]}},
    )
    assert status == 400, reply
    assert message in reply["message"]
    assert _names(daemon) == before


def test_clients_refuse_a_profile_file_that_is_not_json(daemon: Daemon, tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{nope")
    ours = daemon.cli("create", "--security-opt", f"seccomp={path}", IMAGE)
    assert ours.returncode != 0
    assert f"compacting json for seccomp profile ({path}) failed" in ours.stderr
    missing = daemon.cli("create", "--security-opt", f"seccomp={tmp_path}/none.json", IMAGE)
    assert f"opening seccomp profile ({tmp_path}/none.json) failed" in missing.stderr
    # A file that is JSON but no profile reaches the daemon, which refuses it.
    path.write_text('{"defaultAction": "SCMP_ACT_NOPE"}')
    docker = daemon.docker("create", "--security-opt", f"seccomp={path}", IMAGE)
    assert docker.returncode != 0
    assert "unknown defaultAction 'SCMP_ACT_NOPE'" in docker.stderr


def _daemon_with(busybox_tar: Path, setting: str) -> Daemon:
    d = Daemon(new_base())
    d.config["seccomp-profile"] = setting
    try:
        d.start()
        d.cli("import", str(busybox_tar), IMAGE, check=True)
    except BaseException:
        d.cleanup()
        raise
    return d


def test_daemon_json_profile_file(busybox_tar: Path, probe_dir: Path, tmp_path: Path) -> None:
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps(CUSTOM))
    d = _daemon_with(busybox_tar, str(profile))
    try:
        info = d.api("GET", "/v1.45/info")[1]
        assert f"name=seccomp,profile={profile}" in info["SecurityOptions"]
        assert "WARNING: daemon is not using the default seccomp profile" in info["Warnings"]
        want = {"mkdir": "EACCES", "keyctl": "ok"}
        check(run_probes(d, probe_dir, list(want)), want)
        # A container can still ask for the built-in policy.
        builtin = {"mkdir": "ok", "keyctl": "EPERM"}
        check(run_probes(d, probe_dir, list(builtin), "--security-opt", "seccomp=builtin"), builtin)
    finally:
        d.cleanup()


def test_daemon_json_unconfined(busybox_tar: Path, probe_dir: Path) -> None:
    d = _daemon_with(busybox_tar, "unconfined")
    try:
        info = d.api("GET", "/v1.45/info")[1]
        assert "name=seccomp,profile=unconfined" in info["SecurityOptions"]
        assert "WARNING: daemon is not using the default seccomp profile" in info["Warnings"]
        status = d.cli("run", "--rm", IMAGE, "grep", "^Seccomp:", "/proc/self/status")
        assert status.stdout.split() == ["Seccomp:", "0"]
        check(run_probes(d, probe_dir, ["keyctl"]), {"keyctl": "ok"})
        builtin = run_probes(d, probe_dir, ["keyctl"], "--security-opt", "seccomp=builtin")
        check(builtin, {"keyctl": "EPERM"})
    finally:
        d.cleanup()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "opening seccomp profile ("),
        ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": []}]}', "has no names"),
    ],
)
def test_daemon_refuses_to_start_with_a_bad_profile(
    busybox_tar: Path, tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "profile.json"
    if content is not None:
        path.write_text(content)
    d = Daemon(new_base())
    d.config["seccomp-profile"] = str(path)
    try:
        with pytest.raises(RuntimeError, match="daemon exited early") as failed:
            d.start()
        assert message in str(failed.value)
    finally:
        d.cleanup()
    assert not os.path.exists(d.socket)
