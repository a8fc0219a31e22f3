"""`dockyard cp` and `dockyard export`: a container's files to and from the local filesystem.

`cp` does on this side what the docker CLI does (moby's go-archive copy rules,
`copyrules`): it stats the container's destination, archives the local source
with its entries named for where they must land, and sends the tar; or it
fetches the container's archive and extracts it, renaming its top entry when
the destination is a new name. Local extraction keeps every entry inside the
destination: no `..`, nothing written through a symlink, no owners changed.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import sys
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import click

from dockyard.cli.client import APIError, Client
from dockyard.cli.main import Context, fail, pass_context
from dockyard.containers import copyrules
from dockyard.containers.copyrules import STAT_HEADER, PathStat
from dockyard.units import human_size

_CHUNK = 1 << 20


class CopyError(Exception):
    """A local failure, printed as the docker CLI prints it."""


@dataclass
class CopyInfo:
    """go-archive's CopyInfo: one side of a copy."""

    path: str
    exists: bool = False
    is_dir: bool = False
    rebase_name: str = ""


def split_cp_arg(arg: str) -> tuple[str, str]:
    """`CONTAINER:PATH` -> (container, path); a local path gives ("", path). An absolute
    path, or one starting with ".", is local even with a ":" in it."""
    if copyrules.is_abs(arg):
        return "", arg
    container, sep, path = arg.partition(":")
    if not sep or container.startswith("."):
        return "", arg
    return container, path


@click.command("cp")
@click.option(
    "-a",
    "--archive",
    "copy_uid_gid",
    is_flag=True,
    help="Archive mode (copy all uid/gid information).",
)
@click.option("-L", "--follow-link", is_flag=True, help="Always follow symlinks in SRC_PATH.")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the summary line.")
@click.argument("source")
@click.argument("destination")
@pass_context
def cp(
    ctx: Context,
    copy_uid_gid: bool,
    follow_link: bool,
    quiet: bool,
    source: str,
    destination: str,
) -> None:
    """Copy files/folders between a container and the local filesystem.

    CONTAINER:SRC_PATH DEST_PATH|-  or  SRC_PATH|- CONTAINER:DEST_PATH. `-` is a
    tar archive on stdout or stdin.
    """
    if not source:
        fail("source can not be empty", 1)
    if not destination:
        fail("destination can not be empty", 1)
    src_container, src_path = split_cp_arg(source)
    dst_container, dst_path = split_cp_arg(destination)
    quiet = quiet or not sys.stdout.isatty()
    try:
        if src_container and dst_container:
            raise CopyError("copying between containers is not supported")
        if src_container:
            size = copy_from_container(
                ctx.client, src_container, src_path, dst_path, follow_link=follow_link
            )
            where = dst_path
        elif dst_container:
            size, where = copy_to_container(
                ctx.client,
                dst_container,
                src_path,
                dst_path,
                follow_link=follow_link,
                copy_uid_gid=copy_uid_gid,
            )
        else:
            raise CopyError("must specify at least one container source")
    except (CopyError, OSError) as e:
        fail(str(e) if isinstance(e, CopyError) else _os_message(e), 1)
    if not quiet and size is not None:
        click.echo(f"Successfully copied {human_size(size)} to {where}", err=True)


def _os_message(error: OSError) -> str:
    if error.filename:
        return f"{error.filename}: {(error.strerror or str(error)).lower()}"
    return str(error)


# -- from a container ------------------------------------------------------------


def _stat(client: Client, container: str, path: str) -> PathStat:
    headers: dict[str, str] = {}
    for _ in client.stream(
        "HEAD", f"/containers/{container}/archive", params={"path": path}, reply_headers=headers
    ):
        pass
    return PathStat.from_header(headers[STAT_HEADER.lower()])


