"""A network plugin and an IPAM plugin written without the SDK (reply tables for `BarePlugin`).

`VethNetwork` is a real, minimal libnetwork remote driver: a Linux bridge per
network holding the gateway address, a veth pair per endpoint (host end on the
bridge, the other end handed to the engine in Join), all made with `ip`. Its
devices start with the prefix it is given, so a test finds (and cleans) them.
`BareIpam` hands out pools and addresses from a range the test owns and keeps
them only in memory (a restart is `forget()`), optionally asking the engine for
MAC addresses and request replays.
"""

from __future__ import annotations

import ipaddress
import secrets
import subprocess
import threading
from typing import Any

from tests.bare_plugin import Call, Raw


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


def links_with(prefix: str) -> list[str]:
    names = [
        line.split(":")[1].strip().split("@")[0] for line in _ip("-o", "link").stdout.splitlines()
    ]
    return sorted(n for n in names if n.startswith(prefix))


class VethNetwork:
    def __init__(self, prefix: str, *, gw_alloc_checker: bool = False) -> None:
        assert len(prefix) <= 6
        self.prefix = prefix
        self.gw_alloc_checker = gw_alloc_checker
        self.networks: dict[str, str] = {}  # network id -> gateway IP ("" without one)
        self.endpoints: dict[str, str] = {}  # endpoint id -> network id
        self.static_routes: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def bridge(self, network_id: str) -> str:
        return f"{self.prefix}b{network_id[:8]}"

    def host_end(self, endpoint_id: str) -> str:
        return f"{self.prefix}h{endpoint_id[:8]}"

    def peer(self, endpoint_id: str) -> str:
        return f"{self.prefix}c{endpoint_id[:8]}"

    def replies(self) -> dict[str, Any]:
        def create_network(call: Call) -> Any:
            nid = call.json["NetworkID"]
            bridge = self.bridge(nid)
            made = _ip("link", "add", bridge, "type", "bridge")
            if made.returncode:
                return Raw(500, f'{{"Err": "{made.stderr.strip()}"}}'.encode())
            gateway = ""
            for data in call.json.get("IPv4Data") or []:
                if data.get("Gateway"):
                    _ip("addr", "add", data["Gateway"], "dev", bridge)
                    gateway = str(ipaddress.ip_interface(data["Gateway"]).ip)
            _ip("link", "set", bridge, "up")
            with self.lock:
                self.networks[nid] = gateway
            return {}

        def delete_network(call: Call) -> Any:
            nid = call.json["NetworkID"]
            _ip("link", "del", self.bridge(nid))
            with self.lock:
                self.networks.pop(nid, None)
            return {}

        def create_endpoint(call: Call) -> Any:
            nid, eid = call.json["NetworkID"], call.json["EndpointID"]
            with self.lock:
                if nid not in self.networks:
                    return {"Err": f"no network {nid}"}
            mac = (call.json.get("Interface") or {}).get("MacAddress") or ""
            filled = "" if mac else "02:42:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(4))
            host, peer = self.host_end(eid), self.peer(eid)
            made = _ip(
                "link", "add", host, "type", "veth", "peer", "name", peer, "address", mac or filled
            )
            if made.returncode:
                return {"Err": made.stderr.strip()}
            _ip("link", "set", host, "master", self.bridge(nid))
            _ip("link", "set", host, "up")
            with self.lock:
                self.endpoints[eid] = nid
            return {"Interface": {"MacAddress": filled}} if filled else {"Interface": None}

        def delete_endpoint(call: Call) -> Any:
            eid = call.json["EndpointID"]
            _ip("link", "del", self.host_end(eid))
            with self.lock:
                self.endpoints.pop(eid, None)
            return {}

        def join(call: Call) -> Any:
            nid, eid = call.json["NetworkID"], call.json["EndpointID"]
            with self.lock:
                if eid not in self.endpoints:
                    return {"Err": f"no endpoint {eid}"}
                gateway = self.networks.get(nid, "")
                routes = list(self.static_routes)
            return {
                "InterfaceName": {"SrcName": self.peer(eid), "DstPrefix": "eth"},
                "Gateway": gateway,
                "StaticRoutes": routes,
            }

        return {
            "/NetworkDriver.GetCapabilities": {
                "Scope": "local",
                "GwAllocChecker": self.gw_alloc_checker,
            },
            "/NetworkDriver.GwAllocCheck": {"SkipIPv4": False},
            "/NetworkDriver.CreateNetwork": create_network,
            "/NetworkDriver.DeleteNetwork": delete_network,
            "/NetworkDriver.CreateEndpoint": create_endpoint,
            "/NetworkDriver.EndpointOperInfo": {"Value": {}},
            "/NetworkDriver.DeleteEndpoint": delete_endpoint,
            "/NetworkDriver.Join": join,
            "/NetworkDriver.Leave": {},
            "/NetworkDriver.DiscoverNew": {},
            "/NetworkDriver.DiscoverDelete": {},
        }


