"""Ship figures: pull, push, save, load and import of a ~200 MB multi-layer image.

Usage (root): .venv/bin/python bench/ship.py [--runs 3] [--size-mb 200]

The image is generated once and cached under /var/tmp/dockyard-bench/ (an
OCI layout of five layers: the example busybox plus four layers of generated
files, half incompressible, half text-like, and the same files as one
rootfs tarball for `import`). Each run starts Debian's docker-registry on
127.0.0.1 (a fresh one for every push, so nothing is mounted or skipped),
a private Dockyard daemon, and times each operation through the dockyard
CLI, printing seconds (median, min, max over the runs) and MB/s (of the
uncompressed image, at the median), beside `skopeo copy` doing the same
transfer and, when a Docker daemon or podman is installed and working,
their figures with ratios.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import random
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import engines  # noqa: E402
from bench.engines import Engine  # noqa: E402
from tests.harness import Daemon, build_busybox_rootfs  # noqa: E402
from tests.registry import OCILayout, Registry, skopeo, tar_of  # noqa: E402

CACHE = Path("/var/tmp/dockyard-bench/ship")
OPERATIONS = ("pull", "push", "save", "load", "push, compressing", "import")
WORDS = (
    b"container image layer registry manifest digest config blob tarball overlay "
    b"snapshot runtime namespace cgroup socket daemon client stream progress "
)


def _files(seed: int, total: int) -> dict[str, bytes]:
    """About `total` bytes of files: half random, half text-like (compresses ~4:1)."""
    rng = random.Random(seed)
    files: dict[str, bytes] = {}
    size = 0
    n = 0
    while size < total:
        length = rng.choice((4 << 10, 64 << 10, 512 << 10, 2 << 20))
        if n % 2:
            data = rng.randbytes(length)
        else:
            words = WORDS.split()
            parts = []
            written = 0
            while written < length:
                word = rng.choice(words) + (b"\n" if rng.random() < 0.1 else b" ")
                parts.append(word)
                written += len(word)
            data = b"".join(parts)[:length]
        files[f"opt/data{seed}/d{n % 16}/f{n}.bin"] = data
        size += length
        n += 1
    return files


def build_image(size_mb: int) -> Path:
    """The cached OCI layout and rootfs tarball; rebuilt only when missing."""
    stamp = CACHE / f"ready-{size_mb}"
    if stamp.exists():
        return CACHE
    shutil.rmtree(CACHE, ignore_errors=True)
    CACHE.mkdir(parents=True)
    busybox = build_busybox_rootfs(CACHE).read_bytes()
    per_layer = (size_mb << 20) // 4
    layers = [busybox] + [tar_of(_files(i, per_layer)) for i in range(4)]
    layout = OCILayout(CACHE / "layout")
    layout.tag(layout.image(layers, cmd=["sh"]), "1")
    # The same content as one root filesystem tarball, for import.
    merged: dict[str, bytes] = {}
    for i in range(4):
        merged.update(_files(i, per_layer))
    with (
        tarfile.open(fileobj=io.BytesIO(busybox)) as base,
        tarfile.open(CACHE / "rootfs.tar", "w") as out,
        tarfile.open(fileobj=io.BytesIO(tar_of(merged))) as data,
    ):
        for source in (base, data):
            for member in source:
                out.addfile(member, source.extractfile(member) if member.isfile() else None)
    stamp.write_text("ok")
    return CACHE


def image_bytes(cache: Path) -> int:
    index = json.loads((cache / "layout" / "index.json").read_text())
    blobs = cache / "layout" / "blobs" / "sha256"
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_bytes())
    config = json.loads((blobs / manifest["config"]["digest"][7:]).read_bytes())
    total = 0
    for layer in manifest["layers"]:
        with gzip.open(blobs / layer["digest"][7:]) as f:
            while chunk := f.read(1 << 20):
                total += len(chunk)
    assert len(config["rootfs"]["diff_ids"]) == len(manifest["layers"])
    return total


# What push and pull need for a plain-HTTP registry on the loopback, by engine.
INSECURE = {"podman": ["--tls-verify=false"]}


def forget(engine: Engine, image: str) -> None:
    """The image and its layers gone, for a cold pull or load. A Docker daemon's or
    podman's store is shared with other users: `image prune -a` there would remove
    their images too, and `rmi` alone removes layers no other image uses."""
    engine.cmd("rmi", "-f", image, check=False)
    if engine.argv[0] == sys.executable:  # our private daemon
        engine.cmd("image", "prune", "-a", "-f", check=False)


def measure_engine(
    engine: Engine, cache: Path, base: Path, runs: int, source: str
) -> dict[str, list[float]]:
    """pull, push, save, load, import through one engine's CLI."""
    rows: dict[str, list[float]] = {k: [] for k in OPERATIONS}
    insecure = INSECURE.get(engine.name, [])
    slug = engine.name.split()[0]
    for i in range(runs):
        forget(engine, source)
        rows["pull"].append(engines.timed(lambda: engine.cmd("pull", *insecure, source)))
        target = Registry(base / f"push-{slug}-{i}").start()
        try:
            pushed = f"{target.host}/bench/pushed:1"
            engine.cmd("tag", source, pushed)
            rows["push"].append(engines.timed(lambda p=pushed: engine.cmd("push", *insecure, p)))
            engine.cmd("rmi", pushed, check=False)
        finally:
            target.cleanup()
        archive = base / f"save-{slug}.tar"
        rows["save"].append(
            engines.timed(lambda a=archive: engine.cmd("save", "-o", str(a), source))
        )
        forget(engine, source)
        rows["load"].append(engines.timed(lambda a=archive: engine.cmd("load", "-i", str(a))))
        archive.unlink()
        # Loaded from an archive, the layers are uncompressed: this push compresses them.
        target = Registry(base / f"push-loaded-{slug}-{i}").start()
        try:
            pushed = f"{target.host}/bench/loaded:1"
            engine.cmd("tag", source, pushed)
            rows["push, compressing"].append(
                engines.timed(lambda p=pushed: engine.cmd("push", *insecure, p))
            )
            engine.cmd("rmi", pushed, check=False)
        finally:
            target.cleanup()
        name = f"bench/imported:{i}"
        rows["import"].append(
            engines.timed(lambda n=name: engine.cmd("import", str(cache / "rootfs.tar"), n))
        )
        engine.cmd("rmi", name, check=False)
    forget(engine, source)
    return rows