def copy_from_container(
    client: Client, container: str, src_path: str, dst_path: str, *, follow_link: bool
) -> int | None:
    """Fetch `container:src_path` into `dst_path` (`-`: a tar on stdout); the bytes copied."""
    if dst_path != "-":
        dst_path = copyrules.preserve_trailing_dot_or_separator(os.path.abspath(dst_path), dst_path)
        _validate_output_path(dst_path)
    rebase = ""
    if follow_link:
        try:
            found = _stat(client, container, src_path)
        except APIError:
            found = None
        if found is not None and found.is_symlink:
            target = found.link_target
            if not copyrules.is_abs(target):
                parent, _ = copyrules.split_path_dir_entry(src_path)
                target = copyrules.join(parent, target)
            src_path, rebase = copyrules.rebase_name(src_path, target)
    headers: dict[str, str] = {}
    chunks = client.stream(
        "GET", f"/containers/{container}/archive", params={"path": src_path}, reply_headers=headers
    )
    first = next(chunks, b"")
    if dst_path == "-":
        out = sys.stdout.buffer
        out.write(first)
        for chunk in chunks:
            out.write(chunk)
        out.flush()
        return None
    found = PathStat.from_header(headers[STAT_HEADER.lower()])
    source = CopyInfo(src_path, exists=True, is_dir=found.is_dir, rebase_name=rebase)
    reader = _ChunkReader(first, chunks)
    copy_to(reader, source, dst_path)
    return reader.count if found.is_dir else found.size


def _validate_output_path(path: str) -> None:
    directory = os.path.dirname(copyrules.clean(path))
    if directory and directory != "." and not os.path.exists(directory):
        raise CopyError(f'invalid output path: directory "{directory}" does not exist')


class _ChunkReader(io.RawIOBase):
    """A reply body as a file, counting what went through."""

    def __init__(self, first: bytes, chunks: Iterator[bytes]) -> None:
        self._pending = memoryview(first)
        self._chunks = chunks
        self.count = len(first)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self.count += len(chunk)
            self._pending = memoryview(chunk)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def copy_info_destination(path: str) -> CopyInfo:
    """go-archive's CopyInfoDestinationPath: a local destination, symlinks at its end
    followed (a missing one is fine if its parent directory exists)."""
    original = path
    for _ in range(11):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return _missing_destination(path)
        if not stat.S_ISLNK(st.st_mode):
            return CopyInfo(path, exists=True, is_dir=stat.S_ISDIR(st.st_mode))
        target = os.readlink(path)
        if not copyrules.is_abs(target):
            parent, _base = copyrules.split_path_dir_entry(path)
            target = copyrules.join(parent, target)
        path = target
    raise CopyError(f"too many symlinks in {original}")


def _missing_destination(path: str) -> CopyInfo:
    """A destination that does not exist yet: fine if its parent directory does."""
    parent, _base = copyrules.split_path_dir_entry(path)
    try:
        parent_stat = os.stat(parent)
    except OSError as e:
        raise CopyError(f"stat {parent}: {(e.strerror or '').lower()}") from None
    if not stat.S_ISDIR(parent_stat.st_mode):
        raise CopyError("not a directory")
    return CopyInfo(path)


def prepare_archive_copy(source: CopyInfo, destination: CopyInfo) -> tuple[str, str, str]:
    """go-archive's PrepareArchiveCopy: (directory to extract into, archive top name to
    rename, its new name); the names are "" when nothing is renamed."""
    dst_dir, dst_base = copyrules.split_path_dir_entry(destination.path)
    _, src_base = copyrules.split_path_dir_entry(source.path)
    src_base = source.rebase_name or src_base
    if destination.exists and destination.is_dir:
        return destination.path, "", ""
    if destination.exists and source.is_dir:
        raise CopyError("cannot copy directory")
    if (
        not destination.exists
        and not source.is_dir
        and copyrules.asserts_directory(destination.path)
    ):
        raise CopyError("no such directory")
    return dst_dir, src_base, dst_base


def copy_to(stream: BinaryIO | io.RawIOBase, source: CopyInfo, dst_path: str) -> None:
    """go-archive's CopyTo: extract the archive of `source` to the local `dst_path`."""
    destination = copy_info_destination(dst_path)
    directory, old, new = prepare_archive_copy(source, destination)
    extract_local(stream, directory, old, new)


