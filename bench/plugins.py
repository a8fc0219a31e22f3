"""Plugin overhead: authorization per API request, log-driver plugins per container.

Usage (root): .venv/bin/python bench/plugins.py [--requests 300] [--runs 10]
       [--only authz logs volumes]

Starts private Dockyard daemons (their own data roots, sockets, cgroup parents
and plugin directories) and prints median/min/max figures for:

* API requests (`GET /_ping`, `GET /containers/json`, `GET /info`) without
  authorization, with one authorization plugin written with the SDK (allow-all)
  and with the example policy plugin, and with a chain of two;
* `run --rm IMAGE echo` with the built-in log driver and with the example
  rotating-file log plugin, and the time until 20 000 lines of output have
  reached the plugin's file;
* `run --rm -v VOLUME:/d IMAGE true` with a volume of the built-in `local`
  driver and with one of the example volume plugin (plugins/volume_snap.py:
  the SDK, run as a v1 plugin process, and the same code as a managed plugin
  Dockyard runs itself), through the dockyard and docker CLIs: the difference
  is the plugin's cost per container start (one Mount and one Unmount call).
  Podman, when installed, runs the same with the same plugin process
  (containers.conf `[engine.volume_plugins]`), and a running Docker daemon
  too (the plugin's socket is then also put in /run/docker/plugins).

Plugin-backed networks are measured once that driver is wired into the
engine. Docker's authorization plugins are configured by its own daemon.json,
so no Docker figures are taken for them.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import engines  # noqa: E402
from tests.harness import build_busybox_rootfs  # noqa: E402
from tests.plugin_env import (  # noqa: E402
    EXAMPLES,
    PluginDaemon,
    PluginProcess,
    make_plugin_dir,
    volume_plugin_config,
)

IMAGE = f"dybench/busybox:{os.getpid()}"  # its own name: the others' stores are shared
ALLOW_ALL = REPO / "bench" / "allow_all.py"


def unix_get(path: str, sock: str) -> int:
    class Conn(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(sock)

    conn = Conn("localhost", timeout=30)
    conn.request("GET", path)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status


def bench_authz(requests: int, tar: Path) -> None:
    policy_dir = Path(tempfile.mkdtemp(prefix="dyb-pol-"))
    policy = policy_dir / "policy.json"
    policy.write_text(
        json.dumps(
            {
                "default": "allow",
                "rules": [{"methods": ["DELETE"], "path": "^/images/", "action": "deny"}],
            }
        )
    )
    setups = {
        "no authorization": [],
        "1 plugin (SDK, allow-all)": ["allow"],
        "1 plugin (example policy file)": ["policy"],
        "chain of 2 (allow-all, policy)": ["allow", "policy"],
    }
    results: dict[str, dict[str, list[float]]] = {}
    for label, chain in setups.items():
        daemon = PluginDaemon()
        plugins = []
        try:
            plugins.append(PluginProcess(f"{ALLOW_ALL}:AllowAll", daemon.sock("allow")))
            plugins.append(
                PluginProcess(
                    f"{EXAMPLES}/authz_policy.py:PolicyPlugin",
                    daemon.sock("policy"),
                    {"POLICY_FILE": str(policy)},
                )
            )
            daemon.start_with(authorization_plugins=chain)
            for path in ("/_ping", "/v1.45/containers/json", "/v1.45/info"):
                results.setdefault(path, {})[label] = engines.measure(
                    lambda path=path, sock=daemon.socket: unix_get(path, sock), requests
                )
        finally:
            daemon.cleanup()
            for plugin in plugins:
                plugin.stop()
    shutil.rmtree(policy_dir, ignore_errors=True)
    for path, rows in results.items():
        engines.report(
            f"GET {path} ({requests} requests, one connection each)",
            rows,
            "no authorization",
            digits=3,
        )


def bench_logs(runs: int, tar: Path) -> None:
    daemon = PluginDaemon()
    logs = daemon.base / "logs"
    plugin = None
    try:
        daemon.start_with()
        ours = engines.dockyard_cli(daemon)
        ours.cmd("import", str(tar), IMAGE)
        plugin = PluginProcess(
            f"{EXAMPLES}/log_rotate.py:RotatingLogs", daemon.sock("rotate"), {"LOG_DIR": str(logs)}
        )

        def run(*extra: str) -> None:
            ours.cmd("run", "--rm", *extra, IMAGE, "echo", "hi")

        rows = {
            "json-file (built-in)": engines.measure(run, runs),
            "rotate (example log plugin)": engines.measure(
                lambda: run("--log-driver", "rotate"), runs
            ),
        }
        engines.report(
            f"run --rm IMG echo hi ({runs} runs, dockyard CLI)", rows, "json-file (built-in)"
        )
        lines = 20000
        script = f"seq 1 {lines}"
        rows = {}
        for label, extra in (
            ("json-file (built-in)", []),
            ("rotate (example log plugin)", ["--log-driver", "rotate"]),
        ):
            samples = []
            for _ in range(3):
                name = f"flood{time.monotonic_ns()}"
                start = time.perf_counter()
                ours.cmd("run", "--name", name, *extra, IMAGE, "sh", "-c", script)
                if extra:
                    cid = daemon.api("GET", f"/v1.45/containers/{name}/json")[1]["Id"]
                    target = logs / f"{cid}.log"
                    while not (
                        target.exists()
                        and f'"log": "{lines}"'.encode() in target.read_bytes()[-200:]
                    ):
                        time.sleep(0.005)
                samples.append((time.perf_counter() - start) * 1000)
                daemon.cli("rm", name)
            rows[label] = samples
        engines.report(
            f"{lines} lines of output until delivered (run, 3 runs)", rows, "json-file (built-in)"
        )
    finally:
        daemon.cleanup()
        if plugin is not None:
            plugin.stop()


async def _mount_pairs(socket_path: str, volume: str, pairs: int) -> float:
    """Milliseconds per Mount + Unmount pair through the engine's remote driver."""
    from dockyard.plugins.client import PluginClient
    from dockyard.plugins.discovery import Endpoint
    from dockyard.plugins.legacy import Plugin
    from dockyard.volumes.remote import RemoteDriver

    client = PluginClient("snap", Endpoint("unix", socket_path))
    driver = RemoteDriver(Plugin("snap", client, ("VolumeDriver",)))
    try:
        await driver.unmount(volume, await driver.mount(volume, "0" * 64))  # warm-up
        start = time.perf_counter()
        for i in range(pairs):
            mount_id = f"{i:064x}"
            await driver.mount(volume, mount_id)
            await driver.unmount(volume, mount_id)
        return (time.perf_counter() - start) * 1000 / pairs
    finally:
        await client.close()


