"""`stats --no-stream` with many running containers: Dockyard beside Docker and Podman.

Usage (root): .venv/bin/python bench/stats.py [--runs 10] [--containers 40] [--stream-seconds 10]

Starts a private Dockyard daemon, imports the example busybox image, runs
`--containers` idle containers and prints median/min/max milliseconds over N
runs (after one warm-up) of:

* `stats --no-stream` of every running container, through our CLI and the
  docker CLI (each container's figure waits about a second for the sample
  before it, as Docker's does, so a second is the floor), and through each
  other engine installed here;
* docker-py's `stats(stream=False, one_shot=True)` of every container in turn
  (no wait: the cost of reading the figures and answering);

then the daemon's CPU use while `docker stats` streams all of them for
`--stream-seconds` (one shared sampler reads every container once a second).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import engines  # noqa: E402
from tests.harness import Daemon, build_busybox_rootfs, new_base  # noqa: E402

IMAGE = f"dybench/busybox:{os.getpid()}"  # its own name: the others' stores are shared


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--containers", type=int, default=40)
    parser.add_argument("--stream-seconds", type=int, default=10)
    args = engines.parse_as_root(parser)

    daemon = Daemon(new_base())
    others: list[engines.Engine] = []
    names = [f"bench-stats-{os.getpid()}-{i}" for i in range(args.containers)]
    started: list[engines.Engine] = []
    try:
        daemon.start()
        tar = build_busybox_rootfs(daemon.base)
        ours, via_docker = engines.dockyard_cli(daemon), engines.docker_cli(daemon)
        ours.cmd("import", str(tar), IMAGE)
        others = engines.others(daemon.base)
        for engine in others:
            engine.cmd("import", str(tar), IMAGE)
        print(
            f"Dockyard bench: stats of {args.containers} running containers, {args.runs} runs "
            f"each; {engines.beside(others)}"
        )
        for engine in [ours, *others]:
            for name in names:
                engine.cmd("run", "-d", "--name", name, IMAGE, "sleep", "3600")
            started.append(engine)

        def no_stream(engine: engines.Engine) -> None:
            out = engine.cmd("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}")
            rows = [line for line in out.splitlines() if line.startswith("bench-stats-")]
            if len(rows) != args.containers or any(" -- " in row for row in rows):
                raise RuntimeError(f"{engine.name}: not every container has figures:\n{out}")

        rows = {
            engine.name: engines.measure(lambda e=engine: no_stream(e), args.runs)
            for engine in [ours, via_docker, *others]
        }
        engines.report(
            f"stats --no-stream, {args.containers} running containers", rows, via_docker.name
        )

        client = engines.docker_py(daemon)
        containers = [client.containers.get(name) for name in names]
        rows = {
            engines.DOCKER_PY: engines.measure(
                lambda: [c.stats(stream=False, one_shot=True) for c in containers], args.runs
            )
        }
        engines.report(
            f"docker-py stats(stream=False, one_shot=True) of each of {args.containers}, in turn",
            rows,
        )
        client.close()

        assert daemon.proc is not None
        watcher = subprocess.Popen(
            ["docker", "stats", "--format", "{{.Name}}"],
            env=via_docker.env,
            stdout=subprocess.DEVNULL,
        )
        time.sleep(3)  # every stream open and sampled
        before = cpu_seconds(daemon.proc.pid)
        time.sleep(args.stream_seconds)
        used = cpu_seconds(daemon.proc.pid) - before
        watcher.kill()  # the docker CLI keeps drawing after a first SIGTERM
        watcher.wait()
        print(
            f"\ndaemon CPU while `docker stats` streams {args.containers} containers: "
            f"{used / args.stream_seconds * 100:.1f}% of one CPU "
            f"({used / args.stream_seconds / args.containers * 1000:.2f} ms per container "
            "per second)"
        )
    finally:
        for engine in started:
            engine.cmd("rm", "-f", *names, check=False)
        for engine in others:
            engine.cmd("rmi", IMAGE, check=False)
        daemon.cleanup()


if __name__ == "__main__":
    main()
