"""A volume plugin with snapshots and size limits.

Volumes are directories under `VOLUME_ROOT` (default
`/var/lib/dockyard-volumes`); the plugin keeps its records in
`VOLUME_ROOT/volumes.json`, so they survive restarts. Options:

* `-o from=OTHER`: the new volume starts as a snapshot (a copy) of volume
  OTHER, taken at create time; OTHER is not changed afterwards;
* `-o size=100m`: the volume is an ext4 filesystem of that size in an image
  file, mounted (loop) while a container uses it, so it cannot grow beyond it.

Mounts are counted per mount ID: the first Mount prepares the volume, the last
Unmount releases it, as engines expect. The IDs are part of the records, so a
restarted plugin still knows which containers use a volume.

    VOLUME_ROOT=/srv/vols python -m dockyard.sdk run \
        plugins/volume_snap.py:SnapshotVolumes --name snap
    dockyard volume create -d snap -o size=1g data
    dockyard volume create -d snap -o from=data data-before-upgrade
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
from typing import Any

from dockyard.sdk import PluginError, Volume, VolumePlugin, run

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
_SIZE = re.compile(r"^(\d+)([kmg]?)b?$", re.IGNORECASE)


def _size(text: str) -> int:
    match = _SIZE.match(text.strip())
    if not match:
        raise PluginError(f"invalid size {text!r} (use e.g. 512m or 2g)")
    size = (
        int(match.group(1))
        * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match.group(2).lower()]
    )
    if size < 8 << 20:
        raise PluginError("size must be at least 8m")
    return size


def _run(*argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode:
        raise PluginError(f"{argv[0]}: {result.stderr.strip() or 'failed'}")


class SnapshotVolumes(VolumePlugin):
    def __init__(self, root: str | None = None) -> None:
        self.root = root or os.environ.get("VOLUME_ROOT", "/var/lib/dockyard-volumes")
        os.makedirs(os.path.join(self.root, "volumes"), exist_ok=True)
        self.state_path = os.path.join(self.root, "volumes.json")
        self.volumes: dict[str, dict[str, Any]] = {}
        if os.path.exists(self.state_path):
            with open(self.state_path) as f:
                self.volumes = json.load(f)
        # Mount IDs are kept: engines do not mount again after a plugin restart, they
        # unmount each ID they mounted when its container stops.
        self.lock = asyncio.Lock()

    def _save(self) -> None:
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.volumes, f)
        os.replace(tmp, self.state_path)

    def _dir(self, name: str) -> str:
        return os.path.join(self.root, "volumes", name)

    def _image(self, name: str) -> str:
        return os.path.join(self.root, "volumes", name + ".ext4")

    def _record(self, name: str) -> dict[str, Any]:
        record = self.volumes.get(name)
        if record is None:
            raise PluginError(f"no such volume: {name}")
        return record

    async def create(self, name: str, opts: dict[str, str]) -> None:
        if not _NAME.match(name):
            raise PluginError(f"invalid volume name {name!r}")
        unknown = set(opts) - {"from", "size"}
        if unknown:
            raise PluginError(f"unknown options: {', '.join(sorted(unknown))}")
        async with self.lock:
            if name in self.volumes:
                return
            source = opts.get("from")
            if source is not None:
                self._record(source)
            size = _size(opts["size"]) if "size" in opts else 0
            record = {"created": time.time(), "from": source or "", "size": size, "mounts": []}
            directory = self._dir(name)
            os.makedirs(directory)
            try:
                if size:
                    await asyncio.to_thread(self._make_image, name, size)
                if source:
                    await asyncio.to_thread(self._copy, source, name)
            except BaseException:
                await asyncio.to_thread(self._discard, name)
                raise
            self.volumes[name] = record
            self._save()

    def _make_image(self, name: str, size: int) -> None:
        with open(self._image(name), "wb") as f:
            f.truncate(size)
        _run("mkfs.ext4", "-q", "-F", self._image(name))

    def _copy(self, source: str, target: str) -> None:
        with _Mounted(self, source), _Mounted(self, target):
            shutil.copytree(self._dir(source), self._dir(target), symlinks=True, dirs_exist_ok=True)

    def _discard(self, name: str) -> None:
        if os.path.ismount(self._dir(name)):
            _run("umount", self._dir(name))
        shutil.rmtree(self._dir(name), ignore_errors=True)
        if os.path.exists(self._image(name)):
            os.unlink(self._image(name))

    async def remove(self, name: str) -> None:
        async with self.lock:
            record = self._record(name)
            if record["mounts"]:
                raise PluginError(f"volume {name} is in use")
            await asyncio.to_thread(self._discard, name)
            del self.volumes[name]
            self._save()

    async def mount(self, name: str, id: str) -> str:
        async with self.lock:
            record = self._record(name)
            if record["size"] and not os.path.ismount(self._dir(name)):  # after a reboot too
                await asyncio.to_thread(
                    _run, "mount", "-o", "loop", self._image(name), self._dir(name)
                )
            if id not in record["mounts"]:
                record["mounts"].append(id)
            self._save()
            return self._dir(name)

    async def unmount(self, name: str, id: str) -> None:
        async with self.lock:
            record = self._record(name)
            if id in record["mounts"]:
                record["mounts"].remove(id)
            if not record["mounts"] and record["size"] and os.path.ismount(self._dir(name)):
                await asyncio.to_thread(_run, "umount", self._dir(name))
            self._save()

    def path(self, name: str) -> str:
        record = self._record(name)
        return self._dir(name) if record["mounts"] or not record["size"] else ""

    def _volume(self, name: str) -> Volume:
        record = self.volumes[name]
        status: dict[str, Any] = {"mounts": len(record["mounts"])}
        if record["from"]:
            status["snapshot_of"] = record["from"]
        if record["size"]:
            status["size"] = record["size"]
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record["created"]))
        return Volume(name, self.path(name), created, status)

    def get(self, name: str) -> Volume | None:
        return self._volume(name) if name in self.volumes else None

    def list(self) -> list[Volume]:
        return [self._volume(name) for name in sorted(self.volumes)]


class _Mounted:
    """A sized volume's filesystem mounted for the duration of a copy."""

    def __init__(self, plugin: SnapshotVolumes, name: str) -> None:
        self.plugin, self.name, self.mounted = plugin, name, False

    def __enter__(self) -> None:
        record = self.plugin.volumes.get(self.name)
        directory = self.plugin._dir(self.name)
        sized = record["size"] if record else os.path.exists(self.plugin._image(self.name))
        if sized and not os.path.ismount(directory):
            _run("mount", "-o", "loop", self.plugin._image(self.name), directory)
            self.mounted = True

    def __exit__(self, *exc: object) -> None:
        if self.mounted:
            _run("umount", self.plugin._dir(self.name))


if __name__ == "__main__":
    run(SnapshotVolumes(), os.environ.get("PLUGIN_NAME", "snap"))
