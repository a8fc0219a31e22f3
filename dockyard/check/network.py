"""`system check` of networking: devices, sandboxes, endpoint and address records, and the
daemon's nftables table.

* Bridges and veths with the daemon's name prefixes that no network or
  endpoint owns are leftovers (deleted by the repair); a bridge or veth that
  a network or running container needs and that is gone cuts containers off.
* Sandbox files (`<exec-root>/netns/<id>`) of containers that do not run
  (mounted ones are `mounts.py`'s), and running containers whose sandbox is
  gone.
* Endpoint records of containers that do not run hold addresses and names:
  the repair tears them down as a container's exit does. Addresses and pools
  of the default IPAM that no network or endpoint holds are released.
* The daemon's table (`ip` and `ip6 <nftables-table>`) against what it would
  write now from its records (`ruleset.py`): a rule, chain or port-map
  element it did not write, or one it needs that is missing. The repair
  writes the table again in one transaction, as every network change does.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from dockyard.check import kernel, ruleset
from dockyard.check.owners import Owners, settle, snapshot
from dockyard.check.report import ERROR, WARNING, Finding, Report
from dockyard.errors import DockyardError
from dockyard.network import netns

if TYPE_CHECKING:
    from dockyard.engine import Engine

AREA = "network"
DEVICE_KINDS = ("bridge", "veth")


async def check(engine: Engine, report: Report) -> None:
    report.count("networks", len(engine.network.networks))
    report.add(await _devices(engine))
    report.add(await _sandboxes(engine))
    report.add(await _endpoints(engine))
    report.add(await _addresses(engine))
    report.add(await _table(engine))


# -- devices -----------------------------------------------------------------------


async def _devices(engine: Engine) -> list[Finding]:
    config = engine.network.config
    prefixes = (config.bridge_prefix, config.veth_prefix, config.bridge)

    async def look() -> tuple[set[str], set[str], dict[str, str]]:
        bridge = engine.network.bridge
        owned = bridge.links() | {config.bridge}
        bridges = {rules.bridge for rules in bridge.rules()}
        present = {link.name: link.kind for link in await kernel.links(("",))}
        stray = {
            name
            for name, kind in present.items()
            if name.startswith(prefixes) and kind in DEVICE_KINDS and name not in owned
        }
        gone = {name for name in owned if name not in present}
        return stray, gone, {name: ("bridge" if name in bridges else "veth") for name in gone}

    stray, gone, kinds = await look()
    if not stray and not gone:
        return []
    await settle(engine)
    stray_now, gone_now, _ = await look()
    findings = []
    for name in sorted(stray & stray_now):
        findings.append(_stray_device(engine, name))
    for name in sorted(gone & gone_now):
        what = (
            "the bridge of a network" if kinds[name] == "bridge" else "the host end of an endpoint"
        )
        findings.append(
            Finding(
                AREA,
                ERROR,
                f"device {name}",
                f"{what} is gone: the containers behind it are cut off; restart them "
                "(or the daemon, which makes the networks' bridges again)",
            )
        )
    return findings


def _stray_device(engine: Engine, name: str) -> Finding:
    async def fix() -> str:
        if name in engine.network.bridge.links():
            return "a network owns it now: left alone"
        if not await kernel.delete_link(name):
            return "it has gone meanwhile"
        return "deleted it"

    return Finding(
        AREA,
        WARNING,
        f"device {name}",
        "a network device with the daemon's name prefix that no network or container owns",
        repair="delete it",
        fix=fix,
    )


# -- sandboxes ---------------------------------------------------------------------


def _sandbox_owned(engine: Engine, owners: Owners, container_id: str) -> bool:
    return (
        container_id in owners.running
        or container_id in owners.busy
        or container_id in engine.network.sandboxes
    )


async def _sandboxes(engine: Engine) -> list[Finding]:
    directory = engine.network.sandbox_dir

    def listing() -> dict[str, bool]:
        try:
            names = os.listdir(directory)
        except OSError:
            return {}
        return {name: netns.is_mounted(os.path.join(directory, name)) for name in names}

    files = await asyncio.to_thread(listing)
    owners = snapshot(engine)
    unowned = {
        n for n, mounted in files.items() if not mounted and not _sandbox_owned(engine, owners, n)
    }
    gone = {
        cid
        for cid in owners.running
        if cid not in owners.busy
        and not files.get(cid, False)
        and any(e.address for e in engine.network.container_endpoints(cid))
    }
    if not unowned and not gone:
        return []
    owners = await settle(engine)
    files = await asyncio.to_thread(listing)
    findings = []
    for name in sorted(unowned):
        if name in files and not files[name] and not _sandbox_owned(engine, owners, name):
            findings.append(_stray_sandbox(engine, os.path.join(directory, name), name))
    for cid in sorted(gone):
        if cid in owners.running and cid not in owners.busy and not files.get(cid, False):
            container = owners.containers[cid]
            findings.append(
                Finding(
                    AREA,
                    ERROR,
                    f"container {container.name} ({container.short_id})",
                    "its network namespace is gone: it has no network; restart it",
                )
            )
    return findings


def _stray_sandbox(engine: Engine, path: str, container_id: str) -> Finding:
    async def fix() -> str:
        if _sandbox_owned(engine, snapshot(engine), container_id):
            return "a container owns it now: left alone"
        await asyncio.to_thread(netns.destroy, path)
        return "removed it"

    return Finding(
        AREA,
        WARNING,
        f"file {path}",
        "a sandbox file of a container that does not run",
        repair="remove it",
        fix=fix,
    )


# -- endpoint and address records --------------------------------------------------


async def _endpoints(engine: Engine) -> list[Finding]:
    def idle(owners: Owners) -> set[str]:
        return {
            e.container_id
            for e in engine.network.endpoints.values()
            if e.container_id not in owners.running and e.container_id not in owners.busy
        }

    first = idle(snapshot(engine))
    if not first:
        return []
    later = idle(await settle(engine))
    findings = []
    for cid in sorted(first & later):
        endpoints = engine.network.container_endpoints(cid)
        names = sorted(
            engine.network.networks[e.network_id].name
            for e in endpoints
            if e.network_id in engine.network.networks
        )
        addresses = [a for e in endpoints for a in (e.ip, e.ip6) if a]
        findings.append(_idle_endpoints(engine, cid, names, addresses))
    return findings


def _idle_endpoints(
    engine: Engine, container_id: str, names: list[str], addresses: list[str]
) -> Finding:
    async def fix() -> str:
        owners = snapshot(engine)
        if container_id in owners.running or container_id in owners.busy:
            return "the container runs again: left alone"
        await engine.network.teardown(container_id)
        return "tore them down (addresses released)"

    held = f" holding {', '.join(addresses)}" if addresses else ""
    return Finding(
        AREA,
        WARNING,
        f"container {container_id[:12]}",
        f"it does not run, but its endpoints on {', '.join(names) or 'unknown networks'} "
        f"remain{held}",
        repair="tear them down as its exit does",
        fix=fix,
    )


def _orphans(engine: Engine) -> tuple[dict[str, set[str]], set[str]]:
    """Default-IPAM addresses (pool -> addresses) and pools no record holds."""
    owned: dict[str, set[str]] = {}
    for network in engine.network.networks.values():
        for pool in [*network.pools, *network.pools6]:
            kept = owned.setdefault(pool.pool_id, set())
            if pool.gateway:
                kept.add(pool.gateway.split("/")[0])
            kept.update(pool.aux.values())
    for endpoint in engine.network.endpoints.values():
        if endpoint.pool_id:
            owned.setdefault(endpoint.pool_id, set()).add(endpoint.ip)
        if endpoint.pool6_id:
            owned.setdefault(endpoint.pool6_id, set()).add(endpoint.ip6)
    addresses: dict[str, set[str]] = {}
    pools: set[str] = set()
    for pool_id, allocated in engine.network.ipam.allocated().items():
        if pool_id not in owned:
            pools.add(pool_id)
            continue
        loose = allocated - owned[pool_id]
        if loose:
            addresses[pool_id] = loose
    return addresses, pools


async def _addresses(engine: Engine) -> list[Finding]:
    addresses, pools = _orphans(engine)
    if not addresses and not pools:
        return []
    await settle(engine)
    addresses_now, pools_now = _orphans(engine)
    findings = []
    for pool_id, loose in sorted(addresses.items()):
        for address in sorted(loose & addresses_now.get(pool_id, set())):
            findings.append(_loose_address(engine, pool_id, address))
    for pool_id in sorted(pools & pools_now):
        findings.append(_loose_pool(engine, pool_id))
    return findings


def _loose_address(engine: Engine, pool_id: str, address: str) -> Finding:
    async def fix() -> str:
        if address not in _orphans(engine)[0].get(pool_id, set()):
            return "an endpoint holds it now: left alone"
        await engine.network.ipam.release_address(pool_id, address)
        return "released it"

    return Finding(
        AREA,
        WARNING,
        f"address {address}",
        f"allocated in pool {pool_id}, but no endpoint or network holds it",
        repair="release it",
        fix=fix,
    )


def _loose_pool(engine: Engine, pool_id: str) -> Finding:
    async def fix() -> str:
        if pool_id not in _orphans(engine)[1]:
            return "a network holds it now: left alone"
        await engine.network.ipam.release_pool(pool_id)
        return "released it"

    return Finding(
        AREA,
        WARNING,
        f"pool {pool_id}",
        "an address pool no network holds",
        repair="release it",
        fix=fix,
    )


# -- the nftables table ------------------------------------------------------------


async def _differences(engine: Engine) -> list[tuple[str, ruleset.Difference]]:
    bridge = engine.network.bridge
    table = engine.network.config.nftables_table
    script = engine.network.firewall.script(bridge.rules(), bridge.forwards())
    expected, current = await asyncio.gather(ruleset.rendered(script), ruleset.live())
    found = []
    for family in ("ip", "ip6"):
        differences = ruleset.compare(
            ruleset.table_view(expected, family, table), ruleset.table_view(current, family, table)
        )
        found += [(family, d) for d in differences]
    return found


async def _table(engine: Engine) -> list[Finding]:
    table = engine.network.config.nftables_table
    try:
        first = await _differences(engine)
        if not first:
            return []
        await settle(engine)
        later = await _differences(engine)
    except DockyardError as e:
        return [Finding(AREA, ERROR, f"nftables table {table}", f"it cannot be read: {e.message}")]
    lasting = [item for item in first if item in later]
    if not lasting:
        return []
    rewrite = _once(lambda: _rewrite(engine))
    texts: dict[str, dict[int, str]] = {}
    findings = []
    for family, difference in lasting:
        if difference.extra and difference.handle and family not in texts:
            texts[family] = await ruleset.rule_texts(family, table)
        findings.append(_difference(family, table, difference, texts.get(family, {}), rewrite))
    return findings


async def _rewrite(engine: Engine) -> str:
    await engine.network.bridge.resume()
    return "wrote the daemon's table again from its records"


def _once(work: Callable[[], Awaitable[str]]) -> Callable[[], Awaitable[str]]:
    """One run of `work` shared by every finding it repairs."""
    done: list[asyncio.Future[str]] = []

    async def run() -> str:
        if not done:
            done.append(asyncio.ensure_future(work()))
        return await done[0]

    return run


def _difference(
    family: str,
    table: str,
    difference: ruleset.Difference,
    texts: dict[int, str],
    rewrite: Callable[[], Awaitable[str]],
) -> Finding:
    subject = f"nftables table {family} {table}"
    where = difference.where
    if where == "table":
        message = (
            "the daemon's table is gone: published ports, NAT and isolation between "
            "networks do not work"
            if not difference.extra
            else "the daemon writes no such table now, but it is there"
        )
    elif difference.extra:
        shown = texts.get(difference.handle) or difference.what
        message = f"{where} holds something the daemon did not write: {shown}"
    else:
        message = f"{where} lacks something the daemon needs: {difference.what}"
    return Finding(
        AREA,
        ERROR if not difference.extra else WARNING,
        subject,
        message,
        repair="write the table again from the daemon's records (one atomic transaction)",
        fix=rewrite,
    )
