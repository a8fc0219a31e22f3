"""The built-in `local` volume driver: a directory per volume, or a mount made on demand.

Layout under its root (`<data-root>/volumes`), as Docker's:

    <name>/_data          the volume's data; the mountpoint handed to containers
    <name>/opts.json      the driver options, when the volume has any
    <name>/mounts/<id>    one empty file per outstanding Mount id

Options are Docker's: `type`, `device` and `o` make a volume whose `_data` is
a mount (`mount -t TYPE -o O DEVICE _data`: a tmpfs, a bind of an existing
directory, an NFS export) made at the first Mount and undone at the last
Unmount. The reference count is the set of mount id files, kept on disk so it
survives engine restarts and crashes as a plugin process's memory would.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import threading
from collections.abc import Callable
from typing import TypeVar

from dockyard import mount
from dockyard.errors import Conflict, InvalidArgument, NotFound, Unavailable
from dockyard.images.oci import rfc3339
from dockyard.units import UnitError, parse_size
from dockyard.volumes.driver import Capabilities, VolumeInfo

NAME = "local"
NAME_CHARS = "[a-zA-Z0-9][a-zA-Z0-9_.-]"
_NAME = re.compile(NAME_CHARS + "+")
MAX_NAME = 255  # NAME_MAX: one directory per volume
_OPTIONS = ("type", "o", "device", "size")
# An option -> the options it needs beside it (moby's mandatoryOpts).
_REQUIRES = {"device": ("type",), "type": ("device",), "o": ("device", "type")}

T = TypeVar("T")


def validate_name(name: str) -> None:
    if len(name) == 1:
        raise InvalidArgument(
            "volume name is too short, names should be at least two alphanumeric characters"
        )
    if len(name.encode()) > MAX_NAME:
        # moby would find out from mkdir (a 500); the directory name is the volume name
        raise InvalidArgument(
            f"volume name is too long, names should be at most {MAX_NAME} characters"
        )
    if not _NAME.fullmatch(name):
        raise InvalidArgument(
            f"{json.dumps(name)} includes invalid characters for a local volume name, only "
            f'"{NAME_CHARS}" are allowed. If you intended to pass a host directory, use '
            "absolute path"
        )


def validate_options(options: dict[str, str]) -> None:
    for key in options:
        if key not in _OPTIONS:
            raise InvalidArgument(f"invalid option: {json.dumps(key)}")
    if "size" in options:
        try:
            size = parse_size(options["size"])
        except UnitError as e:
            raise InvalidArgument(str(e)) from None
        if size > 0:
            raise InvalidArgument("quota size requested but no quota support")
    for key, needed in _REQUIRES.items():
        if key in options:
            for other in needed:
                if other not in options:
                    raise InvalidArgument(f"missing required option: {json.dumps(other)}")


class LocalDriver:
    """Docker's `local` volume driver, implementing `VolumeDriver`."""

    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, mode=0o701, exist_ok=True)
        # Only names an operation holds or waits for: lock and number of users.
        self._locks: dict[str, tuple[threading.Lock, int]] = {}
        self._locks_guard = threading.Lock()

    @property
    def name(self) -> str:
        return NAME

    # -- paths and state ----------------------------------------------------

    def _dir(self, name: str) -> str:
        return os.path.join(self.root, name)

    def _data(self, name: str) -> str:
        return os.path.join(self.root, name, "_data")

    def _mounts_dir(self, name: str) -> str:
        return os.path.join(self.root, name, "mounts")

    def _exists(self, name: str) -> bool:
        if not _NAME.fullmatch(name) or len(name) < 2:
            return False  # never a path outside the root
        return os.path.isdir(self._data(name)) or os.path.isfile(
            os.path.join(self._dir(name), "opts.json")
        )

    def _options(self, name: str) -> dict[str, str]:
        try:
            with open(os.path.join(self._dir(name), "opts.json")) as f:
                return dict(json.load(f))
        except FileNotFoundError:
            return {}

    def _active(self, name: str) -> list[str]:
        try:
            return os.listdir(self._mounts_dir(name))
        except FileNotFoundError:
            return []

    def _info(self, name: str) -> VolumeInfo:
        try:
            created = rfc3339(os.stat(self._dir(name)).st_ctime_ns)
        except FileNotFoundError:
            created = ""
        return VolumeInfo(name=name, mountpoint=self._data(name), created_at=created)

    async def _locked(self, name: str, work: Callable[[], T]) -> T:
        """Run `work` in a thread, one operation per volume at a time."""
        with self._locks_guard:
            lock, users = self._locks.get(name, (threading.Lock(), 0))
            self._locks[name] = (lock, users + 1)

        def run() -> T:
            try:
                with lock:
                    return work()
            finally:  # in the thread: a cancelled caller does not free the name early
                with self._locks_guard:
                    _, users = self._locks[name]
                    if users == 1:
                        del self._locks[name]
                    else:
                        self._locks[name] = (lock, users - 1)

        return await asyncio.to_thread(run)

    def _require(self, name: str) -> None:
        if not self._exists(name):
            raise NotFound(f"no such volume: {name}")

    # -- VolumeDriver ---------------------------------------------------------

    async def create(self, name: str, options: dict[str, str]) -> None:
        validate_name(name)
        validate_options(options)

        def work() -> None:
            if self._exists(name):
                return
            directory = self._dir(name)
            try:
                os.makedirs(directory, mode=0o701)
                os.mkdir(self._data(name), 0o755)
                if options:
                    with open(os.path.join(directory, "opts.json"), "w") as f:
                        json.dump(options, f)
            except BaseException:
                shutil.rmtree(directory, ignore_errors=True)
                raise

        await self._locked(name, work)

    async def remove(self, name: str) -> None:
        def work() -> None:
            self._require(name)
            if self._active(name):
                raise Conflict("volume has active mounts")
            data = self._data(name)
            mount.unmount(data)
            real = os.path.realpath(data)
            if not real.startswith(self.root + os.sep):
                raise Unavailable(
                    f"unable to remove a directory outside of the local volume root "
                    f"{self.root}: {real}"
                )
            shutil.rmtree(self._dir(name))

        await self._locked(name, work)

    async def mount(self, name: str, mount_id: str) -> str:
        def work() -> str:
            self._require(name)
            data = self._data(name)
            options = self._options(name)
            # The reference is recorded first and the mount made after, so a failure in
            # between never leaves a mount that no reference will ever release.
            reference = os.path.join(self._mounts_dir(name), mount_id)
            os.makedirs(self._mounts_dir(name), exist_ok=True)
            new = not os.path.exists(reference)
            with open(reference, "w"):
                pass
            try:
                if (options.get("type") or options.get("device")) and not mount.is_mountpoint(data):
                    self._mount(data, options)
            except BaseException:
                if new:
                    os.unlink(reference)
                raise
            return data

        return await self._locked(name, work)

    @staticmethod
    def _mount(data: str, options: dict[str, str]) -> None:
        device, fstype, o = options.get("device", ""), options.get("type"), options.get("o", "")
        try:
            mount.mount_with_options(device, data, fstype, o)
        except OSError as e:
            flags, extra = mount.parse_options(o)
            detail = f", data: {extra}" if extra else ""
            raise Unavailable(
                f"failed to mount local volume: mount {device}:{data}, flags: {flags:#x}"
                f"{detail}: {os.strerror(e.errno or 0).lower()}"
            ) from e

    async def unmount(self, name: str, mount_id: str) -> None:
        def work() -> None:
            if not self._exists(name):
                return
            try:
                os.unlink(os.path.join(self._mounts_dir(name), mount_id))
            except FileNotFoundError:
                return  # not mounted under this id (or already unmounted): nothing to do
            options = self._options(name)
            if (options.get("type") or options.get("device")) and not self._active(name):
                mount.unmount(self._data(name))  # the last reference: release the mount

        await self._locked(name, work)

    async def path(self, name: str) -> str:
        self._require(name)
        return self._data(name)

    async def get(self, name: str) -> VolumeInfo | None:
        if not self._exists(name):
            return None
        return self._info(name)

    async def list(self) -> list[VolumeInfo]:
        def work() -> list[VolumeInfo]:
            return [self._info(n) for n in sorted(os.listdir(self.root)) if self._exists(n)]

        return await asyncio.to_thread(work)

    async def capabilities(self) -> Capabilities:
        return Capabilities(scope="local")
