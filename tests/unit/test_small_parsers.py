"""Pure pieces: units, signals, log records, ChainIDs, rootfs paths, image changes, /etc files."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from dockyard import rootpath, units
from dockyard.containers import etcfiles, names, signals
from dockyard.containers.schema import HostConfig
from dockyard.errors import InvalidArgument
from dockyard.images.changes import apply_changes
from dockyard.logs import k8sfile
from dockyard.snapshots.layers import chain_ids


@pytest.mark.parametrize(
    ("text", "expected"),
    [("64m", 64 << 20), ("512k", 512 << 10), ("1g", 1 << 30), ("100", 100), ("1.5GB", 3 << 29)],
)
def test_sizes(text: str, expected: int) -> None:
    assert units.parse_size(text) == expected


def test_bad_size_and_cpus() -> None:
    with pytest.raises(units.UnitError, match="invalid size: '12q'"):
        units.parse_size("12q")
    assert units.parse_cpus("0.5") == 500_000_000
    with pytest.raises(units.UnitError):
        units.parse_cpus("half")


def test_durations_and_human_output() -> None:
    assert units.parse_duration("1m30s") == 90_000_000_000
    assert units.parse_duration("500ms") == 500_000_000
    with pytest.raises(units.UnitError):
        units.parse_duration("5 minutes")
    assert units.human_duration(0.2) == "Less than a second"
    assert units.human_duration(65) == "About a minute"
    assert units.human_duration(3 * 3600) == "3 hours"
    assert units.human_size(4_261_550) == "4.26MB"


def test_signals() -> None:
    assert signals.parse("TERM") == signals.parse("SIGTERM") == signals.parse("15") == 15
    assert signals.parse("kill") == 9
    assert signals.parse("SIGRTMIN+3") == signals.parse("RTMIN") + 3
    for bad in ("NOPE", "0", "999", "SIGRTMAX+1"):
        with pytest.raises(InvalidArgument, match="Invalid signal"):
            signals.parse(bad)


def test_container_names() -> None:
    assert names.validate("/web-1.a_b") == "web-1.a_b"
    for bad in ("x", "-lead", "has space", "a/b", ""):
        with pytest.raises(InvalidArgument, match="Invalid container name"):
            names.validate(bad)
    assert "_" in names.generate()


def test_log_records_round_trip_bytes_and_streams() -> None:
    data = (
        b"2026-01-02T03:04:05.123456789+00:00 stdout F hello\n"
        b"2026-01-02T03:04:05.200000000+01:00 stderr P no newline yet\n"
        b"2026-01-02T03:04:06.000000000+00:00 stdout P tail"
    )
    f = io.BytesIO(data)
    entries = list(k8sfile.read_entries(f))
    assert [(e.stream, e.data) for e in entries] == [(1, b"hello\n"), (2, b"no newline yet")]
    assert entries[0].time_ns == 1767323045123456789
    assert entries[1].time_ns == 1767319445200000000  # +01:00 is an hour earlier in UTC
    # The unfinished last record is left for the next read.
    assert f.tell() == data.index(b"2026-01-02T03:04:06")
    assert [e.data for e in k8sfile.tail(iter(entries), 1)] == [b"no newline yet"]


def test_chain_ids_match_the_image_spec_vectors() -> None:
    diff_ids = [
        "sha256:c6f988f4874bb0add23a778f753c65efe992244e148a1d2ec2a8b664fb66bbd1",
        "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef",
        "sha256:13f53e08df5a220ab6d13c58b2bf83a59cbdc2e04d0a3f041ddf4b0ba4112d49",
    ]
    chains = chain_ids(diff_ids)
    assert chains[0] == diff_ids[0]
    assert chains[1] == "sha256:c3191d32a37d7159b2e30830937d2e30268ad6c375a773a8994911a3aba9b93f"
    assert chains[2] == "sha256:f295fb504ece04334c2571429c89e50e23f359e101ea9c3831a6993bb7d2301f"


def test_rootpath_never_leaves_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("inside\n")
    os.symlink("/etc/passwd", root / "abs")
    os.symlink("../../../../etc", root / "etc" / "up")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    assert rootpath.resolve(str(root), "/abs") == str(root / "etc" / "passwd")
    assert rootpath.resolve(str(root), "/etc/up/passwd") == str(root / "etc" / "passwd")
    assert rootpath.resolve(str(root), "/../../x") == str(root / "x")
    assert rootpath.read_text(str(root), "/abs") == "inside\n"
    with pytest.raises(OSError, match="too many levels"):
        rootpath.resolve(str(root), "/loop1")


def test_image_changes() -> None:
    config = apply_changes(
        {"Env": ["A=1"]},
        [
            'CMD ["echo", "hi"]',
            "ENTRYPOINT /start",
            "ENV A=2 B=3",
            "LABEL k=v",
            "EXPOSE 80 53/udp",
            "WORKDIR /w",
            "USER app",
            "VOLUME /data",
        ],
    )
    assert config["Cmd"] == ["echo", "hi"]
    assert config["Entrypoint"] == ["/bin/sh", "-c", "/start"]
    assert config["Env"] == ["A=2", "B=3"]
    assert config["Labels"] == {"k": "v"}
    assert config["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert (config["WorkingDir"], config["User"]) == ("/w", "app")
    assert config["Volumes"] == {"/data": {}}
    with pytest.raises(InvalidArgument, match="RUN is not a valid change command"):
        apply_changes({}, ["RUN true"])


def test_resolv_conf_drops_loopback_resolvers_and_honours_flags() -> None:
    host = "nameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch corp.example\noptions ndots:2\n"
    text = etcfiles.resolv_conf(HostConfig.decode({"NetworkMode": "bridge"}), host)
    assert text == "nameserver 10.0.0.2\nsearch corp.example\noptions ndots:2\n"
    only_loopback = etcfiles.resolv_conf(
        HostConfig.decode({"NetworkMode": "bridge"}), "nameserver 127.0.0.1\n"
    )
    assert only_loopback.startswith("nameserver 8.8.8.8\n")
    flags = etcfiles.resolv_conf(
        HostConfig.decode({"NetworkMode": "bridge", "Dns": ["1.1.1.1"], "DnsSearch": ["a.test"]}),
        host,
    )
    assert flags.splitlines()[:2] == ["nameserver 1.1.1.1", "search a.test"]
    assert etcfiles.resolv_conf(HostConfig.decode({"NetworkMode": "host"}), host) == host
