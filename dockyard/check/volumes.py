"""`system check` of volumes: records against the local driver's files, and Mount pairing.

* A `local` volume record whose directory is gone: forgotten when no
  container uses it, otherwise made again (empty, with its recorded options)
  so that its containers can start.
* A directory of the local driver without a record: recorded (what
  `volume ls` would do anyway, as Docker's does).
* Outstanding Mounts (`volume_mounts`) of a container that does not run:
  paired with their Unmount now (the daemon would at the container's next
  exit or at start-up).
* Mount references the local driver keeps on disk (`<name>/mounts/<id>`)
  that no outstanding Mount explains: released, so that a volume with device
  options is not kept mounted for ever.

Plugin volumes are only as good as their plugin: `plugins.py` checks that
each plugin answers.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import TYPE_CHECKING, Any

from dockyard.check.mounts import local_volume_root
from dockyard.check.owners import settle, snapshot
from dockyard.check.report import ERROR, INFO, WARNING, Finding, Report
from dockyard.check.store import old_enough
from dockyard.errors import DockyardError, InvalidArgument
from dockyard.volumes.local import NAME as LOCAL
from dockyard.volumes.local import validate_name

if TYPE_CHECKING:
    from dockyard.engine import Engine

AREA = "volumes"


async def check(engine: Engine, report: Report) -> None:
    rows = engine.db.all("SELECT name, driver, options FROM volumes ORDER BY name")
    report.count("volumes", len(rows))
    root = local_volume_root(engine)

    def listing() -> tuple[dict[str, bool], list[str], dict[str, list[str]]]:
        present = {
            row["name"]: _exists(root, row["name"]) for row in rows if row["driver"] == LOCAL
        }
        recorded = {row["name"] for row in rows}
        unrecorded = [
            name
            for name in sorted(_listdir(root))
            if name not in recorded and _exists(root, name) and old_enough(os.path.join(root, name))
        ]
        references = {
            name: sorted(_listdir(os.path.join(root, name, "mounts")))
            for name in _listdir(root)
            if _exists(root, name)
        }
        return present, unrecorded, references

    present, unrecorded, references = await asyncio.to_thread(listing)
    for row in rows:
        if row["driver"] == LOCAL and not present[row["name"]]:
            report.add([_missing(engine, row)])
    for name in unrecorded:
        report.add([_unrecorded(engine, name)])
    report.add(await _unpaired(engine, references))


def _exists(root: str, name: str) -> bool:
    try:
        validate_name(name)
    except InvalidArgument:
        return False  # never a path outside the root
    directory = os.path.join(root, name)
    return os.path.isdir(os.path.join(directory, "_data")) or os.path.isfile(
        os.path.join(directory, "opts.json")
    )


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _missing(engine: Engine, row: Any) -> Finding:
    name = row["name"]
    users = engine.volumes.users(name)
    subject = f"volume {name}"
    if not users:

        async def forget() -> str:
            if engine.volumes.users(name):
                return "a container uses it now: left alone"
            await engine.volumes.remove(name)
            return "forgot the volume"

        return Finding(
            AREA,
            WARNING,
            subject,
            "its directory is gone (the data with it); no container uses it",
            repair="forget the volume",
            fix=forget,
        )

    async def make_again() -> str:
        driver = engine.volumes.drivers[LOCAL]
        options = json.loads(row["options"] or "null") or {}
        await driver.create(name, options)
        return "made it again, empty: its containers can start"

    shown = ", ".join(u[:12] for u in users[:5])
    return Finding(
        AREA,
        ERROR,
        subject,
        f"its directory is gone (the data with it): the containers using it cannot start ({shown})",
        repair="make it again, empty, so that they can start",
        fix=make_again,
    )


def _unrecorded(engine: Engine, name: str) -> Finding:
    async def adopt() -> str:
        await engine.volumes.get(name)
        return "recorded it"

    return Finding(
        AREA,
        INFO,
        f"volume {name}",
        "the local driver has it, but no record does (`volume ls` records it)",
        repair="record it",
        fix=adopt,
    )


async def _unpaired(engine: Engine, references: dict[str, list[str]]) -> list[Finding]:
    def outstanding() -> list[Any]:
        return engine.db.all("SELECT id, volume, driver, container FROM volume_mounts")

    rows = outstanding()
    owners = snapshot(engine)
    idle = {row["container"] for row in rows if not _holds(owners, row["container"])}
    mounted = {(row["volume"], row["id"]) for row in rows if row["driver"] == LOCAL}
    loose = [
        (name, mount_id)
        for name, ids in references.items()
        for mount_id in ids
        if (name, mount_id) not in mounted
    ]
    if not idle and not loose:
        return []
    owners = await settle(engine)
    rows = outstanding()
    now_idle = {row["container"] for row in rows if not _holds(owners, row["container"])}
    mounted = {(row["volume"], row["id"]) for row in rows if row["driver"] == LOCAL}
    findings = []
    for container_id in sorted(idle & now_idle):
        volumes = sorted({row["volume"] for row in rows if row["container"] == container_id})
        findings.append(_idle_mounts(engine, container_id, volumes))
    for name, mount_id in loose:
        if (name, mount_id) not in mounted:
            findings.append(_loose_reference(engine, name, mount_id))
    return findings


def _holds(owners: Any, container_id: str) -> bool:
    """Whether a container may hold its volume mounts now (running, or busy)."""
    return container_id in owners.running or container_id in owners.busy


def _idle_mounts(engine: Engine, container_id: str, volumes: list[str]) -> Finding:
    async def unmount() -> str:
        if _holds(snapshot(engine), container_id):
            return "the container runs again: left alone"
        await engine.volumes.unmount(container_id)
        left = engine.db.all("SELECT volume FROM volume_mounts WHERE container=?", (container_id,))
        if left:
            still = ", ".join(sorted({r["volume"] for r in left}))
            raise DockyardError(f"the drivers did not unmount {still} (see the daemon's log)")
        return "unmounted them"

    return Finding(
        AREA,
        WARNING,
        f"container {container_id[:12]}",
        f"it does not run, but its Mounts of volume(s) {', '.join(volumes)} were never "
        "paired with an Unmount: their drivers keep them mounted",
        repair="unmount them",
        fix=unmount,
    )


def _loose_reference(engine: Engine, name: str, mount_id: str) -> Finding:
    async def release() -> str:
        row = engine.db.one("SELECT 1 FROM volume_mounts WHERE id=?", (mount_id,))
        if row is not None:
            return "a container holds it now: left alone"
        await engine.volumes.drivers[LOCAL].unmount(name, mount_id)
        return "released it"

    return Finding(
        AREA,
        WARNING,
        f"volume {name}",
        f"the local driver keeps a mount reference ({mount_id[:12]}) that no container holds",
        repair="release it",
        fix=release,
    )
