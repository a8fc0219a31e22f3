"""The conformance checker: run a plugin through every endpoint it declares.

For each kind in the plugin's `Implements` (or, for a managed plugin, its
config's interface types) the checker drives the endpoints in the order an
engine does, then the error paths an engine relies on (unknown volumes, pools,
networks), and records one result per check: `pass`, `fail` (the engine would
misbehave with this plugin), `warn` (legal but surprising) or `skip`. Requests
are sent exactly as Docker's daemon sends them (see `client`), so a plugin that
passes here works with Docker and with Dockyard alike.

Names the checker creates start with `dockyard-check-` and are removed again:
whatever check failed, the checker unmounts what it mounted and removes its
volumes at the end, trying a failed Remove once more, and reports any it could
not remove. `options` are the driver options its volume Creates carry (`--opt`),
for plugins that need some (a FUSE plugin's device, a remote's name). A failing
`Path` is a warning: engines do not need it (Docker ignores its errors).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from dockyard.plugins.client import PluginClient, PluginError, encode_body, excerpt
from dockyard.plugins.protocol import AUTHZ, IPAM, KINDS, LOG, NETWORK, VOLUME, logentry
from dockyard.wire import WireError, loads, lookup

PASS, FAIL, WARN, SKIP = "pass", "fail", "warn", "skip"
TIMEOUT = 30.0


@dataclass
class CheckResult:
    kind: str
    check: str
    status: str
    detail: str = ""


@dataclass
class CheckReport:
    plugin: str
    address: str
    implements: list[str] = field(default_factory=list)
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(r.status == FAIL for r in self.results)

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckReport:
        return cls(
            data["plugin"],
            data["address"],
            list(data.get("implements") or []),
            [CheckResult(**r) for r in data.get("results") or []],
        )

    def render(self) -> str:
        lines = [f"Plugin {self.plugin} at {self.address}"]
        lines.append(f"Implements: {', '.join(self.implements) or '(nothing)'}")
        kind = None
        for r in self.results:
            if r.kind != kind:
                kind = r.kind
                lines.append(f"\n{kind}")
            detail = f": {r.detail}" if r.detail else ""
            lines.append(f"  {r.status.upper():<4}  {r.check}{detail}")
        lines.append(
            f"\n{self.count(PASS)} passed, {self.count(FAIL)} failed, "
            f"{self.count(WARN)} warnings, {self.count(SKIP)} skipped"
        )
        return "\n".join(lines)


class _Failed(Exception):
    pass


class Checker:
    def __init__(
        self,
        client: PluginClient,
        *,
        kinds: list[str] | None = None,
        fifo_dirs: tuple[str, str] | None = None,
        timeout: float = TIMEOUT,
        subnet: str | None = None,
        sandbox: str | None = None,
        options: dict[str, str] | None = None,
    ) -> None:
        self.client = client
        self.options = dict(options or {})  # driver options for the volume Creates
        self.declared = kinds  # managed plugins: from config.json, no Activate needed
        self.fifo_dirs = fifo_dirs  # (host dir, the same dir as the plugin sees it)
        self.timeout = timeout
        self.subnet = subnet  # the network check's pool (default: a random 10.213.x.0/24)
        self.sandbox = sandbox  # a real netns for Join (drivers that make the interface in it)
        self.report = CheckReport(client.name, str(client.endpoint))
        self.tag = "dockyard-check-" + secrets.token_hex(4)

    def record(self, kind: str, check: str, status: str, detail: str = "") -> None:
        self.report.results.append(CheckResult(kind, check, status, detail))

    async def send(self, method: str, args: Any) -> tuple[int, Any, bytes]:
        """One raw call: status, decoded JSON (None if not JSON) and the body."""
        body = b"" if args is None else encode_body(args)
        reply = await self.client.request(method, body, timeout=self.timeout, retry=False)
        try:
            data = loads(reply.body) if reply.body.strip() else None
        except WireError:
            data = None
        return reply.status, data, reply.body

    async def ok(
        self,
        kind: str,
        check: str,
        method: str,
        args: Any,
        err: str = "Err",
        *,
        quiet: bool = False,
        failure: str = FAIL,
    ) -> dict[str, Any]:
        """A call that must succeed: 200, a JSON object, no error field. Otherwise the
        check is recorded as `failure` and `_Failed` raised."""
        try:
            status, data, body = await self.send(method, args)
        except PluginError as e:
            self.record(kind, check, failure, e.call_error)
            raise _Failed from e
        problem = ""
        if status != 200:
            problem = f"HTTP {status}: {body.decode(errors='replace').strip()[:200]}"
        elif not isinstance(data, dict):
            problem = "the reply is not a JSON object" + (
                " (empty body)" if not body.strip() else ""
            )
        elif isinstance(lookup(data, err), str) and lookup(data, err):
            problem = f"{err}: {lookup(data, err)}"
        if problem:
            self.record(kind, check, failure, f"{method}: {problem}")
            raise _Failed
        if not quiet:
            self.record(kind, check, PASS)
        assert isinstance(data, dict)
        return data

    async def refused(
        self, kind: str, check: str, method: str, args: Any, err: str = "Err", *, strict: bool
    ) -> None:
        """A call that should fail (non-200, or an error field)."""
        try:
            status, data, _ = await self.send(method, args)
        except PluginError as e:
            self.record(kind, check, FAIL, e.call_error)
            return
        failed = status != 200 or (
            isinstance(data, dict)
            and isinstance(lookup(data, err), str)
            and bool(lookup(data, err))
        )
        if failed:
            self.record(kind, check, PASS)
        else:
            self.record(kind, check, FAIL if strict else WARN, f"{method} succeeded")

    # -- the run ---------------------------------------------------------------

    async def run(self) -> CheckReport:
        kinds = await self.activate()
        self.report.implements = kinds
        for kind, method in (
            (VOLUME, self.volume),
            (NETWORK, self.network),
            (IPAM, self.ipam),
            (AUTHZ, self.authz),
            (LOG, self.logdriver),
        ):
            if kind in kinds:
                with contextlib.suppress(_Failed):
                    await method()
        for kind in kinds:
            if kind not in (VOLUME, NETWORK, IPAM, AUTHZ, LOG):
                self.record(kind, "endpoints", SKIP, "not covered by this checker")
        return self.report

    async def activate(self) -> list[str]:
        kind = "Plugin"
        try:
            status, data, body = await self.send("Plugin.Activate", None)
        except PluginError as e:
            if self.declared is not None:
                self.record(kind, "Plugin.Activate", WARN, e.call_error)
                return list(self.declared)
            self.record(kind, "Plugin.Activate", FAIL, e.call_error)
            return []
        implements = lookup(data, "Implements") if isinstance(data, dict) else None
        if status != 200 or not isinstance(implements, list):
            detail = f"HTTP {status}, body {body.decode(errors='replace').strip()[:200]!r}"
            self.record(
                kind, "Plugin.Activate", WARN if self.declared is not None else FAIL, detail
            )
            return list(self.declared or [])
        names = [i for i in implements if isinstance(i, str)]
        self.record(kind, "Plugin.Activate", PASS, "implements " + (", ".join(names) or "nothing"))
        unknown = [n for n in names if n not in KINDS and n != "secretprovider"]
        if unknown:
            self.record(kind, "known kinds", WARN, "unknown kinds ignored: " + ", ".join(unknown))
        if not names:
            self.record(kind, "implements something", FAIL, "Implements is empty")
        status, _, _ = await self.send("Plugin.NoSuchMethod", {})
        if status == 200:
            self.record(kind, "unknown endpoint refused", WARN, "answered 200")
        else:
            self.record(kind, "unknown endpoint refused", PASS)
        return list(self.declared) if self.declared is not None else names

    async def volume(self) -> None:
        k = VOLUME
        caps = await self.ok(k, "Capabilities", "VolumeDriver.Capabilities", {})
        scope = lookup(lookup(caps, "Capabilities") or {}, "Scope") or ""
        if str(scope).lower() not in ("", "local", "global"):
            self.record(k, "Capabilities scope", WARN, f"scope {scope!r} is treated as local")
        name = self.tag
        status, data, _ = await self.send("VolumeDriver.Get", {"Name": name})
        if (
            status == 200
            and isinstance(data, dict)
            and lookup(data, "Volume")
            and not lookup(data, "Err")
        ):
            self.record(k, "Get of an unknown volume", FAIL, "returned a volume")
        else:
            self.record(k, "Get of an unknown volume", PASS)
        created: list[str] = []  # the checker's volumes, removed at the end whatever fails
        mounted: dict[str, str] = {}  # mount ID -> volume, until unmounted
        try:
            await self._volume_calls(name, created, mounted)
        finally:
            await self._clean_up(created, mounted)

    async def _volume_calls(self, name: str, created: list[str], mounted: dict[str, str]) -> None:
        k = VOLUME
        opts = dict(self.options)
        await self.ok(k, "Create", "VolumeDriver.Create", {"Name": name, "Opts": opts})
        created.append(name)
        got_reply = await self.ok(k, "Get", "VolumeDriver.Get", {"Name": name}, quiet=True)
        volume = lookup(got_reply, "Volume")
        if not isinstance(volume, dict) or lookup(volume, "Name") != name:
            self.record(k, "Get", FAIL, f"expected a volume named {name}, got {volume!r}")
        else:
            self.record(k, "Get", PASS)
        listed = await self.ok(k, "List", "VolumeDriver.List", {}, quiet=True)
        names = [lookup(v, "Name") for v in lookup(listed, "Volumes") or [] if isinstance(v, dict)]
        self.record(
            k,
            "List",
            PASS if name in names else FAIL,
            "" if name in names else f"{name} not listed",
        )
        # Neither engine needs Path here (Docker ignores its errors): a warning, and the
        # checks go on.
        with contextlib.suppress(_Failed):
            await self.ok(k, "Path", "VolumeDriver.Path", {"Name": name}, failure=WARN)
        first, second = secrets.token_hex(32), secrets.token_hex(32)
        mounted[first] = name  # a Mount that fails half way may still have mounted
        mount_reply = await self.ok(
            k, "Mount", "VolumeDriver.Mount", {"Name": name, "ID": first}, quiet=True
        )
        point = lookup(mount_reply, "Mountpoint")
        if not isinstance(point, str) or not point.startswith("/"):
            self.record(k, "Mount", FAIL, f"Mountpoint {point!r} is not an absolute path")
        else:
            self.record(k, "Mount", PASS, point)
        mounted[second] = name
        await self.ok(
            k, "second Mount (another ID)", "VolumeDriver.Mount", {"Name": name, "ID": second}
        )
        await self.ok(k, "Unmount", "VolumeDriver.Unmount", {"Name": name, "ID": second})
        del mounted[second]
        await self.ok(k, "last Unmount", "VolumeDriver.Unmount", {"Name": name, "ID": first})
        del mounted[first]
        await self.ok(k, "Remove", "VolumeDriver.Remove", {"Name": name})
        created.remove(name)
        status, data, _ = await self.send("VolumeDriver.Get", {"Name": name})
        gone = (
            status != 200
            or not isinstance(data, dict)
            or not lookup(data, "Volume")
            or bool(lookup(data, "Err"))
        )
        self.record(
            k,
            "Get after Remove",
            PASS if gone else FAIL,
            "" if gone else "the volume is still there",
        )
        await self.refused(
            k,
            "Mount of an unknown volume",
            "VolumeDriver.Mount",
            {"Name": name, "ID": secrets.token_hex(32)},
            strict=True,
        )
        await self.refused(
            k, "Remove of an unknown volume", "VolumeDriver.Remove", {"Name": name}, strict=False
        )
        null_opts = name + "-n"
        # `docker run -v name:/path` creates volumes with "Opts": null. A plugin that needs
        # options (given with --opt) may refuse that: only a warning then.
        await self.ok(
            k,
            "Create with null Opts",
            "VolumeDriver.Create",
            {"Name": null_opts, "Opts": None},
            failure=WARN if self.options else FAIL,
        )
        created.append(null_opts)
        await self.ok(k, "Remove", "VolumeDriver.Remove", {"Name": null_opts}, quiet=True)
        created.remove(null_opts)

    async def _clean_up(self, created: list[str], mounted: dict[str, str]) -> None:
        """Unmount what the checks left mounted and remove the checker's volumes, each
        Remove tried twice; report what was cleaned up and what is left."""
        k = VOLUME
        for mount_id, volume in mounted.items():
            with contextlib.suppress(PluginError):
                await self.send("VolumeDriver.Unmount", {"Name": volume, "ID": mount_id})
        left: list[str] = []
        for volume in created:
            problem = ""
            for _ in range(2):
                try:
                    status, data, body = await self.send("VolumeDriver.Remove", {"Name": volume})
                except PluginError as e:
                    problem = e.call_error
                    continue
                err = lookup(data, "Err") if isinstance(data, dict) else None
                if status == 200 and not err:
                    problem = ""
                    break
                problem = str(err) if err else f"HTTP {status}: {excerpt(body)}"
            if problem:
                left.append(f"{volume} ({problem})")
        if left:
            self.record(k, "clean-up", FAIL, "could not remove, remove by hand: " + "; ".join(left))
        elif created:
            removed = ", ".join(created) or "nothing"
            self.record(k, "clean-up", PASS, f"removed after a failed check: {removed}")

    async def network(self) -> None:
        k = NETWORK
        caps = await self.ok(k, "GetCapabilities", "NetworkDriver.GetCapabilities", None)
        scope = str(lookup(caps, "Scope") or "").lower()
        if scope not in ("local", "global"):
            self.record(
                k, "GetCapabilities scope", FAIL, f"Scope {scope!r}: the driver is unusable"
            )
        conn = str(lookup(caps, "ConnectivityScope") or "").lower()
        if conn not in ("", "local", "global"):
            self.record(
                k, "GetCapabilities connectivity scope", FAIL, f"ConnectivityScope {conn!r}"
            )
        nid, eid = secrets.token_hex(32), secrets.token_hex(32)
        pool = ipaddress.ip_network(self.subnet or f"10.213.{secrets.randbelow(250)}.0/24")
        gateway = f"{pool[1]}/{pool.prefixlen}"
        address = f"{pool[2]}/{pool.prefixlen}"
        await self.refused(
            k,
            "CreateEndpoint on an unknown network",
            "NetworkDriver.CreateEndpoint",
            {
                "NetworkID": nid,
                "EndpointID": eid,
                "Interface": {"Address": address, "AddressIPv6": "", "MacAddress": ""},
                "Options": {},
            },
            strict=False,
        )
        options = {
            "com.docker.network.enable_ipv4": True,
            "com.docker.network.enable_ipv6": False,
            "com.docker.network.generic": {},
        }
        ipv4 = [{"AddressSpace": "LocalDefault", "Pool": str(pool), "Gateway": gateway}]
        if lookup(caps, "GwAllocChecker"):
            await self.ok(k, "GwAllocCheck", "NetworkDriver.GwAllocCheck", {"Options": options})
        await self.ok(
            k,
            "CreateNetwork",
            "NetworkDriver.CreateNetwork",
            {"NetworkID": nid, "Options": options, "IPv4Data": ipv4, "IPv6Data": []},
        )
        try:
            reply = await self.ok(
                k,
                "CreateEndpoint",
                "NetworkDriver.CreateEndpoint",
                {
                    "NetworkID": nid,
                    "EndpointID": eid,
                    "Interface": {"Address": address, "AddressIPv6": "", "MacAddress": ""},
                    "Options": {},
                },
                quiet=True,
            )
            iface = lookup(reply, "Interface")
            if isinstance(iface, dict) and lookup(iface, "Address") not in (None, "", address):
                self.record(
                    k,
                    "CreateEndpoint",
                    FAIL,
                    f"changed the address the engine gave ({lookup(iface, 'Address')})",
                )
            else:
                self.record(k, "CreateEndpoint", PASS)
            try:
                await self.ok(
                    k,
                    "EndpointOperInfo",
                    "NetworkDriver.EndpointOperInfo",
                    {"NetworkID": nid, "EndpointID": eid},
                )
                joined = await self.ok(
                    k,
                    "Join",
                    "NetworkDriver.Join",
                    {
                        "NetworkID": nid,
                        "EndpointID": eid,
                        "SandboxKey": self.sandbox or f"/var/run/docker/netns/{eid[:12]}",
                        "Options": {},
                    },
                    quiet=True,
                )
                names = lookup(joined, "InterfaceName")
                src = lookup(names, "SrcName") if isinstance(names, dict) else None
                if not src:
                    self.record(
                        k, "Join", FAIL, "no InterfaceName.SrcName to move into the container"
                    )
                else:
                    self.record(
                        k, "Join", PASS, f"interface {src}, prefix {lookup(names, 'DstPrefix')!r}"
                    )
                for field_name in ("Gateway", "GatewayIPv6"):
                    value = lookup(joined, field_name)
                    if value:
                        try:
                            ipaddress.ip_address(value)
                        except ValueError:
                            self.record(
                                k, f"Join {field_name}", FAIL, f"{value!r} is not an IP address"
                            )
                for method in ("ProgramExternalConnectivity", "RevokeExternalConnectivity"):
                    args: dict[str, Any] = {"NetworkID": nid, "EndpointID": eid}
                    if method.startswith("Program"):
                        args["Options"] = {}
                    status, data, body = await self.send(f"NetworkDriver.{method}", args)
                    if status == 404 or (
                        status == 200 and isinstance(data, dict) and not lookup(data, "Err")
                    ):
                        self.record(
                            k, method, PASS, "not implemented (404)" if status == 404 else ""
                        )
                    else:
                        self.record(
                            k,
                            method,
                            FAIL,
                            f"HTTP {status}: {body.decode(errors='replace').strip()[:200]}",
                        )
                await self.ok(
                    k, "Leave", "NetworkDriver.Leave", {"NetworkID": nid, "EndpointID": eid}
                )
            finally:
                await self.ok(
                    k,
                    "DeleteEndpoint",
                    "NetworkDriver.DeleteEndpoint",
                    {"NetworkID": nid, "EndpointID": eid},
                )
        finally:
            await self.ok(k, "DeleteNetwork", "NetworkDriver.DeleteNetwork", {"NetworkID": nid})
        for method in ("DiscoverNew", "DiscoverDelete"):
            status, _, _ = await self.send(
                f"NetworkDriver.{method}",
                {"DiscoveryType": 1, "DiscoveryData": {"Address": "127.0.0.1", "self": True}},
            )
            self.record(
                k,
                f"{method} accepted",
                PASS if status in (200, 404) else WARN,
                "" if status in (200, 404) else f"HTTP {status}",
            )

    async def ipam(self) -> None:
        k = IPAM
        status, data, _ = await self.send("IpamDriver.GetCapabilities", None)
        if status == 200 and isinstance(data, dict):
            self.record(k, "GetCapabilities", PASS)
        else:
            self.record(
                k, "GetCapabilities", WARN, f"HTTP {status}: registered without capabilities"
            )
        spaces = await self.ok(
            k,
            "GetDefaultAddressSpaces",
            "IpamDriver.GetDefaultAddressSpaces",
            None,
            "Error",
            quiet=True,
        )
        local = lookup(spaces, "LocalDefaultAddressSpace")
        if not local or not lookup(spaces, "GlobalDefaultAddressSpace"):
            self.record(k, "GetDefaultAddressSpaces", FAIL, "an address space name is empty")
            raise _Failed
        self.record(k, "GetDefaultAddressSpaces", PASS, f"local {local!r}")
        await self.refused(
            k,
            "RequestPool with a SubPool but no Pool",
            "IpamDriver.RequestPool",
            {
                "AddressSpace": local,
                "Pool": "",
                "SubPool": "10.215.0.0/24",
                "Options": {},
                "V6": False,
            },
            "Error",
            strict=False,
        )
        await self.refused(
            k,
            "RequestAddress from an unknown pool",
            "IpamDriver.RequestAddress",
            {"PoolID": self.tag, "Address": "", "Options": {}},
            "Error",
            strict=True,
        )
        pool = await self.ok(
            k,
            "RequestPool (any)",
            "IpamDriver.RequestPool",
            {"AddressSpace": local, "Pool": "", "SubPool": "", "Options": {}, "V6": False},
            "Error",
            quiet=True,
        )
        pool_id, cidr = lookup(pool, "PoolID"), lookup(pool, "Pool")
        try:
            network = ipaddress.ip_network(cidr, strict=False)
        except (TypeError, ValueError):
            self.record(k, "RequestPool (any)", FAIL, f"Pool {cidr!r} is not a CIDR")
            raise _Failed from None
        if not pool_id:
            self.record(k, "RequestPool (any)", FAIL, "no PoolID")
            raise _Failed
        self.record(k, "RequestPool (any)", PASS, f"{cidr} as {pool_id}")
        try:
            got: list[str] = []
            for check, options in (
                ("RequestAddress (gateway)", {"RequestAddressType": "com.docker.network.gateway"}),
                ("RequestAddress (any)", {}),
            ):
                reply = await self.ok(
                    k,
                    check,
                    "IpamDriver.RequestAddress",
                    {"PoolID": pool_id, "Address": "", "Options": options},
                    "Error",
                    quiet=True,
                )
                address = lookup(reply, "Address")
                try:
                    iface = ipaddress.ip_interface(address)
                    if "/" not in address or iface.ip not in network:
                        raise ValueError("not CIDR or outside the pool")
                except (TypeError, ValueError) as e:
                    self.record(k, check, FAIL, f"Address {address!r}: {e}")
                    raise _Failed from None
                if str(iface.ip) in got:
                    self.record(k, check, FAIL, f"{iface.ip} was handed out twice")
                else:
                    self.record(k, check, PASS, address)
                got.append(str(iface.ip))
            await self.refused(
                k,
                "RequestAddress of a taken address",
                "IpamDriver.RequestAddress",
                {"PoolID": pool_id, "Address": got[-1], "Options": {}},
                "Error",
                strict=False,
            )
            for ip in got:
                await self.ok(
                    k,
                    f"ReleaseAddress {ip}",
                    "IpamDriver.ReleaseAddress",
                    {"PoolID": pool_id, "Address": ip},
                    "Error",
                )
        finally:
            await self.ok(k, "ReleasePool", "IpamDriver.ReleasePool", {"PoolID": pool_id}, "Error")

    async def authz(self) -> None:
        k = AUTHZ
        base = {
            "RequestMethod": "POST",
            "RequestUri": "/v1.45/containers/create?name=dockyard-check",
            "RequestHeaders": {
                "Content-Type": "application/json",
                "User-Agent": "Docker-Client/26.1.4 (linux)",
            },
            "RequestBody": "eyJJbWFnZSI6ImJ1c3lib3gifQ==",
        }
        for check, method, args in (
            ("AuthZReq", "AuthZPlugin.AuthZReq", base),
            (
                "AuthZReq without a body",
                "AuthZPlugin.AuthZReq",
                {"RequestMethod": "GET", "RequestUri": "/_ping", "RequestHeaders": {}},
            ),
            (
                "AuthZRes",
                "AuthZPlugin.AuthZRes",
                {
                    **base,
                    "ResponseStatusCode": 201,
                    "ResponseHeaders": {"Content-Type": "application/json"},
                    "ResponseBody": "eyJJZCI6IngifQ==",
                },
            ),
        ):
            data = await self.ok(k, check, method, args, err="", quiet=True)
            allow = lookup(data, "Allow")
            if not isinstance(allow, bool):
                self.record(k, check, FAIL, f"Allow is {allow!r}, not a boolean (read as a deny)")
            else:
                msg = lookup(data, "Msg")
                self.record(k, check, PASS, "allowed" if allow else f"denied: {msg}")

    async def logdriver(self) -> None:
        k = LOG
        status, data, _ = await self.send("LogDriver.Capabilities", None)
        reads = False
        if status == 200 and isinstance(data, dict):
            cap = lookup(data, "Cap")
            reads = bool(
                lookup(cap, "ReadLogs") if isinstance(cap, dict) else lookup(data, "ReadLogs")
            )
            self.record(k, "Capabilities", PASS, "ReadLogs" if reads else "no ReadLogs")
        else:
            self.record(
                k, "Capabilities", PASS if status == 404 else WARN, f"HTTP {status}: no ReadLogs"
            )
        host_dir, plugin_dir = self.fifo_dirs or (tempfile.mkdtemp(prefix="dockyard-check-"), "")
        plugin_dir = plugin_dir or host_dir
        fifo_id = secrets.token_hex(32)
        host_fifo, plugin_fifo = os.path.join(host_dir, fifo_id), os.path.join(plugin_dir, fifo_id)
        container_id = secrets.token_hex(32)
        info = {
            "Config": {},
            "ContainerID": container_id,
            "ContainerName": "/" + self.tag,
            "ContainerEntrypoint": "/bin/sh",
            "ContainerArgs": ["-c", "echo"],
            "ContainerImageID": "sha256:" + "0" * 64,
            "ContainerImageName": "dockyard-check",
            "ContainerCreated": "2026-01-01T00:00:00Z",
            "ContainerEnv": [],
            "ContainerLabels": {},
            "LogPath": "",
            "DaemonName": "docker",
        }
        await self.refused(
            k,
            "StartLogging of a missing file",
            "LogDriver.StartLogging",
            {"File": plugin_fifo + "-missing", "Info": info},
            strict=False,
        )
        os.mkfifo(host_fifo, 0o700)
        fd = os.open(host_fifo, os.O_RDWR | os.O_NONBLOCK)
        now = time.time_ns()
        lines = [("stdout", b"dockyard check line one"), ("stderr", b"dockyard check line two")]
        try:
            await self.ok(
                k, "StartLogging", "LogDriver.StartLogging", {"File": plugin_fifo, "Info": info}
            )
            data_out = b"".join(
                logentry.frame(logentry.LogEntry(src, now + i, line))
                for i, (src, line) in enumerate(lines)
            )
            partial_id = secrets.token_hex(8)
            data_out += logentry.frame(
                logentry.LogEntry(
                    "stdout",
                    now + 5,
                    b"partial ",
                    True,
                    logentry.PartialMetadata(False, partial_id, 1),
                )
            )
            data_out += logentry.frame(
                logentry.LogEntry(
                    "stdout", now + 6, b"end", True, logentry.PartialMetadata(True, partial_id, 2)
                )
            )
            os.write(fd, data_out)
            await self.ok(
                k, "StopLogging (drains the FIFO)", "LogDriver.StopLogging", {"File": plugin_fifo}
            )
            leftover = 0
            with contextlib.suppress(BlockingIOError):
                leftover = len(os.read(fd, 1 << 16))
            if leftover:
                self.record(
                    k, "FIFO drained before StopLogging returns", FAIL, f"{leftover} bytes unread"
                )
            else:
                self.record(k, "FIFO drained before StopLogging returns", PASS)
        finally:
            os.close(fd)
            os.unlink(host_fifo)
            if self.fifo_dirs is None:
                os.rmdir(host_dir)
        if not reads:
            return
        request = {
            "Info": info,
            "Config": {
                "Since": "0001-01-01T00:00:00Z",
                "Until": "0001-01-01T00:00:00Z",
                "Tail": -1,
                "Follow": False,
            },
        }
        try:
            reader = logentry.FrameReader()
            entries = []
            async for chunk in self.client.stream(
                "LogDriver.ReadLogs", request, timeout=self.timeout
            ):
                entries += reader.feed(chunk)
        except (PluginError, logentry.DecodeError) as e:
            self.record(k, "ReadLogs", FAIL, str(e))
            return
        seen = {e.line for e in entries}
        missing = [line.decode() for _, line in lines if line not in seen]
        if missing:
            self.record(k, "ReadLogs", WARN, f"{len(entries)} entries; not among them: {missing}")
        else:
            self.record(
                k, "ReadLogs", PASS, f"{len(entries)} entries, the written lines among them"
            )


async def run(
    client: PluginClient,
    *,
    kinds: list[str] | None = None,
    fifo_dirs: tuple[str, str] | None = None,
    timeout: float = TIMEOUT,
    subnet: str | None = None,
    sandbox: str | None = None,
    options: dict[str, str] | None = None,
) -> CheckReport:
    """Check the plugin behind `client`; `kinds` for managed plugins (from config.json);
    `options`: driver options for the volumes the checks create."""
    checker = Checker(
        client,
        kinds=kinds,
        fifo_dirs=fifo_dirs,
        timeout=timeout,
        subnet=subnet,
        sandbox=sandbox,
        options=options,
    )
    return await checker.run()
