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
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.harness import Daemon, build_busybox_rootfs  # noqa: E402

IMAGE = "bench/busybox:1"
PAYLOAD = "bench/payload:1"


class Engine:
    """One engine under test, driven through a command line."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.argv = argv
        self.env = env

    def cmd(self, *args: str) -> str:
        result = subprocess.run([*self.argv, *args], env=self.env, capture_output=True)
        if result.returncode != 0:
            raise RuntimeError(
                f"{self.name}: {' '.join(args)}: {result.stderr.decode(errors='replace')}"
            )
        return result.stdout.decode()


def measure(fn: Callable[[], object], runs: int, after: Callable[[], object] | None = None):
    fn()  # warm-up
    if after:
        after()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
        if after:
            after()
    return samples


def report(title: str, rows: dict[str, list[float]], baseline: str) -> None:
    print(f"\n{title}")
    base = statistics.median(rows[baseline]) if baseline in rows else None
    for label, samples in rows.items():
        med = statistics.median(samples)
        ratio = f"  x{med / base:.2f} of {baseline}" if base and label != baseline else ""
        print(
            f"  {label:<40} median {med:8.1f} ms   min {min(samples):8.1f}   "
            f"max {max(samples):8.1f}{ratio}"
        )


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


def _podman_env(base: Path) -> dict[str, str]:
    """podman with runc and rlimits this host grants (its defaults ask for more: EPERM)."""
    import resource

    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    conf = base / "containers.conf"
    conf.write_text(
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc=4096:4096"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
    )
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def other_engines(busybox: Path, payload: Path) -> list[Engine]:
    engines = []
    sock = "/var/run/docker.sock"
    if shutil.which("docker") and os.path.exists(sock):
        env = {**os.environ, "DOCKER_HOST": "unix://" + sock}
        if subprocess.run(["docker", "info"], env=env, capture_output=True).returncode == 0:
            engines.append(Engine("dockerd", ["docker"], env))
    if shutil.which("podman"):
        engines.append(Engine("podman", ["podman"], _podman_env(busybox.parent)))
    for engine in engines:
        engine.cmd("import", str(busybox), IMAGE)
        engine.cmd("import", "-c", "VOLUME /payload", str(payload), PAYLOAD)
    return engines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--payload-mb", type=int, default=100)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")

    base = Path(tempfile.mkdtemp(prefix="dyv-", dir="/tmp"))
    daemon = Daemon(base)
    engines: list[Engine] = []
    volumes = [f"benchvol{i}" for i in range(10)]
    try:
        daemon.start()
        busybox = build_busybox_rootfs(base)
        payload = payload_tar(busybox, base, args.payload_mb)
        ours = Engine(
            "dockyard CLI",
            [sys.executable, "-m", "dockyard"],
            {**os.environ, "DOCKYARD_HOST": daemon.host},
        )
        via_docker = Engine(
            "docker CLI -> Dockyard", ["docker"], {**os.environ, "DOCKER_HOST": daemon.host}
        )
        ours.cmd("import", str(busybox), IMAGE)
        ours.cmd("import", "-c", "VOLUME /payload", str(payload), PAYLOAD)
        others = other_engines(busybox, payload)
        engines = [ours, via_docker, *others]
        print(
            f"Dockyard volume bench: {args.runs} runs each; comparing with "
            f"{', '.join(e.name for e in others) or 'no other engine (none running here)'}"
        )
        for engine in [ours, *others]:
            for volume in volumes:
                engine.cmd("volume", "create", volume)

        medians: dict[str, dict[int, float]] = {}
        for count in (0, 1, 10):
            flags = [arg for v in volumes[:count] for arg in ("-v", f"{v}:/{v}")]
            rows = {}
            for engine in engines:
                rows[engine.name] = measure(
                    lambda e=engine, f=flags: e.cmd(
                        "run", "--rm", "--network", "none", *f, IMAGE, "true"
                    ),
                    args.runs,
                )
                medians.setdefault(engine.name, {})[count] = statistics.median(rows[engine.name])
            report(f"run --rm --network none IMG true with {count} volumes", rows, via_docker.name)
        print("\nper extra mount (median with 10 volumes - median with 0, / 10)")
        for label, by_count in medians.items():
            print(f"  {label:<40} {(by_count[10] - by_count[0]) / 10:6.2f} ms")

        rows = {}
        counter = iter(range(1_000_000))
        for engine in engines:
            for mode in ("copy-up", "nocopy"):
                suffix = ":nocopy" if mode == "nocopy" else ""

                def start(e: Engine = engine, m: str = suffix) -> None:
                    # A new volume each time, created by the run itself, as compose does.
                    volume = f"benchcopy{next(counter)}"
                    e.cmd("run", "-d", "--name", "bench-copy", "--network", "none",
                          "-v", f"{volume}:/payload{m}", PAYLOAD, "true")  # fmt: skip
                    e.volume = volume  # type: ignore[attr-defined]

                def remove(e: Engine = engine) -> None:
                    e.cmd("rm", "-f", "bench-copy")
                    e.cmd("volume", "rm", e.volume)  # type: ignore[attr-defined]

                rows[f"{engine.name} ({mode})"] = measure(start, args.runs, after=remove)
        report(
            f"run -d with a new volume over a {args.payload_mb} MB image directory",
            rows,
            f"{via_docker.name} (copy-up)",
        )
        print(f"\ncopy-up of {args.payload_mb} MB (copy-up median - nocopy median)")
        for engine in engines:
            cost = statistics.median(rows[f"{engine.name} (copy-up)"]) - statistics.median(
                rows[f"{engine.name} (nocopy)"]
            )
            rate = args.payload_mb / (cost / 1000) if cost > 0 else float("inf")
            print(f"  {engine.name:<40} {cost:8.1f} ms   {rate:7.0f} MB/s")
    finally:
        for engine in engines[2:]:
            subprocess.run(
                [*engine.argv, "rm", "-f", "-v", "bench-copy"], env=engine.env, capture_output=True
            )
            subprocess.run(
                [*engine.argv, "volume", "rm", *volumes], env=engine.env, capture_output=True
            )
            subprocess.run(
                [*engine.argv, "rmi", IMAGE, PAYLOAD], env=engine.env, capture_output=True
            )
        daemon.cleanup()


if __name__ == "__main__":
    main()
