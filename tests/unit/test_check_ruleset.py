"""`system check`'s reading of nftables rulesets, on rulesets nft itself produces in a
throw-away network namespace (the host's ruleset is never touched)."""

from __future__ import annotations

import asyncio

from dockyard.check import ruleset
from dockyard.network.firewall import BridgeRules, Firewall, Forward

DOCKER_FORWARD = """
table ip filter {
  chain FORWARD { type filter hook forward priority filter; policy drop; }
  chain DOCKER-USER { return; }
}
"""


def render(script: str) -> dict:
    return asyncio.run(ruleset.rendered(script))


def test_a_forward_chain_dropping_by_default_is_found() -> None:
    found = ruleset.forward_blockers(render(DOCKER_FORWARD), "dockyard", ("dockyard0", "dy-"))
    assert found == ["ip filter FORWARD"]


def test_a_chain_that_accepts_the_daemons_bridges_does_not_block() -> None:
    allowed = DOCKER_FORWARD.replace(
        "policy drop; }", 'policy drop; iifname "dy*" accept; oifname "dy*" accept; }'
    )
    assert ruleset.forward_blockers(render(allowed), "dockyard", ("dockyard0", "dy-")) == []
    # a wildcard for someone else's devices does not count
    other = DOCKER_FORWARD.replace("policy drop; }", 'policy drop; iifname "br-*" accept; }')
    assert ruleset.forward_blockers(render(other), "dockyard", ("dockyard0", "dy-")) == [
        "ip filter FORWARD"
    ]


def test_accepting_policies_and_the_daemons_own_table_are_not_blockers() -> None:
    script = DOCKER_FORWARD.replace("policy drop", "policy accept") + (
        "table inet dockyard {\n chain forward { type filter hook forward priority 0; "
        "policy drop; }\n}\n"
    )
    assert ruleset.forward_blockers(render(script), "dockyard", ("dockyard0",)) == []


def _firewall_script(extra: str = "") -> str:
    firewall = Firewall("dockyard_unit")
    networks = [BridgeRules("dy-net1", "10.99.1.0/24"), BridgeRules("dy-net2", "10.99.2.0/24")]
    forwards = [Forward("tcp", "0.0.0.0", 8080, "10.99.1.2", 80)]
    return firewall.script(networks, forwards) + extra


def test_the_same_script_compares_equal() -> None:
    rendered = render(_firewall_script())
    for family in ("ip", "ip6"):
        view = ruleset.table_view(rendered, family, "dockyard_unit")
        assert ruleset.compare(view, view) == []
    assert ruleset.table_view(rendered, "ip6", "dockyard_unit") is None  # no IPv6 network


def test_extra_and_missing_rules_and_map_elements_are_told_apart() -> None:
    expected = ruleset.table_view(render(_firewall_script()), "ip", "dockyard_unit")
    tampered = render(
        _firewall_script(
            'add rule ip dockyard_unit forward iifname "eth9" accept\n'
            "add element ip dockyard_unit tcp_any { 9999 : 10.99.1.3 . 22 }\n"
            "delete element ip dockyard_unit tcp_any { 8080 }\n"
        )
    )
    live = ruleset.table_view(tampered, "ip", "dockyard_unit")
    differences = ruleset.compare(expected, live)
    extra = [d for d in differences if d.extra]
    missing = [d for d in differences if not d.extra]
    assert [(d.where, "eth9" in d.what, d.handle > 0) for d in extra if "chain" in d.where] == [
        ("chain forward", True, True)
    ]
    assert [d.where for d in extra if "map" in d.where] == ["map tcp_any"]
    assert "9999" in next(d.what for d in extra if "map" in d.where)
    assert [d.where for d in missing] == ["map tcp_any"] and "8080" in missing[0].what


def test_a_missing_table_is_one_difference() -> None:
    expected = ruleset.table_view(render(_firewall_script()), "ip", "dockyard_unit")
    assert ruleset.compare(expected, None) == [
        ruleset.Difference(False, "table", "the whole table")
    ]
