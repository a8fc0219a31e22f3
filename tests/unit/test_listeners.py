"""dockerd's rules for `-H` values and for resolving `tls`/`tlsverify` (pure logic)."""

from __future__ import annotations

import pytest

from dockyard.errors import InvalidArgument
from dockyard.listeners import Host, check_insecure, parse_host, resolve_tls


def test_hosts_parse_with_dockers_defaults() -> None:
    assert parse_host("unix:///run/d.sock", tls=False) == Host("unix", "/run/d.sock")
    assert parse_host("tcp://127.0.0.1:0", tls=True) == Host("tcp", "127.0.0.1", 0)
    assert parse_host("tcp://10.0.0.1", tls=True).port == 2376
    assert parse_host("tcp://10.0.0.1", tls=False).port == 2375
    assert parse_host("tcp://:2376", tls=True) == Host("tcp", "localhost", 2376)
    assert str(parse_host("tcp://[::1]:2376", tls=True)) == "tcp://[::1]:2376"
    for bad in ("127.0.0.1:2376", "fd://", "tcp://1.2.3.4:2376/path", "unix://relative"):
        with pytest.raises(InvalidArgument):
            parse_host(bad, tls=True)


def test_tls_resolution_follows_dockerd() -> None:
    def resolved(tls: bool | None, verify: bool | None) -> tuple[bool, bool, bool]:
        s = resolve_tls(tls, verify, "ca", "cert", "key")
        return s.enabled, s.verify, s.explicit

    assert resolved(None, None) == (False, False, False)
    assert resolved(True, None) == (True, True, True)  # --tls alone verifies clients
    assert resolved(None, True) == (True, True, True)
    assert resolved(None, False) == (True, False, True)  # --tlsverify=false: TLS, no client check
    assert resolved(False, None) == (False, False, True)  # --tls=false: plain, on purpose
    assert resolved(False, True) == (True, True, True)


def test_plain_tcp_needs_an_explicit_choice() -> None:
    tcp = [Host("tcp", "127.0.0.1", 2375)]
    with pytest.raises(InvalidArgument, match=r"refusing to listen on tcp://127\.0\.0\.1:2375"):
        check_insecure(tcp, resolve_tls(None, None, None, None, None))
    check_insecure(tcp, resolve_tls(False, None, None, None, None))
    check_insecure(tcp, resolve_tls(None, True, None, None, None))
    check_insecure([Host("unix", "/run/d.sock")], resolve_tls(None, None, None, None, None))
