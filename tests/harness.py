"""A real Dockyard daemon on private paths, and the example image, for tests and benchmarks.

Every daemon gets its own data root, exec root, socket and cgroup parent under a
temporary directory, so runs never touch the host's Dockyard (or each other)
and clean up after themselves.
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
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def build_busybox_rootfs(target: Path) -> Path:
    """The example busybox image's root filesystem, as a tarball."""
    tar_path = target / "busybox.tar"
    subprocess.run(
        [str(REPO / "examples" / "busybox" / "make-rootfs.sh"), str(tar_path)], check=True
    )
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
        # Networking of its own: bridge and veth names, subnets and nftables table.
        tag = secrets.token_hex(2)
        self.bridge = f"dy{tag}0"
        self.bridge_prefix = f"dy{tag}n"
        self.veth_prefix = f"dy{tag}v"
        self.nft_table = f"dockyard_test_{tag}"
        self.net_octet = free_octet()
        self.net6 = f"fd7a:{int(tag, 16):x}"  # a ULA /32 of its own, written canonically
        self.config_file = base / "daemon.json"
        self.config: dict[str, Any] = {
            "bridge": self.bridge,
            "bip": f"10.{self.net_octet}.0.1/24",
            "default-address-pools": [{"base": f"10.{self.net_octet}.128.0/17", "size": 24}],
            "bridge-prefix": self.bridge_prefix,
            "veth-prefix": self.veth_prefix,
            "nftables-table": self.nft_table,
            "ip-forward": False,  # the host's global switch stays as it is
            # Plugin discovery looks only in this daemon's own directories, never the
            # host's, and gives up on a missing plugin after 3 s rather than Docker's 30 s.
            "plugin-socket-dirs": [str(base / "plugins")],
            "plugin-spec-dirs": [str(base / "spec")],
            "plugin-retry-timeout": 3,
        }

    def subnet(self, n: int) -> str:
        """A /24 for a test's own network, inside this daemon's private range."""
        return f"10.{self.net_octet}.{n}.0/24"

    def subnet6(self, n: int) -> str:
        """An IPv6 /64 for a test's own network, inside this daemon's private ULA range."""
        return f"{self.net6}:{n:x}::/64"

    def start(self, *extra: str) -> None:
        self.exec_root.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(json.dumps(self.config))
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dockyard",
                "daemon",
                "-H",
                self.host,
                "--data-root",
                str(self.data_root),
                "--exec-root",
                str(self.exec_root),
                "--cgroup-parent",
                self.cgroup_parent,
                "--config-file",
                str(self.config_file),
                *extra,
            ],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
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

    def cli(
        self, *args: str, input: bytes | None = None, check: bool = False, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        # Registry logins go to this daemon's own docker config dir, shared with docker().
        env = {**os.environ, "DOCKYARD_HOST": self.host, "DOCKER_CONFIG": str(self.base / "docker")}
        result = subprocess.run(
            [sys.executable, "-m", "dockyard", *args],
            env=env,
            input=input,
            capture_output=True,
            timeout=timeout,
            cwd=REPO,
        )
        completed = subprocess.CompletedProcess(
            result.args,
            result.returncode,
            result.stdout.decode(errors="replace"),
            result.stderr.decode(errors="replace"),
        )
        if check and completed.returncode != 0:
            raise AssertionError(f"dockyard {' '.join(args)} failed: {completed.stderr}")
        return completed

    def docker(
        self, *args: str, input: bytes | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DOCKER_HOST": self.host, "DOCKER_CONFIG": str(self.base / "docker")}
        result = subprocess.run(
            ["docker", *args], env=env, input=input, capture_output=True, timeout=timeout
        )
        return subprocess.CompletedProcess(
            result.args,
            result.returncode,
            result.stdout.decode(errors="replace"),
            result.stderr.decode(errors="replace"),
        )

    def api(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """A raw API call, for checking status codes and error bodies exactly."""
        import http.client

        class Conn(http.client.HTTPConnection):
            def connect(conn) -> None:
                conn.sock = socket.socket(socket.AF_UNIX)
                conn.sock.connect(self.socket)

        conn = Conn("localhost", timeout=60)
        data = (
            body
            if isinstance(body, bytes)
            else (json.dumps(body).encode() if body is not None else None)
        )
        headers = dict(headers or {})
        if body is not None and not isinstance(body, bytes):
            headers.setdefault("Content-Type", "application/json")  # as every client does
        conn.request(method, path, body=data, headers=headers)
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
        mounts = [m for m in _mount_points() if str(self.base) in m]
        cgroups = []
        for root in Path("/sys/fs/cgroup").iterdir():
            if (root / self.cgroup_parent).exists():
                cgroups.append(str(root / self.cgroup_parent))
        monitors = subprocess.run(
            ["pgrep", "-f", f"conmon.*{self.exec_root}"], capture_output=True, text=True
        ).stdout.split()
        return {"mounts": mounts, "cgroups": cgroups, "monitors": monitors}

    def links(self) -> list[str]:
        """Host network devices of this daemon (its bridges and veths)."""
        prefixes = (self.bridge, self.bridge_prefix, self.veth_prefix)
        names = [line.split(":")[1].strip().split("@")[0] for line in _ip("-o", "link", "show")]
        return sorted(n for n in names if n.startswith(prefixes))

    def nft_ruleset(self) -> str:
        result = subprocess.run(
            ["nft", "list", "table", "ip", self.nft_table], capture_output=True, text=True
        )
        return result.stdout if result.returncode == 0 else ""

    def allocations(self) -> list[tuple[str, str]]:
        """The daemon's IPAM allocations, from its database."""
        import sqlite3

        conn = sqlite3.connect(self.data_root / "dockyard.db")
        try:
            return conn.execute(
                "SELECT pool_id, address FROM ipam_addresses ORDER BY 1, 2"
            ).fetchall()
        finally:
            conn.close()

    def cleanup(self) -> None:
        """Kill whatever still runs and remove the daemon's files."""
        import docker

        if self.proc is not None and self.proc.poll() is None:
            try:
                client = docker.DockerClient(base_url=self.host, timeout=60)
                for container in client.containers.list(all=True):
                    container.remove(force=True)
                for plugin in client.plugins.list():
                    plugin.remove(force=True)  # managed plugins outlive the daemon otherwise
                client.close()
            except Exception:
                pass
        self.stop()
        for pid in subprocess.run(
            ["pgrep", "-f", f"conmon.*{self.exec_root}"], capture_output=True, text=True
        ).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        # Whatever still runs in this daemon's cgroups (containers whose monitor was
        # killed above keep running without it) goes too.
        for procs in Path("/sys/fs/cgroup").glob(f"*/{self.cgroup_parent}/**/cgroup.procs"):
            for pid in procs.read_text().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        for target in reversed(_mount_points()):
            if target.startswith(str(self.base)):
                subprocess.run(["umount", "-l", target], capture_output=True)
        for link in self.links():
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        for family in ("ip", "ip6"):
            subprocess.run(["nft", "delete", "table", family, self.nft_table], capture_output=True)
        for root in Path("/sys/fs/cgroup").iterdir():
            parent = root / self.cgroup_parent
            if parent.exists():
                # deepest first: a cgroup can only go once its children have
                dirs = [parent, *(p for p in parent.rglob("*") if p.is_dir())]
                for child in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
                    for _ in range(50):  # killed processes take a moment to leave
                        try:
                            child.rmdir()
                            break
                        except FileNotFoundError:
                            break
                        except OSError:
                            time.sleep(0.02)
        shutil.rmtree(self.base, ignore_errors=True)


def _ip(*args: str) -> list[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True).stdout.splitlines()


def free_octet() -> int:
    """A second octet X such that 10.X.0.0/16 is not routed on this host yet."""
    import ipaddress
    import random

    routed = []
    for line in _ip("-4", "route", "show", "table", "all"):
        word = line.split()[0] if line.split() else ""
        if word in ("local", "broadcast", "unreachable", "blackhole"):
            word = line.split()[1]
        try:
            routed.append(ipaddress.ip_network(word if word != "default" else "0.0.0.0/32"))
        except ValueError:
            continue
    choices = list(range(128, 255))
    random.shuffle(choices)
    for octet in choices:
        candidate = ipaddress.ip_network(f"10.{octet}.0.0/16")
        if not any(candidate.overlaps(r) for r in routed if r.prefixlen > 0):
            return octet
    raise RuntimeError("no free 10.X.0.0/16 range for a test daemon")


def _mount_points() -> list[str]:
    return [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]


def new_base() -> Path:
    # Short paths: the monitor's attach socket path must fit in sun_path.
    return Path(tempfile.mkdtemp(prefix="dy-", dir="/tmp"))
