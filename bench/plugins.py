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
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.harness import build_busybox_rootfs  # noqa: E402
from tests.plugin_env import (  # noqa: E402
    EXAMPLES,
    PluginDaemon,
    PluginProcess,
    make_plugin_dir,
    volume_plugin_config,
)

IMAGE = "bench/busybox:1"
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


def measure(fn: Callable[[], object], runs: int) -> list[float]:
    fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def report(title: str, rows: dict[str, list[float]], baseline: str, unit: str = "ms") -> None:
    print(f"\n{title}")
    base = statistics.median(rows[baseline])
    for label, samples in rows.items():
        med = statistics.median(samples)
        extra = f"  +{med - base:.3f} {unit} (x{med / base:.2f})" if label != baseline else ""
        print(
            f"  {label:<44} median {med:8.3f} {unit}   min {min(samples):8.3f}   "
            f"max {max(samples):8.3f}{extra}"
        )


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
                results.setdefault(path, {})[label] = measure(
                    lambda path=path, sock=daemon.socket: unix_get(path, sock), requests
                )
        finally:
            daemon.cleanup()
            for plugin in plugins:
                plugin.stop()
    shutil.rmtree(policy_dir, ignore_errors=True)
    for path, rows in results.items():
        report(f"GET {path} ({requests} requests, one connection each)", rows, "no authorization")


