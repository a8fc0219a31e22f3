"""Heavy inputs for responsiveness tests and benchmarks: a big container log and a big
image archive, made quickly without running anything.

`write_log` appends records in the monitor's own log format (`dockyard.logs.k8sfile`,
the CRI "k8s-file" records conmon writes) to a container's log file, so a log of a
gigabyte takes seconds rather than the minutes a container would need to print it.
`image_archive` writes a `docker save` archive of one image whose single layer holds
a file of random bytes (random, so that nothing along the way can shrink it).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

_STAMP = b"2026-01-02T03:04:05.123456789+00:00"
MB = 1 << 20


def write_log(path: Path, size: int, last: list[str]) -> None:
    """Append about `size` bytes of stdout records to the log at `path`, then one record
    for each of `last` (what a tail should find)."""
    line = _STAMP + b" stdout F " + b"x" * 90 + b"\n"
    block = line * (MB // len(line))
    written = 0
    with open(path, "ab") as f:
        while written < size:
            f.write(block)
            written += len(block)
        for text in last:
            f.write(_STAMP + b" stdout F " + text.encode() + b"\n")


def image_archive(path: Path, size: int, tag: str) -> None:
    """A `docker save` archive at `path` of image `tag`: one layer with `size` random bytes."""
    work = path.parent
    layer = work / (path.name + ".layer.tar")
    with tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("big.bin")
        info.size = size
        info.mode = 0o644
        tar.addfile(info, _RandomReader(size))
    digest = hashlib.sha256()
    with open(layer, "rb") as f:
        while chunk := f.read(MB):
            digest.update(chunk)
    diff_id = "sha256:" + digest.hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/big.bin"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created_by": "tests/load.py"}],
        }
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    layer_name = digest.hexdigest() + "/layer.tar"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": [tag], "Layers": [layer_name]}]
    ).encode()
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as out:
        out.add(layer, arcname=layer_name)
        for name, data in ((config_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    layer.unlink()


class _RandomReader(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return os.urandom(n)
