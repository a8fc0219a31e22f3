"""`GET /containers/json` latency while the daemon is busy: a big log tailed and read,
an image loaded, a build running and a plugin call hanging.

Usage (root): .venv/bin/python bench/responsiveness.py [--log-mb 1024] [--image-mb 200]
              [--build-mb 100] [--clients 50] [--rounds 20]

Starts a private Dockyard daemon and prepares, without timing it: a stopped container
whose log holds `--log-mb` of records (written in the monitor's format, see
tests/load.py), a `docker save` archive of `--image-mb`, a build context with a
`--build-mb` file, and a volume plugin socket that accepts connections and never
answers. Then prints p50/p99/max of rounds of `--clients` concurrent
`GET /containers/json` (new connection each): `--rounds` with the daemon idle, then
rounds for as long as all of this runs at once (`--rounds` at least):

* `docker logs --tail 10` of the big log, over and over;
* `docker logs` of the whole big log (streamed to nowhere);
* `docker load -i` of the archive;
* `docker build` (classic builder) copying the big file and hashing it in a RUN step;
* `docker volume create -d hung`, whose plugin never answers.

The issue's goal is p99 <= 100 ms. No other engine is compared: the load is made
of Dockyard's own log files.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import engines  # noqa: E402
from tests.harness import Daemon, build_busybox_rootfs, new_base  # noqa: E402
from tests.load import MB, image_archive, write_log  # noqa: E402

IMAGE = f"dybench/busybox:{os.getpid()}"


def rounds(daemon: Daemon, clients: int, count: int) -> list[float]:
    """Milliseconds of every request of `count` rounds of `clients` concurrent ones."""
    samples: list[float] = []

    def one(_: int) -> float:
        start = time.perf_counter()
        status, _body = daemon.api("GET", "/containers/json?all=1")
        if status != 200:
            raise RuntimeError(f"GET /containers/json answered {status}")
        return (time.perf_counter() - start) * 1000

    with ThreadPoolExecutor(clients) as pool:
        for _ in range(count):
            samples.extend(pool.map(one, range(clients)))
    return samples


def show(label: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(
        f"  {label:<10} p50 {statistics.median(ordered):8.1f} ms   p99 {p99:8.1f} ms   "
        f"max {ordered[-1]:8.1f} ms   ({len(ordered)} requests)"
    )


def hung_plugin(directory: Path) -> socket.socket:
    """A plugin socket that takes connections and never answers."""
    directory.mkdir(parents=True, exist_ok=True)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(directory / "hung.sock"))
    server.listen(16)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--log-mb", type=int, default=1024)
    parser.add_argument("--image-mb", type=int, default=200)
    parser.add_argument("--build-mb", type=int, default=100)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=20)
    args = engines.parse_as_root(parser)

    daemon = Daemon(new_base())
    background: list[subprocess.Popen[bytes]] = []
    server = None
    try:
        daemon.start()
        work = daemon.base / "bench"
        work.mkdir()
        ours, docker = engines.dockyard_cli(daemon), engines.docker_cli(daemon)
        ours.cmd("import", str(build_busybox_rootfs(daemon.base)), IMAGE)
        docker.cmd("run", "--name", "chatty", IMAGE, "true")
        container_id = docker.cmd("inspect", "-f", "{{.Id}}", "chatty").strip()
        log = daemon.data_root / "containers" / container_id / "container.log"
        write_log(log, args.log_mb * MB, ["the end"])
        archive = work / "image.tar"
        image_archive(archive, args.image_mb * MB, "dybench/big:1")
        context = work / "context"
        context.mkdir()
        with open(context / "big.bin", "wb") as f:
            for _ in range(args.build_mb):
                f.write(os.urandom(MB))
        (context / "Dockerfile").write_text(
            f"FROM {IMAGE}\nCOPY big.bin /\nRUN sha256sum /big.bin\n"
        )
        server = hung_plugin(daemon.base / "plugins")
        print(
            f"Dockyard bench: {args.rounds} rounds of {args.clients} concurrent "
            f"GET /containers/json; load: a {args.log_mb} MB log tailed and read, a "
            f"{args.image_mb} MB image loaded, a build copying {args.build_mb} MB, a hung "
            "plugin call"
        )
        show("idle", rounds(daemon, args.clients, args.rounds))

        def spawn(*argv: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
            proc = subprocess.Popen(
                ["docker", *argv],
                env={**docker.env, **(env or {})},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            background.append(proc)
            return proc

        tails: list[float] = []  # milliseconds of each tail
        stop = threading.Event()

        def tail_again() -> None:
            while not stop.is_set():
                start = time.perf_counter()
                out = docker.cmd("logs", "--tail", "10", "chatty")
                tails.append((time.perf_counter() - start) * 1000)
                if not out.endswith("the end\n"):
                    raise RuntimeError(f"tail read {out!r}")

        tailer = threading.Thread(target=tail_again, daemon=True)
        tailer.start()
        whole = spawn("logs", "chatty")
        load = spawn("load", "-i", str(archive))
        build = spawn("build", "-t", "dybench/built:1", str(context), env={"DOCKER_BUILDKIT": "0"})
        spawn("volume", "create", "-d", "hung", "stuck")
        time.sleep(0.5)  # every operation under way
        started = time.perf_counter()
        busy: list[float] = []
        # Rounds for as long as the load, the build and the whole read go on.
        while len(busy) < args.rounds * args.clients or any(
            p.poll() is None for p in (whole, load, build)
        ):
            busy.extend(rounds(daemon, args.clients, 1))
        elapsed = time.perf_counter() - started
        stop.set()
        tailer.join()
        show("busy", busy)
        print(
            f"  ({elapsed:.1f} s under load; {len(tails)} tails of the {args.log_mb} MB "
            f"log meanwhile, median {statistics.median(tails or [0]):.0f} ms each)"
        )
        for proc, what in ((whole, "logs"), (load, "load"), (build, "build")):
            if proc.wait() != 0:
                raise RuntimeError(f"docker {what} failed")
    finally:
        for proc in background:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if server is not None:
            server.close()
        daemon.cleanup()


if __name__ == "__main__":
    main()
