"""The record format of the log files the container monitor writes (CRI "k8s-file").

Each record is one line: `<RFC 3339 local time> <stdout|stderr> <F|P> <bytes>`.
`F` marks a complete line whose newline is part of the bytes; `P` a partial
line (output that did not end in a newline), to which the writer appended a
newline of its own that is not part of the output. Reading the records back
therefore reproduces the container's output byte for byte.

conmon writes the time with a fixed width (nine fractional digits, a `+hh:mm`
offset), and one time for every line of one read from the container; the
parser takes that shape fast and any other well-formed record the slow way.
"""

from __future__ import annotations

import calendar
from collections import deque
from collections.abc import Iterable, Iterator
from typing import BinaryIO, NamedTuple

STDOUT = 1
STDERR = 2

_STAMP = 35  # len("2006-01-02T15:04:05.999999999+07:00")
_FIXED_DATA = _STAMP + len(" stdout F ")


class LogEntry(NamedTuple):
    time_ns: int
    stream: int  # 1 stdout, 2 stderr
    data: bytes


def parse_time(text: bytes) -> int:
    """Nanoseconds since the epoch of `2006-01-02T15:04:05.999999999+07:00`."""
    date, _, rest = text.partition(b"T")
    year, month, day = (int(x) for x in date.split(b"-"))
    clock = rest[:8]
    hour, minute, second = (int(x) for x in clock.split(b":"))
    rest = rest[8:]
    frac = 0
    if rest.startswith(b"."):
        digits = rest[1:]
        end = 0
        while end < len(digits) and 48 <= digits[end] <= 57:
            end += 1
        frac = int((digits[:end] + b"000000000")[:9])
        rest = digits[end:]
    offset = 0
    if rest and rest[:1] in (b"+", b"-"):
        sign = 1 if rest[:1] == b"+" else -1
        hours, minutes = int(rest[1:3]), int(rest[4:6])
        offset = sign * (hours * 3600 + minutes * 60)
    elif rest and rest != b"Z":
        raise ValueError(f"bad time {text!r}")
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) - offset
    return seconds * 1_000_000_000 + frac


def parse_line(line: bytes) -> LogEntry | None:
    """One record (its line without the final newline), or None if it is not one."""
    try:
        stamp, stream, tag, data = line.split(b" ", 3)
    except ValueError:
        return None
    if tag == b"F":
        payload = data + b"\n"
    elif tag == b"P":
        payload = data
    else:
        return None
    try:
        when = parse_time(stamp)
    except ValueError:
        return None
    return LogEntry(when, STDERR if stream == b"stderr" else STDOUT, payload)


class Parser:
    """Parses blocks of whole records; remembers the last times it read, because
    consecutive records share them."""

    def __init__(self) -> None:
        self._stamp = b""
        self._ns = 0
        self._minute = b""
        self._minute_s = 0

    def time(self, stamp: bytes) -> int:
        if stamp == self._stamp:
            return self._ns
        ns = self._fixed_time(stamp) if len(stamp) == _STAMP else None
        if ns is None:
            ns = parse_time(stamp)
        self._stamp, self._ns = stamp, ns
        return ns

    def _fixed_time(self, stamp: bytes) -> int | None:
        # "2006-01-02T15:04" and the "+07:00" offset change rarely: cache their seconds.
        if stamp[19:20] != b"." or stamp[29:30] not in (b"+", b"-"):
            return None
        minute = stamp[:16] + stamp[29:]
        if minute != self._minute:
            self._minute_s = parse_time(stamp[:16] + b":00" + stamp[29:]) // 1_000_000_000
            self._minute = minute
        try:
            return (self._minute_s + int(stamp[17:19])) * 1_000_000_000 + int(stamp[20:29])
        except ValueError:
            return None

    def records(self, block: bytes) -> list[LogEntry]:
        """The records of `block`, which holds whole lines (each ending in a newline)."""
        out: list[LogEntry] = []
        append = out.append
        lines = block.split(b"\n")
        lines.pop()  # after the last newline
        for line in lines:
            if line[_STAMP : _STAMP + 1] == b" " and line[_FIXED_DATA - 1 : _FIXED_DATA] == b" ":
                kind = line[_FIXED_DATA - 2]
                source = line[_STAMP + 1 : _STAMP + 7]
                if (kind == 70 or kind == 80) and source in (b"stdout", b"stderr"):  # F, P
                    try:
                        when = self.time(line[:_STAMP])
                    except ValueError:
                        continue
                    data = line[_FIXED_DATA:]
                    append(
                        LogEntry(
                            when,
                            STDERR if source == b"stderr" else STDOUT,
                            data + b"\n" if kind == 70 else data,
                        )
                    )
                    continue
            entry = parse_line(line)
            if entry is not None:
                append(entry)
        return out


def first_time(line: bytes) -> int | None:
    """The time of the record `line`, None if it is none."""
    stamp = line.partition(b" ")[0]
    try:
        return parse_time(stamp)
    except (ValueError, IndexError):
        return None


def read_entries(f: BinaryIO) -> Iterator[LogEntry]:
    """Complete records from the current position of `f` to its end, one line at a time
    (`f.tell()` between two records is where the next one starts)."""
    parser = Parser()
    for line in f:
        if not line.endswith(b"\n"):
            # A record still being written: leave it for the next read.
            f.seek(-len(line), 1)
            return
        yield from parser.records(line)


def line_count(records: list[LogEntry], *, open_end: bool = False) -> int:
    """How many output lines `records` hold: a partial record continues into the next
    one. `open_end`: the last record ends the log, so a partial one there is a line."""
    lines = sum(1 for r in records if r.data.endswith(b"\n"))
    if open_end and records and not records[-1].data.endswith(b"\n"):
        lines += 1
    return lines


def last_lines(records: list[LogEntry], count: int, *, open_end: bool = False) -> list[LogEntry]:
    """The records of the last `count` output lines of `records` (`--tail` counts lines, and
    the monitor splits a line it read in pieces into partial records)."""
    if count <= 0:
        return []
    seen = 0
    for i in range(len(records) - 1, -1, -1):
        ends = records[i].data.endswith(b"\n") or (open_end and i == len(records) - 1)
        if ends:
            seen += 1
            if seen > count:
                return records[i + 1 :]
    return records


def tail(entries: Iterable[LogEntry], count: int | None) -> Iterator[LogEntry]:
    if count is None:
        return iter(entries)
    if count <= 0:
        return iter(())
    return iter(deque(entries, maxlen=count))
