"""Reading nftables rulesets for `system check`, and comparing them. Nothing here writes
the host's ruleset.

The daemon's own table is compared with what it would write now: the same
script `Firewall.apply` feeds to `nft -f` is loaded into a throw-away network
namespace (`unshare --net`, gone when the command exits) and listed there, so
both sides are in nft's own normalised JSON and compare rule by rule,
whatever the nft version prints. Rules compare by their expressions (handles
ignored), maps by their elements, chains by their hook, priority and policy.

`forward_blockers` reads the host's whole ruleset for base chains of other
tables that drop forwarded traffic by default (an `ip filter FORWARD` chain
with policy drop, as Docker's daemon or ufw leave it): the daemon's bridges
rely on forwarding, and netfilter drops a packet that any base chain drops.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from dockyard.errors import Unavailable


async def _run(argv: list[str], stdin: bytes | None = None) -> str:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError as e:
        raise Unavailable(f"{argv[0]} is not installed") from e
    out, err = await proc.communicate(stdin)
    if proc.returncode:
        raise Unavailable(f"{' '.join(argv[:3])}: {err.decode(errors='replace').strip()}")
    return out.decode(errors="replace")


async def live() -> dict[str, Any]:
    """The host's whole ruleset, as `nft -j list ruleset` gives it."""
    text = await _run(["nft", "-j", "list", "ruleset"])
    return await asyncio.to_thread(_parse, text)


async def rendered(script: str) -> dict[str, Any]:
    """The ruleset `script` makes, loaded into a throw-away network namespace."""
    text = await _run(
        ["unshare", "--net", "sh", "-c", "nft -f - && nft -j list ruleset"], script.encode()
    )
    return await asyncio.to_thread(_parse, text)


async def rule_texts(family: str, table: str) -> dict[int, str]:
    """Each rule of a live table as nft prints it, by handle (for messages)."""
    try:
        text = await _run(["nft", "-a", "list", "table", family, table])
    except Unavailable:
        return {}
    found = {}
    for line in text.splitlines():
        body, marker, handle = line.rpartition("# handle ")
        if marker and handle.strip().isdigit() and not body.strip().endswith("{"):
            found[int(handle)] = body.strip()
    return found


def _parse(text: str) -> dict[str, Any]:
    data = json.loads(text or "{}")
    return data if isinstance(data, dict) else {}


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass
class ChainView:
    base: tuple[str, str, str, str]  # type, hook, priority, policy ("" for a regular chain)
    rules: Counter[str] = field(default_factory=Counter)
    handles: dict[str, list[int]] = field(default_factory=dict)  # rule key -> live handles


@dataclass
class TableView:
    chains: dict[str, ChainView] = field(default_factory=dict)
    maps: dict[str, set[str]] = field(default_factory=dict)
    map_types: dict[str, str] = field(default_factory=dict)


def table_view(ruleset: dict[str, Any], family: str, table: str) -> TableView | None:
    """One table of a ruleset, in comparable form; None when it is not there."""
    view: TableView | None = None
    for item in ruleset.get("nftables") or []:
        kind, body = next(iter(item.items()))
        if not isinstance(body, dict) or body.get("family") != family:
            continue
        if kind == "table" and body.get("name") == table:
            view = view or TableView()
        if body.get("table") != table:
            continue
        view = view or TableView()
        if kind == "chain":
            base = (
                str(body.get("type", "")),
                str(body.get("hook", "")),
                str(body.get("prio", "")),
                str(body.get("policy", "")),
            )
            chain = view.chains.setdefault(body["name"], ChainView(base))
            chain.base = base
        elif kind == "rule":
            chain = view.chains.setdefault(body["chain"], ChainView(("", "", "", "")))
            key = _key(body.get("expr"))
            chain.rules[key] += 1
            chain.handles.setdefault(key, []).append(int(body.get("handle", 0)))
        elif kind in ("map", "set"):
            view.maps[body["name"]] = {_key(e) for e in body.get("elem") or []}
            view.map_types[body["name"]] = _key([body.get("type"), body.get("map")])
    return view