def extract_local(
    stream: BinaryIO | io.RawIOBase, directory: str, old: str = "", new: str = ""
) -> None:
    """Extract a tar into `directory`, its top entry `old` renamed `new`; no owner is
    changed, a directory is never replaced by a file nor the other way round, and no
    entry is written below a symlink or outside `directory`."""
    dir_times: list[tuple[str, float]] = []
    with tarfile.open(fileobj=stream, mode="r|", encoding="utf-8", errors="surrogateescape") as tar:
        for member in tar:
            name = copyrules.rebase_entry(member.name, old, new) if old or new else member.name
            try:
                relative = copyrules.entry_path(name)
                link = None
                if member.islnk():
                    linkname = member.linkname
                    if old or new:
                        linkname = copyrules.rebase_entry(linkname, old, new)
                    link = copyrules.hardlink_target(linkname)
            except copyrules.EntryOutsideError as e:
                raise CopyError(str(e)) from None
            if relative is None:
                continue
            path = os.path.join(directory, relative)
            _refuse_symlinked_parent(directory, relative)
            if link is not None:
                _refuse_symlinked_parent(directory, link)
            if _make_room(path, member, directory):
                _create(tar, member, path, None if link is None else os.path.join(directory, link))
            if not member.issym():
                os.chmod(path, member.mode & 0o7777)
            if member.isdir():
                dir_times.append((path, member.mtime))
            elif not member.issym():
                os.utime(path, (member.mtime, member.mtime))
            tar.members.clear()  # type: ignore[attr-defined]
    for path, mtime in dir_times:
        os.utime(path, (mtime, mtime))


def _refuse_symlinked_parent(directory: str, relative: str) -> None:
    current = directory
    for part in relative.split("/")[:-1]:
        current = os.path.join(current, part)
        if os.path.islink(current):
            raise CopyError(f"refusing to extract {relative!r}: {current} is a symbolic link")


def _make_room(path: str, member: tarfile.TarInfo, directory: str) -> bool:
    """Clear the way for an entry; False if it is a directory merging with one there."""
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        os.makedirs(parent, 0o755, exist_ok=True)
    try:
        existing = os.lstat(path)
    except FileNotFoundError:
        return True
    is_dir = stat.S_ISDIR(existing.st_mode)
    if is_dir and not member.isdir():
        raise CopyError(f'cannot overwrite directory "{path}" with non-directory "{directory}"')
    if not is_dir and member.isdir():
        raise CopyError(f'cannot overwrite non-directory "{path}" with directory "{directory}"')
    if is_dir:
        return False
    os.unlink(path)
    return True


def _create(tar: tarfile.TarFile, member: tarfile.TarInfo, path: str, link: str | None) -> None:
    if member.isdir():
        os.mkdir(path, 0o700)
    elif member.isreg():
        source = tar.extractfile(member)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            if source is not None:
                shutil.copyfileobj(source, out, _CHUNK)
    elif member.issym():
        os.symlink(member.linkname, path)
    elif member.islnk():
        assert link is not None
        os.link(link, path, follow_symlinks=False)
    elif member.isfifo():
        os.mkfifo(path, 0o600)
    elif member.ischr() or member.isblk():
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        try:
            os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
        except PermissionError:
            pass  # only root makes device nodes; docker skips them too when it cannot


# -- to a container ----------------------------------------------------------------


