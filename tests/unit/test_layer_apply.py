"""Layer changesets: compression sniffing and applying a tar into overlay form.

(dockyard.layers.compression, dockyard.layers.apply; spec §3.1-3.6.)
The archives are built in memory with `tarfile`; every test looks at the
resulting tree. Ownership, device nodes and trusted.* xattrs need root.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import io
import lzma
import os
import re
import stat
import struct
import tarfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import zstandard

from dockyard import mount
from dockyard.errors import InvalidArgument
from dockyard.layers.apply import OPAQUE_XATTR, ApplyResult, apply_layer
from dockyard.layers.compression import Compression, detect, open_decompressed

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, mknod, xattrs)")

MTIME = 1_600_000_000
Entry = tuple[tarfile.TarInfo, bytes | None]


# -- building layers --------------------------------------------------------


def _info(
    name: str, kind: bytes, mode: int, uid: int, gid: int, pax: dict[str, str] | None
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.mtime = MTIME
    if pax:
        info.pax_headers = pax
    return info


def file(
    name: str,
    data: bytes = b"",
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    pax: dict[str, str] | None = None,
    mtime: int = MTIME,
) -> Entry:
    info = _info(name, tarfile.REGTYPE, mode, uid, gid, pax)
    info.size = len(data)
    info.mtime = mtime
    return info, data


def directory(
    name: str,
    mode: int = 0o755,
    uid: int = 0,
    gid: int = 0,
    pax: dict[str, str] | None = None,
    mtime: int = MTIME,
) -> Entry:
    info = _info(name, tarfile.DIRTYPE, mode, uid, gid, pax)
    info.mtime = mtime
    return info, None


def symlink(name: str, target: str, uid: int = 0, gid: int = 0) -> Entry:
    info = _info(name, tarfile.SYMTYPE, 0o777, uid, gid, None)
    info.linkname = target
    return info, None


def hardlink(name: str, target: str) -> Entry:
    # Attributes of a link header are not applied; these differ on purpose.
    info = _info(name, tarfile.LNKTYPE, 0o600, 99, 99, None)
    info.linkname = target
    return info, None


def device(name: str, kind: bytes, major: int = 0, minor: int = 0, mode: int = 0o666) -> Entry:
    info = _info(name, kind, mode, 0, 0, None)
    info.devmajor, info.devminor = major, minor
    return info, None


def tar_bytes(*entries: Entry, format: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=format) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def apply(
    target: Path, *entries: Entry, lowers: Sequence[Path] = (), format: int = tarfile.PAX_FORMAT
) -> ApplyResult:
    target.mkdir(exist_ok=True)
    stream = io.BytesIO(tar_bytes(*entries, format=format))
    return apply_layer(stream, str(target), lowers=[str(p) for p in lowers])


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the layer that no entry may touch."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "passwd").write_bytes(b"root:x:0:0\n")
    return path


def assert_untouched(outside: Path) -> None:
    assert tree(outside) == ["passwd"]
    assert (outside / "passwd").read_bytes() == b"root:x:0:0\n"


# -- regular content ---------------------------------------------------------


def test_files_keep_content_mode_owner_and_mtime(tmp_path: Path) -> None:
    root = tmp_path / "layer"
    result = apply(
        root,
        directory("usr", mode=0o755),
        directory("usr/bin", mode=0o750, uid=2, gid=3),
        file("usr/bin/tool", b"#!/bin/sh\n", mode=0o4755, uid=1000, gid=1000),
        file("etc/shadow", b"secret", mode=0o640, gid=42),
    )
    tool = os.lstat(root / "usr/bin/tool")
    assert (root / "usr/bin/tool").read_bytes() == b"#!/bin/sh\n"
    # setuid survives because chmod runs after chown (chown clears it)
    assert stat.S_IMODE(tool.st_mode) == 0o4755
    assert (tool.st_uid, tool.st_gid) == (1000, 1000)
    assert tool.st_mtime == MTIME
    bindir = os.lstat(root / "usr/bin")
    assert (stat.S_IMODE(bindir.st_mode), bindir.st_uid, bindir.st_gid) == (0o750, 2, 3)
    assert result.size == len(b"#!/bin/sh\n") + len(b"secret")


def test_missing_parents_are_created_0755_root_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        apply(tmp_path / "layer", file("a/b/c", b"x", uid=7))
    finally:
        os.umask(old)
    for parent in ("a", "a/b"):
        st = os.lstat(tmp_path / "layer" / parent)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o755, 0, 0)


def test_directory_mtime_is_set_after_its_children(tmp_path: Path) -> None:
    root = tmp_path / "layer"
    apply(root, directory("d"), file("d/one", b"1"), file("d/two", b"2"))
    assert os.lstat(root / "d").st_mtime == MTIME


def test_many_directories_revisited_out_of_order(tmp_path: Path) -> None:
    # More directories than the applier keeps open, then back to the first.
    root = tmp_path / "layer"
    entries = [directory(f"d{i:03}", mtime=MTIME + i) for i in range(300)]
    entries += [file(f"d{i:03}/f", str(i).encode()) for i in range(300)]
    entries += [file("d000/late", b"late")]
    apply(root, *entries)
    for i in range(300):
        assert (root / f"d{i:03}/f").read_bytes() == str(i).encode()
        assert os.lstat(root / f"d{i:03}").st_mtime == MTIME + i
    assert (root / "d000/late").read_bytes() == b"late"


def test_time_of_a_replaced_directory_is_not_applied_to_its_successor(tmp_path: Path) -> None:
    root = tmp_path / "layer"
    apply(
        root,
        directory("d"),
        directory("d/sub", mtime=12345),
        file("d"),  # removes d/sub with it
        directory("d"),
        file("d/sub/f"),  # a new d/sub, made as a missing parent
    )
    assert os.lstat(root / "d/sub").st_mtime != 12345
    assert os.lstat(root / "d").st_mtime == MTIME


def test_pax_times_keep_nanoseconds(tmp_path: Path) -> None:
    root = tmp_path / "layer"
    apply(root, file("f", pax={"mtime": "1600000000.123456789"}))
    assert os.lstat(root / "f").st_mtime_ns == 1_600_000_000_123_456_789


@pytest.mark.parametrize("name", ["./etc/os-release", "/etc/os-release", "etc//os-release"])
def test_docker_and_oci_style_names_land_in_the_same_place(tmp_path: Path, name: str) -> None:
    root = tmp_path / "layer"
    apply(root, file(name, b"ID=test\n"))
    assert tree(root) == ["etc", "etc/os-release"]


def test_layer_root_entry_does_not_change_the_root(tmp_path: Path) -> None:
    root = tmp_path / "layer"
    root.mkdir(mode=0o755)
    apply(root, directory(".", mode=0o700, uid=5), file("f"))
    st = os.lstat(root)
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o755, 0)


def test_symlinks_are_stored_verbatim_and_not_followed(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "layer"
    apply(
        root,
        symlink("abs", str(outside / "passwd"), uid=3, gid=4),
        symlink("rel", "../lib/ld.so"),
    )
    assert os.readlink(root / "abs") == str(outside / "passwd")
    assert os.readlink(root / "rel") == "../lib/ld.so"
    st = os.lstat(root / "abs")
    assert stat.S_ISLNK(st.st_mode)
    assert (st.st_uid, st.st_gid, st.st_mtime) == (3, 4, MTIME)
    # lchown and utime(follow_symlinks=False) left the target alone
    assert os.stat(outside / "passwd").st_uid == 0
    assert os.stat(outside / "passwd").st_mtime != MTIME


def test_devices_and_fifos(tmp_path: Path) -> None:
    root = tmp_path / "layer"
    apply(
        root,
        device("dev/null", tarfile.CHRTYPE, 1, 3),
        device("dev/loop0", tarfile.BLKTYPE, 7, 0, mode=0o660),
        device("run/fifo", tarfile.FIFOTYPE, mode=0o600),
    )
    null = os.lstat(root / "dev/null")
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(null.st_mode) == 0o666
    loop = os.lstat(root / "dev/loop0")
    assert stat.S_ISBLK(loop.st_mode) and loop.st_rdev == os.makedev(7, 0)
    assert stat.S_ISFIFO(os.lstat(root / "run/fifo").st_mode)


def test_long_names_gnu_and_pax(tmp_path: Path) -> None:
    deep = "/".join(["directory-with-a-long-name"] * 6)  # > 100 bytes
    target = "/" + "t" * 150
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        root = tmp_path / f"layer{fmt}"
        apply(
            root,
            file(f"{deep}/file", b"deep"),
            symlink(f"{deep}/link", target),
            hardlink("short", f"{deep}/file"),
            format=fmt,
        )
        assert (root / deep / "file").read_bytes() == b"deep"
        assert os.readlink(root / deep / "link") == target
        assert os.lstat(root / "short").st_ino == os.lstat(root / deep / "file").st_ino


# -- xattrs ------------------------------------------------------------------


CAP_NET_RAW = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)  # vfs_cap_data v2


def test_xattrs_including_capabilities_and_binary_values(tmp_path: Path) -> None:
    root = tmp_path / "layer"
    binary = b"\x00\xff\xfe value"
    apply(
        root,
        file(
            "bin/ping",
            b"ELF",
            mode=0o755,
            pax={
                "SCHILY.xattr.security.capability": CAP_NET_RAW.decode("utf-8", "surrogateescape"),
                "SCHILY.xattr.user.binary": binary.decode("utf-8", "surrogateescape"),
                "LIBARCHIVE.xattr.user.from%20libarchive": "aGVsbG8",  # unpadded base64
            },
        ),
    )
    ping = str(root / "bin/ping")
    assert os.getxattr(ping, "security.capability") == CAP_NET_RAW
    assert os.getxattr(ping, "user.binary") == binary
    assert os.getxattr(ping, "user.from libarchive") == b"hello"


def test_overlay_xattrs_from_the_archive_are_never_applied(tmp_path: Path) -> None:
    root = tmp_path / "layer"
    apply(
        root,
        directory(
            "d",
            pax={
                "SCHILY.xattr.trusted.overlay.opaque": "y",
                "SCHILY.xattr.trusted.overlay.redirect": "/etc",
                "SCHILY.xattr.user.overlay.opaque": "y",
                "SCHILY.xattr.user.kept": "1",
            },
        ),
    )
    assert os.listxattr(root / "d") == ["user.kept"]


# -- hard links ---------------------------------------------------------------


def test_hardlink_within_the_layer_shares_the_inode_and_its_attributes(tmp_path: Path) -> None:
    root = tmp_path / "layer"
    caps = {"SCHILY.xattr.security.capability": CAP_NET_RAW.decode("utf-8", "surrogateescape")}
    result = apply(
        root,
        file("bin/busybox", b"BB", mode=0o4755, gid=5, pax=caps),
        hardlink("bin/sh", "bin/busybox"),
    )
    sh = os.lstat(root / "bin/sh")
    assert sh.st_ino == os.lstat(root / "bin/busybox").st_ino
    assert sh.st_nlink == 2
    assert (stat.S_IMODE(sh.st_mode), sh.st_uid, sh.st_gid) == (0o4755, 0, 5)
    # a chown for the link would have made the kernel drop the capability
    assert os.getxattr(root / "bin/sh", "security.capability") == CAP_NET_RAW
    assert result.size == 2


def test_hardlink_into_a_lower_layer_copies_content_and_metadata(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    apply(lower, file("bin/ping", b"ping-binary", mode=0o4755, uid=0, gid=11))
    os.setxattr(lower / "bin/ping", "security.capability", CAP_NET_RAW)
    root = tmp_path / "layer"
    result = apply(
        root,
        hardlink("usr/bin/ping", "bin/ping"),
        hardlink("usr/bin/ping6", "/bin/ping"),
        lowers=[lower],
    )
    ping = os.lstat(root / "usr/bin/ping")
    assert (root / "usr/bin/ping").read_bytes() == b"ping-binary"
    assert (stat.S_IMODE(ping.st_mode), ping.st_gid, ping.st_mtime) == (0o4755, 11, MTIME)
    assert os.getxattr(root / "usr/bin/ping", "security.capability") == CAP_NET_RAW
    # the second link to the same lower file links to the first copy
    assert os.lstat(root / "usr/bin/ping6").st_ino == ping.st_ino
    assert result.size == len(b"ping-binary")
    assert not (root / "bin").exists()  # the target itself is not brought up


def test_hardlink_lookup_in_lowers_follows_overlay_rules(tmp_path: Path) -> None:
    base = tmp_path / "base"
    apply(base, file("bin/ping", b"old"), file("sbin/tool", b"old"))
    middle = tmp_path / "middle"
    apply(middle, file("bin/.wh.ping"), file("sbin/.wh..wh..opq"))
    for name in ("bin/ping", "sbin/tool"):  # whited out; hidden by an opaque dir
        with pytest.raises(InvalidArgument, match="does not exist"):
            apply(tmp_path / "layer", hardlink("x", name), lowers=[middle, base])
    top = tmp_path / "top"
    apply(top, file("bin/ping", b"new"))
    apply(tmp_path / "layer", hardlink("x", "bin/ping"), lowers=[top, middle, base])
    assert (tmp_path / "layer/x").read_bytes() == b"new"


def test_hardlink_to_a_missing_target_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"'x'.*'nowhere' does not exist"):
        apply(tmp_path / "layer", hardlink("x", "nowhere"))


def test_hardlink_to_a_symlink_links_the_symlink_itself(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "layer"
    apply(root, symlink("s", str(outside / "passwd")), hardlink("h", "s"))
    assert os.lstat(root / "h").st_ino == os.lstat(root / "s").st_ino
    assert os.readlink(root / "h") == str(outside / "passwd")
    assert os.stat(outside / "passwd").st_nlink == 1
    assert_untouched(outside)


# -- whiteouts ---------------------------------------------------------------


def test_whiteout_becomes_a_0_0_character_device_owned_like_the_entry(tmp_path: Path) -> None:
    root = tmp_path / "layer"
    apply(root, file("etc/.wh.motd", uid=12, gid=34))
    st = os.lstat(root / "etc/motd")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert (st.st_uid, st.st_gid) == (12, 34)
    assert tree(root) == ["etc", "etc/motd"]


def test_whiteout_does_not_remove_what_the_same_layer_created(tmp_path: Path) -> None:
    root = tmp_path / "layer"
    apply(root, file("keep", b"mine"), file(".wh.keep"))
    assert (root / "keep").read_bytes() == b"mine"


def test_opaque_marker_becomes_the_overlay_xattr(tmp_path: Path) -> None:
    root = tmp_path / "layer"
    apply(root, directory("d"), file("d/before"), file("d/.wh..wh..opq"), file("d/after"))
    assert os.getxattr(root / "d", OPAQUE_XATTR) == b"y"
    assert tree(root) == ["d", "d/after", "d/before"]


def test_directory_recreated_after_its_whiteout_is_opaque(tmp_path: Path) -> None:
    root = tmp_path / "layer"
    apply(root, file(".wh.a"), directory("a"), file(".wh.b"), file("b/child"))
    for name in ("a", "b"):
        assert stat.S_ISDIR(os.lstat(root / name).st_mode)
        assert os.getxattr(root / name, OPAQUE_XATTR) == b"y"


def test_aufs_metadata_is_skipped_with_its_subtree(tmp_path: Path) -> None:
    root = tmp_path / "layer"
    apply(
        root,
        directory(".wh..wh.plnk"),
        file(".wh..wh.plnk/1234.5678", b"x"),
        file(".wh..wh.aufs"),
        file("etc/.wh..wh.orph"),
        file("kept"),
    )
    assert tree(root) == ["kept"]


@pytest.mark.parametrize("name", [".wh.", "d/.wh..", "d/.wh..."])
def test_whiteouts_of_nothing_dot_or_dotdot_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid whiteout"):
        apply(tmp_path / "layer", file(name))


# -- replacement and duplicates ---------------------------------------------


def test_later_entries_win(tmp_path: Path) -> None:
    root = tmp_path / "layer"
    apply(
        root,
        file("f", b"one"),
        hardlink("f-link", "f"),
        file("f", b"two"),
        directory("was-dir"),
        file("was-dir/child"),
        file("was-dir", b"now a file"),
        file("was-file", b"x"),
        directory("was-file", mode=0o700),
        directory("merged", mode=0o700),
        file("merged/kept"),
        directory("merged", mode=0o755, uid=9),
    )
    assert (root / "f").read_bytes() == b"two"
    assert (root / "f-link").read_bytes() == b"one"  # replaced, not rewritten in place
    assert (root / "was-dir").read_bytes() == b"now a file"
    assert stat.S_IMODE(os.lstat(root / "was-file").st_mode) == 0o700
    merged = os.lstat(root / "merged")
    assert (stat.S_IMODE(merged.st_mode), merged.st_uid) == (0o755, 9)
    assert (root / "merged/kept").exists()


# -- hostile archives ---------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "../outside/passwd", "a/../../outside/passwd", "./../x"]
)
def test_dotdot_escapes_are_refused(tmp_path: Path, outside: Path, name: str) -> None:
    with pytest.raises(InvalidArgument, match=rf"layer entry '{re.escape(name)}'.*outside the"):
        apply(tmp_path / "layer", file(name, b"pwned"))
    assert_untouched(outside)
    assert not (tmp_path.parent / "etc").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layer", "outside"]


def test_dotdot_that_stays_inside_is_resolved(tmp_path: Path) -> None:
    apply(tmp_path / "layer", file("a/../b", b"ok"))
    assert (tmp_path / "layer/b").read_bytes() == b"ok"


# `a -> /etc` then `a/passwd` is the classic attack. The symlink points at a
# scratch directory rather than the real /etc so that a regression fails the
# test instead of overwriting the host's password file.
THROUGH_SYMLINK = {
    "file": file("a/passwd", b"pwned"),
    "dir": directory("a/newdir"),
    "whiteout": file("a/.wh.passwd"),
    "opaque": file("a/.wh..wh..opq"),
    "hardlink": hardlink("a/link", "target"),
}


@pytest.mark.parametrize("kind", list(THROUGH_SYMLINK))
def test_nothing_is_written_through_a_symlink_to_outside(
    tmp_path: Path, outside: Path, kind: str
) -> None:
    entry = THROUGH_SYMLINK[kind]
    with pytest.raises(InvalidArgument, match="'a' is a symlink"):
        apply(tmp_path / "layer", file("target"), symlink("a", str(outside)), entry)
    assert_untouched(outside)
    assert os.listxattr(outside) == []


def test_symlink_to_parent_cannot_be_used_to_climb_out(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"layer entry 'a/x'.*'a' is a symlink"):
        apply(tmp_path / "layer", symlink("a", ".."), file("a/x", b"pwned"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layer"]


def test_hardlink_escaping_the_root_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"'shadow'.*'\.\./\.\./etc/shadow'.*outside"):
        apply(tmp_path / "layer", hardlink("shadow", "../../etc/shadow"))
    assert tree(tmp_path / "layer") == []


def test_hardlink_through_a_symlink_is_refused(tmp_path: Path, outside: Path) -> None:
    with pytest.raises(InvalidArgument, match="'a' is a symlink"):
        apply(tmp_path / "layer", symlink("a", str(outside)), hardlink("stolen", "a/passwd"))
    assert not (tmp_path / "layer/stolen").exists()
    assert os.stat(outside / "passwd").st_nlink == 1
    # the same through a symlink in a lower layer
    lower = tmp_path / "lower"
    apply(lower, symlink("a", str(outside)))
    with pytest.raises(InvalidArgument, match="through symlink 'a'"):
        apply(tmp_path / "layer2", hardlink("stolen", "a/passwd"), lowers=[lower])
    assert not (tmp_path / "layer2/stolen").exists()


def test_symlink_entry_replaces_a_directory(tmp_path: Path) -> None:
    root = tmp_path / "layer"
    apply(root, directory("d"), file("d/f"), symlink("d", "/usr/lib"))
    assert os.readlink(root / "d") == "/usr/lib"
    assert tree(root) == ["d"]


def test_entries_replace_a_symlink_to_outside_instead_of_writing_through_it(
    tmp_path: Path, outside: Path
) -> None:
    root = tmp_path / "layer"
    apply(
        root,
        symlink("f", str(outside / "passwd")),
        file("f", b"replaced"),
        symlink("d", str(outside)),
        directory("d", mode=0o700),
        file("d/passwd", b"inside"),
    )
    assert_untouched(outside)
    assert stat.S_ISREG(os.lstat(root / "f").st_mode)
    assert (root / "f").read_bytes() == b"replaced"
    assert stat.S_ISDIR(os.lstat(root / "d").st_mode)
    assert (root / "d/passwd").read_bytes() == b"inside"


# -- malformed archives -------------------------------------------------------


def _two_files() -> bytes:
    # ustar: header a @0, data @512 (1024 padded), header b @1536
    return tar_bytes(file("a", b"x" * 1000), file("b", b"y"), format=tarfile.USTAR_FORMAT)


def test_archive_cut_inside_file_data_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="invalid layer tar"):
        apply_layer(io.BytesIO(_two_files()[:1000]), str(_mkdir(tmp_path / "layer")))


def test_archive_cut_inside_a_header_is_refused(tmp_path: Path) -> None:
    # plain tarfile would take this for the end of the archive and succeed
    with pytest.raises(InvalidArgument, match="invalid layer tar"):
        apply_layer(io.BytesIO(_two_files()[: 1536 + 200]), str(_mkdir(tmp_path / "layer")))


def test_corrupt_header_in_the_middle_is_refused(tmp_path: Path) -> None:
    data = bytearray(_two_files())
    data[1536] ^= 0xFF  # first byte of b's name; the checksum no longer matches
    with pytest.raises(InvalidArgument, match="bad header"):
        apply_layer(io.BytesIO(bytes(data)), str(_mkdir(tmp_path / "layer")))


def test_empty_blob_is_an_empty_layer_and_trailing_bytes_are_consumed(tmp_path: Path) -> None:
    assert apply_layer(io.BytesIO(b""), str(_mkdir(tmp_path / "empty"))).size == 0
    stream = io.BytesIO(_two_files() + b"\0" * 8192)
    apply_layer(stream, str(_mkdir(tmp_path / "layer")))
    assert stream.read() == b""  # a digesting reader saw the whole blob


def test_no_file_descriptors_are_left_open(tmp_path: Path, outside: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    apply(tmp_path / "ok", *[file(f"d{i}/f") for i in range(200)], hardlink("x", "d0/f"))
    with pytest.raises(InvalidArgument):
        apply(tmp_path / "bad", file("d/f"), symlink("a", str(outside)), file("a/f"))
    assert len(os.listdir("/proc/self/fd")) == before


def test_out_of_range_numbers_do_not_crash_the_applier(tmp_path: Path) -> None:
    root = tmp_path / "layer"
    apply(root, file("far-future", pax={"mtime": "1e400"}), file("nan", pax={"mtime": "nan"}))
    assert (root / "far-future").exists() and (root / "nan").exists()
    for entry in (
        file("huge-uid", pax={"uid": str(2**40)}),
        file(".wh.x", pax={"gid": str(2**40)}),
    ):
        with pytest.raises(InvalidArgument, match=re.escape(repr(entry[0].name))):
            apply(tmp_path / "layer2", entry)


# -- compression ----------------------------------------------------------------


class Trickle(io.BytesIO):
    """A non-seekable stream that hands out at most 3 bytes per read, like a slow pipe."""

    def seekable(self) -> bool:
        return False

    def read(self, size: int | None = -1) -> bytes:
        return super().read(3 if size is None or size < 0 else min(size, 3))


def _zstd_frames(*parts: bytes) -> bytes:
    # With a content checksum, as the zstd CLI writes; without one zstd cannot
    # notice a flipped literal (the layer digest still does).
    return b"".join(zstandard.ZstdCompressor(write_checksum=True).compress(p) for p in parts)


CODECS = {
    Compression.NONE: lambda *parts: b"".join(parts),
    Compression.GZIP: lambda *parts: b"".join(gzip.compress(p) for p in parts),
    Compression.ZSTD: _zstd_frames,
    Compression.BZIP2: lambda *parts: b"".join(bz2.compress(p) for p in parts),
    Compression.XZ: lambda *parts: b"".join(lzma.compress(p) for p in parts),
}


@pytest.mark.parametrize("kind", list(CODECS), ids=lambda k: k.value)
def test_detects_and_decodes_every_member_of_a_non_seekable_stream(kind: Compression) -> None:
    first, second = os.urandom(100_000), b"second member " * 1000
    blob = CODECS[kind](first, second)
    assert detect(blob[:512]) is kind
    stream = open_decompressed(Trickle(blob))
    assert stream.read() == first + second


def test_zstd_stream_starting_with_a_skippable_frame() -> None:
    skippable = struct.pack("<II", 0x184D2A5E, 4) + b"meta"
    blob = skippable + _zstd_frames(b"payload")
    assert detect(blob) is Compression.ZSTD
    assert open_decompressed(io.BytesIO(blob)).read() == b"payload"


def test_plain_tar_whose_first_name_looks_like_a_magic_number() -> None:
    blob = tar_bytes(file("BZh91AY&SY", b"x"))
    assert detect(blob[:512]) is Compression.NONE
    with tarfile.open(fileobj=open_decompressed(io.BytesIO(blob)), mode="r|") as tar:
        assert [m.name for m in tar] == ["BZh91AY&SY"]


COMPRESSED = [k for k in CODECS if k is not Compression.NONE]


@pytest.mark.parametrize("kind", COMPRESSED, ids=lambda k: k.value)
def test_truncated_compressed_data_is_invalid_input(kind: Compression) -> None:
    blob = CODECS[kind](os.urandom(50_000), b"x" * 50_000)
    for cut in (len(blob) // 3, len(blob) - 1):
        with pytest.raises(InvalidArgument, match=f"corrupt or truncated {kind.value}"):
            open_decompressed(io.BytesIO(blob[:cut])).read()


@pytest.mark.parametrize("kind", COMPRESSED, ids=lambda k: k.value)
def test_corrupt_compressed_data_is_invalid_input(kind: Compression) -> None:
    blob = bytearray(CODECS[kind](b"layer data " * 10_000))
    for i in range(len(blob) // 2, len(blob) // 2 + 8):
        blob[i] ^= 0xFF
    with pytest.raises(InvalidArgument, match=f"corrupt.*{kind.value}"):
        open_decompressed(io.BytesIO(bytes(blob))).read()


def test_data_after_the_last_gzip_member_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="gzip"):
        open_decompressed(io.BytesIO(gzip.compress(b"layer") + b"garbage!")).read()


def _decoder_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.endswith("-decode")}


def test_decoder_thread_stops_when_the_stream_is_closed_or_dropped() -> None:
    before = _decoder_threads()
    blob = gzip.compress(os.urandom(8 << 20), compresslevel=1)  # more than is read ahead
    stream = open_decompressed(io.BytesIO(blob))
    assert stream.read(10)
    assert len(_decoder_threads() - before) == 1
    stream.close()
    assert _decoder_threads() == before
    stream = open_decompressed(io.BytesIO(blob))
    assert stream.read(10)
    del stream  # e.g. a caller that let an apply error propagate
    assert _decoder_threads() == before


def test_gzip_trailer_is_checked_even_though_tar_ends_earlier(tmp_path: Path) -> None:
    blob = bytearray(gzip.compress(tar_bytes(file("f", b"data"))))
    blob[-8] ^= 0xFF  # CRC32 of the member, after the tar's end-of-archive blocks
    with pytest.raises(InvalidArgument, match="gzip"):
        apply_layer(open_decompressed(io.BytesIO(bytes(blob))), str(_mkdir(tmp_path / "layer")))


def test_compressed_layer_applies(tmp_path: Path) -> None:
    blob = gzip.compress(tar_bytes(file("a", b"1"))) + gzip.compress(b"")  # pigz-style
    apply_layer(open_decompressed(io.BytesIO(blob)), str(_mkdir(tmp_path / "layer")))
    assert (tmp_path / "layer/a").read_bytes() == b"1"


# -- the proof: overlayfs reads the result as intended ---------------------------


@pytest.fixture
def merged(tmp_path: Path) -> Iterator[Path]:
    """A mountpoint that is unmounted again whatever the test does."""
    path = _mkdir(tmp_path / "merged")
    yield path
    mount.unmount(str(path))


def _mount_overlay(tmp_path: Path, merged: Path, lowers_topmost_first: list[Path]) -> None:
    upper, work = _mkdir(tmp_path / "upper"), _mkdir(tmp_path / "work")
    lowerdir = ":".join(str(p) for p in lowers_topmost_first)
    options = f"lowerdir={lowerdir},upperdir={upper},workdir={work}"
    try:
        mount.mount("overlay", str(merged), "overlay", 0, options)
    except OSError as e:
        if e.errno in (errno.EPERM, errno.ENODEV):
            pytest.skip(f"cannot mount overlayfs here: {e}")
        raise


def test_overlay_mount_of_applied_layers_honours_whiteouts_and_opaque_dirs(
    tmp_path: Path, merged: Path
) -> None:
    base, top = tmp_path / "base", tmp_path / "top"
    apply(
        base,
        file("etc/keep", b"keep"),
        file("etc/gone", b"gone"),
        file("opq/old", b"old"),
        file("replaced/old", b"old"),
        file("bin/ping", b"ping", mode=0o755),
    )
    apply(
        top,
        file("etc/.wh.gone"),
        file("opq/.wh..wh..opq"),
        file("opq/new", b"new"),
        file(".wh.replaced"),
        file("replaced/new", b"new"),
        hardlink("usr/bin/ping", "bin/ping"),
        lowers=[base],
    )
    _mount_overlay(tmp_path, merged, [top, base])
    assert sorted(os.listdir(merged / "etc")) == ["keep"]
    assert sorted(os.listdir(merged / "opq")) == ["new"]
    assert sorted(os.listdir(merged / "replaced")) == ["new"]
    assert (merged / "usr/bin/ping").read_bytes() == b"ping"
    assert (merged / "etc/keep").read_bytes() == b"keep"
