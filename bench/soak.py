"""Soak: many container lifecycles, and whether the daemon and the host stay flat.

Usage (root): .venv/bin/python bench/soak.py [--n 10000] [--every 1000]

Not part of the test suite: it runs for over an hour at its default size. Starts a private
Dockyard daemon (its own data root, exec root, socket, cgroup parent, bridge and veth
names, nftables table), imports the example busybox image, and runs `--n` lifecycles
through docker-py, each a container that uses what leaks when a lifecycle is
incomplete:

* a user network (two long-lived ones, alternately; and every tenth lifecycle a network
  of its own, created before and removed after);
* a published port (`127.0.0.1::80`, an nftables map element and an allocated host port);
* a named volume shared by all of them and an anonymous volume removed with it;

created, started, waited on (it runs `true`; every fifth one runs `sleep` and is
killed), and removed with its anonymous volume. Every `--every` lifecycles (1000 by
default, a tenth of `--n` when that is smaller) it samples the daemon's RSS and open
file descriptors, and the host state under the daemon's own names: mounts under its
directories, its veths, the rules and map elements of its nftables table, its cgroups,
its container monitors, its attach entries and its volume directories. It prints each
sample and then each figure's growth per 1000 lifecycles (the least-squares slope over
all samples). Flat means growth near 0; a figure that grows with every lifecycle is a
leak.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from docker.types import Mount  # noqa: E402

from bench import engines  # noqa: E402
from tests.harness import Daemon, build_busybox_rootfs, new_base  # noqa: E402

IMAGE = f"dybench/busybox:{os.getpid()}"
FIGURES = (
    "rss_kib",
    "fds",
    "mounts",
    "veths",
    "nft_lines",
    "cgroups",
    "monitors",
    "attach_entries",
    "volume_dirs",
    "networks",
)


@dataclass
class Sample:
    lifecycles: int
    seconds: float
    values: dict[str, int]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def count_dirs(path: Path) -> int:
    return sum(1 for p in path.rglob("*") if p.is_dir()) if path.is_dir() else 0


def sample(daemon: Daemon, client: object, lifecycles: int, started: float) -> Sample:
    assert daemon.proc is not None
    pid = daemon.proc.pid
    mounts = [
        line.split()[1]
        for line in Path("/proc/self/mounts").read_text().splitlines()
        if str(daemon.base) in line.split()[1]
    ]
    cgroups = 0
    for root in Path("/sys/fs/cgroup").iterdir():
        parent = root / daemon.cgroup_parent
        cgroups += count_dirs(parent)
    monitors = subprocess.run(
        ["pgrep", "-f", f"conmon.*{daemon.exec_root}"], capture_output=True, text=True
    ).stdout.split()
    ruleset = subprocess.run(
        ["nft", "list", "table", "ip", daemon.nft_table], capture_output=True, text=True
    ).stdout
    attach = daemon.exec_root / "attach"
    volumes = daemon.data_root / "volumes"
    values = {
        "rss_kib": rss_kib(pid),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "mounts": len(mounts),
        "veths": sum(1 for link in daemon.links() if link.startswith(daemon.veth_prefix)),
        # rules, and map elements (one per line once the table is listed with a line each)
        "nft_lines": sum(1 for line in ruleset.splitlines() if line.strip()),
        "cgroups": cgroups,
        "monitors": len(monitors),
        "attach_entries": len(os.listdir(attach)) if attach.is_dir() else 0,
        "volume_dirs": len(os.listdir(volumes)) if volumes.is_dir() else 0,
        "networks": len(client.networks.list()),  # type: ignore[attr-defined]
    }
    return Sample(lifecycles, time.monotonic() - started, values)


def lifecycle(client: object, i: int, networks: list[str]) -> None:
    """One container's life, with a network, a published port and volumes."""
    own = None
    network = networks[i % len(networks)]
    if i % 10 == 0:
        own = client.networks.create(f"soak-own-{i}")  # type: ignore[attr-defined]
        network = own.name
    sleeps = i % 5 == 0
    container = client.containers.create(  # type: ignore[attr-defined]
        IMAGE,
        ["sleep", "1000"] if sleeps else ["true"],
        name=f"soak-{i}",
        network=network,
        ports={"80/tcp": ("127.0.0.1", None)},
        volumes={"soak-shared": {"bind": "/shared", "mode": "rw"}},
        mounts=[Mount("/scratch", None, type="volume")],  # anonymous: removed with it
    )
    container.start()
    if sleeps:
        container.kill()
    result = container.wait(timeout=60)
    expected = 137 if sleeps else 0
    if result["StatusCode"] != expected:
        raise RuntimeError(f"lifecycle {i}: exit {result['StatusCode']}, not {expected}")
    container.remove(v=True)
    if own is not None:
        own.remove()


def slope_per_1000(samples: list[Sample], figure: str) -> float:
    xs = [s.lifecycles for s in samples]
    ys = [s.values[figure] for s in samples]
    if len(xs) < 2 or len(set(xs)) < 2:
        return 0.0
    return statistics.linear_regression(xs, ys).slope * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10000, help="lifecycles to run")
    parser.add_argument("--every", type=int, default=0, help="lifecycles between samples")
    args = engines.parse_as_root(parser)
    every = args.every or (1000 if args.n >= 10000 else max(1, args.n // 10))

    daemon = Daemon(new_base())
    try:
        daemon.start()
        tar = build_busybox_rootfs(daemon.base)
        daemon.cli("import", str(tar), IMAGE, check=True)
        client = engines.docker_py(daemon)
        networks = [client.networks.create(f"soak-net-{n}").name for n in range(2)]
        client.volumes.create("soak-shared")
        # Warm-up: caches, the first network's bridge and rules; not counted.
        for i in range(10):
            lifecycle(client, -1 - i, networks)
        started = time.monotonic()
        samples = [sample(daemon, client, 0, started)]
        print(f"Soak: {args.n} lifecycles, a sample every {every}")
        header = f"{'lifecycles':>10} {'seconds':>8} " + " ".join(f"{f:>14}" for f in FIGURES)
        print(header)

        def show(s: Sample) -> None:
            row = " ".join(f"{s.values[f]:>14}" for f in FIGURES)
            print(f"{s.lifecycles:>10} {s.seconds:>8.0f} {row}", flush=True)

        show(samples[0])
        for i in range(args.n):
            lifecycle(client, i, networks)
            if (i + 1) % every == 0 or i + 1 == args.n:
                samples.append(sample(daemon, client, i + 1, started))
                show(samples[-1])

        elapsed = samples[-1].seconds
        print(
            f"\n{args.n} lifecycles in {elapsed:.0f} s "
            f"({elapsed / max(args.n, 1) * 1000:.0f} ms each)"
        )
        print("Growth per 1000 lifecycles (least-squares slope over the samples):")
        for figure in FIGURES:
            first, last = samples[0].values[figure], samples[-1].values[figure]
            print(
                f"  {figure:>14}: {slope_per_1000(samples, figure):+10.1f}"
                f"   (from {first} to {last})"
            )
        client.close()
    finally:
        daemon.cleanup()


if __name__ == "__main__":
    main()