def bench_volumes(runs: int, tar: Path) -> None:
    daemon = PluginDaemon()
    plugin = None
    others: list[engines.Engine] = []
    docker_link = Path("/run/docker/plugins/dyb-snap.sock")
    try:
        daemon.start_with()
        ours, via_docker = engines.dockyard_cli(daemon), engines.docker_cli(daemon)
        ours.cmd("import", str(tar), IMAGE)
        plugin = PluginProcess(
            f"{EXAMPLES}/volume_snap.py:SnapshotVolumes",
            daemon.sock("snap"),
            {"VOLUME_ROOT": str(daemon.base / "snap-volumes")},
        )
        # the same plugin code as a managed plugin, run by Dockyard itself
        source = make_plugin_dir(daemon.base / "snap-src", tar, volume_plugin_config())
        ours.cmd("plugin", "create", "bench/snap", str(source))
        ours.cmd("plugin", "enable", "bench/snap")
        drivers = {"local": "local", "snap": "snap", "managed": "bench/snap"}
        for label, driver in drivers.items():
            ours.cmd("volume", "create", "-d", driver, f"bench-{label}")
        podman = engines.podman(daemon.base, volume_plugins={"snap": daemon.sock("snap")})
        dockerd = engines.dockerd()
        if dockerd is not None:
            docker_link.parent.mkdir(parents=True, exist_ok=True)
            docker_link.unlink(missing_ok=True)
            docker_link.symlink_to(daemon.sock("snap"))
        for engine, snap in ((podman, "snap"), (dockerd, "dyb-snap")):
            if engine is None:
                continue
            others.append(engine)
            engine.cmd("import", str(tar), IMAGE)
            engine.cmd("volume", "create", "bench-local")
            engine.cmd("volume", "create", "--driver", snap, "bench-snap")
        print(f"\nPlugin volume bench: {runs} runs each; {engines.beside(others)}")
        by_engine: dict[str, dict[str, list[float]]] = {}
        for engine in (ours, via_docker, *others):
            labels = list(drivers) if engine in (ours, via_docker) else ["local", "snap"]
            # Interleaved (local, plugin, local, plugin, ...) so that drift in the host's
            # speed during the runs does not land on one side of the difference.
            by_engine[engine.name] = engines.alternating(
                {
                    label: lambda e=engine, v=f"bench-{label}:/d": e.cmd(
                        "run", "--rm", "--network", "none", "-v", v, IMAGE, "true"
                    )
                    for label in labels
                },
                runs,
            )
        pairs = 500
        per_pair = asyncio.run(_mount_pairs(daemon.sock("snap"), "bench-snap", pairs))
        print(
            f"\nMount + Unmount through the remote driver (the plugin's part of a container "
            f"start), {pairs} pairs: {per_pair:.2f} ms per pair"
        )
        described = {
            "local": "the built-in local driver",
            "snap": "the example plugin (snap, a plugin process)",
            "managed": "the same plugin, managed by Dockyard",
        }
        for label in drivers:
            engines.report(
                f"run --rm --network none -v VOLUME:/d IMG true, VOLUME of {described[label]} "
                f"({runs} runs)",
                {name: rows[label] for name, rows in by_engine.items() if label in rows},
                via_docker.name,
            )
        print("\nthe plugin's cost per container start (median - median with a local volume)")
        for name, rows in by_engine.items():
            local = statistics.median(rows["local"])
            for label, samples in rows.items():
                if label != "local":
                    cost = statistics.median(samples) - local
                    print(f"  {name + ': ' + label:<34} {cost:+6.1f} ms")
    finally:
        for engine in others:
            engine.cmd("volume", "rm", "-f", "bench-local", "bench-snap", check=False)
            engine.cmd("rmi", IMAGE, check=False)
        docker_link.unlink(missing_ok=True)
        daemon.cleanup()
        if plugin is not None:
            plugin.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--only",
        nargs="+",
        choices=("authz", "logs", "volumes"),
        default=("authz", "logs", "volumes"),
        help="Which figures to take (all by default).",
    )
    args = engines.parse_as_root(parser)
    base = Path(tempfile.mkdtemp(prefix="dyb-img-", dir="/tmp"))
    try:
        tar = build_busybox_rootfs(base)
        if "authz" in args.only:
            bench_authz(args.requests, tar)
        if "logs" in args.only:
            bench_logs(args.runs, tar)
        if "volumes" in args.only:
            bench_volumes(args.runs, tar)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
