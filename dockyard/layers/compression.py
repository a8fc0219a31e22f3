"""Layer blob compression: recognise it from the first bytes and undo it as a stream.

The media type a registry or an archive gives for a layer is a hint; the bytes
are the truth, so Docker and containerd sniff the magic numbers, and so do we
(spec §3.1). Every decoder here reads concatenated members or frames to the end
of the input: pigz and parallel gzip writers emit several gzip members, and
zstd:chunked / estargz-style layers are many zstd frames back to back. Input
that stops inside a member or frame is an error, not an early end.

Decoding runs on a worker thread a few chunks ahead of the reader. The codecs
release the GIL, so decoding overlaps the tar extraction instead of adding to
it (Docker pipes layers through unpigz for the same reason).

Corrupt or truncated compressed data surfaces as `InvalidArgument` (it is bad
input), while I/O errors of the underlying stream pass through unchanged.
"""

from __future__ import annotations

import bz2
import collections
import concurrent.futures
import enum
import io
import lzma
import os
import queue
import threading
import zlib
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, BinaryIO

import zstandard

from dockyard.errors import InvalidArgument

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

# Enough for every magic number and for one whole tar header block.
HEAD_SIZE = 512

# Decoders take and give data in chunks of this size: per-call Python overhead
# stays negligible, and each call runs long enough without the GIL to overlap.
_CHUNK = 1 << 20


class Compression(enum.Enum):
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"
    BZIP2 = "bzip2"
    XZ = "xz"


_MAGIC = (
    (b"\x1f\x8b", Compression.GZIP),
    (b"\x28\xb5\x2f\xfd", Compression.ZSTD),
    (b"BZh", Compression.BZIP2),
    (b"\xfd7zXZ\x00", Compression.XZ),
)


def detect(head: bytes) -> Compression:
    """Name the compression of a blob from its first bytes (`HEAD_SIZE` is plenty).

    A plain tar starts with a file name, so a layer whose first entry is called
    "BZh..." would look like bzip2. When a whole header block is available and
    its checksum is right, the blob is an uncompressed tar whatever its first
    bytes say.
    """
    if _is_tar_header(head):
        return Compression.NONE
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    # A zstd stream may start with a skippable frame (magic 0x184D2A50..5F).
    if len(head) >= 4 and head[1:4] == b"\x2a\x4d\x18" and head[0] & 0xF0 == 0x50:
        return Compression.ZSTD
    return Compression.NONE


def open_decompressed(fileobj: BinaryIO) -> BinaryIO:
    """Return a readable stream of the uncompressed tar inside `fileobj`.

    `fileobj` only needs `read()`: the bytes sniffed for `detect` are kept and
    replayed, so pipes and HTTP bodies work. The caller keeps ownership of
    `fileobj` and must not read it while the returned stream is open; closing
    the returned stream stops the decoder but does not close `fileobj`.
    """
    head = _read_head(fileobj, HEAD_SIZE)
    source = io.BufferedReader(_Prefixed(head, fileobj), _CHUNK)
    kind = detect(head)
    if kind is Compression.NONE:
        return source
    return io.BufferedReader(_ReadAhead(_decode(kind, source), kind), _CHUNK)


