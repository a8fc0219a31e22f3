"""Paths inside a container's root filesystem, resolved as if chrooted.

A container's files are untrusted: `/etc/passwd` may be a symlink to
`/../../host/secret`. `resolve()` follows symlinks the way the kernel would
inside the container (absolute targets restart at the container's root, `..`
never climbs above it), so the host path it returns always lies under `root`.
"""

from __future__ import annotations

import os

MAX_LINKS = 40


def resolve(root: str, path: str) -> str:
    """The host path of `path` in the filesystem rooted at `root`, all symlinks resolved in it."""
    root = os.path.abspath(root)
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            target = os.readlink(candidate)
        except OSError:  # not a symlink, or does not exist
            resolved.append(part)
            continue
        links += 1
        if links > MAX_LINKS:
            raise OSError(40, f"too many levels of symbolic links: {path}")
        if target.startswith("/"):
            resolved = []
        parts = [p for p in target.split("/") if p not in ("", ".")] + parts
    return os.path.join(root, *resolved)


def read_text(root: str, path: str) -> str | None:
    try:
        with open(resolve(root, path), errors="replace") as f:
            return f.read()
    except OSError:
        return None
