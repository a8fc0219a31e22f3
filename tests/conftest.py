"""Pytest fixtures: a shared daemon, per-test daemons, the example image, docker-py."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Daemon, build_busybox_rootfs, new_base

# The fault-injection fixtures (`faulty`) for the crash-consistency tests.
pytest_plugins = ["tests.faults"]


@pytest.fixture(scope="session")
def busybox_tar() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="dy-img-", dir="/tmp"))
    yield build_busybox_rootfs(base)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def daemon(busybox_tar: Path) -> Iterator[Daemon]:
    """One daemon shared by the tests that do not kill or reconfigure it."""
    d = Daemon(new_base())
    d.start()
    d.cli("import", str(busybox_tar), "demo/busybox:1", check=True)
    yield d
    d.cleanup()


@pytest.fixture
def own_daemon(busybox_tar: Path) -> Iterator[Daemon]:
    """A daemon for one test (crash tests, leak checks)."""
    d = Daemon(new_base())
    d.start()
    d.cli("import", str(busybox_tar), "demo/busybox:1", check=True)
    yield d
    d.cleanup()


@pytest.fixture
def client(daemon: Daemon) -> Iterator[Any]:
    import docker

    c = docker.DockerClient(base_url=daemon.host, timeout=120)
    yield c
    c.close()


@pytest.fixture
def name() -> str:
    """A container name unique to the test."""
    return "t-" + secrets.token_hex(4)
