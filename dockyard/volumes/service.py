"""The volume manager: records, references, and Mount/Unmount pairing over the drivers.

Records (name, driver, labels, options) live in the database; the data lives
with the driver. A volume is in use while any container's record names it
(the containers' mount points are the references, so they need no table of
their own): such a volume cannot be removed.

Mounting follows the plugin protocol: each container start mounts each of
its volumes with a fresh 64-hex id, written to `volume_mounts` *before* the
driver is asked, and forgotten once the driver's unmount returned or the
plugin answered it with an error (it is not retried: one Unmount per Mount).
An Unmount that could not be sent at all (plugin down) stays recorded and is
sent when the container is unmounted again or at the next start. So an engine
crash at any point leaves ids that `restore()` unmounts once the container is
known not to run (an Unmount may repeat after a crash, which drivers ignore).

At container create, `prepare()` turns the request's Binds, Mounts, Tmpfs,
VolumesFrom and Config.Volumes into mount points, creating named volumes
that are missing and the anonymous ones; at start, `mount()` mounts them,
fills empty volumes with the image's content (copy-up) and returns the OCI
mount entries; at exit, `unmount()` pairs every mount.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from dockyard import mount as host_mount
from dockyard.containers.schema import HostConfig
from dockyard.errors import (
    Conflict,
    DockyardError,
    InvalidArgument,
    NotFound,
)
from dockyard.events.bus import EventBus
from dockyard.plugins.client import PluginError
from dockyard.state.db import Database
from dockyard.usage import tree_size
from dockyard.volumes import copyup, subpath
from dockyard.volumes import mounts as mp
from dockyard.volumes.driver import VolumeDriver, VolumeInfo
from dockyard.volumes.mounts import MountPoint
from dockyard.volumes.remote import PluginDrivers, RemoteDriver

log = logging.getLogger(__name__)

DEFAULT_DRIVER = "local"
ANONYMOUS_LABEL = "com.docker.volume.anonymous"

# container id -> its mount points, for every container (the volume references)
ContainerMounts = Callable[[], dict[str, list[MountPoint]]]


@dataclass
class Volume:
    name: str
    driver: str
    created: str  # RFC 3339, seconds
    labels: dict[str, str] | None
    options: dict[str, str] | None
    mountpoint: str = ""
    scope: str = "local"
    status: dict[str, Any] | None = None

    @property
    def anonymous(self) -> bool:
        return ANONYMOUS_LABEL in (self.labels or {})


@dataclass
class Usage:
    """A `/system/df` volume row: the volume, its size on disk (-1 unknown) and references."""

    volume: Volume
    size: int
    ref_count: int


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _name_matches(pattern: str, name: str) -> bool:
    if pattern == name:
        return True
    try:
        return re.search(pattern, name) is not None
    except re.error:
        return False


def _labels_match(labels: dict[str, str], wanted: list[str], negate: bool) -> bool:
    for item in wanted:
        key, sep, value = item.partition("=")
        present = key in labels and (not sep or labels[key] == value)
        if present == negate:
            return False
    return True


def _bool_filter(values: list[str], key: str) -> bool:
    if len(values) != 1 or values[0].lower() not in ("true", "false", "1", "0"):
        raise InvalidArgument(f"invalid filter '{key}={','.join(values)}'")
    return values[0].lower() in ("true", "1")


def _size(path: str) -> int:
    """Bytes used by regular files under `path`, hard links counted once (-1 if unreadable)."""
    return tree_size(path) if os.path.isdir(path) else -1


class VolumeService:
    def __init__(self, db: Database, drivers: list[VolumeDriver], events: EventBus) -> None:
        self.db = db
        self.drivers = {d.name: d for d in drivers}  # built in: in-process, asked freely
        self.events = events
        self.container_mounts: ContainerMounts = dict
        # Volume plugins, found by name as Docker finds them; set by the engine.
        self.plugins: PluginDrivers | None = None
        # Where volume subpaths are pinned for the runtime (see `subpath`); set by the engine.
        self.subpath_root = ""
        self._locks: dict[str, _NameLock] = {}  # only names someone holds or waits for
        # Names removed while a `volume ls` was asking the drivers: its answers may
        # predate the removal, so they must not bring such a volume back.
        self._listings = 0
        self._removed_while_listing: set[str] = set()

    # -- drivers and records --------------------------------------------------

    async def driver(self, name: str, *, retry: bool = True) -> VolumeDriver:
        """The driver `name`: a built-in one, else the plugin of that name (waited for
        during the discovery retry window unless `retry` is false)."""
        name = name or DEFAULT_DRIVER
        driver = self.drivers.get(name)
        if driver is not None:
            return driver
        if self.plugins is None:
            raise NotFound(f'error looking up volume plugin {name}: plugin "{name}" not found')
        try:
            return await self.plugins.get(name, retry=retry)
        except NotFound as e:
            # Docker's words, with where the lookup looked and for how long
            detail = e.message if e.message.startswith(f'plugin "{name}"') else ""
            raise NotFound(
                f"error looking up volume plugin {name}: "
                + (detail or f'plugin "{name}" not found')
            ) from None
        except DockyardError as e:
            raise _prefixed(f"error looking up volume plugin {name}", e) from e

    def driver_names(self) -> list[str]:
        return sorted(self.drivers)

    def _hold(self, volume: Volume) -> None:
        """Each volume of a managed plugin holds a reference on it (Docker's rule)."""
        if self.plugins is not None and volume.driver not in self.drivers:
            self.plugins.hold(volume.driver)

    @contextlib.contextmanager
    def _calling(self, driver: VolumeDriver) -> Iterator[None]:
        """A reference on a managed plugin for the calls that make a volume, taken before
        them (the volume's own reference comes with its record): no disable can stop the
        plugin half way, and one that did already is refused here."""
        if self.plugins is None or driver.name in self.drivers:
            yield
            return
        with self.plugins.calling(driver.name):
            yield

    def _unhold(self, volume: Volume) -> None:
        if self.plugins is not None and volume.driver not in self.drivers:
            self.plugins.release(volume.driver)

    @contextlib.asynccontextmanager
    async def _lock(self, name: str) -> AsyncIterator[None]:
        """One create, remove or adoption of `name` at a time."""
        entry = self._locks.setdefault(name, _NameLock())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if not entry.users:
                del self._locks[name]

    @staticmethod
    def _from_row(row: Any) -> Volume:
        return Volume(
            name=row["name"],
            driver=row["driver"],
            created=row["created"],
            labels=json.loads(row["labels"]),
            options=json.loads(row["options"]),
        )

    def _record(self, name: str) -> Volume | None:
        row = self.db.one("SELECT * FROM volumes WHERE name=?", (name,))
        return None if row is None else self._from_row(row)

    def _records(self) -> list[Volume]:
        return [self._from_row(row) for row in self.db.all("SELECT * FROM volumes ORDER BY name")]

    def _insert(self, volume: Volume, *, adopt: bool = False) -> None:
        """Record a volume; a new record holds its driver. A volume found at a driver
        (`adopt`) never replaces a record; a created one replaces what a concurrent listing
        may have adopted meanwhile."""
        verb = "INSERT OR IGNORE" if adopt else "INSERT OR REPLACE"
        with self.db.transaction():
            known = self.db.one("SELECT 1 FROM volumes WHERE name=?", (volume.name,))
            self.db.execute(
                f"{verb} INTO volumes(name, driver, created, labels, options) VALUES (?,?,?,?,?)",
                (
                    volume.name,
                    volume.driver,
                    volume.created,
                    json.dumps(volume.labels),
                    json.dumps(volume.options),
                ),
            )
        if known is None:
            self._hold(volume)

    def _forget(self, volume: Volume) -> None:
        with self.db.transaction():
            self.db.execute("DELETE FROM volumes WHERE name=?", (volume.name,))
        self._unhold(volume)

    def _emit(self, action: str, name: str, **attributes: str) -> None:
        self.events.emit("volume", action, name, attributes)

    async def _describe(
        self,
        volume: Volume,
        *,
        fresh: bool = True,
        info: VolumeInfo | None = None,
        strict: bool = False,
    ) -> Volume:
        """The record completed with what its driver says: mountpoint, status, scope.

        Built-in drivers are asked every time. A plugin is asked (`Get`) only when
        `fresh`; otherwise what is known is shown without a call (`info` just received,
        or the mountpoint it last reported), as Docker shows a volume it has just
        created or listed. A driver that fails is a warning, unless `strict` (`volume
        inspect`): then its error is raised, in Docker's words, and a driver that says
        it has no such volume is a 404."""
        builtin = self.drivers.get(volume.driver)
        driver: VolumeDriver | None = builtin
        checking = (
            f'get {volume.name}: error while checking if volume "{volume.name}" exists in '
            f'driver "{volume.driver}"'
        )
        if driver is None and self.plugins is not None:
            if not fresh:
                driver = self.plugins.peek(volume.driver)
            else:
                try:
                    driver = await self.driver(volume.driver, retry=False)
                except DockyardError as e:
                    if strict:
                        raise _prefixed(checking, e) from e
                    log.warning("volume %s: driver %s: %s", volume.name, volume.driver, e.message)
                    return volume
        if driver is None:
            return volume
        try:
            if strict and isinstance(driver, RemoteDriver):
                info = await driver.inspect(volume.name)
            elif builtin is not None or fresh:
                info = await driver.get(volume.name)
            elif info is None and isinstance(driver, RemoteDriver):
                info = VolumeInfo(volume.name, driver.cached_path(volume.name))
            scope = (await driver.capabilities()).scope.lower()
        except DockyardError as e:
            if strict:
                raise _prefixed(checking, e) from e
            log.warning("volume %s: driver %s: %s", volume.name, volume.driver, e.message)
            return volume
        if strict and info is None:
            raise NotFound(f"{checking}: no such volume")
        volume.scope = scope if scope in ("local", "global") else "local"
        if info is not None:
            volume.mountpoint = info.mountpoint
            volume.status = info.status
        return volume

    async def _all_drivers(self) -> list[VolumeDriver]:
        """The built-in drivers and every volume plugin a scan finds (activating them)."""
        found: list[VolumeDriver] = list(self.drivers.values())
        if self.plugins is not None:
            found += await self.plugins.all()
        return found

    async def _adopt(self, name: str) -> tuple[Volume, VolumeInfo] | None:
        """A volume a driver has but the engine has no record of (made outside, or before a
        crash): recorded now, as Docker's store does when it finds one. Every driver is
        asked, the plugins in the discovery directories too (as Docker does)."""
        for driver in await self._all_drivers():
            try:
                info = await driver.get(name)
            except DockyardError:
                continue
            if info is not None:
                volume = Volume(name, driver.name, _now(), None, None)
                self._insert(volume, adopt=True)
                return self._record(name) or volume, info
        return None

    # -- references -----------------------------------------------------------

    def users(self, name: str) -> list[str]:
        """IDs of the containers that reference the volume."""
        return sorted(
            cid
            for cid, points in self.container_mounts().items()
            if any(p.type == mp.VOLUME and p.name == name for p in points)
        )

    # -- create, inspect, list, remove, prune ---------------------------------

    async def create(
        self,
        name: str,
        driver_name: str = "",
        options: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> Volume:
        if not name:
            labels = {**(labels or {}), ANONYMOUS_LABEL: ""}
        volume, info, _ = await self._ensure(name, driver_name, options, labels)
        return await self._describe(volume, fresh=False, info=info)

    async def _ensure(
        self,
        name: str,
        driver_name: str,
        options: dict[str, str] | None,
        labels: dict[str, str] | None,
    ) -> tuple[Volume, VolumeInfo | None, bool]:
        """The volume `name` (a new anonymous one if empty), created if missing; what its
        driver said of it (None if just created); and whether this call created it.

        The driver calls are Docker's: `Get` (of the volume's own driver when it is
        recorded, else of the driver asked for), then `Create` only if the driver has no
        such volume. A failed Create leaves no record, and a Create cut short (timed out,
        connection lost) is followed by a Remove, so no half-made volume remains."""
        name = name or secrets.token_hex(32)
        async with self._lock(name):
            existing = self._record(name)
            if existing is not None:
                info = await self._still_there(existing, driver_name)
                if info is not None:
                    return existing, info, False
                driver_name = driver_name or existing.driver  # gone from its driver: made again
            elif not driver_name:
                adopted = await self._adopt(name)
                if adopted is not None:
                    return adopted[0], adopted[1], False
            try:
                driver = await self.driver(driver_name)
            except DockyardError as e:
                raise _prefixed(f"create {name}", e) from e
            with self._calling(driver):
                try:
                    info = await driver.get(name)
                except DockyardError:
                    info = None  # Docker ignores a failing Get here and goes on to Create
                if info is None:
                    try:
                        await driver.create(name, dict(options or {}))
                    except DockyardError as e:
                        await _discard_half_made(driver, name, e)
                        raise _prefixed(f"create {name}", e) from e
                volume = Volume(name, driver.name, _now(), labels, options)
                try:
                    self._insert(volume)
                except BaseException:
                    if info is None:
                        await driver.remove(name)
                    raise
        if info is None:
            self._emit("create", name, driver=driver.name)
        return volume, info, info is None

    async def _still_there(self, volume: Volume, driver_name: str) -> VolumeInfo | None:
        """What the recorded volume's driver says of it (Docker's conflict check): a 409 if
        another driver was asked for; None (and the record dropped) if its driver no longer
        has it and no container uses it."""
        name = volume.name
        conflict = False
        if driver_name:
            try:
                conflict = (await self.driver(driver_name)).name != volume.driver
            except DockyardError as e:
                raise _prefixed(f"create {name}", e) from e
        try:
            info = await (await self.driver(volume.driver)).get(name)
        except DockyardError as e:
            raise Conflict(
                f"create {name}: found reference to volume '{name}' in driver "
                f"'{volume.driver}', but got an error while checking the driver: {e.message}"
            ) from e
        if info is None and not self.users(name):
            log.warning("volume %s is gone from driver %s: forgotten", name, volume.driver)
            self._forget(volume)
            return None
        if conflict:
            raise Conflict(
                f"create {name}: driver '{volume.driver}' already has volume "
                f"'{name}': volume name must be unique"
            )
        return info or VolumeInfo(name)

    async def get(self, name: str) -> Volume:
        found = self._record(name)
        if found is None:
            async with self._lock(name):  # not while a create or remove of it is under way
                found = self._record(name)
                if found is None:
                    adopted = await self._adopt(name)
                    if adopted is None:
                        raise NotFound(f"get {name}: no such volume")
                    found = adopted[0]
        return await self._describe(found, strict=True)

    async def find(self, filters: dict[str, list[str]]) -> tuple[list[Volume], list[str]]:
        """`volume ls`: the records, with what every driver lists (plugins included, and
        volumes they have that the engine did not know are recorded); a driver that cannot
        list is a warning, its recorded volumes are still shown."""
        for key in filters:
            if key not in ("dangling", "driver", "label", "label!", "name"):
                raise InvalidArgument(f"invalid filter '{key}'")
        warnings = []
        drivers = await self._all_drivers()
        listed: dict[tuple[str, str], VolumeInfo] = {}
        self._listings += 1
        try:
            lists = await asyncio.gather(*(d.list() for d in drivers), return_exceptions=True)
            for driver, result in zip(drivers, lists, strict=True):
                if isinstance(result, DockyardError):
                    warnings.append(f"list {driver.name}: {result.message}")
                    continue
                if isinstance(result, BaseException):
                    raise result
                for info in result:
                    listed[(driver.name, info.name)] = info
                    if self._record(info.name) is None:
                        await self._adopt_listed(driver, info.name)
        finally:
            self._listings -= 1
            if not self._listings:
                self._removed_while_listing.clear()
        used = {p.name for points in self.container_mounts().values() for p in points}
        volumes = []
        for volume in self._records():
            if self._matches(volume, filters, used):
                known = listed.get((volume.driver, volume.name))
                volumes.append(await self._describe(volume, fresh=False, info=known))
        return volumes, warnings

    async def _adopt_listed(self, driver: VolumeDriver, name: str) -> None:
        """Record a volume a driver listed and the engine did not know, unless a remove
        took it away since the listing (a record without data is never made). Docker
        adopts from List alone, without a Get per volume; so do we."""
        async with self._lock(name):
            if self._record(name) is None and name not in self._removed_while_listing:
                self._insert(Volume(name, driver.name, _now(), None, None), adopt=True)

    def _matches(self, volume: Volume, filters: dict[str, list[str]], used: set[str]) -> bool:
        if filters.get("driver") and volume.driver not in filters["driver"]:
            return False
        if filters.get("name") and not any(_name_matches(n, volume.name) for n in filters["name"]):
            return False
        labels = volume.labels or {}
        if filters.get("label") and not _labels_match(labels, filters["label"], False):
            return False
        if filters.get("label!") and not _labels_match(labels, filters["label!"], True):
            return False
        if "dangling" in filters:
            dangling = _bool_filter(filters["dangling"], "dangling")
            if (volume.name not in used) != dangling:
                return False
        return True

    async def remove(self, name: str, *, force: bool = False) -> None:
        """Remove a volume no container references (its driver is asked `Get`, then
        `Remove`); `force` also forgets it when the driver fails, and makes an unknown name
        no error."""
        await self._remove(name, force=force)

    async def _remove(
        self, name: str, *, force: bool = False, unless: Callable[[Volume], bool] | None = None
    ) -> bool:
        """`remove`, the record read under the volume's lock (so a create or remove of the
        same name in between is seen); `unless(record)` true: left alone, False returned."""
        async with self._lock(name):
            volume = self._record(name)
            if volume is None:
                adopted = await self._adopt(name)
                if adopted is None:
                    if force:
                        return False
                    raise NotFound(f"get {name}: no such volume")
                volume = adopted[0]
            if unless is not None and unless(volume):
                return False
            users = self.users(name)
            if users:
                raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
            try:
                driver = await self.driver(volume.driver)
                if await _has(driver, name):
                    await driver.remove(name)
            except DockyardError as e:
                if not force:
                    raise _prefixed(f"remove {name}", e) from e
                log.warning("forgetting volume %s its driver failed to remove: %s", name, e)
            self._forget(volume)
            if self._listings:
                self._removed_while_listing.add(name)
        self._emit("destroy", name, driver=volume.driver)
        return True

    async def prune(self, filters: dict[str, list[str]], *, all: bool) -> tuple[list[str], int]:
        """Remove unused local volumes without driver options: anonymous ones, or all."""
        for key in filters:
            if key not in ("label", "label!", "all"):
                raise InvalidArgument(f"invalid filter '{key}'")
        if "all" in filters:
            if len(filters["all"]) > 1:
                raise InvalidArgument(
                    f"invalid filter 'all={','.join(filters['all'])}': only one value is expected"
                )
            all = all or _bool_filter(filters["all"], "all")
        used = {p.name for points in self.container_mounts().values() for p in points}
        removed, reclaimed = [], 0
        for volume in self._records():
            if volume.driver != DEFAULT_DRIVER or volume.options or volume.name in used:
                continue
            if not all and not volume.anonymous:
                continue
            labels = volume.labels or {}
            if filters.get("label") and not _labels_match(labels, filters["label"], False):
                continue
            if filters.get("label!") and not _labels_match(labels, filters["label!"], True):
                continue
            described = await self._describe(volume)
            size = await asyncio.to_thread(_size, described.mountpoint)
            try:
                # Only the volume judged here: not one removed and created again meanwhile.
                if not await self._remove(
                    volume.name, unless=functools.partial(_other, judged=volume)
                ):
                    continue
            except DockyardError as e:
                log.warning("prune: could not remove volume %s: %s", volume.name, e.message)
                continue
            removed.append(volume.name)
            reclaimed += max(size, 0)
        self._emit("prune", "", reclaimed=str(reclaimed))
        return removed, reclaimed

    async def usage(self) -> list[Usage]:
        """Volume rows for `system df`: size on disk and number of containers using it."""
        volumes, _ = await self.find({})
        rows = []
        for volume in volumes:
            if volume.driver == DEFAULT_DRIVER and not volume.options:
                size = await asyncio.to_thread(_size, volume.mountpoint)
            else:
                size = -1  # a mount from elsewhere (tmpfs, NFS, ...): not this host's disk
            rows.append(Usage(volume, size, len(self.users(volume.name))))
        return rows

    # -- containers: create ---------------------------------------------------

    async def prepare(
        self,
        config_volumes: dict[str, Any],
        host_config: HostConfig,
        volumes_from: Callable[[str], list[MountPoint]],
    ) -> list[MountPoint]:
        """A new container's mount points, with the volumes they name created as needed.

        On failure, volumes this call created are removed again.
        """
        volume_driver = host_config.volume_driver
        tmpfs = {mp.clean(dest): data for dest, data in (host_config.tmpfs or {}).items()}
        for dest, data in (host_config.tmpfs or {}).items():
            mp.parse_tmpfs(dest, data or "")
        points: dict[str, MountPoint] = {}
        inherited: set[str] = set()  # from --volumes-from: their volumes exist already
        explicit: set[str] = set()
        for spec in host_config.volumes_from or []:
            ref, mode = mp.parse_volumes_from(spec)
            for point in volumes_from(ref):
                points[point.destination] = replace(
                    point, rw=point.rw and mp.read_write(mode), copy_data=False
                )
                inherited.add(point.destination)
        for raw in host_config.binds or []:
            point = mp.parse_bind(raw, volume_driver)
            if point.destination in explicit or point.destination in tmpfs:
                raise mp.duplicate(point.destination)
            if point.type == mp.VOLUME and (point.driver or DEFAULT_DRIVER) == DEFAULT_DRIVER:
                point.mode = point.mode or "z"
            explicit.add(point.destination)
            points[point.destination] = point
        for mount in host_config.mounts or []:
            point = mp.parse_mount(mount)
            if point.destination in explicit:
                raise mp.duplicate(mount.target)
            if point.type == mp.VOLUME and (point.driver or DEFAULT_DRIVER) == DEFAULT_DRIVER:
                point.mode = "z"
            explicit.add(point.destination)
            points[point.destination] = point
        inherited -= explicit
        for dest in config_volumes:
            # A key is only ever a destination (an image's VOLUME, or `-v /path`): never
            # parse it as `SRC:DST`, or an image could bind-mount the host into itself.
            destination = mp.clean(dest)
            if not destination.startswith("/"):
                raise InvalidArgument(
                    f"invalid volume specification: '{dest}': invalid mount config for type "
                    f"\"volume\": invalid mount path: '{dest}' mount path must be absolute"
                )
            if destination in points or destination in tmpfs:
                continue  # docker-py lists bind targets here too: not anonymous volumes
            points[destination] = MountPoint(
                type=mp.VOLUME,
                destination=destination,
                driver=volume_driver,
                anonymous=True,
                copy_data=True,
            )
        created: list[str] = []
        try:
            for point in points.values():
                if point.type != mp.VOLUME or point.destination in inherited:
                    continue
                labels = dict(point.volume_labels) or None
                if point.anonymous:
                    labels = {**(labels or {}), ANONYMOUS_LABEL: ""}
                volume, info, new = await self._ensure(
                    point.name, point.driver, point.volume_options or None, labels
                )
                if new:
                    created.append(volume.name)
                point.name, point.driver = volume.name, volume.driver
                point.source = (await self._describe(volume, fresh=False, info=info)).mountpoint
        except BaseException:
            for name in created:
                with contextlib.suppress(DockyardError):
                    await self.remove(name)
            raise
        return mp.sort_for_mounting(list(points.values()), lambda p: p.destination)

    async def release(self, points: list[MountPoint], *, remove_anonymous: bool) -> None:
        """A container is gone: with `remove_anonymous`, remove its anonymous volumes unless
        another container still uses them (`rm -v`, `--rm`)."""
        if not remove_anonymous:
            return
        for point in points:
            if point.type != mp.VOLUME or not point.anonymous:
                continue
            try:
                await self.remove(point.name)
            except Conflict:
                pass  # still used by another container (--volumes-from): not an error
            except DockyardError as e:
                log.warning("removing volume %s: %s", point.name, e.message)

    # -- containers: start and stop -------------------------------------------

    async def mount(
        self,
        container_id: str,
        points: list[MountPoint],
        tmpfs: dict[str, str],
        rootfs: str,
    ) -> list[dict[str, Any]]:
        """Mount a starting container's volumes and return its OCI mount entries, parents
        before children. Copy-up runs once per mount point. On failure everything this
        call mounted is unmounted again."""
        volumes = [p for p in points if p.type == mp.VOLUME]
        records = []
        drivers: dict[str, VolumeDriver] = {}
        for point in volumes:
            volume = self._record(point.name)
            if volume is None:
                raise NotFound(f"get {point.name}: no such volume")
            if volume.driver not in drivers:
                drivers[volume.driver] = await self.driver(volume.driver)
            records.append(volume)
        ids = [secrets.token_hex(32) for _ in volumes]
        pinned: list[str] = []
        point_sources: dict[str, str] = {}  # destination -> what the runtime mounts
        # Recorded before any driver is asked: from here on, a crash still unmounts.
        with self.db.transaction():
            for mount_id, volume in zip(ids, records, strict=True):
                self.db.execute(
                    "INSERT INTO volume_mounts(id, volume, driver, container) VALUES (?,?,?,?)",
                    (mount_id, volume.name, volume.driver, container_id),
                )
        try:
            results = await asyncio.gather(
                *(
                    self._driver_mount(drivers[v.driver], v, i)
                    for v, i in zip(records, ids, strict=True)
                ),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            for point, path in zip(volumes, results, strict=True):
                assert isinstance(path, str)
                point.source = path
                self._emit(
                    "mount",
                    point.name,
                    driver=point.driver,
                    container=container_id,
                    destination=point.destination,
                    **{"read/write": str(point.rw).lower()},
                    propagation=point.propagation,
                )
                if point.subpath:
                    staging = os.path.join(self._subpaths(container_id), str(len(pinned)))
                    pinned.append(staging)
                    point_sources[point.destination] = await asyncio.to_thread(
                        subpath.pin, path, point.subpath, staging
                    )
                if point.copy_data:
                    source = copyup.source_dir(rootfs, point.destination)
                    if source is not None:
                        await copyup.copy_up(source, path)
                    point.copy_data = False  # once per container, as Docker does at create
            entries = [
                await self._entry(point, point_sources.get(point.destination)) for point in points
            ]
        except BaseException:
            await self.unmount(container_id)
            raise
        for dest, data in tmpfs.items():
            entries.append(
                {
                    "destination": mp.clean(dest),
                    "type": "tmpfs",
                    "source": "tmpfs",
                    "options": mp.parse_tmpfs(dest, data or ""),
                }
            )
        return mp.sort_for_mounting(entries, lambda e: e["destination"])

    async def _driver_mount(self, driver: VolumeDriver, volume: Volume, mount_id: str) -> str:
        async with self._lock(volume.name):
            return await driver.mount(volume.name, mount_id)

    def _subpaths(self, container_id: str) -> str:
        return os.path.join(self.subpath_root, container_id)

    def release_subpaths(self, container_id: str) -> None:
        """Undo a container's subpath staging mounts (once the runtime holds its own)."""
        if self.subpath_root:
            subpath.release(self._subpaths(container_id))

    async def _entry(self, point: MountPoint, source: str | None = None) -> dict[str, Any]:
        """The OCI mount entry of a mount point (its volume mounted already); `source`
        replaces the point's own (a pinned subpath)."""
        if point.type == mp.TMPFS:
            options = mp.merge_tmpfs_options([*mp.TMPFS_DEFAULTS, *point.tmpfs_options.split(",")])
            return {
                "destination": point.destination,
                "type": "tmpfs",
                "source": "tmpfs",
                "options": options,
            }
        if point.type == mp.BIND:
            if not os.path.exists(point.source):
                if not point.create_source:
                    raise InvalidArgument(
                        f'invalid mount config for type "bind": bind source path does not '
                        f"exist: {point.source}"
                    )
                await asyncio.to_thread(os.makedirs, point.source, 0o755, True)
            _check_propagation(point.source, point.propagation)
        options = ["bind" if point.non_recursive else "rbind"]
        if not point.rw:
            modes = point.mode.split(",")
            options.append("rro" if "rro" in modes or "ro-force-recursive" in modes else "ro")
        if point.propagation:
            options.append(point.propagation)
        return {
            "destination": point.destination,
            "type": "bind",
            "source": source or point.source,
            "options": options,
        }

    async def unmount(self, container_id: str) -> None:
        """Pair every outstanding Mount of the container with its Unmount, once. An id
        whose Unmount could not be sent (the plugin not reachable, or disabled) stays
        recorded: the next unmount of the container, or `restore()`, sends it. One the
        plugin received and failed is forgotten: it is never sent twice."""
        self.release_subpaths(container_id)  # before the volumes they lead into
        rows = self.db.all(
            "SELECT id, volume, driver, container FROM volume_mounts WHERE container=?",
            (container_id,),
        )
        await self._unmount(rows)

    async def _unmount(self, rows: list[Any]) -> None:
        async def one(row: Any) -> bool:
            """Whether this call paired the mount (its row is then forgotten)."""
            try:
                driver = await self.driver(row["driver"])
            except NotFound:
                driver = None  # the driver is gone: nothing can be paired any more
            except DockyardError as e:
                log.warning("unmounting volume %s (%s): %s", row["volume"], row["id"][:12], e)
                return False  # disabled, or not reachable now: paired later
            async with self._lock(row["volume"]):
                # Another unmount of the same container (a stop finishing after a restart,
                # the restart's reconciliation) may have paired it meanwhile: never twice.
                if not self._mount_recorded(row["id"]):
                    return False
                if driver is not None and not await self._driver_unmount(driver, row):
                    return False
                with self.db.transaction():
                    self.db.execute("DELETE FROM volume_mounts WHERE id=?", (row["id"],))
            return True

        done = await asyncio.gather(*(one(row) for row in rows))
        for row, paired in zip(rows, done, strict=True):
            if paired:
                self._emit(
                    "unmount", row["volume"], driver=row["driver"], container=row["container"]
                )

    def _mount_recorded(self, mount_id: str) -> bool:
        return self.db.one("SELECT 1 FROM volume_mounts WHERE id=?", (mount_id,)) is not None

    async def _driver_unmount(self, driver: VolumeDriver, row: Any) -> bool:
        """Send one Unmount; whether the mount is done with (paired, or failed by the
        plugin that received it) rather than to be sent again."""
        try:
            await driver.unmount(row["volume"], row["id"])
        except PluginError as e:
            if not e.reached:
                log.warning(
                    "unmounting volume %s (%s): %s; sent when the plugin is back",
                    row["volume"], row["id"][:12], e.message,
                )  # fmt: skip
                return False
            # The plugin got this Unmount and failed it: it is not sent again (one
            # Unmount per Mount); the plugin owns what it left mounted.
            log.warning(
                "unmounting volume %s (%s): %s; not retried",
                row["volume"], row["id"][:12], e.message,
            )  # fmt: skip
        except DockyardError as e:
            # a built-in driver: tried again at the next unmount or start
            log.warning("unmounting volume %s (%s): %s", row["volume"], row["id"][:12], e)
            return False
        return True

    # -- engine start -----------------------------------------------------------

    def reconciliation(self, running: set[str]) -> VolumeReconciliation:
        """After a restart, synchronously, before anything else can mount or unmount: take
        the references on managed plugins again (still their volumes as far as anyone
        knows) and read what `restore` is to reconcile: every record, and the mounts of
        the containers not `running` (they died, or the engine did mid-start)."""
        records = self._records()
        for volume in records:
            self._hold(volume)
        rows = [
            row
            for row in self.db.all("SELECT id, volume, driver, container FROM volume_mounts")
            if row["container"] not in running
        ]
        return VolumeReconciliation(records, rows)

    async def restore(self, plan: VolumeReconciliation) -> None:
        """In the background while the daemon serves: ask each recorded volume's driver
        for it (`Get`), drop the records drivers no longer have, and unmount the mounts of
        containers that were not running."""

        async def check(volume: Volume) -> None:
            try:
                info = await (await self.driver(volume.driver)).get(volume.name)
            except DockyardError as e:
                log.warning("volume %s: driver %s: %s", volume.name, volume.driver, e.message)
                return
            if info is not None:
                return
            async with self._lock(volume.name):
                current = self._record(volume.name)
                if current is None or _other(current, volume) or self.users(volume.name):
                    return  # removed, made again or taken into use meanwhile
                log.warning(
                    "volume %s is gone from driver %s: forgotten", volume.name, volume.driver
                )
                self._forget(volume)

        await asyncio.gather(*(check(volume) for volume in plan.records))
        await self._unmount(plan.mounts)


@dataclass
class VolumeReconciliation:
    """What a restart's background reconciliation looks at (`VolumeService.restore`)."""

    records: list[Volume]
    mounts: list[Any]  # volume_mounts rows of containers that were not running


@dataclass
class _NameLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # holding or waiting


def _other(volume: Volume, judged: Volume) -> bool:
    """Whether the record `volume` is not the one `judged` (removed and created again)."""
    fields = ("driver", "created", "labels", "options")
    return any(getattr(volume, f) != getattr(judged, f) for f in fields)


def _prefixed(prefix: str, error: DockyardError) -> DockyardError:
    """`error` with Docker's `op name: ` prefix, as its typed class from `dockyard.errors`
    (a PluginError becomes the Unavailable it is)."""
    for cls in type(error).__mro__:
        if cls.__module__ == DockyardError.__module__ and issubclass(cls, DockyardError):
            return cls(f"{prefix}: {error.message}")
    return DockyardError(f"{prefix}: {error.message}")


async def _has(driver: VolumeDriver, name: str) -> bool:
    """Whether the driver has the volume, for a remove: a plugin whose `Get` answers an
    error is asked `List` (it may still have it, and then it must be removed); one that
    cannot be reached fails the remove."""
    if not isinstance(driver, RemoteDriver):
        return await driver.get(name) is not None
    try:
        return await driver.inspect(name) is not None
    except PluginError as e:
        if not e.http_status:
            raise
    return await driver.listed(name)


async def _discard_half_made(driver: VolumeDriver, name: str, error: DockyardError) -> None:
    """After a Create cut short (timed out, connection lost before the reply) the plugin
    may have made the volume: remove it, once, so nothing half-made remains. A plugin
    that answered with an error made nothing."""
    if not isinstance(driver, RemoteDriver) or not isinstance(error, PluginError):
        return
    if error.http_status:
        return
    try:
        await driver.discard(name)
    except DockyardError as e:
        log.info("removing volume %s after its failed create: %s", name, e.message)


def _check_propagation(source: str, propagation: str) -> None:
    """Shared and slave propagation need a source mount that propagates. Docker refuses the
    start when it does not; Dockyard runs the container, as Podman does (the propagation
    then holds inside the container only), and says so in the daemon's log."""
    if propagation not in ("shared", "rshared", "slave", "rslave"):
        return
    point, tags = host_mount.mount_of(source)
    shared = any(t.startswith("shared:") for t in tags)
    slave = any(t.startswith("master:") for t in tags)
    if propagation in ("shared", "rshared") and not shared:
        log.warning("bind %s (%s): %s is not a shared mount", source, propagation, point)
    elif not (shared or slave):
        log.warning("bind %s (%s): %s is not a shared or slave mount", source, propagation, point)
