"""Plugin overhead: authorization per API request, log-driver plugins per container.

Usage (root): .venv/bin/python bench/plugins.py [--requests 300] [--runs 10]

Starts private Dockyard daemons (their own data roots, sockets, cgroup parents
and plugin directories) and prints median/min/max figures for:

* API requests (`GET /_ping`, `GET /containers/json`, `GET /info`) without
  authorization, with one authorization plugin written with the SDK (allow-all)
  and with the example policy plugin, and with a chain of two;
* `run --rm IMAGE echo` with the built-in log driver and with the example
  rotating-file log plugin, and the time until 20 000 lines of output have
  reached the plugin's file.

Plugin-backed volumes and networks are measured once those drivers are wired
into the engine. With a running Docker daemon and an authorization plugin of
its own, the same request figures can be taken with `--docker`; none is
configured by default, so Docker figures are printed only when asked.
"""

from __future__ import annotations

import argparse
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
from tests.plugin_env import EXAMPLES, PluginDaemon, PluginProcess  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    base = Path(tempfile.mkdtemp(prefix="dyb-img-", dir="/tmp"))
    try:
        tar = build_busybox_rootfs(base)
        bench_authz(args.requests, tar)
        bench_logs(args.runs, tar)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if shutil.which("docker") and os.path.exists("/var/run/docker.sock"):
        print(
            "\n(a Docker daemon is present; its authorization plugins are configured by its "
            "own daemon.json, so no Docker figures are taken here)"
        )


if __name__ == "__main__":
    main()
