"""`.dockerignore` reading and matching, and Go's filepath.Match for COPY sources (BLD-9)."""

from __future__ import annotations

import pytest

from dockyard.build.dockerignore import IgnoreFile, match, read_patterns


def ignored(patterns: str, path: str) -> bool:
    return IgnoreFile(read_patterns(patterns)).excluded(path)


def test_reading_rules() -> None:
    text = "\ufeff# comment\n  # not a comment\n\n/abs/path\n! keep \n./a/../b\n"
    assert read_patterns(text) == ["# not a comment", "abs/path", "!keep", "b"]


def test_everything_but_exceptions() -> None:
    rules = "*\n!src\n!Dockerfile\n"
    assert ignored(rules, "README.md")
    assert not ignored(rules, "src")
    assert not ignored(rules, "src/main.py")  # a matching directory covers its contents
    assert not ignored(rules, "Dockerfile")


def test_last_matching_line_wins() -> None:
    assert not ignored("*.md\n!README.md\n", "README.md")
    assert ignored("!README.md\n*.md\n", "README.md")


def test_double_star_matches_any_depth_including_none() -> None:
    rules = "**/*.log\n"
    assert ignored(rules, "a.log")
    assert ignored(rules, "deep/er/b.log")
    assert not ignored(rules, "b.txt")
    assert ignored("node_modules/**\n", "node_modules/x/y")
    assert ignored("a/**/z\n", "a/z") and ignored("a/**/z\n", "a/b/c/z")


def test_single_star_stays_in_one_directory() -> None:
    assert ignored("*.log\n", "a.log")
    assert not ignored("*.log\n", "dir/a.log")
    assert ignored("dir/*.log\n", "dir/a.log")


def test_parent_directory_patterns_cover_children() -> None:
    assert ignored("build\n", "build/out/x.o")
    assert not ignored("build\n", "rebuild/x")


def test_reincluding_inside_an_excluded_directory() -> None:
    rules = "docs\n!docs/keep.md\n"
    assert ignored(rules, "docs/other.md")
    assert not ignored(rules, "docs/keep.md")


def test_a_pattern_with_leading_blanks_and_hash_is_a_pattern() -> None:
    assert ignored("  #x\n", "#x")


def test_character_classes_and_escapes() -> None:
    assert ignored("file[0-9].txt\n", "file3.txt")
    assert not ignored("file[^0-9].txt\n", "file3.txt")
    assert ignored("a\\*b\n", "a*b") and not ignored("a\\*b\n", "axb")


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("*.txt", "a.txt", True),
        ("*.txt", "dir/a.txt", False),
        ("dir/*", "dir/a", True),
        ("?", "a", True),
        ("?", "/", False),
        ("[abc]*", "b-file", True),
        ("[[]x", "[x", True),
        ("a\\?", "a?", True),
        ("a\\?", "ab", False),
    ],
)
def test_go_filepath_match(pattern: str, name: str, expected: bool) -> None:
    assert match(pattern, name) is expected