def bench_logs(runs: int, tar: Path) -> None:
    daemon = PluginDaemon()
    logs = daemon.base / "logs"
    plugin = None
    try:
        daemon.start_with()
        daemon.cli("import", str(tar), IMAGE, check=True)
        plugin = PluginProcess(
            f"{EXAMPLES}/log_rotate.py:RotatingLogs", daemon.sock("rotate"), {"LOG_DIR": str(logs)}
        )
        argv = [sys.executable, "-m", "dockyard", "run", "--rm"]
        env = {**os.environ, "DOCKYARD_HOST": daemon.host}

        def run(*extra: str) -> None:
            subprocess.run(
                [*argv, *extra, IMAGE, "echo", "hi"], env=env, check=True, capture_output=True
            )

        rows = {
            "json-file (built-in)": measure(run, runs),
            "rotate (example log plugin)": measure(lambda: run("--log-driver", "rotate"), runs),
        }
        report(
            f"run --rm {IMAGE} echo hi ({runs} runs, dockyard CLI)", rows, "json-file (built-in)"
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
                subprocess.run(
                    [*argv[:-1], "--name", name, *extra, IMAGE, "sh", "-c", script],
                    env=env,
                    check=True,
                    capture_output=True,
                )
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
        report(
            f"{lines} lines of output until delivered (run, 3 runs)", rows, "json-file (built-in)"
        )
    finally:
        daemon.cleanup()
        if plugin is not None:
            plugin.stop()


class Engine:
    """An engine driven through its command line."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name, self.argv, self.env = name, argv, env

    def __call__(self, *args: str) -> str:
        result = subprocess.run([*self.argv, *args], env=self.env, capture_output=True)
        if result.returncode != 0:
            raise RuntimeError(
                f"{self.name}: {' '.join(args)}: {result.stderr.decode(errors='replace')}"
            )
        return result.stdout.decode()


def _podman(base: Path, plugin_socket: str) -> Engine | None:
    """podman with runc, rlimits this host grants, and the volume plugin declared."""
    import resource

    if not shutil.which("podman"):
        return None
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    conf = base / "containers.conf"
    conf.write_text(
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc=4096:4096"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
        "[engine.volume_plugins]\n"
        f'snap = "{plugin_socket}"\n'
    )
    engine = Engine("podman", ["podman"], {**os.environ, "CONTAINERS_CONF": str(conf)})
    try:
        engine("info")
    except RuntimeError:
        return None
    return engine


def _dockerd() -> Engine | None:
    sock = "/var/run/docker.sock"
    if not (shutil.which("docker") and os.path.exists(sock)):
        return None
    engine = Engine("dockerd", ["docker"], {**os.environ, "DOCKER_HOST": "unix://" + sock})
    try:
        engine("info")
    except RuntimeError:
        return None
    return engine


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
    others: list[Engine] = []
    docker_link = Path("/run/docker/plugins/dyb-snap.sock")
    try:
        daemon.start_with()
        ours = Engine(
            "dockyard CLI",
            [sys.executable, "-m", "dockyard"],
            {**os.environ, "DOCKYARD_HOST": daemon.host},
        )
        via_docker = Engine(
            "docker CLI -> Dockyard", ["docker"], {**os.environ, "DOCKER_HOST": daemon.host}
        )
        ours("import", str(tar), IMAGE)
        plugin = PluginProcess(
            f"{EXAMPLES}/volume_snap.py:SnapshotVolumes",
            daemon.sock("snap"),
            {"VOLUME_ROOT": str(daemon.base / "snap-volumes")},
        )
        # the same plugin code as a managed plugin, run by Dockyard itself
        source = make_plugin_dir(daemon.base / "snap-src", tar, volume_plugin_config())
        ours("plugin", "create", "bench/snap", str(source))
        ours("plugin", "enable", "bench/snap")
        drivers = {"local": "local", "snap": "snap", "managed": "bench/snap"}
        for label, driver in drivers.items():
            ours("volume", "create", "-d", driver, f"bench-{label}")
        podman = _podman(daemon.base, daemon.sock("snap"))
        dockerd = _dockerd()
        if dockerd is not None:
            docker_link.parent.mkdir(parents=True, exist_ok=True)
            docker_link.unlink(missing_ok=True)
            docker_link.symlink_to(daemon.sock("snap"))
        for engine, snap in ((podman, "snap"), (dockerd, "dyb-snap")):
            if engine is None:
                continue
            others.append(engine)
            engine("import", str(tar), IMAGE)
            engine("volume", "create", "bench-local")
            engine("volume", "create", "--driver", snap, "bench-snap")
        print(
            f"\nPlugin volume bench: {runs} runs each; comparing with "
            f"{', '.join(e.name for e in others) or 'no other engine (none running here)'}"
        )
        rows: dict[str, list[float]] = {}
        for engine in (ours, via_docker, *others):
            labels = list(drivers) if engine in (ours, via_docker) else ["local", "snap"]
            # Interleaved (local, plugin, local, plugin, ...) so that drift in the host's
            # speed during the runs does not land on one side of the difference.
            for label in labels:
                engine("run", "--rm", "--network", "none", "-v", f"bench-{label}:/d", IMAGE, "true")
            for _ in range(runs):
                for label in labels:
                    start = time.perf_counter()
                    engine(
                        "run", "--rm", "--network", "none", "-v", f"bench-{label}:/d", IMAGE, "true"
                    )
                    samples = rows.setdefault(f"{engine.name}: {label}", [])
                    samples.append((time.perf_counter() - start) * 1000)
        pairs = 500
        per_pair = asyncio.run(_mount_pairs(daemon.sock("snap"), "bench-snap", pairs))
        print(
            f"\nMount + Unmount through the remote driver (the plugin's part of a container "
            f"start), {pairs} pairs: {per_pair:.2f} ms per pair"
        )
        print(f"\nrun --rm --network none -v VOLUME:/d {IMAGE} true ({runs} runs)")
        for label, samples in rows.items():
            med = statistics.median(samples)
            engine_name = label.partition(":")[0]
            base = statistics.median(rows[f"{engine_name}: local"])
            extra = f"  +{med - base:6.1f} ms over local" if not label.endswith(": local") else ""
            print(
                f"  {label:<44} median {med:8.1f} ms   min {min(samples):8.1f}   "
                f"max {max(samples):8.1f}{extra}"
            )
    finally:
        for engine in others:
            for args in (("volume", "rm", "-f", "bench-local", "bench-snap"), ("rmi", IMAGE)):
                subprocess.run([*engine.argv, *args], env=engine.env, capture_output=True)
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
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")
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
