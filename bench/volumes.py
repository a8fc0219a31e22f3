"""Volume figures: container start with 0, 1 and 10 volumes, and copy-up of 100 MB.

Usage (root): .venv/bin/python bench/volumes.py [--runs 10] [--payload-mb 100]

Starts a private Dockyard daemon, imports the example busybox image and an
image whose `VOLUME /payload` holds a generated directory (`dockyard import` of
a tar made here: many small files and some large ones, 100 MB in all), then
prints median/min/max milliseconds:

* `run --rm` with 0, 1 and 10 named volumes (created beforehand), and the cost
  per extra mount: the start mounts each volume (a fresh mount id, a record,
  the driver's Mount), the exit unmounts it;
* `run -d -v NEW:/payload` of the payload image, the new volume filled by
  copy-up, against the same run with `:nocopy`: the difference is the copy-up,
  reported in MB/s too (containers and volumes are removed outside the timing).

When a Docker daemon (/var/run/docker.sock) or podman is present and working,
the same runs go against them in the same session, with ratios.
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import statistics
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import engines  # noqa: E402
from tests.harness import Daemon, build_busybox_rootfs, new_base  # noqa: E402

IMAGE = f"dybench/busybox:{os.getpid()}"  # their own names: the others' stores are shared
PAYLOAD = f"dybench/payload:{os.getpid()}"


def payload_tar(busybox: Path, target: Path, megabytes: int) -> Path:
    """busybox plus /payload: 1000 small files (4 KiB) and the rest in 1 MiB files."""
    out = target / "payload.tar"
    with tarfile.open(busybox) as src, tarfile.open(out, "w") as dst:
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        for name in ("payload", "payload/small", "payload/large"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            dst.addfile(info)
        small = 4096
        for i in range(1000):
            info = tarfile.TarInfo(f"payload/small/{i:04d}")
            info.size = small
            dst.addfile(info, io.BytesIO(secrets.token_bytes(small)))
        remaining = megabytes * (1 << 20) - 1000 * small
        i = 0
        while remaining > 0:
            size = min(1 << 20, remaining)
            info = tarfile.TarInfo(f"payload/large/{i:04d}")
            info.size = size
            dst.addfile(info, io.BytesIO(secrets.token_bytes(size)))
            remaining -= size
            i += 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--payload-mb", type=int, default=100)
    args = engines.parse_as_root(parser)

    daemon = Daemon(new_base())
    base = daemon.base
    others: list[engines.Engine] = []
    volumes = [f"benchvol{i}" for i in range(10)]
    try:
        daemon.start()
        busybox = build_busybox_rootfs(base)
        payload = payload_tar(busybox, base, args.payload_mb)
        ours, via_docker = engines.dockyard_cli(daemon), engines.docker_cli(daemon)
        others = engines.others(base)
        for engine in [ours, *others]:
            engine.cmd("import", str(busybox), IMAGE)
            engine.cmd("import", "-c", "VOLUME /payload", str(payload), PAYLOAD)
            for volume in volumes:
                engine.cmd("volume", "rm", "-f", volume, check=False)  # left by an aborted run
                engine.cmd("volume", "create", volume)
        print(f"Dockyard volume bench: {args.runs} runs each; {engines.beside(others)}")

        medians: dict[str, dict[int, float]] = {}
        for count in (0, 1, 10):
            flags = [arg for v in volumes[:count] for arg in ("-v", f"{v}:/{v}")]
            rows = {}
            for engine in [ours, via_docker, *others]:
                rows[engine.name] = engines.measure(
                    lambda e=engine, f=flags: e.cmd(
                        "run", "--rm", "--network", "none", *f, IMAGE, "true"
                    ),
                    args.runs,
                )
                medians.setdefault(engine.name, {})[count] = statistics.median(rows[engine.name])
            engines.report(
                f"run --rm --network none IMG true with {count} volumes", rows, via_docker.name
            )
        print("\nper extra mount (median with 10 volumes - median with 0, / 10)")
        for label, by_count in medians.items():
            print(f"  {label:<24} {(by_count[10] - by_count[0]) / 10:6.2f} ms")

        rows = {}
        counter = iter(range(1_000_000))
        for engine in [ours, via_docker, *others]:
            for mode in ("copy-up", "nocopy"):
                suffix = ":nocopy" if mode == "nocopy" else ""
                made: list[str] = []

                def start(
                    e: engines.Engine = engine, m: str = suffix, made: list[str] = made
                ) -> None:
                    # A new volume each time, created by the run itself, as compose does.
                    made.append(f"benchcopy{next(counter)}")
                    e.cmd("run", "-d", "--name", "bench-copy", "--network", "none",
                          "-v", f"{made[-1]}:/payload{m}", PAYLOAD, "true")  # fmt: skip

                def remove(e: engines.Engine = engine, made: list[str] = made) -> None:
                    e.cmd("rm", "-f", "bench-copy")
                    e.cmd("volume", "rm", made.pop())

                rows[f"{engine.name} ({mode})"] = engines.measure(start, args.runs, after=remove)
        engines.report(
            f"run -d with a new volume over a {args.payload_mb} MB image directory",
            rows,
            f"{via_docker.name} (copy-up)",
        )
        print(f"\ncopy-up of {args.payload_mb} MB (copy-up median - nocopy median)")
        for engine in [ours, via_docker, *others]:
            cost = statistics.median(rows[f"{engine.name} (copy-up)"]) - statistics.median(
                rows[f"{engine.name} (nocopy)"]
            )
            rate = args.payload_mb / (cost / 1000) if cost > 0 else float("inf")
            print(f"  {engine.name:<24} {cost:8.1f} ms   {rate:7.0f} MB/s")
    finally:
        for engine in others:
            engine.cmd("rm", "-f", "-v", "bench-copy", check=False)
            engine.cmd("volume", "rm", *volumes, check=False)
            engine.cmd("rmi", IMAGE, PAYLOAD, check=False)
        daemon.cleanup()


if __name__ == "__main__":
    main()
