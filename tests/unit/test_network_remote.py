"""What the remote network driver adapter accepts from a plugin's replies (pure logic)."""

from __future__ import annotations

import pytest

from dockyard.network.driver import EndpointInterface, StaticRoute
from dockyard.network.drivers.remote import _filled_in, _join_response
from dockyard.plugins.protocol import network as proto


def test_create_endpoint_replies_may_fill_in_only_what_was_left_empty() -> None:
    sent = EndpointInterface("10.1.0.5/24", "", "")
    got = _filled_in(sent, proto.EndpointInterface("", "", "02:42:0A:01:00:05"))
    assert got == EndpointInterface("", "", "02:42:0A:01:00:05")
    # the same value given back is not a change
    same = _filled_in(sent, proto.EndpointInterface("10.1.0.5/24", "", ""))
    assert same == EndpointInterface()
    with pytest.raises(ValueError, match="driver modified interface address"):
        _filled_in(sent, proto.EndpointInterface("10.1.0.6/24", "", ""))
    with pytest.raises(ValueError, match="driver modified interface MAC address"):
        _filled_in(
            EndpointInterface("10.1.0.5/24", "", "02:00:00:00:00:01"),
            proto.EndpointInterface("", "", "02:00:00:00:00:02"),
        )
    for bad in (
        proto.EndpointInterface("", "", "not-a-mac"),
        proto.EndpointInterface("", "fd00::1", ""),  # no prefix length
    ):
        with pytest.raises(ValueError, match="invalid"):
            _filled_in(sent, bad)


def test_join_replies_need_an_interface_and_well_formed_routes() -> None:
    reply = proto.JoinReply(
        interface_name=proto.InterfaceName("veth1", ""),
        gateway="10.1.0.1",
        static_routes=[
            proto.StaticRoute("10.2.0.0/16", 0, "10.1.0.254"),
            proto.StaticRoute("10.3.0.0/16", 1),
        ],
    )
    joined = _join_response(reply)
    assert (joined.src_name, joined.dst_prefix, joined.gateway) == ("veth1", "eth", "10.1.0.1")
    assert joined.static_routes == [
        StaticRoute("10.2.0.0/16", 0, "10.1.0.254"),
        StaticRoute("10.3.0.0/16", 1, ""),
    ]
    broken = {
        "no interface name information": proto.JoinReply(),
        "invalid gateway": proto.JoinReply(
            interface_name=proto.InterfaceName("v", "eth"), gateway="10.1.0.1/24"
        ),
        "invalid next hop": proto.JoinReply(
            interface_name=proto.InterfaceName("v", "eth"),
            static_routes=[proto.StaticRoute("10.2.0.0/16", 0, "")],
        ),
        "type 7": proto.JoinReply(
            interface_name=proto.InterfaceName("v", "eth"),
            static_routes=[proto.StaticRoute("10.2.0.0/16", 7)],
        ),
    }
    for message, bad in broken.items():
        with pytest.raises(ValueError, match=message):
            _join_response(bad)
