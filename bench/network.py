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
  and throughput of one TCP stream; then the same over IPv6 on an `--ipv6`
  network (Dockyard only), to the containers' IPv6 addresses;
* host to a published port on 127.0.0.1 (DNAT): connections per second and
  throughput from a client on the host, beside the container's address
  reached directly (no NAT).

When a Docker daemon (/var/run/docker.sock) or podman is installed and
working, the same measurements run against them, with ratios.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import engines  # noqa: E402
from bench.engines import Engine  # noqa: E402
from tests.harness import Daemon, build_busybox_rootfs, new_base  # noqa: E402

IMAGE = f"bench/net-busybox:{os.getpid()}"  # its own name: engines' stores are shared
ECHO = ["nc", "-ll", "-p", "5432", "-e", "cat"]
SINK = ["nc", "-ll", "-p", "5001", "-e", "sh", "-c", "cat > /dev/null"]
HOLDER = "bench-net-holder"


def ensure_image(engine: Engine, tar: Path) -> None:
    """Another user of a shared image store (podman's) may remove images at any time."""
    if engine.cmd("image", "inspect", IMAGE, check=False) in ("", "[]\n"):
        engine.cmd("import", str(tar), IMAGE)
    # A container using it keeps `image prune` away from it.
    engine.cmd("rm", "-f", HOLDER, check=False)
    engine.cmd("create", "--name", HOLDER, IMAGE, "true", check=False)


def release_image(engine: Engine) -> None:
    engine.cmd("rm", "-f", HOLDER, check=False)
    engine.cmd("rmi", IMAGE, check=False)


def startup_cost(compared: list[Engine], client: Any, runs: int, baseline: str) -> None:
    """Default-bridge and --network none runs, alternating; what the bridge costs."""
    runners: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {}
    for engine in compared:
        runners[engine.name] = (
            lambda e=engine: e.cmd("run", "--rm", IMAGE, "true"),
            lambda e=engine: e.cmd("run", "--rm", "--network", "none", IMAGE, "true"),
        )
    runners[engines.DOCKER_PY] = (
        lambda: client.containers.run(IMAGE, "true", remove=True),
        lambda: client.containers.run(IMAGE, "true", remove=True, network_mode="none"),
    )
    bridge: dict[str, list[float]] = {}
    none: dict[str, list[float]] = {}
    for name, (with_bridge, without) in runners.items():
        samples = engines.alternating({"bridge": with_bridge, "none": without}, runs)
        bridge[name], none[name] = samples["bridge"], samples["none"]
    title = f"run --rm IMG true ({runs} runs each, alternating the two networks)"
    engines.report(f"{title}: default bridge", bridge, baseline)
    engines.report(f"{title}: --network none", none, baseline)
    print("\nnetworking cost per container (median on the default bridge - with --network none)")
    for name in runners:
        cost = statistics.median(bridge[name]) - statistics.median(none[name])
        print(
            f"  {name:<24} {cost:+6.1f} ms "
            f"(difference of the minimums: {min(bridge[name]) - min(none[name]):+.1f} ms)"
        )


def in_daemon(log_path: Path, networks: Mapping[str, str]) -> None:
    """The daemon's own setup/teardown time per container on each network (label: name),
    from its debug log (free of client noise)."""
    lines = log_path.read_text().splitlines()
    rows: dict[str, list[float]] = {}
    for label, name in networks.items():
        for kind in ("setup", "teardown"):
            rows[f"{label}: {kind}"] = [
                float(line.rsplit(": ", 1)[1].split()[0])
                for line in lines
                if f"network {kind} of " in line and f"({name}):" in line
            ]
    engines.report(
        "inside the daemon (network setup / teardown per container)",
        {label: samples for label, samples in rows.items() if samples},
        digits=2,
    )


def ip(engine: Engine, container: str) -> str:
    """The address on the default network."""
    return engine.cmd("inspect", "-f", "{{.NetworkSettings.IPAddress}}", container).strip()


