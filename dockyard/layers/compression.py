"""Layer blob compression: recognise it from the first bytes and undo it as a stream.

The media type a registry or an archive gives for a layer is a hint; the bytes
are the truth, so Docker and containerd sniff the magic numbers, and so do we
(spec §3.1). Every decoder here reads concatenated members or frames to the end
of the input: pigz and parallel gzip writers emit several gzip members, and
zstd:chunked / estargz-style layers are many zstd frames back to back.

Corrupt or truncated compressed data surfaces as `InvalidArgument` (it is bad
input), while I/O errors of the underlying stream pass through unchanged.
"""

from __future__ import annotations

import bz2
import enum
import gzip
import io
import lzma
import zlib
from typing import TYPE_CHECKING, BinaryIO, Protocol

import zstandard

from dockyard.errors import InvalidArgument

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

# Enough for every magic number and for one whole tar header block.
HEAD_SIZE = 512

# Decompressors and the tar reader pull data in chunks of this size; small
# reads make the per-call Python overhead dominate on large layers.
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
    `fileobj`; closing the returned stream does not close it.
    """
    head = _read_head(fileobj, HEAD_SIZE)
    source = io.BufferedReader(_Prefixed(head, fileobj), _CHUNK)
    kind = detect(head)
    # The decoders outlive this function: they are the stream we hand back.
    decoder: _Decoder
    if kind is Compression.NONE:
        return source
    if kind is Compression.GZIP:
        decoder = gzip.GzipFile(fileobj=source, mode="rb")  # reads every member
    elif kind is Compression.BZIP2:
        decoder = bz2.BZ2File(source)  # multi-stream aware
    elif kind is Compression.XZ:
        decoder = lzma.LZMAFile(source)  # noqa: SIM115 - reads concatenated .xz streams
    else:
        decoder = zstandard.ZstdDecompressor().stream_reader(
            source, read_size=_CHUNK, read_across_frames=True
        )
    return io.BufferedReader(_Decoded(decoder, kind), _CHUNK)


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


class _Decoder(Protocol):
    def readinto(self, buffer: bytearray | memoryview, /) -> int: ...

    def close(self) -> None: ...


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


# What the codecs raise for bad input. bz2 and gzip also raise plain OSError
# for a bad stream; those carry no errno, unlike a real I/O failure.
_CODEC_ERRORS = (EOFError, zlib.error, lzma.LZMAError, zstandard.ZstdError)


class _Decoded(io.RawIOBase):
    """A decoder whose data errors are reported as `InvalidArgument`."""

    def __init__(self, decoder: _Decoder, kind: Compression) -> None:
        self._decoder = decoder
        self._kind = kind

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        try:
            return self._decoder.readinto(memoryview(buffer).cast("B"))
        except _CODEC_ERRORS as e:
            raise self._corrupt(e) from e
        except OSError as e:
            if e.errno is not None:
                raise
            raise self._corrupt(e) from e

    def close(self) -> None:
        if not self.closed:
            self._decoder.close()
        super().close()

    def _corrupt(self, error: Exception) -> InvalidArgument:
        return InvalidArgument(f"corrupt or truncated {self._kind.value} layer data: {error}")