def copy_to_container(
    client: Client,
    container: str,
    src_path: str,
    dst_path: str,
    *,
    follow_link: bool,
    copy_uid_gid: bool,
) -> tuple[int | None, str]:
    """Send the local `src_path` (`-`: a tar on stdin) to `container:dst_path`; the bytes
    copied (None when unknown) and the destination as shown."""
    if src_path != "-":
        src_path = copyrules.preserve_trailing_dot_or_separator(os.path.abspath(src_path), src_path)
    destination = CopyInfo(dst_path)
    try:
        found: PathStat | None = _stat(client, container, dst_path)
    except (APIError, KeyError):
        found = None
    if found is not None and found.is_symlink:
        target = found.link_target
        if not copyrules.is_abs(target):
            parent, _ = copyrules.split_path_dir_entry(dst_path)
            target = copyrules.join(parent, target)
        destination.path = target
        try:
            found = _stat(client, container, target)
        except (APIError, KeyError):
            found = None
    if found is not None:
        kind = ""
        if found.mode & copyrules.MODE_DEVICE:
            kind = "got a device"
        elif found.mode & copyrules.MODE_IRREGULAR:
            kind = "got an irregular file"
        if kind:
            raise CopyError(
                f'destination "{container}:{dst_path}" must be a directory or a regular '
                f"file: {kind}"
            )
        destination.exists, destination.is_dir = True, found.is_dir
    params = {
        "noOverwriteDirNonDir": "true",
        "copyUIDGID": "true" if copy_uid_gid else None,
    }
    if src_path == "-":
        if not destination.is_dir:
            raise CopyError(f'destination "{container}:{dst_path}" must be a directory')
        client.request(
            "PUT",
            f"/containers/{container}/archive",
            params={"path": destination.path, **params},
            raw=sys.stdin.buffer,
            headers={"Content-Type": "application/x-tar"},
        )
        return None, f"{container}:{destination.path}"
    source = copy_info_source(src_path, follow_link)
    directory, old, new = prepare_archive_copy(source, destination)
    size = _content_size(source.path)
    top = (
        new
        if old or new
        else (source.rebase_name or copyrules.split_path_dir_entry(source.path)[1])
    )
    read_end, write_end = os.pipe()
    writer = _ArchiveWriter(source.path, top, write_end)
    writer.start()
    try:
        with os.fdopen(read_end, "rb") as body:
            client.request(
                "PUT",
                f"/containers/{container}/archive",
                params={"path": directory, **params},
                raw=body,
                headers={"Content-Type": "application/x-tar"},
            )
    finally:
        writer.join()
    if writer.error is not None:
        raise writer.error
    return size, f"{container}:{destination.path}"


def copy_info_source(path: str, follow_link: bool) -> CopyInfo:
    """go-archive's CopyInfoSourcePath: symlinks before the last element are resolved
    (with `follow_link`, the last one too, the archive keeping the name asked for)."""
    if follow_link:
        resolved, rebase = copyrules.rebase_name(path, os.path.realpath(path))
    else:
        parent, base = path[: path.rfind("/") + 1], path[path.rfind("/") + 1 :]
        resolved = os.path.realpath(parent or ".") + "/" + base
        rebase = ""
        if copyrules.has_trailing_separator(path) and copyrules.base(path) != copyrules.base(
            resolved
        ):
            rebase = copyrules.base(path)
    try:
        st = os.lstat(resolved)
    except OSError as e:
        raise CopyError(f"lstat {resolved}: {(e.strerror or '').lower()}") from None
    return CopyInfo(resolved, exists=True, is_dir=stat.S_ISDIR(st.st_mode), rebase_name=rebase)


def _content_size(path: str) -> int:
    try:
        st = os.lstat(path)
    except OSError:
        return 0
    if not stat.S_ISDIR(st.st_mode):
        return st.st_size if stat.S_ISREG(st.st_mode) else 0
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                entry = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if stat.S_ISREG(entry.st_mode):
                total += entry.st_size
    return total


class _ArchiveWriter(threading.Thread):
    """Writes the tar of a local path into a pipe, its top entry named `top`, while the
    request reads the other end."""

    def __init__(self, path: str, top: str, fd: int) -> None:
        super().__init__(name="cp-archive", daemon=True)
        self.path = path
        self.top = top
        self.fd = fd
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with (
                os.fdopen(self.fd, "wb") as out,
                tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar,
            ):
                tar.add(self.path, arcname=self.top, recursive=True)
        except BrokenPipeError:
            pass  # the daemon refused the copy; its answer says why
        except BaseException as e:
            self.error = e


# -- export -------------------------------------------------------------------------


@click.command("export")
@click.option("-o", "--output", help="Write to a file, instead of STDOUT.")
@click.argument("container")
@pass_context
def export(ctx: Context, output: str | None, container: str) -> None:
    """Export a container's filesystem as a tar archive."""
    if output is None and sys.stdout.isatty():
        fail("cowardly refusing to save to a terminal. Use the -o flag or redirect", 1)
    chunks = ctx.client.stream("GET", f"/containers/{container}/export")
    if output is None:
        for chunk in chunks:
            sys.stdout.buffer.write(chunk)
        return
    tmp = f"{output}.tmp"
    try:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
