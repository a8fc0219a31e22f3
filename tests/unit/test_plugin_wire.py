"""The plugin wire rules, LogEntry framing, discovery order, config.json and authz helpers."""

from __future__ import annotations

import json
import os
import socket
import struct
from pathlib import Path

import pytest

from dockyard.errors import InvalidArgument, NotFound
from dockyard.plugins import config as plugin_config
from dockyard.plugins.authorization import flatten_headers, sends_body
from dockyard.plugins.discovery import Discovery, parse_url
from dockyard.plugins.protocol import logentry
from dockyard.plugins.protocol.authz import Request
from dockyard.plugins.protocol.volume import GetReply, MountReply
from dockyard.wire import WireError


def test_reply_keys_match_in_any_case_and_unknown_keys_are_ignored() -> None:
    assert MountReply.decode({"MountPoint": "/a"}).mountpoint == "/a"
    assert MountReply.decode({"mountpoint": "/b", "Extra": 1}).mountpoint == "/b"
    # an exact match wins over a case-insensitive one
    assert MountReply.decode({"mountPOINT": "/x", "Mountpoint": "/y"}).mountpoint == "/y"
    reply = GetReply.decode({"volume": {"name": "v", "status": {"k": 1}}})
    assert reply.volume is not None and reply.volume.name == "v"
    assert reply.volume.status == {"k": 1}


def test_null_keeps_zero_values_and_wrong_types_fail() -> None:
    assert GetReply.decode({"Volume": None}).volume is None
    assert MountReply.decode({"Mountpoint": None}).mountpoint == ""
    with pytest.raises(WireError, match="cannot unmarshal number into Mountpoint"):
        MountReply.decode({"Mountpoint": 5})


def test_authz_request_is_encoded_with_the_daemons_keys() -> None:
    wire = Request(request_method="GET", request_uri="/_ping", request_body=b'{"a":1}').to_wire()
    assert wire == {"RequestMethod": "GET", "RequestUri": "/_ping", "RequestBody": "eyJhIjoxfQ=="}


def test_log_entries_round_trip_through_the_framing() -> None:
    entries = [
        logentry.LogEntry("stdout", 1_700_000_000_123_456_789, b"hello"),
        logentry.LogEntry(
            "stderr", 5, b"part", True, logentry.PartialMetadata(last=True, id="x", ordinal=2)
        ),
        logentry.LogEntry("stdout", 0, b""),
    ]
    stream = b"".join(logentry.frame(e) for e in entries)
    reader = logentry.FrameReader()
    got = []
    for i in range(0, len(stream), 3):  # arbitrary chunk boundaries
        got += reader.feed(stream[i : i + 3])
    assert got == entries
    assert reader.pending == 0


def test_log_entry_encoding_matches_protobuf() -> None:
    # source "stdout", time_nano 150, line "hi" (protoc's encoding of the same message)
    assert logentry.encode(logentry.LogEntry("stdout", 150, b"hi")) == (
        b"\x0a\x06stdout\x10\x96\x01\x1a\x02hi"
    )
    data = logentry.encode(logentry.LogEntry("stdout", 150, b"hi"))
    framed = logentry.frame(logentry.LogEntry("stdout", 150, b"hi"))
    assert framed == struct.pack(">I", len(data)) + data


