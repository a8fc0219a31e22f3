"""Recovery after `kill -9` of the daemon with many running containers.

Usage (root): .venv/bin/python bench/recovery.py [--containers 100] [--runs 3]
                                                 [--network none|bridge|both]

For each engine: start a private daemon, run `--containers` containers (`sleep`,
on `--network`), then `--runs` times: kill the daemon with SIGKILL, start it
again, and time, from the moment the new daemon process is spawned,

* first answer: the first `GET /_ping` answered;
* all running: the first `GET /containers/json` that lists every container as
  running (Dockyard answers only once every container is reconciled, so this is
  also the time to have adopted them);
* all exec'd: an `exec true` into every container has succeeded (four clients
  at a time, started once all are listed running): the containers are really
  adopted, not just listed.

Dockyard runs with `--network none` and (by default) also on the default
bridge, where the network's reconcile (endpoints replayed, veths and rules
kept) is part of the recovery. Beside it, where installed: a private dockerd
(own data root, exec root and socket, `--live-restore`, no bridge or iptables,
so its containers use `--network none`; its managed containerd dies with it
and the shims keep the containers), and podman's API service (`podman system
service` on private storage; its containers are kept by their conmon). The
host's own Docker daemon is never touched.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import engines  # noqa: E402
from tests.harness import Daemon, build_busybox_rootfs, new_base  # noqa: E402

IMAGE = "demo/busybox:1"
WAIT = 600.0  # seconds before a recovery is given up as hung


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=WAIT)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(WAIT)
        self.sock.connect(self.path)


def get(path: str, url: str) -> tuple[int, bytes]:
    conn = UnixConnection(path)
    try:
        conn.request("GET", url)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@dataclass
class Subject:
    """An engine's daemon, started and killed by the benchmark."""

    name: str
    socket: str
    spawn: Callable[[], subprocess.Popen[bytes]]
    network: str  # what its containers are given
    cleanup: Callable[[], None]
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = self.spawn()
        wait_answer(self)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def wait_answer(subject: Subject) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        assert subject.proc is not None
        if subject.proc.poll() is not None:
            raise RuntimeError(f"{subject.name} exited with {subject.proc.returncode}")
        try:
            if get(subject.socket, "/_ping")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"{subject.name} did not answer")


def running_count(subject: Subject) -> int:
    status, body = get(subject.socket, "/containers/json")
    return sum(1 for c in json.loads(body) if c.get("State") == "running") if status == 200 else 0


def recover(subject: Subject, count: int) -> dict[str, float]:
    """Kill the daemon, start it again; milliseconds to each milestone."""
    import docker

    subject.kill9()
    started = time.perf_counter()
    subject.proc = subject.spawn()
    wait_answer(subject)
    answered = time.perf_counter()
    deadline = time.monotonic() + WAIT
    while running_count(subject) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{subject.name}: containers not all running after {WAIT} s")
        time.sleep(0.02)
    listed = time.perf_counter()
    client = docker.DockerClient(base_url="unix://" + subject.socket, timeout=int(WAIT))
    try:
        ids = [c.id for c in client.containers.list()]

        def exec_true(container_id: str) -> None:
            result = client.api.exec_create(container_id, ["true"])
            client.api.exec_start(result["Id"])
            code = client.api.exec_inspect(result["Id"])["ExitCode"]
            if code != 0:
                raise RuntimeError(f"exec in {container_id[:12]} exited {code}")

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(exec_true, ids))
    finally:
        client.close()
    done = time.perf_counter()
    return {
        "first answer": (answered - started) * 1000,
        "all running": (listed - started) * 1000,
        "all exec'd": (done - started) * 1000,
    }


def populate(subject: Subject, count: int) -> None:
    import docker

    client = docker.DockerClient(base_url="unix://" + subject.socket, timeout=int(WAIT))
    try:
        for i in range(count):
            client.containers.run(
                IMAGE,
                ["sleep", "1000000"],
                detach=True,
                name=f"rec{i}",
                network_mode=subject.network,
            )
    finally:
        client.close()


def depopulate(subject: Subject) -> None:
    import docker

    client = docker.DockerClient(base_url="unix://" + subject.socket, timeout=int(WAIT))
    try:
        for container in client.containers.list(all=True):
            container.remove(force=True)
    finally:
        client.close()


# -- the engines ------------------------------------------------------------------


