"""COPY sources in the build context: selection, escapes, ignore rules, checksums, chmod."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from dockyard.build.context import SourceTree, extract
from dockyard.build.copier import parse_chmod
from dockyard.build.dockerignore import IgnoreFile, read_patterns
from dockyard.errors import InvalidArgument, NotFound


@pytest.fixture
def tree(tmp_path: Path) -> SourceTree:
    (tmp_path / "src" / "deep").mkdir(parents=True)
    (tmp_path / "src" / "a.txt").write_text("a")
    (tmp_path / "src" / "b.md").write_text("b")
    (tmp_path / "src" / "deep" / "c.txt").write_text("c")
    (tmp_path / "notes.log").write_text("log")
    (tmp_path / "inside").symlink_to("src/a.txt")
    (tmp_path / "abs").symlink_to("/etc/passwd")
    (tmp_path / "up").symlink_to("../outside")
    ignore = IgnoreFile(read_patterns("*.log\n"))
    return SourceTree(str(tmp_path), ignore=ignore, context=True)


def test_wildcards_follow_go_rules(tree: SourceTree) -> None:
    assert [s.rel for s in tree.select("src/*.txt")] == ["src/a.txt"]
    assert [s.rel for s in tree.select("src/*")] == ["src/a.txt", "src/b.md", "src/deep"]
    assert tree.select("*.nothing") == []


def test_paths_are_cleaned_and_symlinks_inside_followed(tree: SourceTree) -> None:
    (selected,) = tree.select("/./src/../inside")
    assert selected.rel == "inside" and selected.full.endswith("src/a.txt")
    assert selected.name == "inside"


@pytest.mark.parametrize("source", ["../outside", "src/../../x", "abs", "up", "up/more"])
def test_escaping_the_context_is_refused(tree: SourceTree, source: str) -> None:
    with pytest.raises(InvalidArgument, match="forbidden path outside the build context"):
        tree.select(source)


def test_ignored_and_missing_files_are_not_found(tree: SourceTree) -> None:
    for source in ("notes.log", "missing"):
        with pytest.raises(NotFound, match=r"excluded by \.dockerignore"):
            tree.select(source)


def test_walk_skips_ignored_files(tree: SourceTree, tmp_path: Path) -> None:
    (tmp_path / "src" / "deep" / "x.log").write_text("x")
    (root,) = tree.select(".")
    names = [rel for rel, _, _ in tree.walk(root)]
    assert "notes.log" not in names
    assert "src/deep/x.log" in names  # `*.log` is for the top level only, as in Docker
    assert "src/deep/c.txt" in names


def test_checksum_ignores_times_but_not_content_or_mode(tree: SourceTree, tmp_path: Path) -> None:
    selected = tree.select("src")
    first = tree.checksum(selected, owners=False)
    os.utime(tmp_path / "src" / "a.txt", (1, 1))
    assert tree.checksum(tree.select("src"), owners=False) == first
    (tmp_path / "src" / "a.txt").chmod(0o600)
    moded = tree.checksum(tree.select("src"), owners=False)
    assert moded != first
    (tmp_path / "src" / "a.txt").write_text("changed")
    assert tree.checksum(tree.select("src"), owners=False) != moded


def test_a_stage_root_resolves_as_if_chrooted(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root\n")
    (tmp_path / "link").symlink_to("/etc/passwd")
    stage = SourceTree(str(tmp_path), context=False)
    (selected,) = stage.select("../../link")
    assert selected.full == str(tmp_path / "etc" / "passwd")


def test_context_archives_cannot_write_outside(tmp_path: Path) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        link = tarfile.TarInfo("evil")
        link.type = tarfile.SYMTYPE
        link.linkname = str(tmp_path / "victim")
        tar.addfile(link)
        data = b"owned"
        entry = tarfile.TarInfo("evil/file")
        entry.size = len(data)
        tar.addfile(entry, io.BytesIO(data))
    root = tmp_path / "ctx"
    root.mkdir()
    (tmp_path / "victim").mkdir()
    out.seek(0)
    with pytest.raises(InvalidArgument, match="invalid build context"):
        extract(out, str(root))
    assert list((tmp_path / "victim").iterdir()) == []


def test_chmod_octal_and_symbolic() -> None:
    octal = parse_chmod("0750")
    assert octal is not None and octal(0o644, False) == 0o750
    symbolic = parse_chmod("u+x,go-w,o=r")
    assert symbolic is not None
    assert symbolic(0o666, False) == 0o744
    directories = parse_chmod("a+X")
    assert directories is not None
    assert directories(0o644, True) == 0o755 and directories(0o644, False) == 0o644
    assert parse_chmod("") is None
