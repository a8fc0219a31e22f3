"""Build figures: Dockyard's builder beside Docker's classic builder and Podman (buildah).

Usage (root): .venv/bin/python bench/build.py [--runs 5] [--no-apps]

1. A Dockerfile of ten instructions after FROM (ARG, ENV, WORKDIR, COPY of a
   200-file context, two RUNs, LABEL, EXPOSE, USER, CMD) on the example busybox
   image, built cold (nothing cached: `--no-cache`) and fully cached, through
   our CLI, the docker CLI's classic builder and docker-py against Dockyard.
2. The README's three-apps scenario end to end: bootstrap debian:bookworm and
   bullseye from the Debian archive, build the three PHP apps, run each one
   (`php index.php`) - with nothing cached, with the bootstrapped bases kept
   but the builds redone (`--no-cache`), and with everything cached.

Docker (a daemon on /var/run/docker.sock) and Podman run the same work when
they are installed and working; Podman gets its bases as `mmdebstrap` tars
through `podman import`, the closest it has to `dockyard bootstrap` (it has
no record of them, so "kept" means the imported images are reused). Every
engine's RUN steps use the host network (Dockyard's bridge networking is
not merged yet). Dockyard runs on a private data root and socket.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.harness import Daemon, build_busybox_rootfs  # noqa: E402

BASE = "dybench/busybox:1"
APPS = REPO / "examples" / "three-apps"
DOCKERFILE = f"""FROM {BASE}
ARG VERSION=1
ENV APP_HOME=/app
WORKDIR /app
COPY files/ /app/files/
RUN for i in $(seq 1 200); do echo "$i" > /app/generated-$i; done
RUN cat /app/files/*.txt | wc -l > /app/count
LABEL version=$VERSION
EXPOSE 8080
USER app
CMD ["cat", "/app/count"]
"""


class Engine:
    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.argv = argv
        self.env = env

    def cmd(self, *args: str, timeout: float = 1800, retry: bool = False) -> str:
        for _attempt in range(2 if retry else 1):
            result = subprocess.run(
                [*self.argv, *args], env=self.env, capture_output=True, text=True, timeout=timeout
            )
            if result.returncode == 0:
                return result.stdout
        raise RuntimeError(f"{self.name} {' '.join(args)}: {result.stderr[-2000:]}")


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def samples(fn: Callable[[], object], runs: int) -> list[float]:
    return [timed(fn) for _ in range(runs)]


def report(title: str, rows: dict[str, list[float]], baseline: str) -> None:
    """Median, min, max; other rows as a multiple of the baseline's median time."""
    print(f"\n{title}")
    base = statistics.median(rows[baseline]) if baseline in rows else None
    for label, values in rows.items():
        med = statistics.median(values)
        ratio = f"   x{med / base:.2f} the time of {baseline}" if base and label != baseline else ""
        print(
            f"  {label:<34} median {med * 1000:8.0f} ms   min {min(values) * 1000:8.0f}   "
            f"max {max(values) * 1000:8.0f}{ratio}"
        )


def working(argv: list[str], env: dict[str, str]) -> bool:
    try:
        return (
            subprocess.run([*argv, "info"], env=env, capture_output=True, timeout=60).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def other_engines() -> list[Engine]:
    found = []
    sock = "/var/run/docker.sock"
    env = {**os.environ, "DOCKER_HOST": "unix://" + sock, "DOCKER_BUILDKIT": "0"}
    if shutil.which("docker") and os.path.exists(sock) and working(["docker"], env):
        found.append(Engine("dockerd (classic builder)", ["docker"], env))
    # crun cannot run on hybrid cgroup hosts such as this one; runc can
    podman = ["podman", "--runtime", shutil.which("runc") or "runc"]
    if shutil.which("podman") and working(podman, dict(os.environ)):
        found.append(Engine("podman (buildah)", podman, dict(os.environ)))
    return found


def make_context(root: Path) -> Path:
    files = root / "files"
    files.mkdir(parents=True)
    for i in range(200):
        (files / f"f{i:03}.txt").write_text(f"line {i}\n" * 20)
    (files / "blob.bin").write_bytes(os.urandom(2 << 20))
    (root / "Dockerfile").write_text(DOCKERFILE)
    return root


def build_args(engine: Engine, tag: str, path: Path, *extra: str) -> list[str]:
    args = ["build", "-t", tag, *extra, str(path)]
    if engine.argv[0] == "podman":
        args.insert(1, "--layers")
    return args


def ten_instructions(engines: list[Engine], client: object, ctx: Path, runs: int) -> None:
    cold: dict[str, list[float]] = {}
    cached: dict[str, list[float]] = {}
    for engine in engines:
        engine.cmd(*build_args(engine, "dybench/ten:1", ctx))  # warm the page cache
        retry = engine.argv[0] != sys.executable  # others share a store with other users
        cold[engine.name] = samples(
            lambda e=engine, r=retry: e.cmd(
                *build_args(e, "dybench/ten:1", ctx, "--no-cache"), retry=r
            ),
            runs,
        )
        cached[engine.name] = samples(
            lambda e=engine, r=retry: e.cmd(*build_args(e, "dybench/ten:1", ctx), retry=r), runs
        )
    import docker

    assert isinstance(client, docker.DockerClient)
    cold["docker-py -> Dockyard"] = samples(
        lambda: client.images.build(path=str(ctx), tag="dybench/ten:1", nocache=True, rm=True),
        runs,
    )
    cached["docker-py -> Dockyard"] = samples(
        lambda: client.images.build(path=str(ctx), tag="dybench/ten:1", rm=True), runs
    )
    baseline = engines[1].name  # Dockyard through the same client as Docker's classic builder
    report("10-instruction Dockerfile, cold (--no-cache)", cold, baseline)
    report("10-instruction Dockerfile, fully cached", cached, baseline)


def bootstrap_podman(engine: Engine, work: Path) -> None:
    """Podman's way to a registry-free base: an mmdebstrap tar, imported."""
    for suite in ("bookworm", "bullseye"):
        tar = work / f"{suite}.tar"
        subprocess.run(
            [
                "mmdebstrap",
                "--variant=minbase",
                "--skip=output/dev",
                suite,
                str(tar),
                "http://deb.debian.org/debian",
            ],
            check=True,
            capture_output=True,
        )
        engine.cmd("import", "--change", 'CMD ["bash"]', str(tar), f"debian:{suite}")
        tar.unlink()


def three_apps(engine: Engine, work: Path, *, bases: str, no_cache: bool) -> float:
    """The scenario's time; `bases` is "fresh" (bootstrapped from the archive) or "kept"."""

    def scenario() -> None:
        if bases == "fresh" and engine.argv[0] == "podman":
            bootstrap_podman(engine, work)
        elif engine.argv[0] != "podman":  # kept: `bootstrap` finds what it made before
            again = ["--no-cache"] if bases == "fresh" else []
            engine.cmd("bootstrap", *again, "debian:bookworm")
            engine.cmd("bootstrap", *again, "debian:bullseye")
        flags = ["--network", "host", *(["--no-cache"] if no_cache else [])]
        for app, extra in (("app1", []), ("app2", ["--build-arg", "PHP=7.4"]), ("app3", [])):
            engine.cmd(*build_args(engine, f"dybench/{app}:1", APPS / app, *flags, *extra))
        for app in ("app1", "app2", "app3"):
            # podman asks for more open files and processes than this host allows
            limits = (
                ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
                if engine.argv[0] == "podman"
                else []
            )
            out = engine.cmd("run", "--rm", *limits, f"dybench/{app}:1", "php", "index.php")
            assert "running on PHP" in out, out

    return timed(scenario)


def apps(ours: Engine, others: list[Engine], work: Path) -> None:
    print("\nthree-apps scenario (bootstrap 2 bases, build 3 PHP apps, run each)", flush=True)
    ours.cmd("bootstrap", "debian:bookworm")  # not timed: warms the path to the mirror
    for engine in [ours, *[o for o in others if o.argv[0] == "podman"]]:
        try:
            rows = {
                "bases bootstrapped, builds cold": three_apps(
                    engine, work, bases="fresh", no_cache=True
                ),
                "bases kept, builds cold (--no-cache)": three_apps(
                    engine, work, bases="kept", no_cache=True
                ),
                "bases kept, builds cached": three_apps(engine, work, bases="kept", no_cache=False),
            }
        except (RuntimeError, subprocess.CalledProcessError) as e:
            print(f"  {engine.name}: failed: {str(e)[:300]}")
            continue
        for label, seconds in rows.items():
            print(f"  {engine.name + ': ' + label:<60} {seconds:8.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-apps", action="store_true", help="skip the three-apps scenario")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    base = Path(tempfile.mkdtemp(prefix="dyb-", dir="/tmp"))
    daemon = Daemon(base)
    others = other_engines()
    try:
        daemon.start()
        tar = build_busybox_rootfs(base)
        daemon.cli("import", str(tar), BASE, check=True)
        for engine in others:
            engine.cmd("import", str(tar), BASE)
        ours = Engine(
            "dockyard CLI",
            [sys.executable, "-m", "dockyard"],
            {**os.environ, "DOCKYARD_HOST": daemon.host},
        )
        via_docker = Engine(
            "docker CLI (classic) -> Dockyard",
            ["docker"],
            {**os.environ, "DOCKER_HOST": daemon.host, "DOCKER_BUILDKIT": "0"},
        )
        import docker

        client = docker.DockerClient(base_url=daemon.host, timeout=600)
        print(
            f"Dockyard build bench: {args.runs} runs each; beside "
            f"{', '.join(e.name for e in others) or 'no other engine (none running here)'}"
        )
        ctx = make_context(base / "ctx")
        ten_instructions([ours, via_docker, *others], client, ctx, args.runs)
        client.close()
        if not args.no_apps:
            apps(ours, others, base)
    finally:
        for engine in others:
            subprocess.run(
                [
                    *engine.argv,
                    "rmi",
                    "-f",
                    BASE,
                    "dybench/ten:1",
                    "dybench/app1:1",
                    "dybench/app2:1",
                    "dybench/app3:1",
                ],
                env=engine.env,
                capture_output=True,
            )
        daemon.cleanup()


if __name__ == "__main__":
    main()
