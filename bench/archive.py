"""Copy figures: `cp` of a 100 MB directory into and out of a container.

Usage (root): .venv/bin/python bench/archive.py [--runs 5] [--payload-mb 100]

Starts a private Dockyard daemon, imports the example busybox image, writes a
local directory of 1000 small files (4 KiB) and the rest in 1 MiB files (100
MB in all), and prints median/min/max milliseconds and MB/s of:

* `cp DIR CTR:/in-N` and `cp CTR:/payload OUT-N` with a running container, by
  our CLI and the docker CLI (each copy to a fresh name; what it made is
  removed outside the timing);
* the same with the container stopped (the daemon mounts its rootfs and
  volumes for each copy and unmounts them afterwards);
* docker-py's `put_archive` and `get_archive` of the same directory as a tar
  (the API alone: no local tar work on the client's side).

When a Docker daemon (/var/run/docker.sock) or podman is present and working,
the same `cp` runs go against them in the same session, with ratios.
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import shutil
import sys
import tarfile
from itertools import count
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import engines  # noqa: E402
from tests.harness import Daemon, build_busybox_rootfs, new_base  # noqa: E402

IMAGE = f"dybench/busybox:{os.getpid()}"  # its own name: the others' stores are shared
CONTAINER = f"bench-cp-{os.getpid()}"


def payload_dir(target: Path, megabytes: int) -> Path:
    """1000 small files (4 KiB) and the rest of `megabytes` in 1 MiB files."""
    root = target / "payload"
    (root / "small").mkdir(parents=True)
    (root / "large").mkdir()
    small = 4096
    for i in range(1000):
        (root / "small" / f"{i:04d}").write_bytes(secrets.token_bytes(small))
    remaining = megabytes * (1 << 20) - 1000 * small
    i = 0
    while remaining > 0:
        size = min(1 << 20, remaining)
        (root / "large" / f"{i:04d}").write_bytes(secrets.token_bytes(size))
        remaining -= size
        i += 1
    return root


def tar_of(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(directory, arcname=directory.name)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--payload-mb", type=int, default=100)
    args = engines.parse_as_root(parser)

    daemon = Daemon(new_base())
    base = daemon.base
    others: list[engines.Engine] = []
    try:
        daemon.start()
        busybox = build_busybox_rootfs(base)
        payload = payload_dir(base, args.payload_mb)
        ours, via_docker = engines.dockyard_cli(daemon), engines.docker_cli(daemon)
        others = engines.others(base)
        for engine in [ours, *others]:
            engine.cmd("rm", "-f", CONTAINER, check=False)  # left by an aborted run
            engine.cmd("import", str(busybox), IMAGE)
            engine.cmd("run", "-d", "--name", CONTAINER, "--network", "none", IMAGE, "sleep", "1d")
            engine.cmd("cp", str(payload), f"{CONTAINER}:/payload")
        print(
            f"Dockyard copy bench: {args.payload_mb} MB directory, {args.runs} runs each; "
            f"{engines.beside(others)}"
        )
        numbers = count()
        for state in ("running", "stopped"):
            if state == "stopped":
                for engine in [ours, *others]:
                    engine.cmd("stop", "-t", "0", CONTAINER)
            into, out_of = {}, {}
            for engine in [ours, via_docker, *others]:
                made: list[str] = []

                def copy_in(e: engines.Engine = engine, made: list[str] = made) -> None:
                    made.append(f"/in-{next(numbers)}")
                    e.cmd("cp", str(payload), f"{CONTAINER}:{made[-1]}")

                def copy_out(e: engines.Engine = engine, made: list[str] = made) -> None:
                    made.append(str(base / f"out-{next(numbers)}"))
                    e.cmd("cp", f"{CONTAINER}:/payload", made[-1])

                def clean_in(
                    e: engines.Engine = engine, made: list[str] = made, state: str = state
                ) -> None:
                    # Each copy goes to a new name and is removed afterwards (a stopped
                    # container is started for that): every run copies into nothing.
                    path = made.pop()
                    if state == "stopped":
                        e.cmd("start", CONTAINER)
                    e.cmd("exec", CONTAINER, "rm", "-rf", path)
                    if state == "stopped":
                        e.cmd("stop", "-t", "0", CONTAINER)

                def clean_out(made: list[str] = made) -> None:
                    shutil.rmtree(made.pop())

                into[engine.name] = engines.measure(copy_in, args.runs, after=clean_in)
                out_of[engine.name] = engines.measure(copy_out, args.runs, after=clean_out)
            engines.report(
                f"cp DIR CTR:/in-N, {state} container",
                into,
                via_docker.name,
                megabytes=args.payload_mb,
            )
            engines.report(
                f"cp CTR:/payload DIR, {state} container",
                out_of,
                via_docker.name,
                megabytes=args.payload_mb,
            )
        archive = tar_of(payload)
        client = engines.docker_py(daemon, timeout=600)
        targets = count()
        target = [""]

        def new_target() -> None:
            target[0] = f"put-{next(targets)}"
            directory = tarfile.TarInfo(target[0])
            directory.type, directory.mode = tarfile.DIRTYPE, 0o755
            empty = io.BytesIO()
            with tarfile.open(fileobj=empty, mode="w") as tar:
                tar.addfile(directory)
            client.api.put_archive(CONTAINER, "/", empty.getvalue())

        def put() -> None:
            client.api.put_archive(CONTAINER, "/" + target[0], archive)

        def get() -> None:
            stream, _ = client.api.get_archive(CONTAINER, "/payload")
            for _chunk in stream:
                pass

        new_target()
        rows = {
            "put_archive": engines.measure(put, args.runs, after=new_target),
            "get_archive": engines.measure(get, args.runs),
        }
        engines.report(
            f"{engines.DOCKER_PY}: the {args.payload_mb} MB tar (stopped container)",
            rows,
            megabytes=args.payload_mb,
        )
        client.close()
    finally:
        for engine in others:
            engine.cmd("rm", "-f", CONTAINER, check=False)
            engine.cmd("rmi", IMAGE, check=False)
        daemon.cleanup()


if __name__ == "__main__":
    main()
