"""Shared test helpers: a real Dockyard daemon on private paths, and clients for it.

Every daemon gets its own data root, exec root, socket and cgroup parent under a
temporary directory, so test runs never touch the host's Dockyard (or each
other) and clean up after themselves.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def build_busybox_rootfs(target: Path) -> Path:
    """A tiny root filesystem: static busybox with its applets, passwd and group files."""
    rootfs = target / "rootfs"
    for sub in ("bin", "etc", "tmp", "root", "proc", "sys", "dev", "home/app"):
        (rootfs / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        link = rootfs / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    (rootfs / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        "app:x:1000:1000:app:/home/app:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    )
    (rootfs / "etc" / "group").write_text("root:x:0:\napp:x:1000:\nextra:x:2000:app\n"
                                         "nogroup:x:65534:\n")
    os.chown(rootfs / "home" / "app", 1000, 1000)
    os.chmod(rootfs / "tmp", 0o1777)
    tar_path = target / "busybox.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(rootfs, arcname=".")
    return tar_path


class Daemon:
    """A dockyard daemon process with private paths."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.data_root = base / "data"
        self.exec_root = base / "run"
        self.socket = str(base / "run" / "d.sock")
        self.cgroup_parent = "dockyard-test-" + secrets.token_hex(4)
        self.host = "unix://" + self.socket
        self.log_path = base / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> None:
        self.exec_root.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dockyard", "daemon", "-H", self.host,
             "--data-root", str(self.data_root), "--exec-root", str(self.exec_root),
             "--cgroup-parent", self.cgroup_parent, *extra],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=REPO,
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited early:\n{self.log_path.read_text()}")
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(self.socket)
                    s.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
                    if s.recv(100).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"daemon did not start:\n{self.log_path.read_text()}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cli(self, *args: str, input: bytes | None = None, check: bool = False,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DOCKYARD_HOST": self.host}
        result = subprocess.run(
            [sys.executable, "-m", "dockyard", *args], env=env, input=input,
            capture_output=True, timeout=timeout, cwd=REPO,
        )
        completed = subprocess.CompletedProcess(
            result.args, result.returncode, result.stdout.decode(errors="replace"),
            result.stderr.decode(errors="replace"),
        )
        if check and completed.returncode != 0:
            raise AssertionError(f"dockyard {' '.join(args)} failed: {completed.stderr}")
        return completed

    def docker(self, *args: str, input: bytes | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DOCKER_HOST": self.host, "DOCKER_CONFIG": str(self.base / "docker")}
        result = subprocess.run(["docker", *args], env=env, input=input, capture_output=True,
                                timeout=timeout)
        return subprocess.CompletedProcess(
            result.args, result.returncode, result.stdout.decode(errors="replace"),
            result.stderr.decode(errors="replace"),
        )

    def api(self, method: str, path: str, body: Any = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """A raw API call, for checking status codes and error bodies exactly."""
        import http.client

        class Conn(http.client.HTTPConnection):
            def connect(conn) -> None:  # noqa: N805
                conn.sock = socket.socket(socket.AF_UNIX)
                conn.sock.connect(self.socket)

        conn = Conn("localhost", timeout=60)
        data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None
                                                     else None)
        conn.request(method, path, body=data, headers=headers or {})
        resp = conn.getresponse()
        content = resp.read()
        conn.close()
        if resp.getheader("Content-Type") == "application/json" and content:
            try:
                return resp.status, json.loads(content)
            except json.JSONDecodeError:
                pass
        return resp.status, content

    def leftovers(self) -> dict[str, list[str]]:
        """Host state a stopped test daemon must not leave behind."""
        mounts = [line.split()[1] for line in open("/proc/self/mounts")
                  if str(self.base) in line.split()[1]]
        cgroups = []
        for root in Path("/sys/fs/cgroup").iterdir():
            if (root / self.cgroup_parent).exists():
                cgroups.append(str(root / self.cgroup_parent))
        monitors = subprocess.run(["pgrep", "-f", f"conmon.*{self.exec_root}"],
                                  capture_output=True, text=True).stdout.split()
        return {"mounts": mounts, "cgroups": cgroups, "monitors": monitors}

    def cleanup(self) -> None:
        """Kill whatever still runs and remove the daemon's files."""
        import docker

        if self.proc is not None and self.proc.poll() is None:
            try:
                client = docker.DockerClient(base_url=self.host, timeout=60)
                for container in client.containers.list(all=True):
                    container.remove(force=True)
                client.close()
            except Exception:
                pass
        self.stop()
        for pid in subprocess.run(["pgrep", "-f", f"conmon.*{self.exec_root}"],
                                  capture_output=True, text=True).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        for line in reversed(open("/proc/self/mounts").read().splitlines()):
            target = line.split()[1]
            if target.startswith(str(self.base)):
                subprocess.run(["umount", "-l", target], capture_output=True)
        for root in Path("/sys/fs/cgroup").iterdir():
            parent = root / self.cgroup_parent
            if parent.exists():
                for child in parent.iterdir():
                    if child.is_dir():
                        try:
                            child.rmdir()
                        except OSError:
                            pass
                try:
                    parent.rmdir()
                except OSError:
                    pass
        shutil.rmtree(self.base, ignore_errors=True)


def new_base() -> Path:
    # Short paths: the monitor's attach socket path must fit in sun_path.
    return Path(tempfile.mkdtemp(prefix="dy-", dir="/tmp"))


@pytest.fixture(scope="session")
def busybox_tar() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="dy-img-", dir="/tmp"))
    yield build_busybox_rootfs(base)
    shutil.rmtree(base, ignore_errors=True)


def import_busybox(daemon: Daemon, tar: Path, name: str = "demo/busybox:1") -> str:
    return daemon.cli("import", str(tar), name, check=True).stdout.strip()


@pytest.fixture(scope="session")
def daemon(busybox_tar: Path) -> Iterator[Daemon]:
    """One daemon shared by the tests that do not kill or reconfigure it."""
    d = Daemon(new_base())
    d.start()
    import_busybox(d, busybox_tar)
    yield d
    d.cleanup()


@pytest.fixture
def own_daemon(busybox_tar: Path) -> Iterator[Daemon]:
    """A daemon for one test (crash tests, leak checks)."""
    d = Daemon(new_base())
    d.start()
    import_busybox(d, busybox_tar)
    yield d
    d.cleanup()


@pytest.fixture
def client(daemon: Daemon) -> Iterator[Any]:
    import docker

    c = docker.DockerClient(base_url=daemon.host, timeout=120)
    yield c
    c.close()


@pytest.fixture
def name() -> str:
    """A container name unique to the test."""
    return "t-" + secrets.token_hex(4)
