"""Decoding limits of the wire layer: Go's integer types, nesting depth, bad bytes.

Whatever a client sends, decoding either succeeds or raises `WireError` (a 400
at the API), never anything else.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from dockyard import wire
from dockyard.containers import schema
from dockyard.containers.schema import ContainerCreate, HostConfig
from dockyard.errors import InvalidArgument
from dockyard.wire import WireError


@pytest.mark.parametrize(
    ("field", "value", "go_type"),
    [
        ("Memory", 1e30, "int64"),
        ("Memory", 2**63, "int64"),
        ("Memory", -(2**63) - 1, "int64"),
        ("CpuShares", 1e19, "int64"),
        ("BlkioWeight", -1, "uint16"),
        ("BlkioWeight", 70_000, "uint16"),
        ("IOMaximumIOps", -5, "uint64"),
        ("IOMaximumBandwidth", 2**64, "uint64"),
        ("PidsLimit", 2**63, "int64"),
        ("OomScoreAdj", 2**63, "int64"),
    ],
)
def test_numbers_outside_the_go_type_are_refused(field: str, value: Any, go_type: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        schema.decode(HostConfig, {field: value}, "HostConfig")
    message = refused.value.message
    assert message.startswith("invalid JSON: json: cannot unmarshal number ")
    assert message.endswith(f" into HostConfig.{field} of type {go_type}")


def test_numbers_at_the_edges_of_the_go_type_are_kept() -> None:
    decoded = schema.decode(
        HostConfig,
        {
            "Memory": 2**63 - 1,
            "CpuQuota": -(2**63),
            "BlkioWeight": 65535,
            "IOMaximumBandwidth": 2**64 - 1,
            "MemorySwappiness": -1,
            "ConsoleSize": [2**64 - 1, 0],
        },
    )
    assert decoded.memory == 2**63 - 1 and decoded.cpu_quota == -(2**63)
    assert decoded.blkio_weight == 65535 and decoded.io_maximum_bandwidth == 2**64 - 1
    assert decoded.memory_swappiness == -1 and decoded.console_size == [2**64 - 1, 0]
    # an integral float is still a number Go reads into an int (5.0 -> 5)
    assert schema.decode(HostConfig, {"Memory": 67108864.0}).memory == 64 << 20


def test_nested_messages_and_lists_check_their_numbers_too() -> None:
    for body, where in (
        ({"Ulimits": [{"Name": "nofile", "Soft": 1, "Hard": 2**63}]}, "Ulimits[0].Hard"),
        ({"BlkioWeightDevice": [{"Path": "/dev/sda", "Weight": 2**16}]}, "[0].Weight"),
        ({"Mounts": [{"Target": "/t", "TmpfsOptions": {"Mode": 2**40}}]}, "Mode of type uint32"),
        ({"ConsoleSize": [-1, 80]}, "ConsoleSize[0] of type uint64"),
        ({"RestartPolicy": {"MaximumRetryCount": 2**63}}, "MaximumRetryCount of type int64"),
    ):
        with pytest.raises(InvalidArgument, match="cannot unmarshal number") as refused:
            schema.decode(HostConfig, body, "HostConfig")
        assert where in refused.value.message
    with pytest.raises(InvalidArgument, match="StopTimeout of type int64"):
        schema.decode(ContainerCreate, {"StopTimeout": 1e300})


def test_deeply_nested_json_is_a_decoding_error_not_a_crash() -> None:
    for depth in (wire.MAX_DEPTH + 1, 10_000, 100_000):
        for opener, closer in (("[", "]"), ('{"a":', "}")):
            text = opener * depth + "1" + closer * depth
            with pytest.raises(WireError, match="exceeded max depth"):
                wire.loads(text.encode())
    nested = "[" * wire.MAX_DEPTH + "]" * wire.MAX_DEPTH
    assert wire.loads(nested.encode()) == json.loads(nested)
    # brackets inside strings are text, not nesting
    text = json.dumps({"Cmd": ["[" * 5000, "{" * 5000, '\\"[[[['], "Labels": {"[": "{"}})
    assert wire.loads(text.encode()) == json.loads(text)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"a": 1', "Expecting ',' delimiter"),
        (b"\xff\xfe{}", "invalid UTF-8"),
        (b'{"a": NaN}', "invalid character 'N'"),
        (b'{"a": Infinity}', "invalid character 'I'"),
        (b'{"a": 1} {"b": 2}', "Extra data"),
    ],
)
def test_malformed_json_is_a_wire_error(raw: bytes, message: str) -> None:
    with pytest.raises(WireError, match=message):
        wire.loads(raw)
