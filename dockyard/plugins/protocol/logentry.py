"""The LogDriver stream format: length-prefixed protobuf `LogEntry` messages.

Each message is `[uint32 big-endian length][LogEntry]`. The schema (moby's
`logdriver/entry.proto`, proto3) is small and frozen:

    message LogEntry {
      string source = 1; int64 time_nano = 2; bytes line = 3; bool partial = 4;
      PartialLogEntryMetadata partial_log_metadata = 5; repeated LogAttr attrs = 6;
    }
    message PartialLogEntryMetadata { bool last = 1; string id = 2; int32 ordinal = 3; }
    message LogAttr { string key = 1; string value = 2; }

It is encoded by hand: five scalar fields and two tiny sub-messages do not
justify the protobuf runtime and generated code as a dependency of the engine
and of every plugin built with the SDK. Unknown fields are skipped on decode,
as protobuf requires, so newer writers stay readable.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

MAX_ENTRY = 1 << 20  # Docker refuses messages over 1 MiB


class DecodeError(ValueError):
    pass


@dataclass
class PartialMetadata:
    last: bool = False
    id: str = ""
    ordinal: int = 0


@dataclass
class LogEntry:
    source: str = ""
    time_nano: int = 0
    line: bytes = b""
    partial: bool = False
    partial_log_metadata: PartialMetadata | None = None
    attrs: list[tuple[str, str]] = field(default_factory=list)


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64/int32 are ten-byte two's complement
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _bytes_field(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _metadata(meta: PartialMetadata) -> bytes:
    out = b""
    if meta.last:
        out += _varint_field(1, 1)
    if meta.id:
        out += _bytes_field(2, meta.id.encode())
    if meta.ordinal:
        out += _varint_field(3, meta.ordinal)
    return out


def encode(entry: LogEntry) -> bytes:
    """The protobuf bytes of one entry (proto3: zero values are omitted)."""
    out = b""
    if entry.source:
        out += _bytes_field(1, entry.source.encode())
    if entry.time_nano:
        out += _varint_field(2, entry.time_nano)
    if entry.line:
        out += _bytes_field(3, entry.line)
    if entry.partial:
        out += _varint_field(4, 1)
    if entry.partial_log_metadata is not None:
        out += _bytes_field(5, _metadata(entry.partial_log_metadata))
    for key, value in entry.attrs:
        out += _bytes_field(6, _bytes_field(1, key.encode()) + _bytes_field(2, value.encode()))
    return out


def frame(entry: LogEntry) -> bytes:
    data = encode(entry)
    return struct.pack(">I", len(data)) + data


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise DecodeError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise DecodeError("varint too long")


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, kind = key >> 3, key & 7
        if kind == 0:
            value, pos = _read_varint(data, pos)
            yield number, value
        elif kind == 2:
            size, pos = _read_varint(data, pos)
            if pos + size > len(data):
                raise DecodeError("truncated field")
            yield number, data[pos : pos + size]
            pos += size
        elif kind == 1:
            pos += 8
        elif kind == 5:
            pos += 4
        else:
            raise DecodeError(f"unsupported wire type {kind}")
        if pos > len(data):
            raise DecodeError("truncated field")


def _signed(value: int, bits: int) -> int:
    value &= (1 << 64) - 1
    if value >= 1 << 63:
        value -= 1 << 64
    return value if bits == 64 else max(min(value, (1 << 31) - 1), -(1 << 31))


def decode(data: bytes) -> LogEntry:
    entry = LogEntry()
    for number, value in _fields(data):
        if number == 1 and isinstance(value, bytes):
            entry.source = value.decode(errors="replace")
        elif number == 2 and isinstance(value, int):
            entry.time_nano = _signed(value, 64)
        elif number == 3 and isinstance(value, bytes):
            entry.line = value
        elif number == 4 and isinstance(value, int):
            entry.partial = bool(value)
        elif number == 5 and isinstance(value, bytes):
            meta = PartialMetadata()
            for n, v in _fields(value):
                if n == 1 and isinstance(v, int):
                    meta.last = bool(v)
                elif n == 2 and isinstance(v, bytes):
                    meta.id = v.decode(errors="replace")
                elif n == 3 and isinstance(v, int):
                    meta.ordinal = _signed(v, 32)
            entry.partial_log_metadata = meta
        elif number == 6 and isinstance(value, bytes):
            key = val = ""
            for n, v in _fields(value):
                if n == 1 and isinstance(v, bytes):
                    key = v.decode(errors="replace")
                elif n == 2 and isinstance(v, bytes):
                    val = v.decode(errors="replace")
            entry.attrs.append((key, val))
    return entry


class FrameReader:
    """Splits a byte stream into LogEntry messages; feed it chunks as they come."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[LogEntry]:
        self._buffer += data
        entries = []
        while len(self._buffer) >= 4:
            (size,) = struct.unpack_from(">I", self._buffer)
            if size > MAX_ENTRY:
                raise DecodeError(f"log entry of {size} bytes is over the 1 MiB limit")
            if len(self._buffer) < 4 + size:
                break
            entries.append(decode(bytes(self._buffer[4 : 4 + size])))
            del self._buffer[: 4 + size]
        return entries

    @property
    def pending(self) -> int:
        return len(self._buffer)
