"""Reading a container's log for `logs`: the last N records, from a time on, and following.

A log is a sequence of files (`files.LogFiles.sources()`), oldest first, some
of them gzip-compressed, the newest one growing. Nothing here reads more
than the request needs:

* `tail(n)` reads the newest file backwards from its end, in blocks, until it
  has n records, and goes on into older files only if that one holds fewer
  (a compressed file is read through, it is bounded by `max-size`);
* `seek()` for `since` skips every file whose successor starts before that
  time (judged by each file's first record) and, in an uncompressed file,
  finds the first record at or after it by binary search on the records'
  times (conmon writes them in order);
* `read()` returns the next batch of records, moving on to the next file when
  the one it reads is complete (a newer one exists). A file that was
  compressed or removed while the reader waited is found under its new name
  or skipped; the one being read stays readable (its descriptor is held).
* `position()` says where the next record starts (`Position`: a file and a
  byte offset into its content), in terms that survive rotation, compression
  and a daemon restart; `resume()` starts a reader there. A delivery that
  must neither lose nor repeat output (a log plugin's forwarder) records one
  and resumes from it. `lost` counts the times the reader found output gone
  to rotation before it could read it.

Records come back filtered by `since`/`until` (the tail is taken first, then
filtered, as Docker does). Every method blocks: `stream()` runs them on a
worker thread and is what the container service serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import os
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass

from dockyard.logs.files import LogFiles, Source
from dockyard.logs.k8sfile import LogEntry, Parser, first_time, last_lines, line_count

BLOCK = 64 * 1024  # read backwards / searched by this much
BATCH = 512 * 1024  # bytes of the file per `read()`


@dataclass(frozen=True)
class Position:
    """A place in a log: a file and the offset of a record in its content (uncompressed,
    for a compressed segment).

    The file is a segment by its sequence number (which it keeps when compressed), or a
    plain container.log that is no segment by its inode (a log that does not rotate).
    With neither, it is the log's oldest file: what an offset recorded before logs
    rotated refers to (the plain container.log then, the first segment now)."""

    seq: int | None
    inode: int | None
    offset: int


@dataclass
class _Cursor:
    source: Source
    file: io.BufferedIOBase
    # The newest segment when a plain container.log was opened: a file that replaces
    # it comes after that one.
    floor: int
    carry: bytes = b""  # a record not complete yet


class LogReader:
    def __init__(self, files: LogFiles, since_ns: int = 0, until_ns: int = 0) -> None:
        self.files = files
        self.since = since_ns
        self.until = until_ns
        self.parser = Parser()
        self.cursor: _Cursor | None = None
        self.done = False  # past `until`, or (not following) at the end the log had at first
        self._end: tuple[int, int] | None = None  # (inode, offset) where a plain read stops
        self.lost = 0  # times output was found pruned before it was read
        self._seen: set[int] = set()  # segments listed after the one being read

    def close(self) -> None:
        if self.cursor is not None:
            self.cursor.file.close()
            self.cursor = None

    # -- opening ---------------------------------------------------------------

    def _open(self, source: Source, listing: list[Source]) -> _Cursor | None:
        """`source` opened; its compressed form if it was compressed since it was listed;
        None if it is gone."""
        floor = max((s.seq for s in listing if s.seq is not None), default=0)
        candidates = [source]
        if source.seq is not None and not source.compressed:
            gz = self.files.segment(source.seq, compressed=True)
            candidates.append(Source(source.seq, gz, 0, compressed=True))
        for candidate in candidates:
            try:
                if candidate.compressed:
                    return _Cursor(candidate, gzip.open(candidate.path, "rb"), floor)
                raw = open(candidate.path, "rb")  # noqa: SIM115 - the cursor owns it
            except FileNotFoundError:
                continue
            inode = os.fstat(raw.fileno()).st_ino
            return _Cursor(Source(candidate.seq, candidate.path, inode), raw, floor)
        return None

    def _open_from(self, listing: list[Source], index: int) -> _Cursor | None:
        for source in listing[index:]:
            cursor = self._open(source, listing)
            if cursor is not None:
                return cursor
        return None

    def _successor(self, listing: list[Source]) -> Source | None:
        """The file after the one being read, if there is one (then that one is complete)."""
        assert self.cursor is not None
        current = self.cursor.source
        for i, source in enumerate(listing):
            same = (current.seq is not None and source.seq == current.seq) or (
                not source.compressed and source.inode == current.inode and not current.compressed
            )
            if same:
                return listing[i + 1] if i + 1 < len(listing) else None
        # It is gone (pruned, or a plain file replaced): whatever came after it.
        after = self.cursor.floor if current.seq is None else current.seq
        for source in listing:
            if source.seq is not None and source.seq > after:
                return source
            if source.seq is None and source.inode != current.inode:
                return source
        return None

    # -- positioning -------------------------------------------------------------

    def tail(self, count: int, follow: bool) -> list[LogEntry]:
        """The last `count` records (then filtered by since/until); the reader is left at
        the end of the newest file."""
        listing = self.files.sources()
        newest = self._open_from(listing, len(listing) - 1) if listing else None
        if newest is None:
            return []
        self.cursor = newest
        chunks: list[list[LogEntry]] = []
        need = count
        chunks.append(self._last_of_newest(need))
        need -= line_count(chunks[-1], open_end=True)
        for source in reversed(listing[:-1]):
            if need <= 0:
                break
            cursor = self._open(source, listing)
            if cursor is None:
                continue
            try:
                chunks.append(self._last_of(cursor, need))
            finally:
                cursor.file.close()
            need -= line_count(chunks[-1])
        entries = [entry for chunk in reversed(chunks) for entry in chunk]
        if count <= 0:
            entries = []
        if not follow:
            self.done = True
        return self._filtered(entries)

    def _last_of_newest(self, need: int) -> list[LogEntry]:
        cursor = self.cursor
        assert cursor is not None
        if cursor.source.compressed:
            return self._last_of(cursor, need)
        fd = cursor.file.fileno()
        size = os.fstat(fd).st_size
        cursor.file.seek(size)
        # The bytes after the last newline are a record still being written: the
        # reader carries them and follows on from there.
        records, start = self._backwards(fd, size, need, open_end=True)
        cursor.carry = os.pread(fd, size - start, start) if size > start else b""
        return records

    def _backwards(
        self, fd: int, size: int, need: int, *, open_end: bool = False
    ) -> tuple[list[LogEntry], int]:
        """The records of the last `need` lines in the first `size` bytes, read block by
        block from the end; and where the incomplete record after them starts."""
        blocks: list[bytes] = []
        position = size
        end = -1  # offset just after the last newline
        lines = 0
        records: list[LogEntry] = []
        while position > 0:
            start = max(0, position - BLOCK)
            block = os.pread(fd, position - start, start)
            position = start
            blocks.append(block)
            if end < 0:
                newline = b"".join(reversed(blocks)).rfind(b"\n")
                if newline < 0:
                    continue
                end = position + newline + 1
            lines += block.count(b"\n")
            if lines > need or position == 0:
                data = b"".join(reversed(blocks))[: end - position]
                if position > 0:
                    data = data[data.index(b"\n") + 1 :]  # the first line is cut
                records = self.parser.records(data)
                # One line more than needed: the partial records of the first one are in.
                if line_count(records, open_end=open_end) > need or position == 0:
                    break
                lines = line_count(records)  # some lines were not records: read further back
        if end < 0:
            return [], 0
        return last_lines(records, need, open_end=open_end), end

    def _last_of(self, cursor: _Cursor, need: int) -> list[LogEntry]:
        if need <= 0:
            return []
        if not cursor.source.compressed:
            size = os.fstat(cursor.file.fileno()).st_size
            return self._backwards(cursor.file.fileno(), size, need)[0]
        last: list[LogEntry] = []
        carry = b""
        while chunk := cursor.file.read(1 << 20):
            data = carry + chunk
            cut = data.rfind(b"\n") + 1
            carry = data[cut:]
            last = last_lines(last + self.parser.records(data[:cut]), need)
        return last

    def seek(self, follow: bool) -> None:
        """Start at the first record at or after `since` (the log's start without one);
        without `follow`, stop at the end the log has now."""
        listing = self.files.sources()
        if not listing:
            return
        index = 0
        if self.since:
            for i in range(len(listing) - 1, -1, -1):
                began = self._first_time(listing[i], listing)
                if began is not None and began < self.since:
                    index = i
                    break
        self.cursor = self._open_from(listing, index)
        if self.cursor is None:
            return
        if self.since and not self.cursor.source.compressed:
            self.cursor.file.seek(self._search(self.cursor.file.fileno(), self.since))
        if not follow:
            newest = listing[-1]
            if newest.compressed:
                self._end = (-1, 0)  # compressed files are complete: read them through
            else:
                with contextlib.suppress(FileNotFoundError):
                    self._end = (newest.inode, os.stat(newest.path).st_size)

    def _first_time(self, source: Source, listing: list[Source]) -> int | None:
        cursor = self._open(source, listing)
        if cursor is None:
            return None
        try:
            line = cursor.file.readline(1 << 16)
        finally:
            cursor.file.close()
        return first_time(line) if line.endswith(b"\n") else None

    @staticmethod
    def _search(fd: int, since: int) -> int:
        """The offset of a record before which every record is older than `since`,
        within one block of the first one that is not."""
        low, high = 0, os.fstat(fd).st_size
        while high - low > BLOCK:
            middle = (low + high) // 2
            chunk = os.pread(fd, 32 * 1024, middle)
            first = chunk.find(b"\n")
            second = chunk.find(b"\n", first + 1)
            if first < 0 or second < 0:
                break  # a record longer than the probe: scan from `low`
            start = middle + first + 1
            if start >= high:
                break
            line = chunk[first + 1 : second]
            when = first_time(line)
            if when is None or when < since:
                low = start + len(line) + 1
            else:
                high = start
        return low

    # -- positions ------------------------------------------------------------------

    def position(self) -> Position | None:
        """Where the next record starts (after the last one `read()` returned); None before
        the reader has opened a file."""
        cursor = self.cursor
        if cursor is None:
            return None
        offset = cursor.file.tell() - len(cursor.carry)
        if cursor.source.seq is None:
            # A plain container.log adopted as a segment since it was opened is named by
            # its segment from now on: its inode changes if it is compressed, not its seq.
            for source in self.files.sources():
                if source.seq is not None and source.inode == cursor.source.inode:
                    cursor.source = Source(source.seq, source.path, source.inode)
                    break
        seq = cursor.source.seq
        return Position(seq, cursor.source.inode if seq is None else None, offset)

    def resume(self, position: Position) -> bool:
        """Go to `position` for `read()` to start from. False when its file is gone (pruned
        by rotation): reading starts at the oldest file after it that is still there,
        and the output in between is lost (counted in `lost`)."""
        self.close()
        listing = self.files.sources()
        index = self._find(position, listing)
        if index is not None and self._go(listing, index, position.offset):
            return True
        if not listing:
            self.lost += 1
            return False
        later = 0
        if position.seq is not None:
            later = next((i for i, s in enumerate(listing) if s.order > position.seq), 0)
        self.cursor = self._open_from(listing, later)
        self.lost += 1
        return False

    @staticmethod
    def _find(position: Position, listing: list[Source]) -> int | None:
        if position.seq is None and position.inode is None:
            return 0 if listing else None
        for i, source in enumerate(listing):
            if position.seq is not None and source.seq == position.seq:
                return i
            if position.seq is None and not source.compressed and source.inode == position.inode:
                return i
        return None

    def _go(self, listing: list[Source], index: int, offset: int) -> bool:
        cursor = self._open(listing[index], listing)
        if cursor is None:
            return False  # gone since it was listed
        if cursor.source.compressed:
            cursor.file.seek(offset)  # decompresses up to there: a segment is bounded
        elif offset <= os.fstat(cursor.file.fileno()).st_size:
            cursor.file.seek(offset)
        # else: shorter than the offset, so not the file it was recorded in (its inode
        # was reused): read it all rather than skip into it.
        self.cursor = cursor
        return True

    # -- reading forward ---------------------------------------------------------

    def read(self, limit: int = BATCH) -> list[LogEntry]:
        """The next records (about `limit` bytes of the file at most); [] when there is
        nothing more for now (or at all: see `done`)."""
        out: list[LogEntry] = []
        taken = 0
        while taken < limit and not self.done:
            if self.cursor is None:
                listing = self.files.sources()
                self.cursor = self._open_from(listing, 0) if listing else None
                if self.cursor is None:
                    break
            cursor = self.cursor
            want = limit - taken
            if self._end is not None and cursor.source.inode == self._end[0]:
                want = min(want, self._end[1] - cursor.file.tell())
                if want <= 0:
                    self.done = True
                    break
            chunk = cursor.file.read(want)
            if chunk:
                taken += len(chunk)
                self._take(chunk, out)
                continue
            listing = self.files.sources()
            successor = self._successor(listing)
            if successor is None:
                self._seen.update(s.seq for s in listing if s.seq is not None)
                if self._end is not None and self._end[0] == -1:
                    self.done = True  # read through the last (compressed) file
                break
            # This file is complete: what was written since the last look, then the next.
            while chunk := cursor.file.read(1 << 20):
                self._take(chunk, out)
            cursor.file.close()
            if self._skipped(cursor.source, successor, listing):
                self.lost += 1
            self._seen.clear()
            index = listing.index(successor)
            self.cursor = self._open_from(listing, index)
            if self.cursor is None:
                break
        return out

    def _skipped(self, done: Source, successor: Source, listing: list[Source]) -> bool:
        """Whether files between the one read to its end and `successor` were pruned unread:
        one listed earlier is gone; or the one read was pruned before the reader saw a newer
        one (it was `max-file` files behind) and `successor` is not the next number. The
        keeper numbers a new segment one or two past the newest (`files.py`), so a
        successor within two is the next file (a file adopted in between would have had
        to be created and pruned while the reader read one file)."""
        if done.seq is None or successor.seq is None:
            return False
        if any(done.seq < seq < successor.seq for seq in self._seen):
            return True
        pruned = all(s.seq != done.seq for s in listing)
        return pruned and successor.seq > done.seq + 2

    def _take(self, chunk: bytes, out: list[LogEntry]) -> None:
        assert self.cursor is not None
        data = self.cursor.carry + chunk if self.cursor.carry else chunk
        cut = data.rfind(b"\n") + 1
        self.cursor.carry = data[cut:]
        if not cut:
            return
        entries = self.parser.records(data[:cut])
        if not (self.since or self.until):
            out.extend(entries)
            return
        for entry in entries:
            if entry.time_ns < self.since:
                continue
            if self.until and entry.time_ns > self.until:
                self.done = True
                return
            out.append(entry)

    def _filtered(self, entries: list[LogEntry]) -> list[LogEntry]:
        if not (self.since or self.until):
            return entries
        return [
            e
            for e in entries
            if e.time_ns >= self.since and not (self.until and e.time_ns > self.until)
        ]


async def stream(
    files: LogFiles,
    *,
    since_ns: int,
    until_ns: int,
    tail: int | None,
    follow: bool,
    finished: Callable[[], bool],
    changed: Callable[[], Awaitable[None]],
) -> AsyncGenerator[list[LogEntry], None]:
    """Batches of a container's log records for one request, read on worker threads.

    With `follow`, it waits (`changed`) for more until `finished()` was true before
    a read that found nothing."""
    reader = LogReader(files, since_ns, until_ns)
    try:
        if tail is not None:
            batch = await asyncio.to_thread(reader.tail, tail, follow)
            if batch:
                yield batch
        else:
            await asyncio.to_thread(reader.seek, follow)
        while not reader.done:
            ended = finished()
            batch = await asyncio.to_thread(reader.read)
            if batch:
                yield batch
                continue
            if reader.done or not follow or ended:
                return
            await changed()
    finally:
        reader.close()
