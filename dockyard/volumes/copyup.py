"""Copy-up: fill a new, empty volume with what the image has at the mount point.

Docker copies a container's image content at a volume's destination into the
volume when the volume is empty, once per container (moby's populateVolume);
owners, modes, times, links, special files and extended attributes come
along. coreutils' `cp -a` does exactly that copy (hard links kept, sparse
files kept sparse, unsupported xattrs skipped) and runs outside the event
loop as a child process. The source is resolved inside the container's root
filesystem as if chrooted, so a symlink in the image cannot point the copy at
the host.
"""

from __future__ import annotations

import asyncio
import os
import shutil

from dockyard import rootpath
from dockyard.errors import Unavailable


def is_empty(directory: str) -> bool:
    with os.scandir(directory) as entries:
        return next(entries, None) is None


def source_dir(rootfs: str, destination: str) -> str | None:
    """The image's directory at `destination`, or None if there is none to copy."""
    try:
        path = rootpath.resolve(rootfs, destination)
    except OSError:
        return None
    return path if os.path.isdir(path) and not os.path.islink(path) else None


def _empty(directory: str) -> None:
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)


async def copy_up(source: str, volume_dir: str) -> bool:
    """Copy `source`'s content into `volume_dir` if that is empty; True if it copied.

    A failed copy leaves the volume empty again, as it was.
    """
    if not await asyncio.to_thread(is_empty, volume_dir):
        return False
    proc = await asyncio.create_subprocess_exec(
        "cp",
        "-a",
        "--",
        os.path.join(source, "."),
        volume_dir + "/",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode:
        await asyncio.to_thread(_empty, volume_dir)
        raise Unavailable(
            f"failed to copy image content into the volume: {err.decode(errors='replace').strip()}"
        )
    return True
