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
import subprocess
import sys
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import engines  # noqa: E402
from bench.engines import Engine  # noqa: E402
from tests.harness import Daemon, build_busybox_rootfs, new_base  # noqa: E402

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


def retried(engine: Engine, *args: str) -> str:
    """Once more after a failure: the others share their store with other users."""
    try:
        return engine.cmd(*args)
    except RuntimeError:
        return engine.cmd(*args)


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


def ten_instructions(
    compared: list[Engine], others: list[Engine], client: object, ctx: Path, runs: int
) -> None:
    cold: dict[str, list[float]] = {}
    cached: dict[str, list[float]] = {}
    for engine in compared:
        run = retried if engine in others else Engine.cmd
        cold[engine.name] = engines.measure(
            lambda e=engine, r=run: r(e, *build_args(e, "dybench/ten:1", ctx, "--no-cache")), runs
        )
        cached[engine.name] = engines.measure(
            lambda e=engine, r=run: r(e, *build_args(e, "dybench/ten:1", ctx)), runs
        )
    import docker

    assert isinstance(client, docker.DockerClient)
    cold[engines.DOCKER_PY] = engines.measure(
        lambda: client.images.build(path=str(ctx), tag="dybench/ten:1", nocache=True, rm=True),
        runs,
    )
    cached[engines.DOCKER_PY] = engines.measure(
        lambda: client.images.build(path=str(ctx), tag="dybench/ten:1", rm=True), runs
    )
    baseline = compared[1].name  # Dockyard through the same client as Docker's classic builder
    engines.report("10-instruction Dockerfile, cold (--no-cache)", cold, baseline, digits=0)
    engines.report("10-instruction Dockerfile, fully cached", cached, baseline, digits=0)


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


def three_apps(engine: Engine, work: Path, *, bases: str, no_cache: bool) -> None:
    """The scenario; `bases` is "fresh" (bootstrapped from the archive) or "kept"."""
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
        out = engine.cmd("run", "--rm", f"dybench/{app}:1", "php", "index.php")
        assert "running on PHP" in out, out


def apps(ours: Engine, others: list[Engine], work: Path) -> None:
    print("\nthree-apps scenario (bootstrap 2 bases, build 3 PHP apps, run each): one run each")
    ours.cmd("bootstrap", "debian:bookworm")  # not timed: warms the path to the mirror
    scenarios = {
        "bases bootstrapped, builds cold": ("fresh", True),
        "bases kept, builds cold (--no-cache)": ("kept", True),
        "bases kept, builds cached": ("kept", False),
    }
    rows: dict[str, dict[str, list[float]]] = {label: {} for label in scenarios}
    for engine in [ours, *[o for o in others if o.argv[0] == "podman"]]:
        try:
            for label, (bases, no_cache) in scenarios.items():
                scenario = partial(three_apps, engine, work, bases=bases, no_cache=no_cache)
                rows[label][engine.name] = [engines.timed(scenario)]
        except (RuntimeError, subprocess.CalledProcessError) as e:
            print(f"  {engine.name}: failed: {str(e)[:300]}")
            for label in scenarios:
                rows[label].pop(engine.name, None)
    for label, by_engine in rows.items():
        engines.report(f"three apps, {label}", by_engine, ours.name, unit="s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-apps", action="store_true", help="skip the three-apps scenario")
    args = engines.parse_as_root(parser)
    daemon = Daemon(new_base())
    base = daemon.base
    dockerd, podman = engines.dockerd(), engines.podman(base)
    others = [
        *([dockerd.variant("dockerd (classic builder)", DOCKER_BUILDKIT="0")] if dockerd else []),
        *([podman.variant("podman (buildah)")] if podman else []),
    ]
    try:
        daemon.start()
        tar = build_busybox_rootfs(base)
        ours = engines.dockyard_cli(daemon)
        for engine in [ours, *others]:
            engine.cmd("import", str(tar), BASE)
        via_docker = engines.docker_cli(daemon).variant(
            "docker CLI (classic) -> Dockyard", DOCKER_BUILDKIT="0"
        )
        client = engines.docker_py(daemon, timeout=600)
        print(f"Dockyard build bench: {args.runs} runs each; {engines.beside(others)}")
        ctx = make_context(base / "ctx")
        ten_instructions([ours, via_docker, *others], others, client, ctx, args.runs)
        client.close()
        if not args.no_apps:
            apps(ours, others, base)
    finally:
        for engine in others:
            engine.cmd(
                "rmi", "-f", BASE, "dybench/ten:1", "dybench/app1:1", "dybench/app2:1",
                "dybench/app3:1", check=False,
            )  # fmt: skip
        daemon.cleanup()


if __name__ == "__main__":
    main()
