"""A container's log files on disk: the one the monitor writes, the rotated ones, their order.

The monitor (conmon) writes the log and keeps doing so while the daemon is
down, so rotation has to happen in conmon. conmon 2.1.6 rotates in one way
only: with `--log-size-max`, before a line would take the file past the
limit, it opens `<log>.tmp` (O_CREAT|O_TRUNC, following symlinks) and renames
that name over `<log>`. On its own that is truncation: the full file is
unlinked. The layout below turns it into rotation that keeps every file:

    container.log       the name conmon was given; a symlink to the segment it
                        writes (or a plain file, see below)
    container.log.tmp   "armed": a symlink to the next segment's name, which
                        does not exist yet. conmon's rotation creates the
                        segment through it and renames the link over
                        container.log, so the full segment keeps its name.
    log/<seq>.log       segments, ordered by sequence number; closed ones become
                        log/<seq>.log.gz when the driver compresses

After a rotation the daemon arms the next name (`rearm`). If conmon
rotates again before it has (the daemon is down, or slower than the
container), conmon creates a plain `container.log.tmp` and renames it over
the symlink: the previous segment survives, and container.log is now a plain
file, which `rearm` adopts as the next segment by a hard link (the file
keeps both names until conmon's next rotation takes container.log away).
Only a third rotation before the daemon looks again replaces an unadopted
plain file, losing its content: that is the bound on what a long daemon
outage keeps, at most two full files beyond the `max-file` kept before it.

Sequence numbers are armed two ahead (`max + 2`) so that a plain file that
appears while a segment is armed can still be adopted in its place in time
(`max + 1`), before the armed one, which conmon fills later.

Logs that do not rotate (no `max-size`, or `max-file` 1, where conmon's
truncation is Docker's behaviour) keep container.log as a plain file.

Readers never change anything; the log keeper (`keeper.py`) calls `prepare`
before the monitor starts, `rearm`, `tidy` and `compress` while it runs, and
`finish` after it has exited. All of it blocks (file system calls); mutations hold `lock`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gzip
import logging
import os
import stat
import threading
from dataclasses import dataclass

from dockyard.logs.options import Rotation

log = logging.getLogger(__name__)

CURRENT = "container.log"
ARMED = CURRENT + ".tmp"
SEGMENTS = "log"
_PLAIN = ".log"
_GZ = ".log.gz"
_PARTIAL = ".gz.tmp"  # a compression under way
NEWEST = 1 << 62  # the order of a plain container.log that is no segment (yet)
COMPRESS_LEVEL = 1  # rotated logs are compressed as fast as a chatty container fills them


@dataclass(frozen=True)
class Source:
    """One file of the log, in order: a segment (`seq`) or the plain container.log."""

    seq: int | None
    path: str
    inode: int
    compressed: bool = False

    @property
    def order(self) -> int:
        return NEWEST if self.seq is None else self.seq


def _seq_of(name: str) -> tuple[int, bool] | None:
    for suffix, compressed in ((_GZ, True), (_PLAIN, False)):
        if name.endswith(suffix):
            number = name[: -len(suffix)]
            if number.isdigit():
                return int(number), compressed
    return None


class LogFiles:
    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.current = os.path.join(directory, CURRENT)
        self.armed = os.path.join(directory, ARMED)
        self.segment_dir = os.path.join(directory, SEGMENTS)
        self.lock = threading.Lock()

    def segment(self, seq: int, compressed: bool = False) -> str:
        return os.path.join(self.segment_dir, f"{seq:010d}{_GZ if compressed else _PLAIN}")

    # -- reading ---------------------------------------------------------------

    def sources(self) -> list[Source]:
        """Every file of the log, oldest first. A segment being compressed is listed as its
        plain file while that exists; the plain container.log is listed last unless it is
        a segment's other name."""
        found: dict[int, Source] = {}
        try:
            names = os.listdir(self.segment_dir)
        except FileNotFoundError:
            names = []
        for name in names:
            parsed = _seq_of(name)
            if parsed is None:
                continue
            seq, compressed = parsed
            if seq in found and not found[seq].compressed:
                continue  # the plain file wins while both exist
            path = os.path.join(self.segment_dir, name)
            try:
                inode = os.lstat(path).st_ino
            except FileNotFoundError:
                continue
            found[seq] = Source(seq, path, inode, compressed)
        sources = [found[seq] for seq in sorted(found)]
        try:
            st = os.lstat(self.current)
        except FileNotFoundError:
            return sources
        if stat.S_ISREG(st.st_mode) and all(s.inode != st.st_ino for s in sources):
            sources.append(Source(None, self.current, st.st_ino))
        return sources

    # -- keeping ---------------------------------------------------------------

    def _segments(self) -> dict[int, list[str]]:
        """seq -> the names (plain and/or compressed) it has now."""
        found: dict[int, list[str]] = {}
        try:
            names = os.listdir(self.segment_dir)
        except FileNotFoundError:
            return found
        for name in names:
            parsed = _seq_of(name)
            if parsed is not None:
                found.setdefault(parsed[0], []).append(os.path.join(self.segment_dir, name))
        return found

    def _armed_seq(self) -> int | None:
        try:
            target = os.readlink(self.armed)
        except OSError:
            return None
        parsed = _seq_of(os.path.basename(target))
        return parsed[0] if parsed else None

    def prepare(self, rotation: Rotation) -> None:
        """Before the monitor starts: the file it will open, and the next one armed.

        A run continues the newest file unless that is half full or more (conmon
        counts from zero at start, so a file continued from fuller than that could
        reach one and a half times `max-size`)."""
        with self.lock:
            if not rotation.keep:
                return
            if not rotation.rotates:
                if rotation.bounded:
                    self._truncate_if_half_full(rotation.max_size)
                return
            os.makedirs(self.segment_dir, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.armed)  # left by the last run; no monitor can follow it now
            self._drop_partial_compressions()
            self._adopt_plain()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.current)  # a symlink, or a plain file now also a segment
            segments = self._segments()
            newest = max(segments, default=0)
            path = self.segment(newest)
            if not segments or path not in segments[newest] or _size(path) * 2 >= rotation.max_size:
                newest += 1
                path = self.segment(newest)
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
            _replace_symlink(os.path.relpath(path, self.directory), self.current)
            self._arm(newest)
            self._prune(rotation.max_files)

    def _truncate_if_half_full(self, max_size: int) -> None:
        try:
            st = os.lstat(self.current)
        except FileNotFoundError:
            return
        if stat.S_ISREG(st.st_mode) and st.st_size * 2 >= max_size:
            fresh = self.current + ".new"
            os.close(os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600))
            os.rename(fresh, self.current)  # readers keep the old file open; it goes with them

    def rearm(self) -> None:
        """While the monitor runs, after each of its rotations: adopt a plain container.log,
        arm the next segment. Metadata only, so that it is quick."""
        with self.lock:
            os.makedirs(self.segment_dir, exist_ok=True)
            self._adopt_plain()
            if not os.path.lexists(self.armed):
                self._arm(max(self._segments(), default=0))

    def tidy(self, rotation: Rotation) -> list[int]:
        """Drop the oldest segments beyond `max-file`; returns the closed segments (all
        but the newest, which the monitor writes) still to compress."""
        with self.lock:
            self._prune(rotation.max_files)
            if not rotation.compress:
                return []
            segments = self._segments()
            newest = max(segments, default=0)
            return sorted(
                seq
                for seq, paths in segments.items()
                if seq < newest and self.segment(seq) in paths
            )

    def _adopt_plain(self) -> None:
        """A plain container.log that is no segment yet becomes one (a hard link: conmon
        keeps writing it under its old name until its next rotation takes that away).

        The file is held open while it is placed, so it cannot be confused with a
        newer one that reuses its inode number. Its place: after every segment there
        is, and before the armed one, which may exist already (conmon between creating
        it and renaming the link) and is newer; `_arm` arms two ahead, so the number
        before the armed one is free. If conmon replaced it while the daemon looked,
        it comes just before what replaced it."""
        for _ in range(4):  # conmon may replace it meanwhile: then adopt that one too
            try:
                fd = os.open(self.current, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except FileNotFoundError:
                return
            except OSError as e:
                if e.errno == errno.ELOOP:
                    return  # the armed link took its place: nothing plain to adopt
                raise
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
                    return
                if st.st_nlink == 0:
                    continue  # replaced before it could be adopted (lost): look again
                armed = self._armed_seq()
                segments = [s for s in self._segments() if s != armed]
                seq = max(segments, default=0) + 1
                if not self._is_current(st):
                    successor = self._current_seq()
                    if successor is not None and successor - 1 > max(segments, default=0):
                        seq = successor - 1
                if armed is not None and seq >= armed:
                    # Never take the armed name: conmon would truncate this file through it.
                    log.warning("log of %s: adopting past the armed segment", self.directory)
                    seq = armed + 1
                try:
                    _link_open_file(fd, self.segment(seq))
                except FileNotFoundError:
                    continue  # its last name went meanwhile (lost): look again
            finally:
                os.close(fd)

    def _is_current(self, st: os.stat_result) -> bool:
        try:
            now = os.lstat(self.current)
        except FileNotFoundError:
            return False
        return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)

    def _current_seq(self) -> int | None:
        """The segment container.log links to, if it is a link."""
        try:
            parsed = _seq_of(os.path.basename(os.readlink(self.current)))
        except OSError:
            return None
        return parsed[0] if parsed else None

    def _arm(self, newest: int) -> None:
        target = os.path.relpath(self.segment(newest + 2), self.directory)
        try:
            os.symlink(target, self.armed)
        except FileExistsError:
            pass  # conmon is creating its own right now; the rename that follows wakes us

    def _prune(self, max_files: int) -> None:
        segments = self._segments()
        order = sorted(segments)
        extra = len(order) - max(max_files, 1)
        for seq in order[: max(extra, 0)]:
            for path in segments[seq]:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    def _drop_partial_compressions(self) -> None:
        try:
            names = os.listdir(self.segment_dir)
        except FileNotFoundError:
            return
        for name in names:
            if name.endswith(_PARTIAL):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.segment_dir, name))

    def compress(self, seq: int) -> None:
        """gzip a closed segment beside it, then swap names; a reader that has the plain file
        open reads on, one that opens it later finds the compressed one."""
        plain = self.segment(seq)
        partial = plain + _PARTIAL  # <seq>.log.gz.tmp
        try:
            source = open(plain, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return  # pruned meanwhile
        try:
            with (
                open(partial, "wb") as raw,
                gzip.GzipFile(
                    filename="", mode="wb", fileobj=raw, compresslevel=COMPRESS_LEVEL, mtime=0
                ) as out,
            ):
                while chunk := source.read(1 << 20):
                    out.write(chunk)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
            raise
        finally:
            source.close()
        with self.lock:
            if os.path.exists(plain):
                os.rename(partial, self.segment(seq, compressed=True))
                os.unlink(plain)
            else:
                os.unlink(partial)

    def finish(self, rotation: Rotation) -> list[int]:
        """After the monitor has exited: nothing left armed or unadopted; returns the closed
        segments still to compress."""
        if not rotation.rotates:
            return []
        self.rearm()
        with self.lock, contextlib.suppress(FileNotFoundError):
            os.unlink(self.armed)
        return self.tidy(rotation)


_libc = ctypes.CDLL(None, use_errno=True)
_AT_FDCWD = -100
_AT_SYMLINK_FOLLOW = 0x400


def _link_open_file(fd: int, path: str) -> None:
    """A new name for the file open as `fd` (linkat through /proc, following the magic
    link: os.link would link the link itself). ENOENT once the file has no name left."""
    source = f"/proc/self/fd/{fd}".encode()
    if _libc.linkat(_AT_FDCWD, source, _AT_FDCWD, os.fsencode(path), _AT_SYMLINK_FOLLOW) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), path)


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _replace_symlink(target: str, path: str) -> None:
    temporary = path + ".link"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    os.symlink(target, temporary)
    os.rename(temporary, path)
