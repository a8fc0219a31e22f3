"""Container start-up, exec, ps and memory figures: Dockyard beside Docker and Podman.

Usage (root): .venv/bin/python bench/containers.py [--runs 20] [--ps-containers 40]

Starts a private Dockyard daemon (its own data root, socket and cgroup parent),
imports the example busybox image, and prints median/min/max milliseconds over
N runs (after one warm-up) of each operation through our CLI, the docker CLI
and docker-py: `run --rm IMG true` on the default network and with `--network
none`, `create` with a compose-sized body, `exec CTR true`, and `ps` with
`--ps-containers` running containers; then the memory of a container's
monitor and of the daemon. When a Docker daemon (/var/run/docker.sock) or
podman is present and working, the same operations run against them in the
same session, with ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import engines  # noqa: E402
from tests.harness import Daemon, build_busybox_rootfs, new_base  # noqa: E402

IMAGE = f"dybench/busybox:{os.getpid()}"  # its own name: the others' stores are shared


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--ps-containers", type=int, default=40)
    args = engines.parse_as_root(parser)
    runs = args.runs

    daemon = Daemon(new_base())
    base = daemon.base
    others: list[engines.Engine] = []
    try:
        daemon.start()
        tar = build_busybox_rootfs(base)
        ours, via_docker = engines.dockyard_cli(daemon), engines.docker_cli(daemon)
        ours.cmd("import", str(tar), IMAGE)
        others = engines.others(base)
        for engine in others:
            engine.cmd("import", str(tar), IMAGE)
        client = engines.docker_py(daemon)
        print(f"Dockyard bench: {runs} runs each; {engines.beside(others)}")

        for network in ("default", "none"):
            rows = {}
            flags = [] if network == "default" else ["--network", "none"]
            for engine in [ours, via_docker, *others]:
                rows[engine.name] = engines.measure(
                    lambda e=engine, f=flags: e.cmd("run", "--rm", *f, IMAGE, "true"), runs
                )
            net = None if network == "default" else "none"
            rows[engines.DOCKER_PY] = engines.measure(
                lambda n=net: client.containers.run(IMAGE, "true", remove=True, network_mode=n),
                runs,
            )
            engines.report(f"run --rm IMG true (network {network})", rows, via_docker.name)

        # Create alone, with a body of the size compose sends: the cost of decoding and
        # validating the request (typed models) beside the record and rootfs set-up.
        rows = {}
        flags = ["-e", "A=1", "-e", "B=2", "-l", "app=bench", "-p", "127.0.0.1::80",
                 "--memory", "64m", "--cpus", "0.5", "--tmpfs", "/run", IMAGE, "true"]  # fmt: skip
        for engine in [ours, via_docker, *others]:
            created: list[str] = []
            rows[engine.name] = engines.measure(
                lambda e=engine, c=created: c.append(e.cmd("create", *flags).strip()), runs
            )
            engine.cmd("rm", *created)
        created_py: list[str] = []

        def create_py() -> None:
            created_py.append(
                client.api.create_container(
                    IMAGE,
                    "true",
                    environment={"A": "1", "B": "2"},
                    labels={"app": "bench"},
                    ports=[80],
                    host_config=client.api.create_host_config(
                        port_bindings={80: ("127.0.0.1",)},
                        mem_limit="64m",
                        nano_cpus=500_000_000,
                        tmpfs=["/run"],
                    ),
                )["Id"]
            )

        rows[engines.DOCKER_PY] = engines.measure(create_py, runs)
        for container_id in created_py:
            client.api.remove_container(container_id)
        engines.report("create IMG true (env, labels, port, limits, tmpfs)", rows, via_docker.name)

        rows = {}
        for engine in [ours, via_docker, *others]:
            engine.cmd("run", "-d", "--name", "bench-exec", IMAGE, "sleep", "3600")
            rows[engine.name] = engines.measure(
                lambda e=engine: e.cmd("exec", "bench-exec", "true"), runs
            )
            engine.cmd("rm", "-f", "bench-exec")
        engines.report("exec CTR true", rows, via_docker.name)

        rows = {}
        for engine in [ours, via_docker, *others]:
            names = [f"bench-ps-{i}" for i in range(args.ps_containers)]
            for name in names:
                engine.cmd("run", "-d", "--name", name, IMAGE, "sleep", "3600")
            rows[engine.name] = engines.measure(lambda e=engine: e.cmd("ps"), runs)
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
        engines.report(f"ps with {args.ps_containers} running containers", rows, via_docker.name)

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
        for engine in others:
            engine.cmd("rmi", IMAGE, check=False)
        daemon.cleanup()


if __name__ == "__main__":
    main()
