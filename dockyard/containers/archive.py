"""The archive API's engine side: stat, archive, extract and export a container's files.

`docker cp` and `docker export` as moby's daemon/archive*.go and export.go
define them, for running and stopped containers alike. The daemon itself never
opens a container's file: each request starts a copier (`copier.py`), a child
process whose root directory is the container's view of its files, so no path,
symlink, hard link or archive entry can reach the host (the CVE-2018-15664 /
CVE-2019-14271 class). This module prepares that view, runs the child and
streams between it and the client:

* running or paused: the root of the container's init process. Its pid is
  checked first (pidfd, then its cgroup is the container's, then the pidfd
  still shows it alive after `/proc/<pid>/root` was opened), so a recycled pid
  can never hand over another process's root. The container's own mounts are
  part of it; pseudo filesystems (`/proc`, `/sys`, `/dev`) are not walked into.
* stopped (created, exited): the rootfs overlay and the volumes are mounted
  with the same calls `start` makes (`RootfsManager.mount`, `VolumeService.mount`),
  the copier binds them into a private mount namespace, and afterwards both are
  unmounted again, also when anything failed.
* export: the rootfs overlay alone, without volumes, as Docker exports it.

The container's lock is held for the whole operation, as moby holds its
container lock until the archive has been read: a start, exit handling or
removal waits, and can never unmount what a copy is using.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import select
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import dockyard
from dockyard import mount as mounts
from dockyard.containers.copyrules import PathStat
from dockyard.containers.model import PAUSED, REMOVING, RUNNING, Container
from dockyard.containers.service import ContainerService
from dockyard.errors import (
    Conflict,
    DockyardError,
    Forbidden,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from dockyard.volumes import mounts as mountpoints

log = logging.getLogger(__name__)

# Filesystems that are the kernel's, not the container's files: a walk from `/`
# does not descend into them (Docker's view of a container has none of them).
_PSEUDO_FILESYSTEMS = frozenset(
    {
        "proc",
        "sysfs",
        "devpts",
        "mqueue",
        "cgroup",
        "cgroup2",
        "securityfs",
        "debugfs",
        "tracefs",
        "configfs",
        "fusectl",
        "bpf",
        "pstore",
        "binfmt_misc",
        "autofs",
        "efivarfs",
        "selinuxfs",
        "nsfs",
        "hugetlbfs",
    }
)
_RUNTIME_TREES = ("/proc", "/sys", "/dev")
_ETC_FILES = ("hostname", "hosts", "resolv.conf")

# The copier runs the daemon's own code, from where the daemon loaded it.
_IMPORT_PATH = [os.path.dirname(os.path.dirname(os.path.abspath(dockyard.__file__)))]
_BOOT = (
    "import json, sys; sys.path[:0] = json.loads(sys.argv[1]); "
    "from dockyard.containers.copier import main; sys.exit(main(sys.argv[2]))"
)
# No time zone file, locale or library from the container is ever consulted.
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TZ": "UTC", "LC_ALL": "C.UTF-8"}
_CHUNK = 1 << 20


@dataclass
class _View:
    """The container's files as a copier will see them (the `root_*` and mount fields of
    its spec), and what Docker's writability check needs."""

    root_fd: int | None = None
    root_path: str | None = None
    mounts_to_make: list[dict[str, Any]] = field(default_factory=list)
    readonly_root: bool = False
    opaque: list[str] = field(default_factory=list)

    def spec(self, container: Container, operation: str, **extra: Any) -> dict[str, Any]:
        hc = container.host_config
        return {
            "op": operation,
            "root_fd": self.root_fd,
            "root_path": self.root_path,
            "private": bool(self.mounts_to_make or self.readonly_root),
            "mounts_to_make": self.mounts_to_make,
            "readonly_root": self.readonly_root,
            "opaque": self.opaque,
            "mounts": _configured_mounts(container),
            "readonly_rootfs": hc.readonly_rootfs,
            **extra,
        }

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return (self.root_fd,) if self.root_fd is not None else ()


