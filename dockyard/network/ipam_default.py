"""The built-in IPAM driver: pools and addresses kept in the daemon's database.

Pools without an explicit subnet come from `default-address-pools` (Docker's
daemon.json key): each base is cut into subnets of the given size and the first
one that overlaps no pool of the address space is handed out; IPv4 and IPv6
pools come from the bases of their family (`request_pool(..., v6=True)`).
Without an IPv6 base the daemon derives one, as Docker does: a ULA /48 from the
daemon's ID, cut into /64s (`ula_base`). In an IPv6 pool the subnet-router
anycast address (the first) is never handed out, and there is no broadcast
address to keep. Addresses are
searched from where the previous search ended (wrapping), so a released
address is not handed out again at once; every allocation is committed before
the address is returned, so none is handed out twice, across restarts too.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterator
from typing import Any

from dockyard.errors import Forbidden, InvalidArgument, NotFound
from dockyard.network.ipam import (
    GATEWAY_REQUEST,
    AddressSpaces,
    IpamCapabilities,
    Pool,
)
from dockyard.state.db import Database

LOCAL_SPACE = "LocalDefault"
GLOBAL_SPACE = "GlobalDefault"
DEFAULT_POOLS = [
    {"base": "172.17.0.0/12", "size": 16},
    {"base": "192.168.0.0/16", "size": 20},
]

Net = ipaddress.IPv4Network | ipaddress.IPv6Network


class PoolOverlap(Forbidden):
    def __init__(self) -> None:
        super().__init__("invalid pool request: Pool overlaps with other one on this address space")


def parse_pools(raw: list[dict[str, Any]] | None, host_id: str = "") -> list[tuple[Net, int]]:
    """`default-address-pools` entries as (base network, subnet prefix length), IPv4 and
    IPv6; without an IPv6 entry, the ULA base derived from `host_id` is added."""
    pools = []
    for entry in raw or DEFAULT_POOLS:
        try:
            base = ipaddress.ip_network(str(entry["base"]), strict=False)
            size = int(str(entry["size"]))
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidArgument(f"invalid default-address-pools entry {entry!r}: {e}") from e
        if not base.prefixlen <= size <= base.max_prefixlen - 2:
            raise InvalidArgument(f"invalid default-address-pools entry {entry!r}")
        pools.append((base, size))
    if not any(base.version == 6 for base, _ in pools):
        pools.append(ula_base(host_id))
    return pools


def ula_base(host_id: str) -> tuple[Net, int]:
    """Docker's IPv6 default pool: fd00::/8 plus 40 bits of the SHA-256 of the daemon's ID
    (stable for the daemon, different between daemons), a /48 cut into /64s."""
    global_id = int.from_bytes(hashlib.sha256(host_id.encode()).digest()[:8], "big")
    global_id &= (1 << 40) - 1
    base = int(ipaddress.IPv6Address("fd00::")) + (global_id << 80)
    return ipaddress.IPv6Network((base, 48)), 64


class DefaultIpam:
    name = "default"

    def __init__(self, db: Database, default_pools: list[tuple[Net, int]]) -> None:
        self.db = db
        self.default_pools = default_pools

    async def get_capabilities(self) -> IpamCapabilities:
        return IpamCapabilities()

    async def get_default_address_spaces(self) -> AddressSpaces:
        return AddressSpaces(LOCAL_SPACE, GLOBAL_SPACE)

    # -- pools ---------------------------------------------------------------

    def _pools(self, space: str) -> list[Net]:
        rows = self.db.all("SELECT pool FROM ipam_pools WHERE address_space=?", (space,))
        return [ipaddress.ip_network(row["pool"]) for row in rows]

    def _candidates(self, version: int) -> Iterator[Net]:
        for base, size in self.default_pools:
            if base.version == version:
                yield from base.subnets(new_prefix=size)

    async def request_pool(
        self,
        address_space: str,
        pool: str = "",
        sub_pool: str = "",
        options: dict[str, str] | None = None,
        v6: bool = False,
    ) -> Pool:
        if address_space not in (LOCAL_SPACE, GLOBAL_SPACE):
            raise NotFound(f"unknown address space {address_space}")
        if sub_pool and not pool:
            raise InvalidArgument("invalid pool request: sub-pool requires a pool")
        taken = self._pools(address_space)
        if pool:
            network = ipaddress.ip_network(pool)
            if sub_pool and ipaddress.ip_network(sub_pool).version != network.version:
                raise InvalidArgument("pool and subpool are of incompatible address families")
            if any(network.overlaps(other) for other in taken):
                raise PoolOverlap()
        else:
            version = 6 if v6 else 4
            free = (c for c in self._candidates(version) if not any(c.overlaps(o) for o in taken))
            found = next(free, None)
            if found is None:
                raise Forbidden(
                    f"could not find an available, non-overlapping IPv{version} address pool "
                    "among the defaults to assign to the network"
                )
            network = found
        pool_id = f"{address_space}/{network}" + (f"/{sub_pool}" if sub_pool else "")
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO ipam_pools(id, address_space, pool, sub_pool, next) "
                "VALUES (?,?,?,?,0)",
                (pool_id, address_space, str(network), sub_pool),
            )
        return Pool(pool_id, str(network))

    async def release_pool(self, pool_id: str) -> None:
        with self.db.transaction():
            self.db.execute("DELETE FROM ipam_addresses WHERE pool_id=?", (pool_id,))
            self.db.execute("DELETE FROM ipam_pools WHERE id=?", (pool_id,))

    # -- addresses -----------------------------------------------------------

    def _pool_row(self, pool_id: str) -> Any:
        row = self.db.one("SELECT * FROM ipam_pools WHERE id=?", (pool_id,))
        if row is None:
            raise NotFound(f"cannot find address pool for poolID:{pool_id}")
        return row

    async def request_address(
        self, pool_id: str, address: str = "", options: dict[str, str] | None = None
    ) -> tuple[str, dict[str, Any]]:
        row = self._pool_row(pool_id)
        network = ipaddress.ip_network(row["pool"])
        taken = {
            r["address"]
            for r in self.db.all("SELECT address FROM ipam_addresses WHERE pool_id=?", (pool_id,))
        }
        if address:
            ip = ipaddress.ip_address(address)
            if ip not in network:
                raise InvalidArgument(f"requested address {address} is out of range")
            if str(ip) in taken:
                raise Forbidden(f"Address already in use: {address}")
            chosen = ip
            next_offset = row["next"]
        else:
            gateway = (options or {}) == GATEWAY_REQUEST
            # A gateway comes from the whole subnet, other addresses from the --ip-range.
            space = (
                ipaddress.ip_network(row["sub_pool"])
                if row["sub_pool"] and not gateway
                else network
            )
            usable = _usable(space, network)
            if not usable:
                raise Forbidden("No available addresses on this pool")
            first, count = usable
            start = 0 if gateway else row["next"] % count
            found = None
            for step in range(count):
                offset = (start + step) % count
                candidate = _address(network, first + offset)
                if str(candidate) not in taken:
                    found, next_offset = candidate, offset + 1
                    break
            if found is None:
                raise Forbidden("No available addresses on this pool")
            chosen = found
            if gateway:
                next_offset = row["next"]
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO ipam_addresses(pool_id, address) VALUES (?,?)", (pool_id, str(chosen))
            )
            self.db.execute("UPDATE ipam_pools SET next=? WHERE id=?", (next_offset, pool_id))
        return f"{chosen}/{network.prefixlen}", {}

    async def release_address(self, pool_id: str, address: str) -> None:
        with self.db.transaction():
            self.db.execute(
                "DELETE FROM ipam_addresses WHERE pool_id=? AND address=?", (pool_id, address)
            )

    def allocated(self) -> dict[str, set[str]]:
        """Every allocation, pool ID -> addresses (for start-up reconciliation)."""
        result: dict[str, set[str]] = {}
        for row in self.db.all("SELECT pool_id, address FROM ipam_addresses"):
            result.setdefault(row["pool_id"], set()).add(row["address"])
        return result


def _usable(space: Net, network: Net) -> tuple[int, int] | None:
    """First address and count of host addresses in `space` (a subnet of `network`): not
    the network's first address (IPv4's network address, IPv6's subnet-router anycast) nor
    IPv4's broadcast address, except in an IPv4 /31 or /32."""
    first, last = int(space.network_address), int(space.broadcast_address)
    if network.version == 6:
        first = max(first, int(network.network_address) + 1)
    elif network.prefixlen < 31:
        first = max(first, int(network.network_address) + 1)
        last = min(last, int(network.broadcast_address) - 1)
    if last < first:
        return None
    return first, last - first + 1


def _address(network: Net, value: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if network.version == 6:
        return ipaddress.IPv6Address(value)
    return ipaddress.IPv4Address(value)
