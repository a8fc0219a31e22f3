"""Networking figures: the cost of a bridge per container, connection rate and throughput.

Usage (root): .venv/bin/python bench/network.py [--runs 30] [--connections 200] [--mib 256]

Starts a private Dockyard daemon (its own bridges, subnets and nftables table)
and prints:

* `run --rm IMG true` on the default bridge and with `--network none`, run
  alternately; the difference of the medians is what networking costs a
  container (target: under 20 ms);
* container to container on a user-defined network: connections per second
  (a busybox `nc` per connection, so process start-up is part of each one;
  the same loop against the container's own loopback is shown as the floor)
  and throughput of one TCP stream;
* host to a published port on 127.0.0.1 (DNAT): connections per second and
  throughput from a client on the host, beside the container's address
  reached directly (no NAT).

When a Docker daemon (/var/run/docker.sock) or podman is installed and
working, the same measurements run against them, with ratios.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.harness import Daemon, build_busybox_rootfs  # noqa: E402

IMAGE = f"bench/net-busybox:{os.getpid()}"  # its own name: engines' stores are shared
ECHO = ["nc", "-ll", "-p", "5432", "-e", "cat"]
SINK = ["nc", "-ll", "-p", "5001", "-e", "sh", "-c", "cat > /dev/null"]


class Engine:
    """One engine under test, driven through its command line."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.image = IMAGE
        self.run_flags: list[str] = []  # inserted after `run` (podman needs limits here)
        self.tar: Path | None = None  # to import the image again if it vanished

    def ensure_image(self) -> None:
        """Another user of a shared image store (podman's) may remove images at any time."""
        if self.tar and self.run("image", "inspect", self.image, check=False) in ("", "[]\n"):
            self.run("import", str(self.tar), IMAGE)
        if self.tar:  # a container using it keeps `image prune` away from it
            self.run("rm", "-f", "bench-net-holder", check=False)
            self.run("create", "--name", "bench-net-holder", self.image, "true", check=False)

    def run(self, *args: str, check: bool = True) -> str:
        if args and args[0] == "run":
            args = ("run", *self.run_flags, *args[1:])
        result = subprocess.run([*self.argv, *args], env=self.env, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise RuntimeError(f"{self.name} {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def ip(self, container: str) -> str:
        """The address on the default network."""
        return self.run("inspect", "-f", "{{.NetworkSettings.IPAddress}}", container).strip()


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def median_ms(samples: list[float]) -> str:
    return f"median {statistics.median(samples):7.1f} ms  min {min(samples):7.1f}"


def other_engines(tar: Path) -> list[Engine]:
    engines = []
    if shutil.which("docker") and os.path.exists("/var/run/docker.sock"):
        env = {**os.environ, "DOCKER_HOST": "unix:///var/run/docker.sock"}
        if subprocess.run(["docker", "info"], env=env, capture_output=True).returncode == 0:
            engines.append(Engine("dockerd", ["docker"], env))
    if shutil.which("podman"):
        podman = Engine("podman", ["podman"], dict(os.environ))
        podman.image = "localhost/" + IMAGE
        engines.append(podman)
    working = []
    for engine in engines:
        engine.tar = tar
        engine.run("import", str(tar), IMAGE)
        if engine.name == "podman" and not _works(engine):
            # Podman's defaults ask for more than this host allows (crun on hybrid cgroups,
            # RLIMIT_NOFILE/NPROC above the hard limits): use runc and the host's limits.
            nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            engine.argv = ["podman", "--runtime", "runc"]
            engine.run_flags = ["--ulimit", f"nofile={nofile}:{nofile}"]
            engine.run_flags += ["--ulimit", "nproc=16384:16384"]
        if _works(engine):
            working.append(engine)
        else:
            print(f"({engine.name} is installed but cannot run containers here; left out)")
    return working


def _works(engine: Engine) -> bool:
    try:
        engine.run("run", "--rm", "--network", "none", engine.image, "true")
        return True
    except RuntimeError:
        return False


def startup_cost(engines: list[Engine], client: Any, runs: int) -> dict[str, float]:
    """Alternate default-bridge and --network none runs; return the cost per engine."""
    print(f"\nrun --rm IMG true: default bridge vs --network none ({runs} runs each, alternating)")
    runners: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {}
    for engine in engines:
        engine.ensure_image()
        runners[engine.name] = (
            lambda e=engine: e.run("run", "--rm", e.image, "true"),
            lambda e=engine: e.run("run", "--rm", "--network", "none", e.image, "true"),
        )
    runners["docker-py -> Dockyard"] = (
        lambda: client.containers.run(IMAGE, "true", remove=True),
        lambda: client.containers.run(IMAGE, "true", remove=True, network_mode="none"),
    )
    costs = {}
    for name, (with_bridge, without) in runners.items():
        with_bridge()
        bridge: list[float] = []
        none: list[float] = []
        for _ in range(runs):
            bridge.append(timed(with_bridge))
            none.append(timed(without))
        cost = statistics.median(bridge) - statistics.median(none)
        costs[name] = cost
        print(f"  {name:<24} bridge {median_ms(bridge)}   none {median_ms(none)}")
        print(
            f"  {'':<24} networking cost per container: {cost:+.1f} ms "
            f"(difference of the minimums: {min(bridge) - min(none):+.1f} ms)"
        )
    return costs


def in_daemon(log_path: Path) -> None:
    """The daemon's own time for networking, from its debug log (free of client noise)."""
    figures: dict[str, list[float]] = {"setup": [], "teardown": []}
    for line in log_path.read_text().splitlines():
        for kind, samples in figures.items():
            if f"network {kind} of " in line and "(bridge)" in line:
                samples.append(float(line.rsplit(": ", 1)[1].split()[0]))
    if figures["setup"] and figures["teardown"]:
        print(
            f"  inside the daemon, default bridge: setup {median_ms(figures['setup'])}, "
            f"teardown {median_ms(figures['teardown'])} ({len(figures['setup'])} containers)"
        )


def container_to_container(engine: Engine, connections: int, mib: int) -> dict[str, float]:
    net = "benchnet"
    engine.ensure_image()
    engine.run("network", "create", net)
    try:
        engine.run("run", "-d", "--name", "bench-echo", "--network", net, engine.image, *ECHO)
        engine.run("run", "-d", "--name", "bench-sink", "--network", net, engine.image, *SINK)
        engine.run(
            "run", "-d", "--name", "bench-client", "--network", net, engine.image, "sleep", "3600"
        )
        engine.run("exec", "-d", "bench-client", *ECHO)
        time.sleep(0.5)
        echo_ip = engine.run(
            "inspect",
            "-f",
            f'{{{{(index .NetworkSettings.Networks "{net}").IPAddress}}}}',
            "bench-echo",
        ).strip()
        base = statistics.median(
            [timed(lambda: engine.run("exec", "bench-client", "true")) for _ in range(5)]
        )

        def per_second(script: str) -> float:
            looped = f"i=0; while [ $i -lt {connections} ]; do {script}; i=$((i+1)); done"
            elapsed = timed(lambda: engine.run("exec", "bench-client", "sh", "-c", looped))
            return connections / ((elapsed - base) / 1000)

        rate = per_second(f"echo x | nc {echo_ip} 5432 >/dev/null")
        floor = per_second("echo x | nc 127.0.0.1 5432 >/dev/null")
        by_name = per_second("echo x | nc bench-echo 5432 >/dev/null")
        stream = f"dd if=/dev/zero bs=1M count={mib} 2>/dev/null | nc bench-sink 5001"
        # busybox nc may exit non-zero when the sink closes first; the bytes were sent.
        copy = timed(lambda: engine.run("exec", "bench-client", "sh", "-c", stream, check=False))
        throughput = mib / ((copy - base) / 1000)
        print(
            f"  {engine.name:<24} {rate:6.0f} conn/s to the address ({floor:.0f} on the "
            f"container's loopback, {by_name:.0f} by name through DNS)  {throughput:6.0f} MiB/s"
        )
        return {"rate": rate, "by name": by_name, "throughput": throughput}
    finally:
        engine.run("rm", "-f", "bench-echo", "bench-sink", "bench-client", check=False)
        engine.run("network", "rm", net, check=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _connections(host: str, port: int, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(b"x\n")
            s.recv(16)
    return count / (time.perf_counter() - start)


def _throughput(host: str, port: int, mib: int) -> float:
    chunk = b"\0" * (1 << 20)
    start = time.perf_counter()
    with socket.create_connection((host, port), timeout=30) as s:
        for _ in range(mib):
            s.sendall(chunk)
        s.shutdown(socket.SHUT_WR)
        s.recv(1)
    return mib / (time.perf_counter() - start)


def _wait_port(host: str, port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{host}:{port} does not answer")


def host_to_published(engine: Engine, connections: int, mib: int) -> dict[str, float]:
    echo_port, sink_port = _free_port(), _free_port()
    engine.ensure_image()
    try:
        engine.run(
            "run",
            "-d",
            "--name",
            "bench-echo",
            "-p",
            f"127.0.0.1:{echo_port}:5432",
            engine.image,
            *ECHO,
        )
        engine.run(
            "run",
            "-d",
            "--name",
            "bench-sink",
            "-p",
            f"127.0.0.1:{sink_port}:5001",
            engine.image,
            *SINK,
        )
        _wait_port("127.0.0.1", echo_port)
        _wait_port("127.0.0.1", sink_port)
        echo_ip, sink_ip = engine.ip("bench-echo"), engine.ip("bench-sink")
        rate = _connections("127.0.0.1", echo_port, connections)
        direct_rate = _connections(echo_ip, 5432, connections)
        throughput = _throughput("127.0.0.1", sink_port, mib)
        direct_throughput = _throughput(sink_ip, 5001, mib)
        print(
            f"  {engine.name:<24} {rate:8.0f} conn/s  {throughput:8.0f} MiB/s via 127.0.0.1 "
            f"(container address directly: {direct_rate:.0f} conn/s, "
            f"{direct_throughput:.0f} MiB/s)"
        )
        return {"rate": rate, "throughput": throughput}
    finally:
        engine.run("rm", "-f", "bench-echo", "bench-sink", check=False)


def ratios(title: str, results: dict[str, dict[str, float]], baseline: str) -> None:
    if len(results) < 2 or baseline not in results:
        return
    print(f"  {title} ratios to {baseline}:")
    for name, figures in results.items():
        if name == baseline:
            continue
        parts = [f"{key} x{figures[key] / results[baseline][key]:.2f}" for key in figures]
        print(f"    {name:<22} {', '.join(parts)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--mib", type=int, default=256)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    base = Path(tempfile.mkdtemp(prefix="dyb-", dir="/tmp"))
    daemon = Daemon(base)
    others: list[Engine] = []
    try:
        daemon.start("--debug")  # the daemon logs how long each network setup/teardown takes
        tar = build_busybox_rootfs(base)
        daemon.cli("import", str(tar), IMAGE, check=True)
        ours = Engine(
            "dockyard CLI",
            [sys.executable, "-m", "dockyard"],
            {**os.environ, "DOCKYARD_HOST": daemon.host},
        )
        via_docker = Engine(
            "docker CLI -> Dockyard",
            ["docker"],
            {**os.environ, "DOCKER_HOST": daemon.host, "DOCKER_CONFIG": str(base / "docker")},
        )
        others += other_engines(tar)
        import docker

        client = docker.DockerClient(base_url=daemon.host)
        print(
            "Dockyard network bench; comparing with "
            + (", ".join(e.name for e in others) or "no other engine (none running here)")
        )
        costs = startup_cost([ours, via_docker, *others], client, args.runs)
        in_daemon(daemon.log_path)
        for name in ("dockerd", "podman"):
            if name in costs and "docker CLI -> Dockyard" in costs:
                print(f"  networking cost, {name}: {costs[name]:+.1f} ms")

        print(f"\ncontainer to container ({args.connections} connections, {args.mib} MiB stream)")
        c2c = {
            e.name: container_to_container(e, args.connections, args.mib)
            for e in [via_docker, *others]
        }
        ratios("container to container", c2c, "docker CLI -> Dockyard")

        print(f"\nhost to published port ({args.connections} connections, {args.mib} MiB stream)")
        h2p = {
            e.name: host_to_published(e, args.connections, args.mib) for e in [via_docker, *others]
        }
        ratios("host to published port", h2p, "docker CLI -> Dockyard")
        client.close()
    finally:
        for engine in others:
            engine.run("rm", "-f", "bench-net-holder", check=False)
            engine.run("rmi", engine.image, check=False)
        daemon.cleanup()


if __name__ == "__main__":
    main()
