"""Content-addressed blob store.

Lifecycle of a blob: bytes are written to a private file in `ingest/` while
they are hashed; `commit()` checks the size and digest against what the
caller expected, fsyncs, and renames the file to `blobs/sha256/<hex>`. Only
then is the blob visible. A writer that is abandoned or fails verification
removes its ingest file, so unverified bytes are never published, and a crash
leaves at most stray ingest files that `open()` sweeps away.

The store directory is itself a valid OCI image layout (`oci-layout`,
`blobs/<alg>/<hex>`). All methods block; async callers run them in a thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

from dockyard.errors import InvalidArgument, NotFound

DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_CHUNK = 1 << 20


def validate_digest(digest: str) -> str:
    if not DIGEST_RE.match(digest):
        raise InvalidArgument(f"invalid digest: {digest!r}")
    return digest


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class DigestMismatch(InvalidArgument):
    pass


class DigestingReader:
    """A read-only stream that hashes and counts what is read through it.

    Used where a digest has to be checked on data that is consumed by
    something else (a DiffID while a layer is applied, a file while an
    archive is unpacked).
    """

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self._hash = hashlib.sha256()
        self.size = 0

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self._hash.update(data)
        self.size += len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        pass

    def __enter__(self) -> DigestingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class Writer:
    """A blob being ingested. Use as a context manager; call `commit()` to publish."""

    def __init__(self, store: ContentStore, expected: str | None, size: int | None) -> None:
        self._store = store
        self._expected = validate_digest(expected) if expected else None
        self._expected_size = size
        fd, self.path = tempfile.mkstemp(dir=store.ingest_dir)
        self._file = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.size = 0
        self.digest: str | None = None

    def write(self, data: bytes | memoryview) -> None:
        self.size += len(data)
        if self._expected_size is not None and self.size > self._expected_size:
            raise DigestMismatch(
                f"size mismatch for {self._expected or 'blob'}: "
                f"more than the expected {self._expected_size} bytes"
            )
        self._hash.update(data)
        self._file.write(data)

    def commit(self, pin: Callable[[str], None] | None = None) -> str:
        """Verify and publish; returns the digest. `pin(digest)` is called just before
        the blob becomes visible (to keep it from garbage collection)."""
        digest = "sha256:" + self._hash.hexdigest()
        if self._expected_size is not None and self.size != self._expected_size:
            raise DigestMismatch(
                f"size mismatch for {self._expected or digest}: "
                f"expected {self._expected_size} bytes, got {self.size}"
            )
        if self._expected and digest != self._expected:
            raise DigestMismatch(f"digest mismatch: expected {self._expected}, got {digest}")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        if pin is not None:
            pin(digest)
        target = self._store.path(digest)
        if os.path.exists(target):
            os.unlink(self.path)
        else:
            os.rename(self.path, target)
        self.digest = digest
        return digest

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        if self.digest is None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


class ContentStore:
    def __init__(self, root: str) -> None:
        self.root = root
        self.blob_dir = os.path.join(root, "blobs", "sha256")
        self.ingest_dir = os.path.join(root, "ingest")
        os.makedirs(self.blob_dir, exist_ok=True)
        # Leftovers of writers interrupted by a crash were never published.
        shutil.rmtree(self.ingest_dir, ignore_errors=True)
        os.makedirs(self.ingest_dir)
        layout = os.path.join(root, "oci-layout")
        if not os.path.exists(layout):
            with open(layout, "w") as f:
                f.write('{"imageLayoutVersion":"1.0.0"}')

    def path(self, digest: str) -> str:
        validate_digest(digest)
        return os.path.join(self.blob_dir, digest[len("sha256:") :])

    def writer(self, expected: str | None = None, size: int | None = None) -> Writer:
        return Writer(self, expected, size)

    def staging_dir(self) -> str:
        """A private directory in the ingest area (same filesystem; swept at start-up)."""
        return tempfile.mkdtemp(dir=self.ingest_dir)

    def adopt(self, path: str, digest: str) -> None:
        """Publish a file whose digest the caller has just computed while writing it.

        `path` must be in the ingest area; it is moved, not copied.
        """
        target = self.path(digest)
        if os.path.exists(target):
            os.unlink(path)
            return
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(path, target)

    def ingest(
        self,
        source: BinaryIO,
        expected: str | None = None,
        size: int | None = None,
        pin: Callable[[str], None] | None = None,
    ) -> tuple[str, int]:
        """Store everything `source` reads, verified against `expected` and `size` when
        given; returns the digest and size. Blocking."""
        with self.writer(expected, size) as writer:
            while chunk := source.read(_CHUNK):
                writer.write(chunk)
            return writer.commit(pin), writer.size

    def put(self, data: bytes, expected: str | None = None) -> str:
        with self.writer(expected, len(data) if expected else None) as w:
            w.write(data)
            return w.commit()

    def exists(self, digest: str) -> bool:
        return os.path.exists(self.path(digest))

    def size(self, digest: str) -> int:
        try:
            return os.stat(self.path(digest)).st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def read(self, digest: str) -> bytes:
        try:
            with open(self.path(digest), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            pass

    def discard(self, digests: Iterable[str]) -> str:
        """Take blobs out of the store at once, a rename each; their bytes go with the
        returned directory (in the ingest area), the caller's to delete when it can
        take the time, or the next start-up's."""
        trash = self.staging_dir()
        for digest in digests:
            with contextlib.suppress(FileNotFoundError):
                os.rename(self.path(digest), os.path.join(trash, digest[len("sha256:") :]))
        return trash

    def digests(self) -> Iterator[str]:
        for name in os.listdir(self.blob_dir):
            yield "sha256:" + name
