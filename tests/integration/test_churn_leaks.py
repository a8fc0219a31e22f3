"""Nothing accumulates under churn: container lifecycles leave no link in the exec root's
attach directory, and a burst of clients connecting at once is queued by the API socket
(a backlog as large as the kernel allows, as Docker's), not refused."""

from __future__ import annotations

import errno
import os
import resource
import select
import socket
from collections.abc import Iterator

import pytest

from tests.harness import Daemon

IMAGE = "demo/busybox:1"


def attach_entries(daemon: Daemon) -> set[str]:
    return set(os.listdir(daemon.exec_root / "attach"))


def test_container_lifecycles_leave_nothing_in_the_attach_directory(
    own_daemon: Daemon, name: str
) -> None:
    before = attach_entries(own_daemon)
    for i in range(5):
        own_daemon.cli("run", "--name", f"{name}-{i}", IMAGE, "true", check=True)
        own_daemon.cli("rm", f"{name}-{i}", check=True)
        own_daemon.cli("run", "--rm", IMAGE, "true", check=True)
        own_daemon.cli("run", "-d", "--name", f"{name}-f{i}", IMAGE, "sleep", "60", check=True)
        own_daemon.cli("rm", "-f", f"{name}-f{i}", check=True)
    own_daemon.cli("create", "--name", f"{name}-c", IMAGE, "true", check=True)
    own_daemon.cli("rm", f"{name}-c", check=True)
    assert attach_entries(own_daemon) == before
    # a link a removed container left (an older daemon did) is dropped at the next start
    gone = "0" * 64
    os.symlink(own_daemon.exec_root / "containers" / gone, own_daemon.exec_root / "attach" / gone)
    own_daemon.stop()
    own_daemon.start()
    assert attach_entries(own_daemon) == before


@pytest.fixture
def many_files() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_thousand_clients_connecting_at_once_are_all_served(
    daemon: Daemon, many_files: None
) -> None:
    clients = []
    refused = 0
    try:
        # Non-blocking connects all at once, faster than the daemon accepts: each one
        # the backlog cannot hold fails at once with EAGAIN.
        for _ in range(1000):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(str(daemon.socket))
            except OSError as e:
                assert e.errno in (errno.EAGAIN, errno.ECONNREFUSED), e
                refused += 1
                s.close()
                continue
            clients.append(s)
        assert refused == 0
        for s in clients:
            s.setblocking(True)
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
        answered = 0
        pending = {s.fileno(): s for s in clients}
        replies: dict[int, bytes] = {fd: b"" for fd in pending}
        poller = select.poll()
        for fd in pending:
            poller.register(fd, select.POLLIN)
        while pending:
            events = poller.poll(60_000)
            assert events, f"{len(pending)} clients still waiting for an answer"
            for fd, _ in events:
                data = pending[fd].recv(4096)
                replies[fd] += data
                if not data:
                    poller.unregister(fd)
                    del pending[fd]
        answered = sum(1 for r in replies.values() if r.startswith(b"HTTP/1.1 200"))
        assert answered == 1000
    finally:
        for s in clients:
            s.close()
