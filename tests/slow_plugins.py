"""Plugins (SDK) whose first call of a kind takes a while: for races with `plugin disable`.

Each writes `<STATE_DIR>/busy` when the slow call starts, then waits `SLOW_SECONDS`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
from typing import Any

from dockyard.sdk import IpamPlugin, Volume, VolumePlugin
from dockyard.sdk.ipam import (
    RequestAddressReply,
    RequestAddressRequest,
    RequestPoolReply,
    RequestPoolRequest,
)

STATE_DIR = os.environ.get("STATE_DIR", "/data")
SLOW_SECONDS = float(os.environ.get("SLOW_SECONDS", "3"))


async def _slow(what: str) -> None:
    with open(os.path.join(STATE_DIR, "busy"), "w") as f:
        f.write(what)
    await asyncio.sleep(SLOW_SECONDS)


class SlowVolumes(VolumePlugin):
    """Create is slow; volumes are directories under STATE_DIR."""

    def _dir(self, name: str) -> str:
        return os.path.join(STATE_DIR, name)

    async def create(self, name: str, opts: dict[str, str]) -> None:
        await _slow(name)
        os.makedirs(self._dir(name), exist_ok=True)

    def remove(self, name: str) -> None:
        os.rmdir(self._dir(name))

    def mount(self, name: str, id: str) -> str:
        return self._dir(name)

    def path(self, name: str) -> str:
        return self._dir(name)

    def get(self, name: str) -> Any:
        return Volume(name, self._dir(name)) if os.path.isdir(self._dir(name)) else None

    def list(self) -> list[Volume]:
        names = [n for n in os.listdir(STATE_DIR) if os.path.isdir(self._dir(n))]
        return [Volume(n, self._dir(n)) for n in names]


class SlowIpam(IpamPlugin):
    """RequestPool is slow; one pool, POOL (default 10.197.0.0/24), gateway its first host."""

    def __init__(self) -> None:
        self.pool = ipaddress.ip_network(os.environ.get("POOL", "10.197.0.0/24"))
        self.next = 1

    async def request_pool(self, req: RequestPoolRequest) -> RequestPoolReply:
        await _slow("pool")
        return RequestPoolReply(pool_id="slow", pool=str(self.pool), data={})

    def release_pool(self, req: Any) -> None:
        return None

    def request_address(self, req: RequestAddressRequest) -> RequestAddressReply:
        address = req.address or str(self.pool.network_address + self.next)
        self.next += 1
        return RequestAddressReply(address=f"{address}/{self.pool.prefixlen}", data={})

    def release_address(self, req: Any) -> None:
        return None
