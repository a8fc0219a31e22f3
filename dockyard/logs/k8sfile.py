"""Reader for the log files the container monitor writes (the CRI "k8s-file" format).

Each record is one line: `<RFC 3339 local time> <stdout|stderr> <F|P> <bytes>`.
`F` marks a complete line whose newline is part of the bytes; `P` a partial
line (output that did not end in a newline), to which the writer appended a
newline of its own that is not part of the output. Reading the records back
therefore reproduces the container's output byte for byte.
"""

from __future__ import annotations

import calendar
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

STDOUT = 1
STDERR = 2


@dataclass(frozen=True)
class LogEntry:
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
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) - offset
    return seconds * 1_000_000_000 + frac


def parse_line(line: bytes) -> LogEntry | None:
    try:
        stamp, stream, tag, data = line.split(b" ", 3)
    except ValueError:
        return None
    if tag == b"F":
        payload = data  # keeps the line's own newline
    elif tag == b"P":
        payload = data[:-1] if data.endswith(b"\n") else data
    else:
        return None
    try:
        when = parse_time(stamp)
    except ValueError:
        return None
    return LogEntry(when, STDERR if stream == b"stderr" else STDOUT, payload)


def read_entries(f: BinaryIO) -> Iterator[LogEntry]:
    """Complete records from the current position of `f` to its end."""
    for line in f:
        if not line.endswith(b"\n"):
            # A record still being written: leave it for the next read.
            f.seek(-len(line), 1)
            return
        entry = parse_line(line)
        if entry is not None:
            yield entry


def tail(entries: Iterator[LogEntry], count: int | None) -> Iterator[LogEntry]:
    if count is None:
        return entries
    if count <= 0:
        return iter(())
    return iter(deque(entries, maxlen=count))