def measure_skopeo(cache: Path, base: Path, runs: int, source: str) -> dict[str, list[float]]:
    rows: dict[str, list[float]] = {"pull": [], "push": []}
    for i in range(runs):
        out = base / f"skopeo-pull-{i}"
        rows["pull"].append(
            engines.timed(
                lambda o=out: skopeo(
                    "copy", "--src-tls-verify=false", f"docker://{source}", f"oci:{o}:1"
                )
            )
        )
        shutil.rmtree(out, ignore_errors=True)
        target = Registry(base / f"skopeo-push-{i}").start()
        try:
            rows["push"].append(
                engines.timed(
                    lambda t=target: skopeo(
                        "copy",
                        "--dest-tls-verify=false",
                        f"oci:{cache / 'layout'}:1",
                        f"docker://{t.host}/bench/pushed:1",
                    )
                )
            )
        finally:
            target.cleanup()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size-mb", type=int, default=200)
    args = engines.parse_as_root(parser)
    cache = build_image(args.size_mb)
    size = image_bytes(cache)
    mb = size / 1e6
    base = Path(tempfile.mkdtemp(prefix="dyb-ship-", dir="/tmp"))
    registry = Registry(base / "source").start()
    daemon = Daemon(base / "daemon")
    try:
        source = f"{registry.host}/bench/image:1"
        skopeo("copy", "--dest-tls-verify=false", f"oci:{cache / 'layout'}:1", f"docker://{source}")
        daemon.start()
        ours = engines.dockyard_cli(daemon)
        others = engines.others(base)
        print(f"Ship bench: {args.runs} runs; {engines.beside(others)}")
        results = {ours.name: measure_engine(ours, cache, base, args.runs, source)}
        results["skopeo copy"] = measure_skopeo(cache, base, args.runs, source)
        for engine in others:
            try:
                results[engine.name] = measure_engine(engine, cache, base, args.runs, source)
            except RuntimeError as e:
                print(f"({engine.name} skipped: {e})")
        layers = len(json.loads((cache / "layout" / "index.json").read_text())["manifests"])
        print(
            f"\n{mb:.0f} MB image ({layers} tag, 5 layers), {args.runs} runs, registry on "
            f"127.0.0.1; MB/s of the uncompressed image"
        )
        for op in OPERATIONS:
            rows = {name: by_op[op] for name, by_op in results.items() if by_op.get(op)}
            engines.report(op, rows, ours.name, unit="s", digits=2, megabytes=mb)
    finally:
        daemon.cleanup()
        registry.cleanup()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