def _socket(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    return s


def test_discovery_follows_dockers_lookup_order(tmp_path: Path) -> None:
    socks, etc, lib = tmp_path / "run", tmp_path / "etc", tmp_path / "lib"
    for d in (socks, etc, lib):
        d.mkdir()
    disco = Discovery([str(socks)], [str(etc), str(lib)])
    with pytest.raises(NotFound):
        disco.find("p")
    (lib / "p").mkdir()
    (lib / "p" / "p.json").write_text(json.dumps({"Name": "other", "Addr": "tcp://10.0.0.9:1"}))
    assert str(disco.find("p")) == "tcp://10.0.0.9:1"
    (lib / "p.json").write_text(json.dumps({"Addr": "tcp://10.0.0.8:1"}))
    assert str(disco.find("p")) == "tcp://10.0.0.8:1"  # flat before subdirectory
    (lib / "p.spec").write_text("tcp://10.0.0.7:1\n")
    assert str(disco.find("p")) == "tcp://10.0.0.7:1"  # .spec before .json
    (etc / "p").mkdir()
    (etc / "p" / "p.json").write_text(json.dumps({"Addr": "unix:///x.sock"}))
    assert str(disco.find("p")) == "unix:///x.sock"  # first spec dir before the second
    (etc / "p.spec").write_text("  http://127.0.0.1:5000/ignored/path  \n")
    assert str(disco.find("p")) == "tcp://127.0.0.1:5000"
    (socks / "p.sock").write_text("not a socket")
    assert str(disco.find("p")) == "tcp://127.0.0.1:5000"  # a regular file is ignored
    with _socket(socks / "p" / "p.sock"):
        assert disco.find("p").address == str(socks / "p" / "p.sock")
        os.unlink(socks / "p.sock")
        with _socket(socks / "p.sock"):
            assert disco.find("p").address == str(socks / "p.sock")
            assert disco.names() == ["p"]


def test_spec_files_need_a_scheme_and_json_tls_fields_are_honoured(tmp_path: Path) -> None:
    (tmp_path / "bad.spec").write_text("127.0.0.1:9000")
    disco = Discovery([], [str(tmp_path)])
    with pytest.raises(InvalidArgument, match="Unknown protocol"):
        disco.find("bad")
    (tmp_path / "tls.json").write_text(
        json.dumps({"addr": "https://h:1", "tlsconfig": {"CAFile": "/ca.pem", "CertFile": "/c"}})
    )
    endpoint = disco.find("tls")
    assert endpoint.scheme == "https" and endpoint.tls is not None
    assert endpoint.tls.ca_file == "/ca.pem" and not endpoint.tls.insecure_skip_verify
    (tmp_path / "noca.json").write_text(json.dumps({"Addr": "tcp://h:1", "TLSConfig": {}}))
    noca = disco.find("noca")
    assert noca.scheme == "https" and noca.tls is not None and noca.tls.insecure_skip_verify
    (tmp_path / "plain.spec").write_text("https://h:2")
    spec = disco.find("plain")  # spec files: TLS without verification
    assert spec.tls is not None and spec.tls.insecure_skip_verify
    (tmp_path / "system.json").write_text(json.dumps({"Addr": "https://h:3"}))
    system = disco.find("system")  # no TLSConfig: verified against the system's CAs
    assert system.scheme == "https" and system.tls is None
    assert parse_url("https://h:2").tls is None


def _config(**changes: object) -> bytes:
    config: dict[str, object] = {
        "description": "demo",
        "entrypoint": ["/bin/plugin"],
        "interface": {"types": ["docker.volumedriver/1.0"], "socket": "demo.sock"},
        "env": [{"name": "DEBUG", "value": "0", "settable": ["value"]}],
        "mounts": [
            {"name": "data", "source": "/srv", "destination": "/data", "settable": ["source"]}
        ],
        "linux": {"capabilities": ["CAP_SYS_ADMIN"]},
        "network": {"type": "host"},
    }
    config.update(changes)
    return json.dumps(config).encode()


def test_config_json_in_any_case_is_read_into_dockers_shape() -> None:
    config = plugin_config.parse(_config())
    wire = config.to_wire()
    assert wire["Interface"]["Types"] == ["docker.volumedriver/1.0"]
    assert wire["Env"][0] == {
        "Name": "DEBUG",
        "Description": "",
        "Settable": ["value"],
        "Value": "0",
    }
    assert config.kinds() == ["VolumeDriver"]
    assert [p["Name"] for p in plugin_config.privileges(config)] == [
        "network",
        "mount",
        "capabilities",
    ]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"interface": {"types": ["volumedriver"], "socket": "x.sock"}}, "not a plugin interface"),
        ({"interface": {"types": ["docker.authz/1.0"], "socket": "../x.sock"}}, "Interface.Socket"),
        ({"interface": {"types": ["docker.authz/1.0"]}}, "Interface.Socket is empty"),
        ({"entrypoint": "notalist"}, "cannot unmarshal string"),
        ({"entrypoint": []}, "Entrypoint is empty"),
        ({"mounts": [{"destination": "relative"}]}, "absolute path"),
        ({"linux": {"capabilities": ["CAP_NOPE"]}}, "unknown capability"),
        ({"env": [{"name": "A", "settable": ["source"]}]}, "not settable"),
    ],
)
def test_malformed_config_json_is_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        plugin_config.parse(_config(**changes))
    with pytest.raises(InvalidArgument, match=r"invalid plugin config\.json"):
        plugin_config.parse(b"{not json")


def test_plugin_set_follows_dockers_rules() -> None:
    config = plugin_config.parse(_config())
    settings = plugin_config.initial_settings(config)
    assert settings.env == ["DEBUG=0"]
    changed = plugin_config.apply_settings(config, settings, ["DEBUG=1", "data.source=/mnt"])
    assert changed.env == ["DEBUG=1"]
    assert changed.mounts[0].source == "/mnt"
    assert settings.env == ["DEBUG=0"]  # the old settings are not touched
    with pytest.raises(InvalidArgument, match="not found"):
        plugin_config.apply_settings(config, settings, ["NOPE=1"])
    with pytest.raises(InvalidArgument, match="not settable"):
        plugin_config.apply_settings(config, settings, ["data.destination=/x"])


def test_authz_headers_and_bodies_follow_the_daemon() -> None:
    headers = flatten_headers(
        [
            ("content-type", "application/json"),
            ("X-Registry-Auth", "secret"),
            ("Authorization", "Bearer x"),
            ("x-thing", "1"),
            ("X-Thing", "2"),
        ]
    )
    assert headers == {"Content-Type": "application/json", "X-Thing": "2"}
    assert sends_body("/v1.45/containers/create", "application/json; charset=utf-8")
    assert not sends_body("/v1.45/auth", "application/json")
    assert not sends_body("/auth", "application/json")
    assert not sends_body("/build", "application/x-tar")
