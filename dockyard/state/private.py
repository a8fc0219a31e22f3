"""Directories and files only root may read.

The daemon's state holds what containers are given (`-e` values, secrets in
configs), what they write (logs) and plugins' settings, so the trees that hold
them are private to root: directories 0700, files 0600, made so when created
(no moment with wider modes) and narrowed at start-up when an older daemon
left them wider. The data root and exec root themselves stay traversable
(0711, as Docker keeps its roots), so that the few trees meant to be reached by
path (volumes' data, 0701) can be; everything else sits in a private subtree.
"""

from __future__ import annotations

import os
import stat

DIRECTORY = 0o700
FILE = 0o600


def directory(path: str) -> str:
    """`path` as a private directory, made if missing (its parents must not need to be
    private: they are made with the usual modes)."""
    os.makedirs(path, mode=DIRECTORY, exist_ok=True)
    if stat.S_IMODE(os.stat(path).st_mode) != DIRECTORY:
        os.chmod(path, DIRECTORY)
    return path


def narrow(path: str) -> None:
    """An existing file made private (one an older daemon made wider); missing is fine."""
    try:
        if stat.S_IMODE(os.stat(path).st_mode) & 0o077:
            os.chmod(path, FILE)
    except FileNotFoundError:
        pass


def create(path: str) -> int:
    """A descriptor for writing `path`, created (or truncated) private."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE)
    if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
        os.fchmod(fd, FILE)  # it existed with wider modes
    return fd