class BareIpam:
    SPACE = "bare-local"

    def __init__(
        self, pool_range: str, *, prefix: int = 24, replay: bool = False, mac: bool = False
    ) -> None:
        self.range = ipaddress.ip_network(pool_range)
        self.prefix = prefix
        self.replay = replay
        self.mac = mac
        self.pools: dict[str, ipaddress.IPv4Network] = {}
        self.used: dict[str, set[str]] = {}
        self.lock = threading.Lock()

    def forget(self) -> None:
        """What a restart of a plugin that keeps nothing on disk does."""
        with self.lock:
            self.pools.clear()
            self.used.clear()

    def pool_id(self, pool: str) -> str:
        with self.lock:
            return next(i for i, p in self.pools.items() if str(p) == pool)

    def allocations(self) -> dict[str, list[str]]:
        with self.lock:
            return {str(self.pools[p]): sorted(self.used[p]) for p in self.pools}

    def replies(self) -> dict[str, Any]:
        def request_pool(call: Call) -> Any:
            body = call.json
            if body.get("AddressSpace") != self.SPACE:
                return {"Error": f"unknown address space {body.get('AddressSpace')!r}"}
            with self.lock:
                if body.get("Pool"):
                    pool = ipaddress.ip_network(body["Pool"])
                    if any(pool.overlaps(p) for p in self.pools.values()):
                        return {"Error": f"pool {pool} overlaps a pool in use"}
                else:
                    free = [
                        s
                        for s in self.range.subnets(new_prefix=self.prefix)
                        if not any(s.overlaps(p) for p in self.pools.values())
                    ]
                    if not free:
                        return {"Error": "no free pool"}
                    pool = free[0]
                pool_id = "bare-" + secrets.token_hex(4)
                self.pools[pool_id] = pool  # type: ignore[assignment]
                self.used[pool_id] = set()
            return {"PoolID": pool_id, "Pool": str(pool), "Data": {}}

        def release_pool(call: Call) -> Any:
            with self.lock:
                if self.pools.pop(call.json["PoolID"], None) is None:
                    return {"Error": "unknown pool"}
                self.used.pop(call.json["PoolID"], None)
            return {}

        def request_address(call: Call) -> Any:
            pool_id, wanted = call.json["PoolID"], call.json.get("Address") or ""
            with self.lock:
                pool = self.pools.get(pool_id)
                if pool is None:
                    return {"Error": f"unknown pool {pool_id}"}
                used = self.used[pool_id]
                if wanted:
                    if wanted in used or ipaddress.ip_address(wanted) not in pool:
                        return {"Error": f"{wanted} is not available"}
                    address = wanted
                else:
                    address = next((str(a) for a in pool.hosts() if str(a) not in used), "")
                    if not address:
                        return {"Error": "pool is full"}
                used.add(address)
            return {"Address": f"{address}/{pool.prefixlen}", "Data": {}}

        def release_address(call: Call) -> Any:
            with self.lock:
                used = self.used.get(call.json["PoolID"])
                if used is None:
                    return {"Error": "unknown pool"}
                used.discard(call.json["Address"])
            return {}

        return {
            "/IpamDriver.GetCapabilities": {
                "RequiresMACAddress": self.mac,
                "RequiresRequestReplay": self.replay,
            },
            "/IpamDriver.GetDefaultAddressSpaces": {
                "LocalDefaultAddressSpace": self.SPACE,
                "GlobalDefaultAddressSpace": "bare-global",
            },
            "/IpamDriver.RequestPool": request_pool,
            "/IpamDriver.ReleasePool": release_pool,
            "/IpamDriver.RequestAddress": request_address,
            "/IpamDriver.ReleaseAddress": release_address,
        }
