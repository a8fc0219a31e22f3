"""An IPAM plugin that keeps its allocations in a file, so they survive restarts.

Pools are carved out of `IPAM_RANGE` (default `10.240.0.0/12`) in blocks of
`IPAM_PREFIX` bits (default 24) when a network asks for any pool, or taken as
requested when it names one (inside the range or not). Addresses are handed
out lowest first; a gateway request (`RequestAddressType:
com.docker.network.gateway`) without an address gets the pool's first host.
State lives in `IPAM_STATE` (default `/var/lib/dockyard-ipam/state.json`).

    python -m dockyard.sdk run plugins/ipam_file.py:FileIpam --name fileipam
    dockyard network create --ipam-driver fileipam net1
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
from typing import Any

from dockyard.sdk import IpamPlugin, PluginError, run
from dockyard.sdk.ipam import (
    ReleaseAddressRequest,
    ReleasePoolRequest,
    RequestAddressReply,
    RequestAddressRequest,
    RequestPoolReply,
    RequestPoolRequest,
)


class FileIpam(IpamPlugin):
    def __init__(self, state: str | None = None) -> None:
        self.state_path = state or os.environ.get("IPAM_STATE", "/var/lib/dockyard-ipam/state.json")
        self.range = ipaddress.ip_network(os.environ.get("IPAM_RANGE", "10.240.0.0/12"))
        self.prefix = int(os.environ.get("IPAM_PREFIX", "24"))
        if self.prefix < self.range.prefixlen:
            raise ValueError("IPAM_PREFIX is larger than IPAM_RANGE")
        os.makedirs(os.path.dirname(self.state_path) or ".", exist_ok=True)
        self.pools: dict[str, dict[str, Any]] = {}
        if os.path.exists(self.state_path):
            with open(self.state_path) as f:
                self.pools = json.load(f)

    def _save(self) -> None:
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.pools, f)
        os.replace(tmp, self.state_path)

    def _taken(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(p["pool"]) for p in self.pools.values()]

    def request_pool(self, req: RequestPoolRequest) -> RequestPoolReply:
        if req.v6 and not req.pool:
            raise PluginError("this IPAM only chooses IPv4 pools; name an IPv6 pool")
        if req.sub_pool and not req.pool:
            raise PluginError("a sub-pool needs a pool")
        taken = self._taken()
        if req.pool:
            try:
                pool = ipaddress.ip_network(req.pool)
            except ValueError as e:
                raise PluginError(f"invalid pool {req.pool!r}: {e}") from None
            if any(pool.overlaps(t) for t in taken):
                raise PluginError(f"pool {pool} overlaps a pool in use")
        else:
            found = next(
                (
                    s
                    for s in self.range.subnets(new_prefix=self.prefix)
                    if not any(s.overlaps(t) for t in taken)
                ),
                None,
            )
            if found is None:
                raise PluginError(f"no free /{self.prefix} left in {self.range}")
            pool = found
        sub = ipaddress.ip_network(req.sub_pool) if req.sub_pool else pool
        if not sub.subnet_of(pool):  # type: ignore[arg-type]
            raise PluginError(f"sub-pool {sub} is not inside {pool}")
        pool_id = "fileipam-" + secrets.token_hex(6)
        self.pools[pool_id] = {"pool": str(pool), "sub": str(sub), "used": []}
        self._save()
        return RequestPoolReply(pool_id=pool_id, pool=str(pool), data={})

    def release_pool(self, req: ReleasePoolRequest) -> None:
        if self.pools.pop(req.pool_id, None) is None:
            raise PluginError(f"unknown pool {req.pool_id}")
        self._save()

    def request_address(self, req: RequestAddressRequest) -> RequestAddressReply:
        record = self.pools.get(req.pool_id)
        if record is None:
            raise PluginError(f"unknown pool {req.pool_id}")
        pool, sub = ipaddress.ip_network(record["pool"]), ipaddress.ip_network(record["sub"])
        used = set(record["used"])
        if req.address:
            address = ipaddress.ip_address(req.address)
            if address not in pool:
                raise PluginError(f"{address} is not in {pool}")
            if str(address) in used:
                raise PluginError(f"{address} is already allocated")
        else:
            free = next((a for a in sub.hosts() if str(a) not in used), None)
            if free is None:
                raise PluginError(f"no free address left in {sub}")
            address = free
        record["used"].append(str(address))
        self._save()
        return RequestAddressReply(address=f"{address}/{pool.prefixlen}", data={})

    def release_address(self, req: ReleaseAddressRequest) -> None:
        record = self.pools.get(req.pool_id)
        if record is None:
            raise PluginError(f"unknown pool {req.pool_id}")
        if req.address in record["used"]:
            record["used"].remove(req.address)
            self._save()


if __name__ == "__main__":
    run(FileIpam(), os.environ.get("PLUGIN_NAME", "fileipam"))
