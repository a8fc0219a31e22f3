"""Where COPY and ADD read from: the build context, or another stage's filesystem.

A `ContextSource` gives a build its Dockerfile and its context. For `POST /build`
(`TarContext`) the context arrives as a tar (plain or compressed) and is unpacked
into a private directory; entries that would land outside it, through `..` or an
earlier symlink, are refused. The Dockerfile is read from it and the
`.dockerignore` rules are loaded (`<Dockerfile>.dockerignore` beside the
Dockerfile wins over the one at the root). BuildKit's door fetches both from the
client's session instead (`buildkit.frontend`), the context only once a step needs
it.

A `SourceTree` answers what a COPY source names: it cleans the path, expands
wildcards with Go's `filepath.Match`, follows symlinks of the named path, and
refuses anything that leaves the context, through `..` or a symlink, with
Docker's message. Ignored files do not exist for it. For another stage's
filesystem (`COPY --from`) paths resolve as if chrooted there instead.

`checksum` is the content part of a COPY's cache key: every selected file's
path, type, mode, size, content and link target (and owner, where owners are
kept), never its times.

Everything here but the context sources blocks; callers run it in a worker thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import posixpath
import stat
import tarfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from dockyard import rootpath
from dockyard.build.dockerignore import IgnoreFile, has_wildcards, match, read_patterns
from dockyard.errors import InvalidArgument, NotFound
from dockyard.layers.compression import open_decompressed
from dockyard.streams import consume_in_thread

DEFAULT_DOCKERFILE = "Dockerfile"
MAX_LINKS = 40


def extract(stream: BinaryIO, root: str) -> None:
    """Unpack a context tar (plain or compressed) into the empty directory `root`."""
    try:
        with tarfile.open(
            fileobj=open_decompressed(stream),
            mode="r|",
            encoding="utf-8",
            errors="surrogateescape",
        ) as tar:
            while (member := _next(tar)) is not None:
                if member.isdev():
                    continue  # devices and FIFOs have no place in a context
                tar.extract(member, root, set_attrs=True, filter=_context_filter)
                tar.members.clear()  # type: ignore[attr-defined]
    except tarfile.TarError as e:
        raise InvalidArgument(f"invalid build context: {e}") from None
    except EOFError:
        raise InvalidArgument("invalid build context: unexpected end of the archive") from None
    while stream.read(1 << 20):
        pass


def _next(tar: tarfile.TarFile) -> tarfile.TarInfo | None:
    try:
        return tar.next()
    except tarfile.ReadError as e:
        # The docker CLI's tar for a Dockerfile outside the context ends right
        # after the last file's data, without padding or end blocks (Go's reader
        # accepts that). The file itself was read whole; only the ending is short.
        if str(e) == "unexpected end of data" and tar.offset > 0:
            return None
        raise


def _context_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    # tarfile's "tar" filter refuses absolute names, names and links that leave
    # `dest` (also through symlinks extracted before), and devices; unlike it,
    # keep the modes as they are: COPY copies them.
    try:
        checked = tarfile.tar_filter(member, dest)
    except tarfile.FilterError as e:
        raise InvalidArgument(f"invalid build context: {e}") from None
    return checked.replace(mode=member.mode & 0o7777, deep=False)


@dataclass(frozen=True)
class Selected:
    """One source a COPY names, resolved."""

    rel: str  # its path in the tree, as named (cleaned)
    full: str  # the host path it resolves to
    name: str  # the base name to use in a destination directory
    st: os.stat_result  # of the resolved path (symlinks followed)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)


class SourceTree:
    def __init__(self, root: str, *, ignore: IgnoreFile | None = None, context: bool) -> None:
        self.root = os.path.abspath(root)
        self.ignore = ignore
        self.context = context  # the build context (escapes refused) or a stage (chrooted)

    # -- selection ------------------------------------------------------------

    def select(self, source: str) -> list[Selected]:
        """What a COPY source names; wildcards may give several (or none)."""
        cleaned = self._clean(source)
        if has_wildcards(cleaned):
            found = []
            for rel in self._all_paths():
                if match(cleaned, rel):
                    found.append(self._one(rel, rel))
            return found
        return [self._one(source, cleaned)]

    def _clean(self, source: str) -> str:
        path = source.strip()
        path = path.lstrip("/")
        while path.startswith("./"):
            path = path[2:].lstrip("/")
        cleaned = posixpath.normpath(path) if path else "."
        if cleaned == ".." or cleaned.startswith("../"):
            if self.context:
                raise InvalidArgument(
                    f"forbidden path outside the build context: {source} ({cleaned})"
                )
            cleaned = posixpath.normpath("/" + cleaned).lstrip("/") or "."
        return cleaned

    def _one(self, source: str, rel: str) -> Selected:
        if rel != "." and self.ignored(rel):
            raise NotFound(
                "file not found in build context or excluded by .dockerignore: "
                f"stat {rel}: file does not exist"
            )
        full = self._resolve(source, rel)
        try:
            st = os.stat(full)
        except FileNotFoundError:
            if self.context:
                raise NotFound(
                    "file not found in build context or excluded by .dockerignore: "
                    f"stat {rel}: file does not exist"
                ) from None
            raise NotFound(f"{source}: no such file or directory") from None
        if self.context and full != self.root:
            real_rel = os.path.relpath(full, self.root)
            if real_rel != rel and self.ignored(real_rel):
                raise NotFound(
                    "file not found in build context or excluded by .dockerignore: "
                    f"stat {rel}: file does not exist"
                )
        name = posixpath.basename(rel) if rel != "." else ""
        return Selected(rel, full, name, st)

    def _resolve(self, source: str, rel: str) -> str:
        if not self.context:
            return rootpath.resolve(self.root, rel)
        # Follow symlinks, but never out of the context: a symlink whose target
        # is absolute or climbs above the root is refused, not reinterpreted.
        parts = [] if rel == "." else rel.split("/")
        resolved: list[str] = []
        links = 0
        while parts:
            part = parts.pop(0)
            if part == "..":
                if not resolved:
                    raise InvalidArgument(
                        f"forbidden path outside the build context: {source} ({rel})"
                    )
                resolved.pop()
                continue
            candidate = os.path.join(self.root, *resolved, part)
            try:
                target = os.readlink(candidate)
            except OSError:
                resolved.append(part)
                continue
            links += 1
            if links > MAX_LINKS or target.startswith("/"):
                raise InvalidArgument(f"forbidden path outside the build context: {source} ({rel})")
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
        return os.path.join(self.root, *resolved)

    def ignored(self, rel: str) -> bool:
        return self.ignore is not None and self.ignore.excluded(rel)

    def _all_paths(self) -> Iterator[str]:
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            base = os.path.relpath(dirpath, self.root)
            for name in sorted(dirnames + filenames):
                rel = name if base == "." else f"{base}/{name}"
                if not self.ignored(rel):
                    yield rel

    # -- walking and hashing --------------------------------------------------

    def walk(self, selected: Selected) -> Iterator[tuple[str, str, os.stat_result]]:
        """Below a selected directory: (path relative to it, host path, lstat), sorted,
        parents first, ignored paths left out."""
        keep_descending = self.ignore is not None and self.ignore.has_exclusions

        def visit(rel_dir: str, full_dir: str) -> Iterator[tuple[str, str, os.stat_result]]:
            try:
                names = sorted(os.listdir(full_dir))
            except FileNotFoundError:
                return
            for name in names:
                rel = f"{rel_dir}/{name}" if rel_dir else name
                full = os.path.join(full_dir, name)
                tree_rel = rel if selected.rel == "." else f"{selected.rel}/{rel}"
                st = os.lstat(full)
                skip = self.context and self.ignored(tree_rel)
                if not skip:
                    yield rel, full, st
                if stat.S_ISDIR(st.st_mode) and (not skip or keep_descending):
                    # With exceptions (`!pattern`), an ignored directory may
                    # still hold files that are included again.
                    yield from visit(rel, full)

        return visit("", selected.full)

    def checksum(self, selected: list[Selected], *, owners: bool) -> str:
        digest = hashlib.sha256()
        for item in selected:
            digest.update(f"\0source {item.rel}\0".encode("utf-8", "surrogateescape"))
            _hash_entry(digest, ".", item.full, item.st, owners)
            if item.is_dir:
                for rel, full, st in self.walk(item):
                    _hash_entry(digest, rel, full, st, owners)
        return digest.hexdigest()


def _hash_entry(
    digest: hashlib._Hash, rel: str, full: str, st: os.stat_result, owners: bool
) -> None:
    mode = st.st_mode
    head = f"{rel}\0{stat.S_IFMT(mode)}\0{stat.S_IMODE(mode):o}\0"
    if owners:
        head += f"{st.st_uid}:{st.st_gid}\0"
    if stat.S_ISREG(mode):
        head += f"{st.st_size}\0"
        digest.update(head.encode("utf-8", "surrogateescape"))
        with open(full, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    elif stat.S_ISLNK(mode):
        digest.update((head + os.readlink(full)).encode("utf-8", "surrogateescape"))
    else:
        digest.update(head.encode("utf-8", "surrogateescape"))


class BuildContext:
    """An unpacked build context with its Dockerfile and ignore rules."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.ignore: IgnoreFile | None = None

    def read_dockerfile(self, name: str) -> str:
        """The Dockerfile's text; `Dockerfile` falls back to `dockerfile`, as Docker's does."""
        name = name or DEFAULT_DOCKERFILE
        path = self._path(name)
        if not os.path.isfile(path) and name == DEFAULT_DOCKERFILE:
            lower = self._path(name.lower())
            if os.path.isfile(lower):
                path, name = lower, name.lower()
        if not os.path.isfile(path):
            raise InvalidArgument(f"Cannot locate specified Dockerfile: {name}")
        with open(path, "rb") as f:
            data = f.read()
        if not data:
            raise InvalidArgument(f"the Dockerfile ({name}) cannot be empty")
        self._load_ignore(name)
        return data.decode("utf-8", errors="replace")

    def _path(self, name: str) -> str:
        cleaned = posixpath.normpath("/" + name).lstrip("/")
        return rootpath.resolve(self.root, cleaned)

    def _load_ignore(self, dockerfile: str) -> None:
        candidates = [dockerfile + ".dockerignore", ".dockerignore"]
        for candidate in candidates:
            path = self._path(candidate)
            if os.path.isfile(path):
                with open(path, encoding="utf-8", errors="replace") as f:
                    self.ignore = IgnoreFile(read_patterns(f.read()))
                return

    def sources(self) -> SourceTree:
        return SourceTree(self.root, ignore=self.ignore, context=True)


class ContextSource(Protocol):
    """Where a build's Dockerfile and context come from. `workdir` is the build's own
    directory, where a source may put what it fetches (removed with the build)."""

    async def dockerfile(self, workdir: str, name: str) -> str:
        """The Dockerfile's text (`name` as given, "" for the default); the ignore rules
        that go with it are known from then on."""
        ...

    async def sources(self, workdir: str) -> SourceTree:
        """The context, ready for COPY and ADD (called for each step that reads it)."""
        ...


class TarContext:
    """The context of `POST /build`: a tar stream, unpacked before anything else."""

    def __init__(self, body: AsyncIterator[bytes]) -> None:
        self.body = body
        self.context: BuildContext | None = None

    async def dockerfile(self, workdir: str, name: str) -> str:
        context_dir = os.path.join(workdir, "context")
        os.makedirs(context_dir)
        await consume_in_thread(self.body, lambda stream: extract(stream, context_dir))
        context = self.context = BuildContext(context_dir)
        return await asyncio.to_thread(context.read_dockerfile, name)

    async def sources(self, workdir: str) -> SourceTree:
        assert self.context is not None, "the Dockerfile is read first"
        return self.context.sources()
