"""Log write throughput: a container printing as fast as it can, with and without rotation.

Usage (root): .venv/bin/python bench/logs.py [--runs 5] [--mb 200]

Starts a private Dockyard daemon and times, per log configuration, a container
that prints `--mb` of 100-byte lines (`yes | head -c`), from `docker run -d` to
`docker wait` returning: the monitor writes the log, so the container cannot
finish before its output is in the files. The configurations take turns.
Prints median/min/max seconds and MB/s of output for: the `none` driver (the
pipe alone), json-file without bounds, json-file rotating at 10 MB keeping 3
files, the same compressed, and the `local` driver's defaults (20 MB x 5,
compressed); then the files each kept. No other engine is compared (none is
installed where this was written).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import engines  # noqa: E402
from tests.harness import Daemon, build_busybox_rootfs, new_base  # noqa: E402

IMAGE = f"dybench/busybox:{os.getpid()}"
CONFIGS = {
    "none": ["--log-driver", "none"],
    "json-file, unbounded": [],
    "json-file 10m x 3": ["--log-opt", "max-size=10m", "--log-opt", "max-file=3"],
    "json-file 10m x 3 gz": [
        "--log-opt",
        "max-size=10m",
        "--log-opt",
        "max-file=3",
        "--log-opt",
        "compress=true",
    ],
    "local (20m x 5 gz)": ["--log-driver", "local"],
}


def log_bytes(daemon: Daemon, container_id: str) -> tuple[int, int]:
    """(files, bytes on disk) of a container's log."""
    directory = daemon.data_root / "containers" / container_id
    inodes: dict[int, int] = {}
    for path in [directory / "container.log", *(directory / "log").glob("*")]:
        if path.is_file() and not path.is_symlink():
            st = path.stat()
            inodes[st.st_ino] = st.st_size
    return len(inodes), sum(inodes.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mb", type=int, default=200)
    args = engines.parse_as_root(parser)

    daemon = Daemon(new_base())
    try:
        daemon.start()
        ours, docker = engines.dockyard_cli(daemon), engines.docker_cli(daemon)
        ours.cmd("import", str(build_busybox_rootfs(daemon.base)), IMAGE)
        line = "y" * 99
        command = f"yes {line} | head -c {args.mb * 1000 * 1000}"
        print(
            f"Dockyard bench: a container printing {args.mb} MB of 100-byte lines, "
            f"{args.runs} runs per log configuration (after a warm-up), taken in turns"
        )
        rows: dict[str, list[float]] = {label: [] for label in CONFIGS}
        kept: dict[str, tuple[int, int]] = {}
        # The configurations take turns, so that drift in the host's speed (other
        # work on it) lands on all of them alike; the first turn is a warm-up.
        for turn in range(args.runs + 1):
            for label, opts in CONFIGS.items():
                ids: list[str] = []

                def one(opts: list[str] = opts, ids: list[str] = ids) -> None:
                    ids.append(docker.cmd("run", "-d", *opts, IMAGE, "sh", "-c", command).strip())
                    docker.cmd("wait", ids[0])

                elapsed = engines.timed(one)
                if turn:
                    rows[label].append(elapsed)
                kept[label] = log_bytes(daemon, ids[0])
                docker.cmd("rm", ids[0])
        engines.report(
            f"{args.mb} MB of output, run to exit",
            rows,
            "json-file, unbounded",
            unit="s",
            digits=2,
            megabytes=args.mb,
        )
        print("\nwhat is kept after the last run")
        for label, (files, size) in kept.items():
            print(f"  {label:<22} {files} files, {size / 1e6:8.1f} MB on disk")
    finally:
        daemon.cleanup()


if __name__ == "__main__":
    main()
