"""COPY and ADD: writing files into a build stage's mounted root filesystem.

The destination is resolved inside the stage's root as if chrooted there
(a symlink in the image such as `/app -> /srv/app` is followed, but never out
of the root). Below it, every entry is created fresh by us: an existing
non-directory in the way is replaced, never written through, so a symlink in
the image cannot redirect a write.

Docker's rules: a directory source copies its contents; a file goes into a
destination that ends in `/` or is an existing directory, else it becomes the
destination; missing parents are created 0755; files are owned 0:0 unless
`--chown` says otherwise (sources from another stage keep their owners);
modes come from the source unless `--chmod` is given; modification times are
kept. ADD unpacks a local tar archive (plain, gzip, bzip2, xz or zstd,
recognised by its content) into the destination, and downloads URLs.

Runs on a worker thread, on a root nobody else writes to during the step.
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import posixpath
import re
import shutil
import stat
import tarfile
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from dockyard import rootpath
from dockyard.build.context import Selected, SourceTree
from dockyard.errors import InvalidArgument, Unavailable
from dockyard.layers.compression import open_decompressed

ModeFn = Callable[[int, bool], int]


@dataclass(frozen=True)
class Owner:
    uid: int
    gid: int


def parse_chmod(text: str) -> ModeFn | None:
    """`--chmod=755` or symbolic (`u+x,go-w`): a function (mode, is_dir) -> new mode."""
    if not text:
        return None
    if re.fullmatch(r"[0-7]{3,4}", text):
        value = int(text, 8)
        return lambda _mode, _is_dir: value
    clauses = []
    for clause in text.split(","):
        match = re.fullmatch(r"([ugoa]*)([-+=])([rwxXst]*)", clause)
        if not match:
            raise InvalidArgument(f"invalid chmod parameter: '{text}'")
        clauses.append(match.groups())

    def apply(mode: int, is_dir: bool) -> int:
        mode &= 0o7777
        for who, op, perms in clauses:
            who = who or "a"
            if "a" in who:
                who = "ugo"
            bits = 0
            for w in who:
                shift = {"u": 6, "g": 3, "o": 0}[w]
                for p in perms:
                    if p == "r":
                        bits |= 4 << shift
                    elif p == "w":
                        bits |= 2 << shift
                    elif p == "x" or (p == "X" and (is_dir or mode & 0o111)):
                        bits |= 1 << shift
                    elif p == "s" and w in "ug":
                        bits |= stat.S_ISUID if w == "u" else stat.S_ISGID
                    elif p == "t":
                        bits |= stat.S_ISVTX
            if op == "+":
                mode |= bits
            elif op == "-":
                mode &= ~bits
            else:
                mask = 0
                for w in who:
                    mask |= 0o7 << {"u": 6, "g": 3, "o": 0}[w]
                mode = (mode & ~mask) | bits
        return mode

    return apply


def resolve_owner(root: str, chown: str) -> Owner:
    """`--chown=user[:group]` against the stage's /etc/passwd and /etc/group."""
    user, _, group = chown.partition(":")

    def lookup(table: str, name: str, what: str) -> int:
        if name.isdigit():
            return int(name)
        text = rootpath.read_text(root, table) or ""
        for line in text.splitlines():
            fields = line.split(":")
            if len(fields) >= 3 and fields[0] == name and fields[2].isdigit():
                return int(fields[2])
        raise InvalidArgument(
            "unable to convert uid/gid chown string to host mapping: "
            f"can't find {what} for {'user' if what == 'uid' else 'group'} {name}: "
            f"no such {'user' if what == 'uid' else 'group'}: {name}"
        )

    uid = lookup("/etc/passwd", user, "uid")
    gid = lookup("/etc/group", group, "gid") if group else uid
    return Owner(uid, gid)


