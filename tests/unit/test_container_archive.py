"""`docker cp`'s rules: paths, the stat header and its mode bits, archive names, extraction."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from dockyard.cli import archive as cli
from dockyard.containers import copier, copyrules, tarcopy
from dockyard.containers.copyrules import PathStat

# -- Go's path arithmetic and go-archive's copy rules ---------------------------------------


@pytest.mark.parametrize(
    ("path", "clean", "base", "dirname"),
    [
        ("", ".", ".", "."),
        ("/", "/", "/", "/"),
        ("//a//b/", "/a/b", "b", "/a/b"),
        ("a/../../b", "../b", "b", ".."),
        ("/a/b/.", "/a/b", ".", "/a/b"),
        ("/../x", "/x", "x", "/.."),
    ],
)
def test_go_filepath(path: str, clean: str, base: str, dirname: str) -> None:
    assert copyrules.clean(path) == clean
    assert copyrules.base(path) == base
    assert copyrules.dirname(path) == copyrules.clean(dirname)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("etc/passwd", "/etc/passwd"),
        ("/etc/", "/etc/"),
        ("/etc/.", "/etc/."),
        ("/etc//./", "/etc/./"),
        ("etc/../tmp/.", "/tmp/."),
        ("/", "/"),
        (".", "/."),
        ("/a/b/..", "/a"),
    ],
)
def test_container_paths_keep_their_trailing_dot_or_slash(given: str, expected: str) -> None:
    assert copyrules.container_path(given) == expected


def test_directory_assertions_and_splits() -> None:
    assert copyrules.asserts_directory("/a/") and copyrules.asserts_directory("/a/.")
    assert not copyrules.asserts_directory("/a")
    assert copyrules.split_path_dir_entry("/a/b/.") == ("/a/b", ".")
    assert copyrules.split_path_dir_entry("/a/b/") == ("/a", "b")
    assert copyrules.split_path_dir_entry("b") == (".", "b")


def test_rebase_names_follow_go_archive() -> None:
    # -L of a link whose target has another name: the archive keeps the name asked for.
    assert copyrules.rebase_name("/link", "/data/file") == ("/data/file", "link")
    assert copyrules.rebase_name("/link/.", "/data") == ("/data/.", "")
    assert copyrules.rebase_name("/link/", "/data") == ("/data/", "link")
    assert copyrules.rebase_name("/same", "/x/same") == ("/x/same", "")
    assert copyrules.rebase_entry("src/a/b", "src", "dst") == "dst/a/b"
    assert copyrules.rebase_entry("src/", "src", "dst") == "dst/"
    assert copyrules.rebase_entry("srcx/a", "src", "dst") == "srcx/a"
    assert copyrules.rebase_entry("./a", ".", "new") == "new/a"
    assert copyrules.rebase_entry("/x", "", "top") == "top/x"


def test_entries_stay_below_their_directory() -> None:
    assert copyrules.entry_path("/etc/passwd") == "etc/passwd"
    assert copyrules.entry_path("a/../b") == "b"
    assert copyrules.entry_path("./") is None
    for hostile in ("..", "../x", "a/../../x", "/../../x"):
        with pytest.raises(copyrules.EntryOutsideError, match="invalid entry name"):
            copyrules.entry_path(hostile)
    assert copyrules.hardlink_target("/bin/sh") == "bin/sh"
    for hostile in ("../etc/shadow", ".", "a/../.."):
        with pytest.raises(copyrules.EntryOutsideError, match="invalid hardlink target"):
            copyrules.hardlink_target(hostile)
    with pytest.raises(copyrules.EntryOutsideError) as raised:
        copyrules.entry_path("../x")
    assert str(raised.value) == 'invalid entry name "../x"'


# -- the stat header -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("st_mode", "go_mode"),
    [
        (stat.S_IFREG | 0o644, 0o644),
        (stat.S_IFDIR | 0o755, (1 << 31) | 0o755),
        (stat.S_IFLNK | 0o777, (1 << 27) | 0o777),
        (stat.S_IFBLK | 0o660, (1 << 26) | 0o660),
        (stat.S_IFCHR | 0o666, (1 << 26) | (1 << 21) | 0o666),
        (stat.S_IFIFO | 0o600, (1 << 25) | 0o600),
        (stat.S_IFSOCK | 0o755, (1 << 24) | 0o755),
        (stat.S_IFREG | stat.S_ISUID | 0o755, (1 << 23) | 0o755),
        (stat.S_IFREG | stat.S_ISGID | 0o755, (1 << 22) | 0o755),
        (stat.S_IFDIR | stat.S_ISVTX | 0o777, (1 << 31) | (1 << 20) | 0o777),
    ],
)
def test_file_modes_are_go_file_modes(st_mode: int, go_mode: int) -> None:
    assert copyrules.file_mode(st_mode) == go_mode


def test_times_are_rfc3339_nano_in_utc() -> None:
    assert copyrules.rfc3339_nano(0) == "1970-01-01T00:00:00Z"
    assert copyrules.rfc3339_nano(1_700_000_000_120_000_000) == "2023-11-14T22:13:20.12Z"
    assert copyrules.rfc3339_nano(1_700_000_000_000_000_001) == "2023-11-14T22:13:20.000000001Z"


def test_stat_header_is_base64_of_go_json() -> None:
    found = PathStat("hosts", 174, 0o644, "2025-01-02T03:04:05.5Z")
    expected = (
        '{"name":"hosts","size":174,"mode":420,"mtime":"2025-01-02T03:04:05.5Z","linkTarget":""}'
    )
    assert base64.b64decode(found.header()).decode() == expected
    assert PathStat.from_header(found.header()) == found
    odd = PathStat("a<b>&\u2028", 0, (1 << 27) | 0o777, "x", link_target="/t")
    text = base64.b64decode(odd.header()).decode()
    assert '"a\\u003cb\\u003e\\u0026\\u2028"' in text
    assert json.loads(text)["name"] == "a<b>&\u2028" and odd.is_symlink and not odd.is_dir


# -- resolving and checking inside the container's root ------------------------------------


def test_symlinks_resolve_in_scope(tmp_path: Path) -> None:
    root = str(tmp_path)
    (tmp_path / "etc").mkdir()
    os.symlink("/", tmp_path / "rootlink")
    os.symlink("../../../../etc", tmp_path / "etc" / "up")
    os.symlink("/etc/missing/x", tmp_path / "dangling")
    os.symlink("loop2", tmp_path / "loop1")
    os.symlink("loop1", tmp_path / "loop2")
    resolve = copier.follow_symlinks_in_scope
    assert resolve(f"{root}/rootlink", root) == root
    assert resolve(f"{root}/etc/up", root) == f"{root}/etc"
    assert resolve(f"{root}/dangling", root) == f"{root}/etc/missing/x"
    # The path is cleaned first (Go's rules): `up/..` goes before any link is read.
    assert resolve(f"{root}/rootlink/etc/up/../x", root) == f"{root}/etc/x"
    with pytest.raises(OSError, match="too many links"):
        resolve(f"{root}/loop1", root)


def test_writability_follows_the_innermost_mount() -> None:
    mounts = [
        {"destination": "/data", "rw": False},
        {"destination": "/data/rw", "rw": True},
        {"destination": "/scratch", "rw": True},
    ]
    check = copier.writable_error
    assert check("/data/x", mounts, False) == "mounted volume is marked read-only"
    assert check("/data/rw/x/.", mounts, True) is None
    assert check("/database", mounts, True) == "container rootfs is marked read-only"
    assert check("/scratch", mounts, True) is None
    assert check("/tmp", mounts, False) is None


def test_copy_uid_gid_owner_from_the_containers_files() -> None:
    passwd = "root:x:0:0::/root:/bin/sh\n# comment\napp:x:1000:1001:app:/home:/bin/sh\nbad:x:y:z\n"
    group = "root:x:0:\nstaff:x:50:app\n"
    assert copier.owner("app", passwd, group) == (1000, 1001)
    assert copier.owner("1000", passwd, group) == (1000, 1001)
    assert copier.owner("4242", passwd, group) == (4242, 0)
    assert copier.owner("app:staff", passwd, group) == (1000, 50)
    assert copier.owner(":77", passwd, group) == (0, 77)
    assert copier.owner("4242:7", passwd, group) == (4242, 7)
    with pytest.raises(ValueError) as raised:
        copier.owner("ghost", passwd, group)
    assert str(raised.value) == (
        'failed to look up user "ghost" in container: unable to find user ghost: '
        "no matching entries in passwd file"
    )
    with pytest.raises(ValueError, match='failed to look up group "nope" in container'):
        copier.owner("app:nope", passwd, group)


# -- archive names and extraction --------------------------------------------------------------


def _archive(root: Path, path: str, top: str, **kwargs: object) -> dict[str, tarfile.TarInfo]:
    read, write = os.pipe()
    warnings: list[str] = []
    writer = tarcopy.TarWriter(write, warnings.append)
    writer.tree(str(root) + path, top, **kwargs)  # type: ignore[arg-type]
    writer.close()
    os.close(write)
    with os.fdopen(read, "rb") as f, tarfile.open(fileobj=io.BytesIO(f.read())) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_archives_name_entries_as_docker_does(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "f").write_text("x")
    os.link(tmp_path / "d" / "f", tmp_path / "d" / "sub" / "hard")
    os.symlink("/etc/passwd", tmp_path / "d" / "link")
    os.mkfifo(tmp_path / "d" / "fifo")
    found = _archive(tmp_path, "/d/.", "d")
    assert list(found) == ["d", "d/f", "d/fifo", "d/link", "d/sub", "d/sub/hard"]
    assert found["d/sub/hard"].islnk() and found["d/sub/hard"].linkname == "d/f"
    assert found["d/link"].issym() and found["d/link"].linkname == "/etc/passwd"
    assert found["d/fifo"].isfifo()
    assert found["d/f"].uname == "" and found["d/f"].mtime == int(found["d/f"].mtime)
    assert list(_archive(tmp_path, "/d/.", ".")) == [
        ".",
        "./f",
        "./fifo",
        "./link",
        "./sub",
        "./sub/hard",
    ]
    assert list(_archive(tmp_path, "/d/", "", include_top=False))[:2] == ["f", "fifo"]
    assert list(_archive(tmp_path, "/d/f", "renamed")) == ["renamed"]


def _extract(
    tmp_path: Path, *entries: tuple[tarfile.TarInfo, bytes | None], **options: object
) -> list[str]:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    buffer.seek(0)
    warnings: list[str] = []
    extractor = tarcopy.Extractor(
        "/dest",
        warnings.append,
        owner=options.get("owner"),  # type: ignore[arg-type]
        no_overwrite_dir_non_dir=bool(options.get("no_overwrite")),
    )
    extractor.run(buffer)
    return warnings


def _entry(name: str, kind: bytes = tarfile.REGTYPE, **attrs: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, 0o640, 1_600_000_000
    info.uid, info.gid = os.getuid(), os.getgid()
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


def test_extraction_replaces_merges_and_restores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "existing").mkdir()
    (tmp_path / "existing" / "kept").write_text("kept")
    (tmp_path / "replaced").mkdir()
    _extract(
        tmp_path,
        (_entry("existing", tarfile.DIRTYPE, mode=0o700), None),
        (_entry("replaced"), b"now a file"),
        (_entry("implied/parents/f"), b"f"),
        (_entry("h", tarfile.LNKTYPE, linkname="/implied/parents/f"), None),
    )
    assert (tmp_path / "existing" / "kept").read_text() == "kept"
    assert stat.S_IMODE((tmp_path / "existing").stat().st_mode) == 0o700
    assert (tmp_path / "existing").stat().st_mtime == 1_600_000_000
    assert (tmp_path / "replaced").read_text() == "now a file"
    assert stat.S_IMODE((tmp_path / "implied").stat().st_mode) == 0o755
    assert (tmp_path / "h").stat().st_ino == (tmp_path / "implied" / "parents" / "f").stat().st_ino
    assert stat.S_IMODE((tmp_path / "h").stat().st_mode) == 0o640


def test_extraction_refusals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    cases = [
        ((_entry("../out"), b"x"), {}, tarcopy.FAILED, 'invalid entry name "../out"'),
        (
            (_entry("l", tarfile.LNKTYPE, linkname="../../etc/shadow"), None),
            {},
            tarcopy.FAILED,
            'invalid hardlink target "../../etc/shadow"',
        ),
        (
            (_entry("null", tarfile.CHRTYPE, devmajor=1, devminor=3), None),
            {},
            tarcopy.INVALID,
            'refusing to create device node "null"',
        ),
        (
            (_entry("dir"), b"x"),
            {"no_overwrite": True},
            tarcopy.FAILED,
            'cannot overwrite directory "dir" with non-directory "/dest"',
        ),
        (
            (_entry("file", tarfile.DIRTYPE), None),
            {"no_overwrite": True},
            tarcopy.FAILED,
            'cannot overwrite non-directory "file" with directory "/dest"',
        ),
    ]
    for member, options, kind, message in cases:
        with pytest.raises(tarcopy.Failure) as raised:
            _extract(tmp_path, member, **options)
        assert raised.value.kind == kind
        assert raised.value.message.startswith(message)
    assert sorted(os.listdir(tmp_path)) == ["dir", "file"]


def test_truncated_archives_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = _entry("big")
        info.size = 4096
        tar.addfile(info, io.BytesIO(bytes(4096)))
    cut = io.BytesIO(buffer.getvalue()[:2048])
    extractor = tarcopy.Extractor("/dest", print, owner=None, no_overwrite_dir_non_dir=False)
    with pytest.raises((tarcopy.Failure, OSError, tarfile.TarError)):
        extractor.run(cut)


# -- the client's side ------------------------------------------------------------------------


def test_cp_arguments() -> None:
    assert cli.split_cp_arg("ctr:/etc") == ("ctr", "/etc")
    assert cli.split_cp_arg("/abs:with:colons") == ("", "/abs:with:colons")
    assert cli.split_cp_arg("./rel:name") == ("", "./rel:name")
    assert cli.split_cp_arg("plain") == ("", "plain")
    assert cli.split_cp_arg("ctr:") == ("ctr", "")


def test_prepare_archive_copy() -> None:
    src_dir = cli.CopyInfo("/src/dir", exists=True, is_dir=True)
    src_file = cli.CopyInfo("/src/file", exists=True)
    existing_dir = cli.CopyInfo("/dst", exists=True, is_dir=True)
    existing_file = cli.CopyInfo("/dst/f", exists=True)
    new = cli.CopyInfo("/dst/new")
    assert cli.prepare_archive_copy(src_dir, existing_dir) == ("/dst", "", "")
    assert cli.prepare_archive_copy(src_file, existing_file) == ("/dst", "file", "f")
    assert cli.prepare_archive_copy(src_dir, new) == ("/dst", "dir", "new")
    assert cli.prepare_archive_copy(cli.CopyInfo("/src/dir/.", True, True), new) == (
        "/dst",
        ".",
        "new",
    )
    with pytest.raises(cli.CopyError, match="cannot copy directory"):
        cli.prepare_archive_copy(src_dir, existing_file)
    with pytest.raises(cli.CopyError, match="no such directory"):
        cli.prepare_archive_copy(src_file, cli.CopyInfo("/dst/new/"))


def test_local_extraction_never_writes_through_a_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.addfile(_entry("link", tarfile.SYMTYPE, linkname=str(outside)))
        info = _entry("link/pwned")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    buffer.seek(0)
    with pytest.raises(cli.CopyError, match="is a symbolic link"):
        cli.extract_local(buffer, str(dest))
    assert not os.listdir(outside)