def dockyard(network: str, busybox: Path) -> Subject:
    d = Daemon(new_base())
    d.start()
    d.cli("import", str(busybox), IMAGE, check=True)
    d.stop()

    def spawn() -> subprocess.Popen[bytes]:
        log = open(d.log_path, "ab")  # noqa: SIM115 - owned by the child
        try:
            return subprocess.Popen(
                [
                    sys.executable, "-m", "dockyard", "daemon", "-H", d.host,
                    "--data-root", str(d.data_root), "--exec-root", str(d.exec_root),
                    "--cgroup-parent", d.cgroup_parent, "--config-file", str(d.config_file),
                ],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=REPO,
            )  # fmt: skip
        finally:
            log.close()

    def cleanup() -> None:
        d.proc = subject.proc
        d.cleanup()

    subject = Subject(f"Dockyard (--network {network})", d.socket, spawn, network, cleanup)
    return subject


def private_dockerd(base: Path, busybox: Path) -> Subject | None:
    """A dockerd of the benchmark's own, if the binary is installed."""
    binary = shutil.which("dockerd")
    if binary is None:
        return None
    sock = str(base / "docker.sock")
    argv = [
        binary, "-H", "unix://" + sock, "--data-root", str(base / "data"),
        "--exec-root", str(base / "exec"), "--pidfile", str(base / "docker.pid"),
        "--bridge", "none", "--iptables=false", "--ip-masq=false", "--live-restore",
    ]  # fmt: skip

    def spawn() -> subprocess.Popen[bytes]:
        log = open(base / "dockerd.log", "ab")  # noqa: SIM115 - owned by the child
        try:
            return subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        finally:
            log.close()

    def cleanup() -> None:
        if subject.proc is not None and subject.proc.poll() is None:
            subject.proc.terminate()
            subject.proc.wait()
        shutil.rmtree(base, ignore_errors=True)

    subject = Subject("dockerd (private, --network none)", sock, spawn, "none", cleanup)
    subject.start()
    env = {**os.environ, "DOCKER_HOST": "unix://" + sock}
    subprocess.run(
        ["docker", "import", str(busybox), IMAGE], env=env, check=True, capture_output=True
    )
    return subject


def podman_service(base: Path, busybox: Path) -> Subject | None:
    """podman's API service on private storage, if podman runs containers here."""
    found = engines.podman(base)
    if found is None:
        return None
    sock = str(base / "podman.sock")
    storage = ["--root", str(base / "root"), "--runroot", str(base / "runroot")]
    argv = ["podman", *storage, "system", "service", "--time", "0", "unix://" + sock]

    def spawn() -> subprocess.Popen[bytes]:
        log = open(base / "podman.log", "ab")  # noqa: SIM115 - owned by the child
        try:
            return subprocess.Popen(
                argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=found.env
            )
        finally:
            log.close()

    def cleanup() -> None:
        if subject.proc is not None and subject.proc.poll() is None:
            subject.proc.terminate()
            subject.proc.wait()
        subprocess.run(["podman", *storage, "rm", "-af"], env=found.env, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)

    subject = Subject("podman system service", sock, spawn, "none", cleanup)
    subprocess.run(
        ["podman", *storage, "import", str(busybox), IMAGE],
        env=found.env,
        check=True,
        capture_output=True,
    )
    subject.start()
    return subject


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--network", choices=["none", "bridge", "both"], default="both")
    args = engines.parse_as_root(parser)
    work = Path(tempfile.mkdtemp(prefix="dy-recovery-", dir="/tmp"))
    busybox = build_busybox_rootfs(work)
    makers: list[Callable[[], Subject | None]] = [
        *(
            (lambda net=net: dockyard(net, busybox))
            for net in (["none", "bridge"] if args.network == "both" else [args.network])
        ),
        lambda: private_dockerd(work / "dockerd", busybox),
        lambda: podman_service(work / "podman", busybox),
    ]
    results: dict[str, dict[str, list[float]]] = {}
    others: list[str] = []
    try:
        for make in makers:
            try:
                subject = make()
            except (RuntimeError, subprocess.CalledProcessError, OSError) as e:
                print(f"(an engine could not be set up, left out: {e})")
                continue
            if subject is None:
                continue
            if not subject.name.startswith("Dockyard"):
                others.append(subject.name)
            try:
                if subject.proc is None:
                    subject.start()
                populate(subject, args.containers)
                rows: dict[str, list[float]] = {}
                for _ in range(args.runs):
                    for milestone, ms in recover(subject, args.containers).items():
                        rows.setdefault(milestone, []).append(ms)
                results[subject.name] = rows
                depopulate(subject)
            finally:
                subject.cleanup()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"\nRecovery after kill -9 with {args.containers} running containers, "
        f"{args.runs} runs; beside {', '.join(others) or 'no other engine (none installed here)'}"
        f"; load average {load}"
    )
    for milestone in ("first answer", "all running", "all exec'd"):
        engines.report(
            milestone,
            {name: rows[milestone] for name, rows in results.items()},
            next(iter(results), None),
            unit="s",
            digits=2,
        )


if __name__ == "__main__":
    main()
