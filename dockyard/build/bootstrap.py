"""Base images from a distribution's package archive, with no registry: `dockyard bootstrap`.

`debian:bookworm` is made by `mmdebstrap` from the Debian archive (the mirror
this host's apt uses, unless `--mirror` says otherwise) into a tar, checked
to have completed, then imported as a one-layer image tagged
`<name>:<suite>`, so that a Dockerfile's `FROM debian:bookworm` finds it.

The same inputs (distribution, suite, mirror, variant, extra packages,
architecture) give the same image without downloading again: each bootstrap
is recorded by the hash of its inputs, and as long as its image exists a
repeat only tags it again.
"""

from __future__ import annotations

import asyncio
import glob
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from dockyard.errors import InvalidArgument, Unavailable
from dockyard.images import oci, reference
from dockyard.images.service import Image, ImageService
from dockyard.state.db import Database

Emit = Callable[[dict[str, Any]], Awaitable[None]]

DEFAULT_MIRRORS = {"debian": "http://deb.debian.org/debian"}
VARIANTS = (
    "extract",
    "custom",
    "essential",
    "apt",
    "required",
    "minbase",
    "buildd",
    "important",
    "debootstrap",
    "standard",
)
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True)
class Recipe:
    distribution: str
    suite: str
    mirror: str
    variant: str = "minbase"
    include: tuple[str, ...] = ()
    arch: str = ""

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()

    def command(self, target: str) -> list[str]:
        argv = [
            "mmdebstrap",
            f"--variant={self.variant}",
            f"--architectures={self.arch}",
            "--components=main",
            "--skip=output/dev",  # containers get their own /dev
        ]
        if self.include:
            argv.append("--include=" + ",".join(self.include))
        return [*argv, self.suite, target, self.mirror]


def host_mirror(distribution: str) -> str:
    """The archive URL this host's apt uses for a distribution (its main suite, not security)."""
    sources = ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*"))]
    found: list[str] = []
    for path in sources:
        if path.endswith((".disabled", ".save")) or ".disabled" in path:
            continue
        try:
            with open(path, errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("deb ") or line.startswith("deb\t"):
                words = [w for w in line.split()[1:] if not w.startswith("[")]
                if words:
                    found.append(words[0])
            elif line.lower().startswith("uris:"):
                found += line.split()[1:]
    for url in found:
        if url.rstrip("/").endswith("/" + distribution):
            return url.rstrip("/")
    return DEFAULT_MIRRORS.get(distribution, "")


def recipe(
    name_suite: str,
    *,
    mirror: str = "",
    variant: str = "",
    include: list[str] | None = None,
    arch: str = "",
) -> tuple[Recipe, str]:
    """The recipe for `NAME:SUITE`, and the tag it gets."""
    name, sep, suite = name_suite.partition(":")
    if not sep or not name or not suite:
        raise InvalidArgument(
            f"invalid base image {name_suite!r}: expected NAME:SUITE (debian:bookworm)"
        )
    if not _NAME.match(suite):
        raise InvalidArgument(f"invalid suite {suite!r}")
    distribution = name.rsplit("/", 1)[-1]
    mirror = mirror or host_mirror(distribution)
    if not mirror:
        raise InvalidArgument(
            f"no package archive known for {distribution!r}: give one with --mirror"
        )
    variant = variant or "minbase"
    if variant not in VARIANTS:
        raise InvalidArgument(f"unknown variant {variant!r} (one of {', '.join(VARIANTS)})")
    packages = tuple(
        sorted({p.strip() for item in include or [] for p in item.split(",") if p.strip()})
    )
    for package in packages:
        if not re.fullmatch(r"[a-z0-9][a-z0-9+.:=~-]*", package):
            raise InvalidArgument(f"invalid package name {package!r}")
    reference.parse(name_suite)  # the tag must be a valid reference
    return Recipe(
        distribution, suite, mirror, variant, packages, arch or oci.host_arch()
    ), name_suite


class Bootstrapper:
    def __init__(self, db: Database, images: ImageService, work_root: str) -> None:
        self.db = db
        self.images = images
        self.work_root = work_root
        self._lock = asyncio.Lock()

    def cached(self, spec: Recipe) -> Image | None:
        row = self.db.one("SELECT image_id FROM bootstraps WHERE key=?", (spec.key(),))
        if row is None or not self.images.exists(row["image_id"]):
            return None
        return self.images.resolve(row["image_id"])

    async def bootstrap(
        self, spec: Recipe, tag: str, emit: Emit, *, no_cache: bool = False
    ) -> Image:
        if shutil.which("mmdebstrap") is None:
            raise Unavailable("mmdebstrap is not installed (apt-get install mmdebstrap)")
        ref = reference.parse(tag)
        async with self._lock:  # one download at a time; a repeat then finds the first's image
            image = None if no_cache else self.cached(spec)
            if image is not None:
                await emit(
                    {"stream": f"Using {spec.distribution} {spec.suite} bootstrapped before\n"}
                )
            else:
                image = await self._run(spec, emit)
        self.images.tag(image.id, ref if ref.tag else ref.with_tag("latest"))
        await emit({"aux": {"ID": image.id}})
        await emit({"stream": f"Successfully bootstrapped {ref.familiar()} ({image.short_id})\n"})
        return image

    async def _run(self, spec: Recipe, emit: Emit) -> Image:
        os.makedirs(self.work_root, exist_ok=True)
        target = os.path.join(self.work_root, f"bootstrap-{spec.key()[:16]}-{os.getpid()}.tar")
        argv = spec.command(target)
        await emit({"stream": " ".join(argv) + "\n"})
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "LC_ALL": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"},
        )
        assert proc.stdout is not None
        lines: list[str] = []
        try:
            async for raw in proc.stdout:
                line = raw.decode(errors="replace")
                lines = [*lines[-20:], line]
                await emit({"stream": line})
            code = await proc.wait()
            if code != 0:
                raise Unavailable(
                    f"mmdebstrap failed (exit code {code}): {''.join(lines[-3:]).strip()}"
                )
            image = await self.images.import_tar(
                _read_file(target),
                message=f"bootstrapped from {spec.mirror} ({spec.suite}, {spec.variant})",
                changes=['CMD ["bash"]'],
                platform=f"linux/{spec.arch}",
            )
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            try:
                os.unlink(target)
            except FileNotFoundError:
                pass
        with self.db.transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO bootstraps(key, image_id, created) VALUES (?,?,?)",
                (spec.key(), image.id, time.time()),
            )
        return image


async def _read_file(path: str) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    with open(path, "rb") as f:
        while True:
            chunk = await loop.run_in_executor(None, f.read, 1 << 20)
            if not chunk:
                return
            yield chunk