@dataclass(frozen=True)
class Difference:
    """One way a live table differs from what the daemon would write."""

    extra: bool  # something is there that should not be (else: missing)
    where: str  # "table", "chain forward", "map tcp_any"
    what: str  # a description; for a rule, its expression or its text
    handle: int = 0  # a live extra rule's handle


def compare(expected: TableView | None, live_view: TableView | None) -> list[Difference]:
    if expected is None and live_view is None:
        return []
    if live_view is None:
        return [Difference(False, "table", "the whole table")]
    if expected is None:
        return [Difference(True, "table", "the whole table")]
    found = []
    for name, chain in live_view.chains.items():
        want = expected.chains.get(name)
        if want is None:
            found.append(Difference(True, f"chain {name}", "the chain"))
            continue
        if want.base != chain.base:
            found.append(
                Difference(True, f"chain {name}", f"its hook and policy {' '.join(chain.base)}")
            )
        for key, count in (chain.rules - want.rules).items():
            for handle in chain.handles.get(key, [])[-count:]:
                found.append(Difference(True, f"chain {name}", key, handle))
        for key in (want.rules - chain.rules).elements():
            found.append(Difference(False, f"chain {name}", key))
    for name in expected.chains.keys() - live_view.chains.keys():
        found.append(Difference(False, f"chain {name}", "the chain"))
    for name, elements in live_view.maps.items():
        want_elements = expected.maps.get(name)
        if want_elements is None:
            found.append(Difference(True, f"map {name}", "the map"))
            continue
        found += [Difference(True, f"map {name}", e) for e in sorted(elements - want_elements)]
        found += [Difference(False, f"map {name}", e) for e in sorted(want_elements - elements)]
    for name in expected.maps.keys() - live_view.maps.keys():
        found.append(Difference(False, f"map {name}", "the map"))
    return found


def _accepts_bridges(rule: dict[str, Any], names: tuple[str, ...]) -> bool:
    """Whether a rule accepts traffic to or from one of the daemon's bridges (by exact
    name, or an nft wildcard such as "dy*" that covers them)."""
    exprs = rule.get("expr") or []
    if not any(isinstance(e, dict) and "accept" in e for e in exprs):
        return False
    for expr in exprs:
        match = expr.get("match") if isinstance(expr, dict) else None
        if not isinstance(match, dict):
            continue
        left = match.get("left")
        meta = left.get("meta") if isinstance(left, dict) else None
        if not isinstance(meta, dict) or meta.get("key") not in ("iifname", "oifname"):
            continue
        right = match.get("right")
        if not isinstance(right, str) or match.get("op") in ("!=",):
            continue
        pattern = right.removesuffix("*")
        wildcard = right.endswith("*")
        for name in names:
            if name == right or (wildcard and name.startswith(pattern)):
                return True
    return False


def forward_blockers(
    ruleset: dict[str, Any], own_table: str, bridge_names: tuple[str, ...]
) -> list[str]:
    """Base chains of other tables hooked on forwarding whose policy drops, and that
    have no rule accepting the daemon's bridges; as "family table chain"."""
    chains: dict[tuple[str, str, str], dict[str, Any]] = {}
    rules: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for item in ruleset.get("nftables") or []:
        kind, body = next(iter(item.items()))
        if not isinstance(body, dict):
            continue
        where = (str(body.get("family")), str(body.get("table")), str(body.get("name", "")))
        if kind == "chain":
            chains[where] = body
        elif kind == "rule":
            rules.setdefault((where[0], where[1], str(body.get("chain"))), []).append(body)
    found = []
    for (family, table, name), chain in chains.items():
        if family not in ("ip", "inet", "ip6") or table == own_table:
            continue
        if chain.get("hook") != "forward" or chain.get("policy") != "drop":
            continue
        if any(_accepts_bridges(r, bridge_names) for r in rules.get((family, table, name), [])):
            continue
        found.append(f"{family} {table} {name}")
    return found