def _configured_mounts(container: Container) -> list[dict[str, Any]]:
    """The container's mounts as its configuration has them (destination, rw)."""
    points = [{"destination": p.destination, "rw": p.rw} for p in container.mounts]
    for destination, options in (container.host_config.tmpfs or {}).items():
        words = (options or "").split(",")
        points.append({"destination": mountpoints.clean(destination), "rw": "ro" not in words})
    return points


class ArchiveService:
    """`GET`/`HEAD`/`PUT /containers/{id}/archive` and `GET /containers/{id}/export`."""

    def __init__(self, containers: ContainerService) -> None:
        self.containers = containers

    async def stat(self, ref: str, path: str) -> PathStat:
        container = self.containers.get(ref)
        async with self._view(container) as view:
            copier = await _Copier.start(view.spec(container, "stat", path=path), view.pass_fds)
            try:
                ready = await copier.ready(ref, path)
                await copier.finish(ref, path)
            finally:
                await copier.close()
        return PathStat.from_dict(ready["stat"])

    @contextlib.asynccontextmanager
    async def archive(self, ref: str, path: str) -> AsyncIterator[Archive]:
        """The stat of `path` and a tar of it, while the context is open."""
        container = self.containers.get(ref)
        async with self._view(container) as view:
            spec = view.spec(container, "archive", path=path)
            copier = await _Copier.start(spec, view.pass_fds, output=True)
            try:
                ready = await copier.ready(ref, path)
                self.containers.emit(container, "archive-path")
                yield Archive(PathStat.from_dict(ready["stat"]), copier.output(ref, path))
            finally:
                await copier.close()

    async def extract(
        self,
        ref: str,
        path: str,
        body: AsyncIterator[bytes],
        *,
        copy_uid_gid: bool = False,
        no_overwrite_dir_non_dir: bool = False,
    ) -> None:
        """Extract the tar `body` (maybe compressed) into the directory `path`."""
        container = self.containers.get(ref)
        async with self._view(container) as view:
            spec = view.spec(
                container,
                "extract",
                path=path,
                user=container.config.user if copy_uid_gid else "",
                no_overwrite_dir_non_dir=no_overwrite_dir_non_dir,
            )
            copier = await _Copier.start(spec, view.pass_fds, input=True)
            try:
                await copier.ready(ref, path)
                await copier.feed(body)
                await copier.finish(ref, path)
            finally:
                await copier.close()
        self.containers.emit(container, "extract-to-dir")

    @contextlib.asynccontextmanager
    async def export(self, ref: str) -> AsyncIterator[AsyncIterator[bytes]]:
        """A tar of the container's root filesystem (no volumes), while the context is open."""
        container = self.containers.get(ref)
        async with self.containers.live(container).lock:
            self._check_present(container)
            if container.state.status == REMOVING:
                raise Conflict(f"You cannot export container {container.id} which is being removed")
            async with self._rootfs_view(container) as view:
                copier = await _Copier.start(view.spec(container, "export"), (), output=True)
                try:
                    await copier.ready(ref, "/")
                    yield self._exported(container, copier.output(ref, "/"))
                finally:
                    await copier.close()

    async def _exported(
        self, container: Container, chunks: AsyncIterator[bytes]
    ) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            yield chunk
        self.containers.emit(container, "export")

    # -- views ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _view(self, container: Container) -> AsyncIterator[_View]:
        """The container's files with its mounts, under its lock."""
        live = self.containers.live(container)
        for _attempt in range(2):
            async with live.lock:
                self._check_present(container)
                if container.state.status not in (RUNNING, PAUSED):
                    async with self._stopped_view(container) as view:
                        yield view
                    return
                opened = await asyncio.to_thread(
                    _open_process_root,
                    container.state.pid,
                    self.containers.cgroup_path(container),
                )
                if opened is not None:
                    root_fd, mountinfo = opened
                    try:
                        yield _View(root_fd=root_fd, opaque=_opaque_mounts(mountinfo, container))
                    finally:
                        os.close(root_fd)
                    return
            # Its process is gone and the exit is not recorded yet: let that happen
            # (it needs the lock), then the container is a stopped one.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(live.exited.wait(), 10)
        raise Conflict(f"container {container.id} is exiting, try again")

    @contextlib.asynccontextmanager
    async def _stopped_view(self, container: Container) -> AsyncIterator[_View]:
        async with self._rootfs_view(container) as rootfs:
            assert rootfs.root_path is not None
            volumes = self.containers.volumes
            tmpfs = container.host_config.tmpfs or {}
            entries = await volumes.mount(container.id, container.mounts, tmpfs, rootfs.root_path)
            try:
                yield _View(
                    root_path=rootfs.root_path,
                    mounts_to_make=self._mounts_to_make(container, entries),
                    readonly_root=container.host_config.readonly_rootfs,
                )
            finally:
                await volumes.unmount(container.id)

    @contextlib.asynccontextmanager
    async def _rootfs_view(self, container: Container) -> AsyncIterator[_View]:
        """The rootfs overlay, mounted for the time of the context if it was not."""
        directory = os.path.join(self.containers.dir(container), "rootfs")
        rootfs = self.containers.rootfs
        mounted = await asyncio.to_thread(mounts.is_mountpoint, rootfs.merged(directory))
        try:
            merged = rootfs.mount(directory, container.chain_id)
        except OSError as e:
            raise Unavailable(
                f"cannot mount the filesystem of container {container.id}: {e}"
            ) from e
        try:
            yield _View(root_path=merged)
        finally:
            if not mounted:
                rootfs.unmount(directory)

    def _mounts_to_make(
        self, container: Container, entries: Sequence[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The OCI mount entries of a stopped container (and its /etc files, when it has
        them) as the copier mounts them."""
        made: list[dict[str, Any]] = []
        for entry in entries:
            options = list(entry.get("options") or [])
            if entry["type"] == "tmpfs":
                flags, data = mounts.parse_options(",".join(options))
                made.append(
                    {
                        "type": "tmpfs",
                        "destination": entry["destination"],
                        "flags": flags & ~(mounts.PROPAGATION | mounts.MS_REC),
                        "data": data,
                    }
                )
            else:
                made.append(
                    {
                        "type": "bind",
                        "destination": entry["destination"],
                        "source": entry["source"],
                        "recursive": "rbind" in options,
                        "readonly": "ro" in options or "rro" in options,
                    }
                )
        for name in _ETC_FILES:
            source = os.path.join(self.containers.dir(container), name)
            if os.path.isfile(source):
                made.append(
                    {
                        "type": "bind",
                        "destination": f"/etc/{name}",
                        "source": source,
                        "recursive": False,
                        "readonly": False,
                    }
                )
        return mountpoints.sort_for_mounting(made, lambda m: m["destination"])

    def _check_present(self, container: Container) -> None:
        """The container may have been removed while this waited for its lock."""
        if self.containers.get(container.id) is not container:
            raise NotFound(f"No such container: {container.id}")


@dataclass
class Archive:
    stat: PathStat
    chunks: AsyncIterator[bytes]


def _open_process_root(pid: int, cgroup: str) -> tuple[int, str] | None:
    """An O_PATH descriptor of `pid`'s root and its mount table, if `pid` is still the
    container's process (in its cgroup) after the root was opened; else None."""
    if pid <= 0:
        return None
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    try:
        try:
            root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except (FileNotFoundError, ProcessLookupError):
            return None
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                cgroups = f.read()
            with open(f"/proc/{pid}/mountinfo") as f:
                mountinfo = f.read()
        except (FileNotFoundError, ProcessLookupError):
            os.close(root)
            return None
        # The pidfd names the process that had `pid` when it was opened: if it has not
        # exited yet, the root and the tables read since are that process's.
        alive = not select.select([pidfd], [], [], 0)[0]
        if not alive or not _in_cgroup(cgroups, cgroup):
            os.close(root)
            return None
        return root, mountinfo
    finally:
        os.close(pidfd)


def _in_cgroup(text: str, cgroup: str) -> bool:
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        if path == cgroup or path.startswith(cgroup + "/"):
            return True
    return False


def _unescape(field_: str) -> str:
    """A mountinfo field: spaces, tabs, newlines and backslashes are octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field_ = field_.replace(code, char)
    return field_


def _opaque_mounts(mountinfo: str, container: Container) -> list[str]:
    """Mount points of the container's process that a walk must not enter: pseudo
    filesystems anywhere, and what the runtime mounted on /proc, /sys and /dev."""
    configured = {m["destination"] for m in _configured_mounts(container)}
    opaque = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 10 or "-" not in fields:
            continue
        point = _unescape(fields[4])
        fstype = fields[fields.index("-") + 1]
        runtime = any(point == t or point.startswith(t + "/") for t in _RUNTIME_TREES)
        if fstype in _PSEUDO_FILESYSTEMS or (runtime and point not in configured):
            opaque.append(point)
    return opaque


class _Copier:
    """One copier child process: spec in, JSON messages on its stderr, a tar on its
    stdin or stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.messages: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.text: list[str] = []
        # Always drained: a child blocked writing warnings must never stall the data.
        self.reader = asyncio.ensure_future(self._read_messages())

    @classmethod
    async def start(
        cls,
        spec: dict[str, Any],
        pass_fds: tuple[int, ...],
        *,
        input: bool = False,
        output: bool = False,
    ) -> _Copier:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-c",
            _BOOT,
            json.dumps(_IMPORT_PATH),
            json.dumps(spec),
            stdin=asyncio.subprocess.PIPE if input else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if output else asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            pass_fds=pass_fds,
            env=_ENV,
            cwd="/",
        )
        return cls(proc)

    async def _read_messages(self) -> None:
        assert self.proc.stderr is not None
        try:
            while line := await self.proc.stderr.readline():
                try:
                    message = json.loads(line)
                except ValueError:
                    message = None
                if not isinstance(message, dict):
                    text = line.decode(errors="replace").rstrip()
                    if text:
                        self.text.append(text)
                    continue
                if "warning" in message:
                    log.info("copier: %s", message["warning"].get("message", ""))
                    continue
                await self.messages.put(message)
        finally:
            await self.messages.put(None)

    async def _next(self, ref: str, path: str) -> dict[str, Any]:
        message = await self.messages.get()
        if message is None:
            self.messages.put_nowait(None)  # every later wait sees the end too
            code = await self.proc.wait()
            detail = "; ".join(self.text[-5:]) or f"exit status {code}"
            raise Unavailable(f"copying files of container {ref} failed: {detail}")
        if "error" in message:
            raise _error(message["error"], ref, path)
        return message

    async def ready(self, ref: str, path: str) -> dict[str, Any]:
        """The child's `ready` message, or its error raised."""
        message = await self._next(ref, path)
        ready = message.get("ready")
        if ready is None:
            raise Unavailable(f"copying files of container {ref}: unexpected {message}")
        return ready if isinstance(ready, dict) else {}

    async def finish(self, ref: str, path: str) -> None:
        """Wait for the child's `done`, raising its error if it failed."""
        message = await self._next(ref, path)
        if "done" not in message:
            raise Unavailable(f"copying files of container {ref}: unexpected {message}")
        await self.proc.wait()

    async def output(self, ref: str, path: str) -> AsyncIterator[bytes]:
        """The child's tar, then its verdict: an error mid-archive is raised after the
        data that came before it."""
        assert self.proc.stdout is not None
        while chunk := await self.proc.stdout.read(_CHUNK):
            yield chunk
        await self.finish(ref, path)

    async def feed(self, body: AsyncIterator[bytes]) -> None:
        """Send `body` to the child. If the child stops reading, the rest is not sent (its
        error is what `finish` reports); if the body fails (the client went away), that
        error is raised."""
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            async for chunk in body:
                try:
                    stdin.write(chunk)
                    await stdin.drain()
                except (BrokenPipeError, ConnectionResetError):
                    return
        finally:
            stdin.close()

    async def close(self) -> None:
        """End the child if it still runs and reap it."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        if self.proc.stdout is not None:
            # A reader that stopped (the client went away) leaves the pipe paused, and
            # asyncio reports the exit only once every pipe has seen its end.
            while await self.proc.stdout.read(_CHUNK):
                pass
        await self.proc.wait()
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader


def _error(error: dict[str, Any], ref: str, path: str) -> DockyardError:
    kind = error.get("kind")
    message = str(error.get("message") or "")
    if kind == "not_found":
        return NotFound(f"Could not find the file {path} in container {ref}")
    if kind == "invalid":
        return InvalidArgument(message)
    if kind == "forbidden":
        return Forbidden(message)
    return Unavailable(message)
