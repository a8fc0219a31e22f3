"""Receiving a directory from a BuildKit client: fsutil's DiffCopy packet stream.

A build's Dockerfile and context live on the client. The daemon asks for them by
calling the client's `/moby.filesync.v1.FileSync/DiffCopy` over the build's session
(`buildkit.session`), naming the directory (`dir-name`: `context`, `dockerfile`) and
the client-side filters (`include-patterns`, `exclude-patterns`, `followpaths`) in
request metadata. The client is the *sender*, the daemon the *receiver*:

1. the sender walks its tree and sends one STAT packet per entry, parents before
   children, names in byte order within a directory, paths relative and slash-
   separated; a STAT without a stat ends the list. Every STAT counts as an ID (its
   index), but only regular files can be asked for;
2. meanwhile the receiver compares each entry with what it already holds and sends
   REQ{id} for the regular files it needs; the sender answers DATA{id, chunk} ...
   and DATA{id} with no data to end that file (up to four files interleaved);
3. once the list is complete and every requested file has arrived, the receiver
   sends FIN, the sender answers FIN and ends the call. ERR (either way) carries an
   error's text.

`Receiver` is that state machine, doing the file work itself (callers run it in a
worker thread, one hop per batch of packets); `receive()` drives it over a call.
Entries are checked as they arrive (clean relative paths, no `..`, order, parents
known to be directories this transfer made or verified), a symlink is written as a
link and never followed, and a file is written beside the tree and renamed into
place only when whole, with its mode, owner and time.

Because the receiver compares with what is there, a directory can be kept between
builds: `ContextMirrors` holds one per (session shared key, directory name), so the
second upload of a context sends only what changed. A build never reads the mirror
itself: under the mirror's lock the transfer updates it and a hard-linked copy is
made for the build (files are replaced by rename, never rewritten in place, so the
copy keeps what it was given).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import posixpath
import secrets
import shutil
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote_plus

from dockyard.buildkit import rpc
from dockyard.buildkit.pb import stat_pb2, wire_pb2
from dockyard.errors import DockyardError, InvalidArgument, Unavailable
from dockyard.usage import tree_size

log = logging.getLogger(__name__)

DIFF_COPY = "/moby.filesync.v1.FileSync/DiffCopy"

Packet = wire_pb2.Packet
STAT = wire_pb2.Packet.PACKET_STAT
REQ = wire_pb2.Packet.PACKET_REQ
DATA = wire_pb2.Packet.PACKET_DATA
FIN = wire_pb2.Packet.PACKET_FIN
ERR = wire_pb2.Packet.PACKET_ERR

# Go's os.FileMode bits, which fsutil's Stat.mode carries (plus the 0o777 permissions)
GO_DIR = 1 << 31
GO_SYMLINK = 1 << 27
GO_DEVICE = 1 << 26
GO_NAMED_PIPE = 1 << 25
GO_SOCKET = 1 << 24
GO_SETUID = 1 << 23
GO_SETGID = 1 << 22
GO_CHAR_DEVICE = 1 << 21
GO_STICKY = 1 << 20
GO_IRREGULAR = 1 << 19
GO_TYPE = (
    GO_DIR | GO_SYMLINK | GO_NAMED_PIPE | GO_SOCKET | GO_DEVICE | GO_CHAR_DEVICE | GO_IRREGULAR
)


def unix_permissions(go_mode: int) -> int:
    """The permission bits (with setuid, setgid, sticky) of a Go file mode."""
    mode = go_mode & 0o777
    if go_mode & GO_SETUID:
        mode |= stat.S_ISUID
    if go_mode & GO_SETGID:
        mode |= stat.S_ISGID
    if go_mode & GO_STICKY:
        mode |= stat.S_ISVTX
    return mode


def go_mode(st: os.stat_result) -> int:
    """A Go file mode for an lstat result (what a sender puts in Stat.mode)."""
    mode = st.st_mode & 0o777
    if st.st_mode & stat.S_ISUID:
        mode |= GO_SETUID
    if st.st_mode & stat.S_ISGID:
        mode |= GO_SETGID
    if st.st_mode & stat.S_ISVTX:
        mode |= GO_STICKY
    kind = stat.S_IFMT(st.st_mode)
    mode |= {
        stat.S_IFDIR: GO_DIR,
        stat.S_IFLNK: GO_SYMLINK,
        stat.S_IFIFO: GO_NAMED_PIPE,
        stat.S_IFSOCK: GO_SOCKET,
        stat.S_IFBLK: GO_DEVICE,
        stat.S_IFCHR: GO_DEVICE | GO_CHAR_DEVICE,
    }.get(kind, 0)
    return mode


def can_request_data(go_mode: int) -> bool:
    """fsutil's rule, shared by both ends: only regular files carry data."""
    return go_mode & GO_TYPE == 0


