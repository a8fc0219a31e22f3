"""Container start-up, exec, ps and memory figures: Dockyard beside Docker and Podman.

Usage (root): .venv/bin/python bench/containers.py [--runs 20]

Starts a private Dockyard daemon (its own data root, socket and cgroup parent),
imports the example busybox image, and prints median/min/max milliseconds over
N runs of each operation through our CLI, the docker CLI and docker-py. When a
Docker daemon (/var/run/docker.sock) or podman is present and working, the same
operations run against them in the same session, with ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.harness import Daemon, build_busybox_rootfs  # noqa: E402

IMAGE = "bench/busybox:1"


def measure(fn: Callable[[], object], runs: int) -> list[float]:
    fn()  # warm-up
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def run_ok(argv: list[str], env: dict[str, str] | None = None) -> None:
    result = subprocess.run(argv, env=env, capture_output=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.decode(errors='replace')}")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Engine:
    """One engine under test, driven through a command line."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.argv = argv
        self.env = env

    def cmd(self, *args: str) -> None:
        run_ok([*self.argv, *args], self.env)

    def out(self, *args: str) -> str:
        return subprocess.run(
            [*self.argv, *args], env=self.env, capture_output=True, text=True
        ).stdout


def other_engines(tar: Path) -> list[Engine]:
    engines = []
    docker_sock = "/var/run/docker.sock"
    if shutil.which("docker") and os.path.exists(docker_sock):
        env = {**os.environ, "DOCKER_HOST": "unix://" + docker_sock}
        if subprocess.run(["docker", "info"], env=env, capture_output=True).returncode == 0:
            engines.append(Engine("dockerd", ["docker"], env))
    if shutil.which("podman"):
        engines.append(Engine("podman", ["podman"], dict(os.environ)))
    for engine in engines:
        engine.cmd("import", str(tar), IMAGE)
    return engines


def report(title: str, rows: dict[str, list[float]], baseline: str) -> None:
    print(f"\n{title}")
    base = statistics.median(rows[baseline]) if baseline in rows else None
    for label, samples in rows.items():
        med = statistics.median(samples)
        ratio = f"  x{med / base:.2f} of {baseline}" if base and label != baseline else ""
        print(
            f"  {label:<34} median {med:8.1f} ms   min {min(samples):8.1f}   "
            f"max {max(samples):8.1f}{ratio}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--ps-containers", type=int, default=40)
    args = parser.parse_args()
    runs = args.runs
    if os.geteuid() != 0:
        raise SystemExit("run as root")

    base = Path(tempfile.mkdtemp(prefix="dyb-", dir="/tmp"))
    daemon = Daemon(base)
    try:
        daemon.start()
        tar = build_busybox_rootfs(base)
        daemon.cli("import", str(tar), IMAGE, check=True)
        ours = Engine(
            "dockyard CLI",
            [sys.executable, "-m", "dockyard"],
            {**os.environ, "DOCKYARD_HOST": daemon.host},
        )
        via_docker = Engine(
            "docker CLI -> Dockyard", ["docker"], {**os.environ, "DOCKER_HOST": daemon.host}
        )
        others = other_engines(tar)
        import docker

        client = docker.DockerClient(base_url=daemon.host)
        print(
            f"Dockyard bench: {runs} runs each; comparing with "
            f"{', '.join(e.name for e in others) or 'no other engine (none running here)'}"
        )

        for network in ("default", "none"):
            rows = {}
            flags = [] if network == "default" else ["--network", "none"]
            for engine in [ours, via_docker, *others]:
                rows[engine.name] = measure(
                    lambda e=engine, f=flags: e.cmd("run", "--rm", *f, IMAGE, "true"), runs
                )
            net = None if network == "default" else "none"
            rows["docker-py -> Dockyard"] = measure(
                lambda n=net: client.containers.run(IMAGE, "true", remove=True, network_mode=n),
                runs,
            )
            report(f"run --rm IMG true (network {network})", rows, "docker CLI -> Dockyard")

        rows = {}
        for engine in [ours, via_docker, *others]:
            engine.cmd("run", "-d", "--name", "bench-exec", IMAGE, "sleep", "3600")
            rows[engine.name] = measure(lambda e=engine: e.cmd("exec", "bench-exec", "true"), runs)
            engine.cmd("rm", "-f", "bench-exec")
        report("exec CTR true", rows, "docker CLI -> Dockyard")

        rows = {}
        for engine in [ours, via_docker, *others]:
            names = [f"bench-ps-{i}" for i in range(args.ps_containers)]
            for name in names:
                engine.cmd("run", "-d", "--name", name, IMAGE, "sleep", "3600")
            rows[engine.name] = measure(lambda e=engine: e.cmd("ps"), runs)
            if engine is ours:
                monitors = [
                    int(p)
                    for p in subprocess.run(
                        ["pgrep", "-f", f"conmon.*{daemon.exec_root}"],
                        capture_output=True,
                        text=True,
                    ).stdout.split()
                ]
                per_monitor = [rss_kib(p) for p in monitors]
                daemon_rss = rss_kib(daemon.proc.pid) if daemon.proc else 0
            engine.cmd("rm", "-f", *names)
        report(f"ps with {args.ps_containers} running containers", rows, "docker CLI -> Dockyard")

        print("\nmemory")
        if per_monitor:
            print(
                f"  monitor (conmon) RSS per container: median "
                f"{statistics.median(per_monitor) / 1024:.2f} MiB over {len(per_monitor)}"
            )
        print(f"  daemon RSS with {args.ps_containers} containers: {daemon_rss / 1024:.1f} MiB")
        time.sleep(1)
        if daemon.proc:
            print(f"  daemon RSS idle: {rss_kib(daemon.proc.pid) / 1024:.1f} MiB")
        client.close()
    finally:
        daemon.cleanup()


if __name__ == "__main__":
    main()
