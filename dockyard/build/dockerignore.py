"""`.dockerignore` files and the path patterns of Dockerfiles.

Two pattern languages meet here, both Go's:

* `match(pattern, name)` is Go's `filepath.Match` (`*` and `?` never cross a
  `/`, `[a-z]` and `[^a-z]` classes, `\\` escapes); COPY and ADD sources use it.
* `IgnoreFile` is Docker's `.dockerignore` (moby/patternmatcher): the same
  syntax plus `**` for any number of directories, a pattern also matching
  every path below a matched directory, `!` re-including, and the last
  matching line winning.

Reading an ignore file: a UTF-8 BOM is dropped; a line is a comment only if
its very first character is `#`; lines are trimmed, `!` taken off, the path
cleaned and one leading `/` removed.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from functools import lru_cache

from dockyard.errors import InvalidArgument


def _clean(path: str) -> str:
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def read_patterns(text: str) -> list[str]:
    """The patterns of an ignore file, `!` kept in front of exceptions."""
    patterns = []
    for number, line in enumerate(text.split("\n")):
        if number == 0:
            line = line.removeprefix("\ufeff")
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = _clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


@dataclass(frozen=True)
class _Pattern:
    text: str
    exclusion: bool
    depth: int  # number of path components
    regex: re.Pattern[str]


class IgnoreFile:
    """Decides which context paths a `.dockerignore` leaves out."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns: list[_Pattern] = []
        for raw in patterns:
            text = raw.strip()
            if not text:
                continue
            text = _clean(text)
            exclusion = text.startswith("!")
            if exclusion:
                if len(text) == 1:
                    raise InvalidArgument('illegal exclusion pattern: "!"')
                text = text[1:]
            self.patterns.append(
                _Pattern(text, exclusion, len(text.split("/")), _regex(text, doublestar=True))
            )

    @property
    def has_exclusions(self) -> bool:
        return any(p.exclusion for p in self.patterns)

    def excluded(self, path: str) -> bool:
        """Whether `path` (relative, `/`-separated) is left out of the context."""
        path = _clean(path)
        if path in (".", ""):
            return False
        parents = path.split("/")[:-1]
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue  # only a later exception can change an excluded path, and vice versa
            hit = bool(pattern.regex.match(path))
            if not hit:
                # A pattern that matches a parent directory covers everything below it.
                for i in range(len(parents)):
                    if pattern.regex.match("/".join(parents[: i + 1])):
                        hit = True
                        break
            if hit:
                matched = not pattern.exclusion
        return matched


@lru_cache(maxsize=1024)
def _regex(pattern: str, doublestar: bool) -> re.Pattern[str]:
    """Go's `filepath.Match` syntax as a regex. With `doublestar`, .dockerignore's:
    `**` also spans directories, and a trailing backslash stands for itself."""
    out = ["^"]
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*" and doublestar and i < n and pattern[i] == "*":
            i += 1
            if i < n and pattern[i] == "/":
                i += 1  # "**/" is "**"
            out.append(".*" if i >= n else "(.*/)?")
        elif ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i < n:
                out.append(re.escape(pattern[i]))
                i += 1
            elif doublestar:
                out.append(r"\\")
            else:
                raise InvalidArgument(f"syntax error in pattern: {pattern}")
        elif ch == "[":
            cls, i = _char_class(pattern, i)
            out.append(cls)
        else:
            out.append(re.escape(ch))
    out.append("$")
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error as e:
        raise InvalidArgument(f"syntax error in pattern {pattern!r}: {e}") from None


def _char_class(pattern: str, i: int) -> tuple[str, int]:
    """A Go `[...]` class starting after the `[` at i-1; returns the regex and the next index."""
    out = ["["]
    if i < len(pattern) and pattern[i] == "^":
        out.append("^")
        i += 1
    first = True
    while i < len(pattern):
        ch = pattern[i]
        if ch == "]" and not first:
            out.append("]")
            return "".join(out), i + 1
        first = False
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if ch == "/":
            raise InvalidArgument(f"syntax error in pattern: {pattern}")
        out.append(ch if ch == "-" else re.escape(ch))
        i += 1
    raise InvalidArgument(f"syntax error in pattern: {pattern}")


def match(pattern: str, name: str) -> bool:
    """Go's `filepath.Match`: does the whole of `name` match the shell pattern?"""
    return bool(_regex(pattern, doublestar=False).match(name))


def has_wildcards(path: str) -> bool:
    return any(ch in path for ch in "*?[\\")