class TransferError(Unavailable):
    """The transfer failed: the sender's error, or an entry that breaks the rules."""


# -- order ----------------------------------------------------------------------


class _Order:
    """Checks that entries come parents first, each name after the one before it in
    the same directory (fsutil's validator), with clean relative paths."""

    def __init__(self) -> None:
        self._open: list[tuple[str, str]] = [("", "")]  # (directory, last name seen)

    def check(self, path: str, is_dir: bool) -> None:
        if not path or "\0" in path or path.startswith("/") or posixpath.normpath(path) != path:
            raise InvalidArgument(f"invalid path in transfer: {path!r}")
        if path == "." or path == ".." or path.startswith("../"):
            raise InvalidArgument(f"invalid path in transfer: {path!r} is outside the directory")
        parent, _, name = path.rpartition("/")
        while self._open and self._open[-1][0] != parent:
            if not _inside(parent, self._open[-1][0]):
                self._open.pop()
                continue
            break
        if not self._open or self._open[-1][0] != parent:
            raise InvalidArgument(f"changes out of order: {path!r} (its directory was not sent)")
        directory, last = self._open[-1]
        if last and name.encode("utf-8", "surrogateescape") <= last.encode(
            "utf-8", "surrogateescape"
        ):
            raise InvalidArgument(f"changes out of order: {path!r} after {last!r}")
        self._open[-1] = (directory, name)
        if is_dir:
            self._open.append((path, ""))


def _inside(path: str, directory: str) -> bool:
    return directory == "" or path == directory or path.startswith(directory + "/")


# -- the receiving state machine --------------------------------------------------


@dataclass
class _Wanted:
    """A regular file asked for: its stat, and where its data goes meanwhile."""

    stat: stat_pb2.Stat
    temporary: str
    fd: int = -1