class Target:
    """The stage's root filesystem being written to."""

    def __init__(self, root: str, owner: Owner | None, mode: ModeFn | None) -> None:
        self.root = root
        self.owner = owner  # None: keep the source's owner
        self.mode = mode

    def resolve(self, path: str) -> str:
        return rootpath.resolve(self.root, path)

    def makedirs(self, path: str) -> str:
        """`mkdir -p` of a container path; new directories 0755, owned like the copy."""
        parts = [p for p in path.split("/") if p]
        current = "/"
        for part in parts:
            current = posixpath.join(current, part)
            full = self.resolve(current)
            if os.path.isdir(full):
                continue
            if os.path.lexists(full):
                raise InvalidArgument(f"cannot create directory {current}: not a directory")
            os.mkdir(full, 0o755)
            os.chmod(full, 0o755)
            owner = self.owner or Owner(0, 0)
            os.chown(full, owner.uid, owner.gid)
        return self.resolve(path)

    def _attrs(self, path: str, st: os.stat_result, *, is_dir: bool) -> None:
        owner = self.owner or Owner(st.st_uid, st.st_gid)
        os.chown(path, owner.uid, owner.gid, follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode):
            mode = stat.S_IMODE(st.st_mode)
            os.chmod(path, self.mode(mode, is_dir) if self.mode else mode)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    def _clear(self, path: str, *, keep_dir: bool) -> None:
        """Make room for a new entry: anything but a directory we keep goes."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return
            shutil.rmtree(path)
        else:
            os.unlink(path)

    def put_entry(
        self, full: str, src: str, st: os.stat_result, links: dict[tuple[int, int], str]
    ) -> None:
        """Create one entry at host path `full` from the source `src` (lstat `st`)."""
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            self._clear(full, keep_dir=True)
            if not os.path.isdir(full):
                os.mkdir(full, 0o700)
            self._attrs(full, st, is_dir=True)
            return
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            self._clear(full, keep_dir=False)
            os.link(links[key], full, follow_symlinks=False)
            return
        self._clear(full, keep_dir=False)
        if stat.S_ISREG(mode):
            with open(src, "rb") as r:
                fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as w:
                    shutil.copyfileobj(r, w, 1 << 20)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(src), full)
        elif stat.S_ISFIFO(mode):
            os.mkfifo(full, 0o600)
        else:
            return  # sockets and devices are not copied
        if st.st_nlink > 1:
            links[key] = full
        self._attrs(full, st, is_dir=False)

    def put_file(self, dest: str, selected: Selected, tree: SourceTree) -> None:
        full_dest = self.resolve(dest)
        if dest.endswith("/") or os.path.isdir(full_dest):
            dest = posixpath.join(dest, selected.name)
        parent = self.makedirs(posixpath.dirname(dest.rstrip("/")) or "/")
        target = os.path.join(parent, posixpath.basename(dest.rstrip("/")))
        if os.path.isdir(target) and not os.path.islink(target):
            raise InvalidArgument(f"cannot copy to {dest}: it is a directory")
        self.put_entry(target, selected.full, selected.st, {})

    def put_dir(self, dest: str, selected: Selected, tree: SourceTree) -> None:
        existed = os.path.isdir(self.resolve(dest))
        if not existed and os.path.lexists(self.resolve(dest)):
            raise InvalidArgument(f"cannot copy directory to {dest}: not a directory")
        full_dest = self.makedirs(dest)
        if not existed:
            self._attrs(full_dest, selected.st, is_dir=True)
        links: dict[tuple[int, int], str] = {}
        for rel, src, st in tree.walk(selected):
            # the parent was ignored, but an exception (`!dir/file`) brings this
            # entry back: its directories are made with default attributes
            parent = self._fresh_dirs(full_dest, os.path.dirname(rel))
            self.put_entry(os.path.join(parent, os.path.basename(rel)), src, st, links)

    def _fresh_dirs(self, base: str, rel: str) -> str:
        """`base/rel` as real directories: below `base` a symlink in the image is
        replaced, never followed (it could name any host path)."""
        current = base
        for part in [p for p in rel.split("/") if p]:
            current = os.path.join(current, part)
            try:
                if stat.S_ISDIR(os.lstat(current).st_mode):
                    continue
                self._clear(current, keep_dir=False)
            except FileNotFoundError:
                pass
            os.mkdir(current, 0o755)
            os.chmod(current, 0o755)
            owner = self.owner or Owner(0, 0)
            os.chown(current, owner.uid, owner.gid)
        return current

    def put_content(self, dest: str, name: str, data: bytes) -> None:
        """A file from a heredoc (`COPY <<EOF /dest`)."""
        if dest.endswith("/") or os.path.isdir(self.resolve(dest)):
            dest = posixpath.join(dest, name)
        parent = self.makedirs(posixpath.dirname(dest) or "/")
        full = os.path.join(parent, posixpath.basename(dest))
        self._clear(full, keep_dir=False)
        fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        owner = self.owner or Owner(0, 0)
        os.chown(full, owner.uid, owner.gid)
        os.chmod(full, self.mode(0o644, False) if self.mode else 0o644)

    def unpack(self, dest: str, archive: str) -> None:
        """ADD of a local archive: extract it over the destination directory."""
        full_dest = self.makedirs(dest)
        with (
            open(archive, "rb") as raw,
            tarfile.open(
                fileobj=open_decompressed(raw), mode="r|", errors="surrogateescape"
            ) as tar,
        ):
            links: dict[str, str] = {}
            for member in tar:
                parts = [p for p in member.name.split("/") if p not in ("", ".")]
                if not parts:
                    continue
                if ".." in parts:
                    raise InvalidArgument(
                        f"invalid archive entry {member.name!r}: leaves the destination"
                    )
                parent = full_dest
                for part in parts[:-1]:
                    parent = os.path.join(parent, part)
                    if os.path.islink(parent) or (
                        os.path.lexists(parent) and not os.path.isdir(parent)
                    ):
                        self._clear(parent, keep_dir=False)
                    if not os.path.isdir(parent):
                        os.mkdir(parent, 0o755)
                full = os.path.join(parent, parts[-1])
                self._unpack_member(tar, member, full, full_dest, links)
                tar.members.clear()  # type: ignore[attr-defined]

    def _unpack_member(
        self,
        tar: tarfile.TarFile,
        member: tarfile.TarInfo,
        full: str,
        root: str,
        links: dict[str, str],
    ) -> None:
        if member.isdir():
            self._clear(full, keep_dir=True)
            if not os.path.isdir(full):
                os.mkdir(full, 0o755)
        elif member.isreg():
            self._clear(full, keep_dir=False)
            source = tar.extractfile(member)
            fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as w:
                if source is not None:
                    shutil.copyfileobj(source, w, 1 << 20)
        elif member.issym():
            self._clear(full, keep_dir=False)
            os.symlink(member.linkname, full)
        elif member.islnk():
            target_parts = [p for p in member.linkname.split("/") if p not in ("", ".")]
            if ".." in target_parts:
                raise InvalidArgument(f"invalid archive entry {member.name!r}: bad hard link")
            target = links.get("/".join(target_parts))
            if target is None:
                raise InvalidArgument(f"invalid archive entry {member.name!r}: link target missing")
            self._clear(full, keep_dir=False)
            os.link(target, full, follow_symlinks=False)
            return
        else:
            return  # devices and FIFOs are not unpacked
        links[os.path.relpath(full, root)] = full
        owner = self.owner or Owner(member.uid, member.gid)
        os.chown(full, owner.uid, owner.gid, follow_symlinks=False)
        if not member.issym():
            mode = member.mode & 0o7777
            os.chmod(full, self.mode(mode, member.isdir()) if self.mode else mode)
        os.utime(full, (int(member.mtime), int(member.mtime)), follow_symlinks=False)


def is_archive(path: str) -> bool:
    """Whether a file is a tar archive, compressed or not (judged by content, not name)."""
    try:
        with (
            open(path, "rb") as raw,
            tarfile.open(
                fileobj=open_decompressed(raw), mode="r|", errors="surrogateescape"
            ) as tar,
        ):
            return tar.next() is not None
    except (tarfile.TarError, OSError, EOFError, InvalidArgument, ValueError):
        return False


@dataclass(frozen=True)
class Download:
    path: str  # the downloaded file
    name: str  # the file name the URL gives ("" if none)
    mtime: float | None


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


_CHECKSUM = re.compile(r"(sha256|sha384|sha512):([0-9a-f]+)")
_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


def download(url: str, directory: str, checksum: str = "") -> Download:
    """Fetch an ADD URL into `directory`; the file gets mode 0600 and the Last-Modified time.

    With `checksum` (`ADD --checksum=sha256:...`), content with another digest is refused.
    """
    match = _CHECKSUM.fullmatch(checksum) if checksum else None
    if checksum and (match is None or len(match.group(2)) != _HEX_LENGTHS[match.group(1)]):
        raise InvalidArgument(f"invalid checksum digest format: {checksum}")
    hasher = hashlib.new(match.group(1)) if match else None
    name = posixpath.basename(urllib.parse.urlparse(url).path)
    path = os.path.join(directory, name or "__unnamed__")
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(path, "wb") as f:
            while chunk := resp.read(1 << 20):
                f.write(chunk)
                if hasher is not None:
                    hasher.update(chunk)
            modified = resp.headers.get("Last-Modified")
    except OSError as e:
        raise Unavailable(f"failed to download {url}: {e}") from None
    if match and hasher is not None and hasher.hexdigest() != match.group(2):
        raise InvalidArgument(
            f"digest mismatch for {url}: expected {checksum}, got "
            f"{match.group(1)}:{hasher.hexdigest()}"
        )
    os.chmod(path, 0o600)
    mtime = None
    if modified:
        try:
            mtime = email.utils.parsedate_to_datetime(modified).timestamp()
        except (TypeError, ValueError):
            mtime = None
    os.utime(path, (mtime or 0, mtime or 0))
    return Download(path, name, mtime)
