"""The engines a benchmark compares, and how their times are taken and shown.

Dockyard is a private test daemon (`tests/harness.py`) driven three ways: our
CLI, the docker CLI and docker-py. Beside it run the engines installed here: a
Docker daemon when one answers on /var/run/docker.sock, and podman when it can
run a container on this host. Podman's defaults cannot on this one (crun does
not run on hybrid cgroups; its RLIMIT_NOFILE and RLIMIT_NPROC ask for more
than the host grants), so `podman()` gives it runc and the host's limits
through a containers.conf of the benchmark's own.

Times are milliseconds: `measure` takes one warm-up and then N samples, and
`report` prints each row's median, min and max, aligned, with the ratio of its
median to a baseline row's.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tests.harness import REPO, Daemon, build_busybox_rootfs

if TYPE_CHECKING:
    import docker

DOCKER_SOCKET = "/var/run/docker.sock"


@dataclass
class Engine:
    """A docker-compatible command line and the environment it runs in."""

    name: str
    argv: list[str]
    env: dict[str, str]

    def cmd(self, *args: str, check: bool = True, timeout: float | None = None) -> str:
        """Run `argv args`; its stdout, or RuntimeError with its stderr when it fails."""
        result = subprocess.run(
            [*self.argv, *args],
            env=self.env,
            capture_output=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{self.name} {' '.join(args)}: {result.stderr.strip()[-2000:]}")
        return result.stdout

    def variant(self, name: str, **env: str) -> Engine:
        """The same command line under another name, with more environment."""
        return Engine(name, self.argv, {**self.env, **env})


def parse_as_root(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """A benchmark's options; it starts daemons and containers, so it runs as root."""
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    return args


# -- Dockyard ----------------------------------------------------------------


def dockyard_cli(daemon: Daemon) -> Engine:
    env = {
        **os.environ,
        "DOCKYARD_HOST": daemon.host,
        "DOCKER_CONFIG": str(daemon.base / "docker"),  # registry logins stay private
        "PYTHONPATH": str(REPO),
    }
    return Engine("dockyard CLI", [sys.executable, "-m", "dockyard"], env)


def docker_cli(daemon: Daemon) -> Engine:
    env = {**os.environ, "DOCKER_HOST": daemon.host, "DOCKER_CONFIG": str(daemon.base / "docker")}
    return Engine("docker CLI -> Dockyard", ["docker"], env)


def docker_py(daemon: Daemon, timeout: int = 60) -> docker.DockerClient:
    import docker

    return docker.DockerClient(base_url=daemon.host, timeout=timeout)


DOCKER_PY = "docker-py -> Dockyard"  # the row name of docker-py's figures


# -- the others ----------------------------------------------------------------


def dockerd() -> Engine | None:
    """The docker CLI against a Docker daemon on /var/run/docker.sock, if one answers."""
    if not (shutil.which("docker") and os.path.exists(DOCKER_SOCKET)):
        return None
    engine = Engine("dockerd", ["docker"], {**os.environ, "DOCKER_HOST": "unix://" + DOCKER_SOCKET})
    return engine if _answers(engine) else None


def podman(workdir: Path, volume_plugins: Mapping[str, str] | None = None) -> Engine | None:
    """podman with runc and the host's rlimits (and `volume_plugins`: name -> socket),
    if it is installed and runs a container here; `workdir` holds its config."""
    if not shutil.which("podman"):
        return None
    # podman lowers its own RLIMIT_NPROC to pid_max: more than that is refused too.
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = min(
        resource.getrlimit(resource.RLIMIT_NPROC)[1],
        int(Path("/proc/sys/kernel/pid_max").read_text()),
    )
    conf = workdir / "containers.conf"
    lines = [
        "[containers]",
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]',
        "[engine]",
        'runtime = "runc"' if shutil.which("runc") else "",
        "[engine.volume_plugins]",
        *(f'{name} = "{socket}"' for name, socket in (volume_plugins or {}).items()),
    ]
    conf.write_text("\n".join(lines) + "\n")
    engine = Engine("podman", ["podman"], {**os.environ, "CONTAINERS_CONF": str(conf)})
    try:
        _runs_a_container(engine, workdir / "podman-check")
    except RuntimeError as e:
        print(f"(podman is installed but cannot run a container here; left out: {e})")
        return None
    return engine


def others(workdir: Path) -> list[Engine]:
    """The other engines installed and working here: dockerd, podman."""
    return [e for e in (dockerd(), podman(workdir)) if e is not None]


def beside(engines: Sequence[Engine]) -> str:
    """What a benchmark's heading says it compares with, and how busy the host is."""
    names = ", ".join(e.name for e in engines) or "no other engine (none installed here)"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"beside {names}; load average {load}"


def _answers(engine: Engine) -> bool:
    try:
        engine.cmd("info", timeout=60)
        return True
    except (RuntimeError, subprocess.TimeoutExpired):
        return False


def _runs_a_container(engine: Engine, workdir: Path) -> None:
    """A container from a busybox root filesystem (no image: the store is not touched)."""
    rootfs = workdir / "rootfs"
    rootfs.mkdir(parents=True)
    with tarfile.open(build_busybox_rootfs(workdir)) as tar:
        tar.extractall(rootfs, filter="fully_trusted")
    try:
        engine.cmd("run", "--rm", "--network", "none", "--rootfs", str(rootfs), "true")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# -- timing and reports --------------------------------------------------------


def timed(fn: Callable[[], object]) -> float:
    """Milliseconds one call takes."""
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def measure(
    fn: Callable[[], object], runs: int, after: Callable[[], object] | None = None
) -> list[float]:
    """One warm-up, then `runs` samples in milliseconds; `after` each call, untimed."""
    samples = []
    for i in range(runs + 1):
        elapsed = timed(fn)
        if after is not None:
            after()
        if i:
            samples.append(elapsed)
    return samples


def alternating(fns: Mapping[str, Callable[[], object]], runs: int) -> dict[str, list[float]]:
    """`measure` of each function, taken in turns, so that drift in the host's speed
    during the runs lands on all of them alike."""
    for fn in fns.values():
        fn()  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            samples[name].append(timed(fn))
    return samples


def report(
    title: str,
    rows: Mapping[str, Sequence[float]],
    baseline: str | None = None,
    *,
    unit: Literal["ms", "s"] = "ms",
    digits: int = 1,
    megabytes: float | None = None,
) -> None:
    """Median, min and max of each row's samples (milliseconds), shown in `unit`
    ("ms" or "s"), with MB/s for `megabytes` of work, and each row's median as a
    multiple of (and difference to) the baseline row's."""
    if not rows:
        return
    scale = {"ms": 1.0, "s": 1000.0}[unit]
    base = statistics.median(rows[baseline]) if baseline is not None and baseline in rows else None
    print(f"\n{title}" + (f"   [xN: median / median of {baseline}]" if base is not None else ""))
    width = max(len(label) for label in rows)
    size = 7 + digits
    for label, samples in rows.items():
        med = statistics.median(samples)
        line = (
            f"  {label:<{width}}  median {med / scale:{size}.{digits}f} {unit}   "
            f"min {min(samples) / scale:{size}.{digits}f}   "
            f"max {max(samples) / scale:{size}.{digits}f}"
        )
        if megabytes is not None:
            line += f"   {megabytes / (med / 1000):7.1f} MB/s"
        if base is not None and label != baseline:
            line += f"   x{med / base:.2f} ({(med - base) / scale:+.{digits}f} {unit})"
        print(line)