@dataclass
class Receiver:
    """fsutil's receiving end as a state machine over `dest` (see the module's
    docstring). Feed it packets with `handle()`; it answers with the packets to send.
    Blocking: run it in a worker thread. `finished` once FIN went out."""

    dest: str
    staging: str  # an empty directory on dest's filesystem, outside the tree
    received: int = 0  # bytes of file data taken in
    transferred: int = 0  # bytes of packets taken in (what BuildKit's progress counts)
    files_written: int = 0
    _order: _Order = field(default_factory=_Order)
    _next_id: int = 0
    _listed: bool = False  # the last STAT came
    _seen: set[str] = field(default_factory=set)
    _dirs: set[str] = field(default_factory=lambda: {""})
    _wanted: dict[int, _Wanted] = field(default_factory=dict)
    _links: list[stat_pb2.Stat] = field(default_factory=list)
    _regular: set[str] = field(default_factory=set)
    finished: bool = False

    def handle(self, packet: wire_pb2.Packet) -> list[wire_pb2.Packet]:
        if self.finished:
            return []  # after FIN only the sender's FIN and the end are expected
        if packet.type == STAT:
            if not packet.HasField("stat"):
                return self._end_of_list()
            return self._entry(packet.stat)
        if packet.type == DATA:
            self._data(packet.ID, packet.data)
            return self._maybe_finish()
        if packet.type == ERR:
            raise TransferError(
                f"error from sender: {packet.data.decode('utf-8', errors='replace')}"
            )
        if packet.type == FIN:
            raise TransferError("the sender ended the transfer before it was complete")
        raise InvalidArgument(f"unexpected packet type {packet.type} from the sender")

    # entries

    def _entry(self, st: stat_pb2.Stat) -> list[wire_pb2.Packet]:
        if self._listed:
            raise InvalidArgument(f"entry {st.path!r} after the end of the list")
        number = self._next_id
        self._next_id += 1
        mode = st.mode
        is_dir = bool(mode & GO_DIR)
        self._order.check(st.path, is_dir)
        parent = st.path.rpartition("/")[0]
        if parent not in self._dirs:
            raise InvalidArgument(
                f"invalid path in transfer: {st.path!r}: its parent is not a directory"
            )
        target = os.path.join(self.dest, st.path)
        if is_dir:
            self._directory(target, st)
            self._dirs.add(st.path)
            self._seen.add(st.path)
        elif mode & GO_SYMLINK:
            self._symlink(target, st)
            self._seen.add(st.path)
        elif mode & GO_TYPE:
            # Devices, pipes and sockets have no place in a build context (the classic
            # builder skips them in the context tar as well).
            pass
        elif st.linkname:
            self._check_link(st)
            self._links.append(st)
            self._seen.add(st.path)
            self._regular.add(st.path)
        else:
            self._seen.add(st.path)
            self._regular.add(st.path)
            if not _same_file(target, st):
                temporary = os.path.join(self.staging, str(number))
                self._wanted[number] = _Wanted(st, temporary)
                return [Packet(type=REQ, ID=number)]
        return []

    def _directory(self, target: str, st: stat_pb2.Stat) -> None:
        existing = _lstat(target)
        if existing is not None and not stat.S_ISDIR(existing.st_mode):
            os.unlink(target)
            existing = None
        if existing is None:
            os.mkdir(target, 0o700)
        _set_metadata(target, st, times=False)

    def _symlink(self, target: str, st: stat_pb2.Stat) -> None:
        existing = _lstat(target)
        if existing is not None:
            if stat.S_ISLNK(existing.st_mode) and os.readlink(target) == st.linkname:
                os.lchown(target, st.uid, st.gid)
                return
            _remove(target, existing)
        os.symlink(st.linkname, target)
        os.lchown(target, st.uid, st.gid)

    def _check_link(self, st: stat_pb2.Stat) -> None:
        source = st.linkname
        outside = source in (".", "..") or source.startswith(("/", "../"))
        if outside or posixpath.normpath(source) != source:
            raise InvalidArgument(f"invalid hard link {st.path!r} -> {source!r}")
        if source not in self._regular:
            raise InvalidArgument(
                f"invalid hard link {st.path!r} -> {source!r}: no such file was sent before it"
            )

    # data

    def _data(self, number: int, data: bytes) -> None:
        wanted = self._wanted.get(number)
        if wanted is None:
            raise InvalidArgument(f"invalid file request {number}")
        if wanted.fd < 0:
            wanted.fd = os.open(
                wanted.temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600
            )
        if data:
            view = memoryview(data)
            while view:
                view = view[os.write(wanted.fd, view) :]
            self.received += len(data)
            return
        # the end of this file: whole, so it takes its place
        os.close(wanted.fd)
        wanted.fd = -1
        del self._wanted[number]
        st = wanted.stat
        _set_metadata(wanted.temporary, st, times=True)
        target = os.path.join(self.dest, st.path)
        existing = _lstat(target)
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            shutil.rmtree(target)
        os.rename(wanted.temporary, target)
        self.files_written += 1

    # the end

    def _end_of_list(self) -> list[wire_pb2.Packet]:
        if self._listed:
            raise InvalidArgument("the end of the list came twice")
        self._listed = True
        self._remove_unlisted("")
        return self._maybe_finish()

    def _remove_unlisted(self, directory: str) -> None:
        """What an earlier transfer left that this one's list no longer has."""
        full = os.path.join(self.dest, directory) if directory else self.dest
        with os.scandir(full) as entries:
            names = [e.name for e in entries]
        for name in names:
            path = f"{directory}/{name}" if directory else name
            if path not in self._seen:
                _remove(os.path.join(self.dest, path), None)
            elif path in self._dirs:
                self._remove_unlisted(path)

    def _maybe_finish(self) -> list[wire_pb2.Packet]:
        if not self._listed or self._wanted:
            return []
        for st in self._links:
            target = os.path.join(self.dest, st.path)
            existing = _lstat(target)
            if existing is not None:
                _remove(target, existing)
            os.link(os.path.join(self.dest, st.linkname), target)
        self.finished = True
        return [Packet(type=FIN)]

    def abort(self) -> None:
        """Close what is open (the staging directory is the caller's to remove)."""
        for wanted in self._wanted.values():
            if wanted.fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(wanted.fd)
                wanted.fd = -1


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _remove(path: str, existing: os.stat_result | None) -> None:
    existing = existing or _lstat(path)
    if existing is None:
        return
    if stat.S_ISDIR(existing.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _same_file(path: str, st: stat_pb2.Stat) -> bool:
    """Whether the regular file at `path` is the one described (size, time, mode, owner):
    fsutil's metadata comparison, which decides what is sent again."""
    existing = _lstat(path)
    if existing is None or not stat.S_ISREG(existing.st_mode):
        return False
    return (
        existing.st_size == st.size
        and existing.st_mtime_ns == st.modTime
        and stat.S_IMODE(existing.st_mode) == unix_permissions(st.mode)
        and existing.st_uid == st.uid
        and existing.st_gid == st.gid
    )


def _set_metadata(path: str, st: stat_pb2.Stat, *, times: bool) -> None:
    os.lchown(path, st.uid, st.gid)
    os.chmod(path, unix_permissions(st.mode))  # after chown, which clears setuid bits
    if times:
        os.utime(path, ns=(st.modTime, st.modTime), follow_symlinks=False)


# -- over a call ----------------------------------------------------------------


class PacketStream(Protocol):
    """One DiffCopy call as the receiver sees it (an `rpc.ClientCall` is one)."""

    @property
    def ready(self) -> bool: ...

    async def send(self, message: bytes) -> None: ...

    async def recv(self) -> bytes | None: ...


Progress = Callable[[int], None]  # bytes received so far


async def receive(
    stream: PacketStream, dest: str, staging: str, progress: Progress | None = None
) -> Receiver:
    """Run the receiving end of a DiffCopy over `stream` into `dest` (an existing
    directory, possibly holding an earlier transfer), using the empty directory
    `staging` for files in flight. Returns the receiver (for its counts)."""
    receiver = Receiver(dest, staging)
    total = 0
    try:
        while True:
            batch = [await stream.recv()]
            while batch[-1] is not None and stream.ready and len(batch) < 256:
                batch.append(await stream.recv())
            ended = batch[-1] is None
            packets = []
            for message in batch:
                if message is None:
                    continue
                total += len(message)
                packet = Packet()
                try:
                    packet.ParseFromString(message)
                except Exception as e:  # protobuf's DecodeError
                    raise InvalidArgument(f"invalid packet from the sender: {e}") from None
                packets.append(packet)
            replies = await asyncio.to_thread(_handle_all, receiver, packets)
            for reply in replies:
                await stream.send(reply.SerializeToString())
            receiver.transferred = total
            if progress is not None:
                progress(total)
            if ended:
                if not receiver.finished:
                    raise TransferError("the sender ended the transfer before it was complete")
                return receiver
    except DockyardError as e:
        with contextlib.suppress(rpc.RpcError, ConnectionError):
            await stream.send(Packet(type=ERR, data=e.message.encode()).SerializeToString())
        raise
    finally:
        receiver.abort()


def _handle_all(receiver: Receiver, packets: list[wire_pb2.Packet]) -> list[wire_pb2.Packet]:
    replies: list[wire_pb2.Packet] = []
    for packet in packets:
        if receiver.finished and packet.type == FIN:
            continue  # the sender's answer to ours
        replies += receiver.handle(packet)
    return replies


# -- request metadata ------------------------------------------------------------


def request_metadata(
    dir_name: str,
    *,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    follow: Iterable[str] = (),
) -> list[tuple[str, str]]:
    """The DiffCopy call's metadata, one pair per value. As BuildKit does, a key whose
    values are not all ASCII has them query-escaped and says so in `<key>-encoded`."""
    pairs: list[tuple[str, str]] = []
    for key, values in (
        ("include-patterns", list(include)),
        ("exclude-patterns", list(exclude)),
        ("followpaths", list(follow)),
        ("dir-name", [dir_name]),
    ):
        if not values:
            continue
        if all(v.isascii() for v in values):
            pairs += [(key, v) for v in values]
        else:
            pairs += [(key, quote_plus(v, safe="")) for v in values]
            pairs.append((key + "-encoded", "1"))
    return pairs


class SessionCaller(Protocol):
    """What a transfer needs of a session (`session.Session` is one)."""

    def supports(self, method: str) -> bool: ...

    async def call(self, method: str, metadata: rpc.Metadata) -> rpc.ClientCall: ...


async def fetch(
    session: SessionCaller,
    dir_name: str,
    dest: str,
    staging: str,
    *,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    follow: Iterable[str] = (),
    progress: Progress | None = None,
) -> Receiver:
    """Receive the client's directory `dir_name` into `dest` over `session`."""
    if not session.supports(DIFF_COPY):
        raise TransferError("no local sources enabled: the client does not serve FileSync")
    metadata = request_metadata(dir_name, include=include, exclude=exclude, follow=follow)
    call = await session.call(DIFF_COPY, metadata)
    try:
        receiver = await receive(call, dest, staging, progress)
        await call.close_send()
        return receiver
    except rpc.RpcError as e:
        raise TransferError(f"transferring {dir_name}: {e.message}") from None
    except BaseException:
        await call.cancel()
        raise


# -- mirrors kept between builds -------------------------------------------------


@dataclass(frozen=True)
class MirrorRecord:
    """A context mirror as `du` and `prune` report it (BuildKit's local source records)."""

    key: str
    size: int
    created: float
    last_used: float
    description: str
    in_use: bool
    record_type: str = "source.local"


class ContextMirrors:
    """One directory per (shared key, directory name), updated by each transfer and
    copied (hard links) for each build, so unchanged files are not sent again. Each has
    a `<name>.source` file beside it naming what it mirrors; `records()` lists them,
    `prune()` drops those no transfer is using."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._locks: dict[str, asyncio.Lock] = {}
        os.makedirs(root, exist_ok=True)
        for name in os.listdir(root):  # files in flight when the daemon stopped
            if ".incoming-" in name:
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)

    def _path(self, shared_key: str, dir_name: str) -> str:
        name = hashlib.sha256(f"{shared_key}\0{dir_name}".encode()).hexdigest()[:32]
        return os.path.join(self.root, name)

    async def fetch(
        self,
        session: SessionCaller,
        shared_key: str,
        dir_name: str,
        target: str,
        *,
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        follow: Iterable[str] = (),
        progress: Progress | None = None,
    ) -> Receiver:
        """The client's `dir_name` in the new directory `target` (a build's own copy)."""
        mirror = self._path(shared_key, dir_name)
        lock = self._locks.setdefault(mirror, asyncio.Lock())
        async with lock:
            staging = mirror + ".incoming-" + secrets.token_hex(4)
            source = f"local source for {dir_name} ({shared_key})"
            await asyncio.to_thread(_prepare, mirror, staging, source)
            try:
                receiver = await fetch(
                    session,
                    dir_name,
                    mirror,
                    staging,
                    include=include,
                    exclude=exclude,
                    follow=follow,
                    progress=progress,
                )
            except BaseException:
                # A transfer cut short leaves whole files only, but which ones is
                # unknown to the next transfer's list: start afresh next time.
                await asyncio.to_thread(_drop, mirror)
                raise
            finally:
                await asyncio.to_thread(shutil.rmtree, staging, True)
            await asyncio.to_thread(link_copy, mirror, target)
        return receiver

    def _in_use(self, mirror: str) -> bool:
        lock = self._locks.get(mirror)
        return lock is not None and lock.locked()

    def records(self) -> list[MirrorRecord]:
        """Every mirror with its size (blocking: it walks them)."""
        found = []
        for name in sorted(os.listdir(self.root)):
            if not name.endswith(".source"):
                continue
            mirror = os.path.join(self.root, name.removesuffix(".source"))
            try:
                with open(mirror + ".source") as f:
                    description = f.read().strip()
                st = os.stat(mirror + ".source")
                size = tree_size(mirror)
            except OSError:
                continue
            found.append(
                MirrorRecord(
                    key="local:" + os.path.basename(mirror),
                    size=size,
                    created=st.st_ctime,
                    last_used=st.st_mtime,
                    description=description,
                    in_use=self._in_use(mirror),
                )
            )
        return found

    def prune(self, drop: Callable[[MirrorRecord], bool]) -> list[MirrorRecord]:
        """Remove the mirrors no transfer is using that `drop` picks (blocking)."""
        dropped = []
        for record in self.records():
            mirror = os.path.join(self.root, record.key.removeprefix("local:"))
            if record.in_use or not drop(record):
                continue
            _drop(mirror)
            dropped.append(record)
        return dropped


def _prepare(mirror: str, staging: str, source: str) -> None:
    os.makedirs(mirror, mode=0o700, exist_ok=True)
    os.mkdir(staging, 0o700)
    with open(mirror + ".source", "w") as f:  # written each time: its time is the last use
        f.write(source + "\n")


def _drop(mirror: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(mirror + ".source")
    shutil.rmtree(mirror, ignore_errors=True)


def link_copy(source: str, target: str) -> None:
    """Copy the tree `source` to the new directory `target`, files as hard links."""
    os.mkdir(target, 0o700)
    shutil.copystat(source, target, follow_symlinks=False)
    for directory, dirnames, filenames in os.walk(source):
        rel = os.path.relpath(directory, source)
        out = target if rel == "." else os.path.join(target, rel)
        for name in dirnames + filenames:
            path = os.path.join(directory, name)
            copy = os.path.join(out, name)
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                os.mkdir(copy, 0o700)
                os.lchown(copy, st.st_uid, st.st_gid)
                os.chmod(copy, stat.S_IMODE(st.st_mode))
            elif stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(path), copy)
                os.lchown(copy, st.st_uid, st.st_gid)
            else:
                os.link(path, copy)
        # os.walk lists symlinks to directories among dirnames but does not enter them
