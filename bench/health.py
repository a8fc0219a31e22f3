"""Health-check overhead per probe: how long a probe takes and what it costs the daemon.

Usage (root): .venv/bin/python bench/health.py [--containers 4] [--interval 250ms]
                                               [--window 10] [--probes 40]

Starts a private Dockyard daemon, imports the example busybox image and runs
`--containers` containers with `--health-cmd true --health-interval INTERVAL`
(nothing else runs in them). Then, for each engine:

* daemon CPU per probe: the daemon's user+system CPU time over `--window`
  seconds of probing, untouched by any client, divided by the probes that ran
  in it (counted afterwards from the `exec_die` events of the window); the
  same window with the containers' checks disabled gives the idle baseline;
* time per probe: `End - Start` of the probes in `State.Health.Log` (the exec
  started in the container, the command run, its exit collected), gathered
  until `--probes` distinct ones are seen; median, min and max.

The CPU is the daemon process's own (and its reaped children's): the per-probe
monitor (conmon) and `runtime exec` it starts run outside it, so their cost is
not in the figure. When a Docker daemon (/var/run/docker.sock) answers, the
same runs go against it, its CPU read from dockerd's /proc entry; podman runs
checks from its own timers, so for it only `podman healthcheck run` is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import engines  # noqa: E402
from tests.harness import Daemon, build_busybox_rootfs, new_base  # noqa: E402

IMAGE = f"dybench/busybox:{os.getpid()}"
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and its reaped children, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2 :].split()
    # utime, stime, cutime, cstime are fields 14-17 of stat; 3 are before the slice.
    return sum(int(v) for v in fields[11:15]) / CLOCK_TICK


def pid_of(process: str) -> int | None:
    found = subprocess.run(["pidof", "-s", process], capture_output=True, text=True).stdout
    return int(found) if found.strip() else None


def parse_time(text: str) -> float:
    """Go's RFC 3339 (nanoseconds, any zone) -> seconds since the epoch."""
    base, _, rest = text.partition(".")
    digits = "".join(ch for ch in rest if ch.isdigit())
    zone = rest[len(digits) :] if rest else base[19:]
    base = base[:19]
    zone = "+00:00" if zone in ("Z", "") else zone
    return datetime.fromisoformat(base + zone).timestamp() + float("0." + (digits or "0"))


def probe_counts(engine: engines.Engine, names: list[str], since: float, until: float) -> int:
    out = engine.cmd(
        "events",
        "--since",
        f"{since:.9f}",
        "--until",
        f"{until:.9f}",
        "--filter",
        "event=exec_die",
        "--format",
        "{{.Actor.Attributes.name}}",
    )
    return sum(1 for line in out.split() if line in names)


def probe_times(engine: engines.Engine, names: list[str], wanted: int) -> list[float]:
    """Milliseconds of `wanted` distinct probes, read from the containers' health logs."""
    seen: dict[tuple[str, str], float] = {}
    deadline = time.monotonic() + 600
    while len(seen) < wanted and time.monotonic() < deadline:
        out = engine.cmd("inspect", "--format", "{{json .State.Health.Log}}", *names)
        for name, line in zip(names, out.splitlines(), strict=True):
            for entry in json.loads(line) or []:
                if entry["ExitCode"] == 0:
                    took = parse_time(entry["End"]) - parse_time(entry["Start"])
                    seen[(name, entry["Start"])] = took * 1000
        time.sleep(0.5)
    return list(seen.values())[:wanted]


def cpu_per_probe(
    engine: engines.Engine, daemon_pid: int, names: list[str], window: float
) -> tuple[float, int]:
    """Daemon CPU milliseconds per probe over `window` seconds, and the probes counted."""
    since = time.time()
    before = cpu_seconds(daemon_pid)
    time.sleep(window)
    used = cpu_seconds(daemon_pid) - before
    until = time.time()
    probes = probe_counts(engine, names, since, until)
    return (used * 1000 / probes if probes else float("nan")), probes


def idle_cpu(daemon_pid: int, window: float) -> float:
    before = cpu_seconds(daemon_pid)
    time.sleep(window)
    return (cpu_seconds(daemon_pid) - before) * 1000 / window


def run_checked(engine: engines.Engine, names: list[str], interval: str) -> None:
    for name in names:
        engine.cmd(
            "run",
            "-d",
            "--name",
            name,
            "--health-cmd",
            "true",
            "--health-interval",
            interval,
            IMAGE,
            "sleep",
            "3600",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--containers", type=int, default=4)
    parser.add_argument("--interval", default="250ms")
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--probes", type=int, default=40)
    args = engines.parse_as_root(parser)

    daemon = Daemon(new_base())
    others: list[engines.Engine] = []
    try:
        daemon.start()
        tar = build_busybox_rootfs(daemon.base)
        ours = engines.docker_cli(daemon)
        ours.cmd("import", str(tar), IMAGE)
        dockerd = engines.dockerd()
        others = [dockerd] if dockerd is not None else []
        for engine in others:
            engine.cmd("import", str(tar), IMAGE)
        podman = engines.podman(daemon.base)
        if podman is not None:
            podman.cmd("import", str(tar), IMAGE)
        print(
            f"Health-check overhead: {args.containers} containers probing `true` every "
            f"{args.interval}; {engines.beside([*others, *([podman] if podman else [])])}"
        )
        assert daemon.proc is not None
        daemon_pids = {ours.name: daemon.proc.pid}
        dockerd_pid = pid_of("dockerd")
        if dockerd is not None and dockerd_pid is not None:
            daemon_pids[dockerd.name] = dockerd_pid

        times: dict[str, list[float]] = {}
        cpu_lines = []
        for engine in [ours, *others]:
            pid = daemon_pids.get(engine.name)
            names = [f"bench-health-{os.getpid()}-{i}" for i in range(args.containers)]
            idle_names = [n + "-idle" for n in names]
            for name in idle_names:
                engine.cmd("run", "-d", "--name", name, "--no-healthcheck", IMAGE, "sleep", "3600")
            baseline = idle_cpu(pid, args.window) if pid else float("nan")
            engine.cmd("rm", "-f", *idle_names)
            run_checked(engine, names, args.interval)
            time.sleep(1)  # past the first probes
            per_probe, probes = (
                cpu_per_probe(engine, pid, names, args.window) if pid else (float("nan"), 0)
            )
            times[engine.name] = probe_times(engine, names, args.probes)
            engine.cmd("rm", "-f", *names)
            cpu_lines.append(
                f"  {engine.name:<24} {per_probe:6.1f} ms CPU per probe "
                f"({probes} probes in {args.window:.0f} s; idle {baseline:.1f} ms CPU/s)"
            )
        if podman is not None:
            name = f"bench-health-{os.getpid()}"
            podman.cmd("run", "-d", "--name", name, "--health-cmd", "true", IMAGE, "sleep", "3600")
            times[podman.name + " (healthcheck run)"] = engines.measure(
                lambda: podman.cmd("healthcheck", "run", name), args.probes
            )
            podman.cmd("rm", "-f", name)
        engines.report("time per probe (State.Health.Log End - Start)", times, ours.name)
        print("\ndaemon CPU per probe (the daemon process; conmon and runtime exec not counted)")
        print("\n".join(cpu_lines))
    finally:
        for engine in others:
            engine.cmd("rmi", "-f", IMAGE, check=False)
        daemon.cleanup()


if __name__ == "__main__":
    main()