def container_to_container(
    engine: Engine, connections: int, mib: int, ipv6: bool = False
) -> dict[str, float]:
    net = "benchnet6" if ipv6 else "benchnet"
    engine.cmd("network", "create", *(["--ipv6"] if ipv6 else []), net)
    field = "GlobalIPv6Address" if ipv6 else "IPAddress"

    def address(container: str) -> str:
        return engine.cmd(
            "inspect",
            "-f",
            f'{{{{(index .NetworkSettings.Networks "{net}").{field}}}}}',
            container,
        ).strip()

    try:
        engine.cmd("run", "-d", "--name", "bench-echo", "--network", net, IMAGE, *ECHO)
        engine.cmd("run", "-d", "--name", "bench-sink", "--network", net, IMAGE, *SINK)
        engine.cmd("run", "-d", "--name", "bench-client", "--network", net, IMAGE, "sleep", "3600")
        engine.cmd("exec", "-d", "bench-client", *ECHO)
        time.sleep(0.5)
        echo_ip = address("bench-echo")

        def per_second(script: str) -> float:
            # Two loops, of N and 2N connections, in one exec each: their difference is
            # N connections without the cost of exec itself.
            def loop(n: int) -> float:
                looped = f"i=0; while [ $i -lt {n} ]; do {script}; i=$((i+1)); done"
                return engines.timed(lambda: engine.cmd("exec", "bench-client", "sh", "-c", looped))

            return connections / ((loop(2 * connections) - loop(connections)) / 1000)

        rate = per_second(f"echo x | nc {echo_ip} 5432 >/dev/null")
        floor = per_second("echo x | nc 127.0.0.1 5432 >/dev/null")
        by_name = per_second("echo x | nc bench-echo 5432 >/dev/null")
        base = statistics.median(
            [engines.timed(lambda: engine.cmd("exec", "bench-client", "true")) for _ in range(5)]
        )
        # Over IPv6 the sink is reached by address (a name would give busybox IPv4 first).
        sink = address("bench-sink") if ipv6 else "bench-sink"
        stream = f"dd if=/dev/zero bs=1M count={mib} 2>/dev/null | nc {sink} 5001"
        # busybox nc may exit non-zero when the sink closes first; the bytes were sent.
        copy = engines.timed(
            lambda: engine.cmd("exec", "bench-client", "sh", "-c", stream, check=False)
        )
        throughput = mib / ((copy - base) / 1000)
        label = f"{engine.name} (IPv6)" if ipv6 else engine.name
        print(
            f"  {label:<24} {rate:6.0f} conn/s to the address ({floor:.0f} on the "
            f"container's loopback, {by_name:.0f} by name through DNS)  {throughput:6.0f} MiB/s"
        )
        return {"rate": rate, "by name": by_name, "throughput": throughput}
    finally:
        engine.cmd("rm", "-f", "bench-echo", "bench-sink", "bench-client", check=False)
        engine.cmd("network", "rm", net, check=False)


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
    try:
        engine.cmd(
            "run",
            "-d",
            "--name",
            "bench-echo",
            "-p",
            f"127.0.0.1:{echo_port}:5432",
            IMAGE,
            *ECHO,
        )
        engine.cmd(
            "run",
            "-d",
            "--name",
            "bench-sink",
            "-p",
            f"127.0.0.1:{sink_port}:5001",
            IMAGE,
            *SINK,
        )
        _wait_port("127.0.0.1", echo_port)
        _wait_port("127.0.0.1", sink_port)
        echo_ip, sink_ip = ip(engine, "bench-echo"), ip(engine, "bench-sink")
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
        engine.cmd("rm", "-f", "bench-echo", "bench-sink", check=False)


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
    args = engines.parse_as_root(parser)
    daemon = Daemon(new_base())
    base = daemon.base
    others: list[Engine] = []
    try:
        daemon.start("--debug")  # the daemon logs how long each network setup/teardown takes
        tar = build_busybox_rootfs(base)
        ours, via_docker = engines.dockyard_cli(daemon), engines.docker_cli(daemon)
        ours.cmd("import", str(tar), IMAGE)
        others += engines.others(base)
        client = engines.docker_py(daemon)
        print(f"Dockyard network bench; {engines.beside(others)}")
        for engine in others:
            ensure_image(engine, tar)
        startup_cost([ours, via_docker, *others], client, args.runs, via_docker.name)
        in_daemon(daemon.log_path, {"default bridge": "bridge"})

        print(f"\ncontainer to container ({args.connections} connections, {args.mib} MiB stream)")
        for engine in others:
            ensure_image(engine, tar)
        c2c = {
            e.name: container_to_container(e, args.connections, args.mib)
            for e in [via_docker, *others]
        }
        ratios("container to container", c2c, via_docker.name)
        print(f"\ncontainer to container over IPv6 ({args.connections} connections)")
        container_to_container(via_docker, args.connections, args.mib, ipv6=True)

        print(f"\nhost to published port ({args.connections} connections, {args.mib} MiB stream)")
        for engine in others:
            ensure_image(engine, tar)
        h2p = {
            e.name: host_to_published(e, args.connections, args.mib) for e in [via_docker, *others]
        }
        ratios("host to published port", h2p, via_docker.name)
        client.close()
    finally:
        for engine in others:
            release_image(engine)
        daemon.cleanup()


if __name__ == "__main__":
    main()