def _read_head(fileobj: BinaryIO, size: int) -> bytes:
    # A pipe or socket may return fewer bytes than asked for; keep reading.
    chunks: list[bytes] = []
    got = 0
    while got < size:
        chunk = fileobj.read(size - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _is_tar_header(block: bytes) -> bool:
    if len(block) < 512:
        return False
    field = block[148:156].strip(b"\0 ")
    try:
        recorded = int(field, 8)
    except ValueError:
        return False
    # The checksum is computed with its own 8-byte field read as spaces. Old
    # tars summed signed chars; accept either form, as tarfile does.
    unsigned = sum(block[:148]) + 8 * 0x20 + sum(block[156:512])
    high = sum(1 for b in block[:148] if b & 0x80) + sum(1 for b in block[156:512] if b & 0x80)
    return recorded in (unsigned, unsigned - 256 * high)


class _Prefixed(io.RawIOBase):
    """`head`, then whatever `source` has left: sniffing without seeking."""

    def __init__(self, head: bytes, source: BinaryIO) -> None:
        self._head = memoryview(head)
        self._source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._source.read(len(view))
        view[: len(data)] = data
        return len(data)


# -- decoders: each yields the decoded data in chunks of at most _CHUNK ------

# What the codecs raise for bad input. bz2 also raises plain OSError for a bad
# stream; that one carries no errno, unlike a real I/O failure.
_CODEC_ERRORS = (EOFError, zlib.error, lzma.LZMAError, zstandard.ZstdError)


def _decode(kind: Compression, source: BinaryIO) -> Generator[bytes, None, None]:
    try:
        if kind is Compression.GZIP:
            yield from _gunzip(source)
        elif kind is Compression.ZSTD:
            framed = io.BufferedReader(_ZstdFramed(source), _CHUNK)
            with zstandard.ZstdDecompressor().stream_reader(
                framed, read_size=_CHUNK, read_across_frames=True
            ) as reader:
                yield from _read_chunks(reader)
        elif kind is Compression.BZIP2:
            with bz2.BZ2File(source) as reader:  # multi-stream aware
                yield from _read_chunks(reader)
        else:
            with lzma.LZMAFile(source) as reader:  # reads concatenated streams
                yield from _read_chunks(reader)
    except _CODEC_ERRORS as e:
        raise _corrupt(kind, e) from e
    except OSError as e:
        if e.errno is not None:
            raise
        raise _corrupt(kind, e) from e


def _corrupt(kind: Compression, error: Exception) -> InvalidArgument:
    return InvalidArgument(f"corrupt or truncated {kind.value} layer data: {error}")


def _read_chunks(reader: io.BufferedIOBase | zstandard.ZstdDecompressionReader) -> Iterator[bytes]:
    while chunk := reader.read(_CHUNK):
        yield chunk


def _gunzip(source: BinaryIO) -> Iterator[bytes]:
    """Inflate every member of a gzip stream.

    gzip.GzipFile would do, but it feeds zlib 8 KiB at a time (Python 3.11),
    which holds the GIL too often for decoding to overlap anything. A zlib
    decompressobj is fed large chunks instead; it checks each member's CRC and
    length, but stops at the end of a member, so the next one is started here.
    """
    member = zlib.decompressobj(16 + zlib.MAX_WBITS)
    data = b""
    in_member = False
    while True:
        if not data:
            data = source.read(_CHUNK)
            if not data:
                if in_member:
                    raise EOFError("input ends inside a gzip member")
                return
        in_member = True
        out = member.decompress(data, _CHUNK)  # bounded: no bomb expands at once
        data = member.unconsumed_tail
        if out:
            yield out
        if member.eof:
            # Anything after a member must be another member; trailing
            # garbage fails its header check.
            data = member.unused_data + data
            member = zlib.decompressobj(16 + zlib.MAX_WBITS)
            in_member = False


class _ReadAhead(io.RawIOBase):
    """Runs a decoder on a worker thread, a few chunks ahead of the reader.

    Decoder errors reach the reader. Closing stops the worker before it
    returns; so does dropping the reader, because the worker holds no
    reference to it.
    """

    _DEPTH = 4  # chunks decoded ahead: bounds the memory to a few MiB

    def __init__(self, chunks: Generator[bytes, None, None], kind: Compression) -> None:
        self._chunks = chunks
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(self._DEPTH)
        self._stop = threading.Event()
        self._pending = memoryview(b"")
        self._error: BaseException | None = None
        self._eof = False
        self._worker = threading.Thread(
            target=_decode_ahead,
            args=(chunks, self._queue, self._stop),
            name=f"{kind.value}-decode",
            daemon=True,
        )
        self._worker.start()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        if not self._pending:
            if self._error is not None:
                raise self._error
            if self._eof:
                return 0
            item = self._queue.get()
            if isinstance(item, BaseException):
                self._error = item
                raise item
            if not item:
                self._eof = True
                return 0
            self._pending = memoryview(item)
        n = min(len(view), len(self._pending))
        view[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            self._stop.set()
            while self._worker.is_alive():  # unblock a worker waiting to put
                try:
                    self._queue.get(timeout=0.01)
                except queue.Empty:
                    pass
            self._chunks.close()
        super().close()


def _decode_ahead(
    chunks: Iterator[bytes], out: queue.Queue[bytes | BaseException], stop: threading.Event
) -> None:
    """The worker of `_ReadAhead`: decoded chunks, then b"" or the error."""

    def put(item: bytes | BaseException) -> bool:
        # Wake up now and then to notice a reader that went away.
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    try:
        for chunk in chunks:
            if not put(chunk):
                return
        put(b"")
    except BaseException as e:  # handed to the reader, raised there
        put(e)


# -- zstd framing ---------------------------------------------------------------

_ZSTD_FRAME_MAGIC = 0xFD2FB528
_ZSTD_SKIPPABLE_MAGIC = 0x184D2A50  # low 4 bits are free


class _ZstdFramed(io.RawIOBase):
    """The compressed source of a zstd decoder, checked to end between frames.

    python-zstandard's stream reader takes a source that stops mid-frame for
    a clean end and returns the data so far. Its decompressobj does notice,
    but returns all output of an input chunk at once, and a few input bytes
    can expand to 128 KiB. So the bounded stream reader decodes, and this
    follows the frame layout (RFC 8878: frame header, 3-byte block headers,
    optional checksum; skippable frames) as the bytes go by, which costs a few
    operations per block.
    """

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self._field = b""  # a header being collected across reads
        self._want = 4  # its size
        self._skip = 0  # payload bytes to pass over before the next header
        self._state = "magic"
        self._checksum = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self._source.read(len(view))
        if not data:
            if self._state != "magic" or self._field or self._skip:
                raise InvalidArgument("corrupt or truncated zstd layer data: ends inside a frame")
            return 0
        view[: len(data)] = data
        self._scan(data)
        return len(data)

    def _scan(self, data: bytes) -> None:
        pos, end = 0, len(data)
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            take = min(self._want - len(self._field), end - pos)
            self._field += data[pos : pos + take]
            pos += take
            if len(self._field) == self._want:
                field, self._field = self._field, b""
                self._header(int.from_bytes(field, "little"))

    def _header(self, value: int) -> None:
        if self._state == "magic":
            if value == _ZSTD_FRAME_MAGIC:
                self._state, self._want = "descriptor", 1
            elif value & ~0xF == _ZSTD_SKIPPABLE_MAGIC:
                self._state, self._want = "skippable", 4
            else:
                raise InvalidArgument("corrupt zstd layer data: bad frame magic")
        elif self._state == "skippable":
            self._skip = value
            self._state, self._want = "magic", 4
        elif self._state == "descriptor":
            single_segment = bool(value & 0x20)
            content_size = (1 if single_segment else 0, 2, 4, 8)[value >> 6]
            self._skip = (0 if single_segment else 1) + (0, 1, 2, 4)[value & 3] + content_size
            self._checksum = bool(value & 0x04)
            self._state, self._want = "block", 3
        else:  # block header: last-block bit, 2-bit type, 21-bit size
            block_type, size = (value >> 1) & 3, value >> 3
            self._skip = 1 if block_type == 1 else size  # an RLE block stores one byte
            if value & 1:
                self._skip += 4 if self._checksum else 0
                self._state, self._want = "magic", 4


# -- compression ------------------------------------------------------------------

_MEMBER = 1 << 20  # input bytes per gzip member when compressing in parallel


def compress_gzip(source: BinaryIO, write: Callable[[bytes], object], *, level: int = 1) -> None:
    """Gzip `source` into `write`, compressing 1 MiB members on every core (as pigz does).

    The output is a valid multi-member gzip stream (RFC 1952 allows any
    number of members; Go's, zlib's and Python's readers all read them
    through). Members carry no name and a zero mtime, so the same input gives
    the same bytes. zlib releases the GIL, so the members really compress in
    parallel; a few are kept in flight to bound memory. Level 1 by default:
    layers are compressed once and kept, and the deflate levels above it cost
    several times the CPU for a few percent of size.
    """
    workers = os.cpu_count() or 1
    pending: collections.deque[concurrent.futures.Future[bytes]] = collections.deque()
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="gzip") as pool:
        started = False
        while True:
            chunk = source.read(_MEMBER)
            if not chunk and started:
                break
            started = True
            pending.append(pool.submit(_gzip_member, chunk, level))
            if len(pending) > 2 * workers:
                write(pending.popleft().result())
            if not chunk:
                break
        while pending:
            write(pending.popleft().result())


_PROBE = 64 << 10


def _gzip_member(data: bytes, level: int) -> bytes:
    # Data that does not compress (already compressed files, random bytes) is
    # stored instead: deflating it costs the most time and saves nothing. A
    # probe of the member's start decides.
    if len(data) > _PROBE and len(zlib.compress(data[:_PROBE], 1)) > _PROBE * 0.95:
        level = 0
    compressor = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()
