"""`system check` of the host's prerequisites. It reads the host; it never changes it.

Kernel features (overlayfs, namespaces, veth pairs, nftables), the cgroup
layout and its controllers, the container monitor and the OCI runtimes (each
found again and probed with a throw-away container, as at start-up: a
runtime whose binary has gone since breaks every container it runs), and
other firewall managers: a base chain of another table hooked on forwarding
whose policy drops (an `ip filter FORWARD` chain as Docker's daemon or ufw
leave it, or the legacy iptables equivalent) drops the traffic of Dockyard's
bridges whatever Dockyard's own table accepts. Such chains are reported
with what to change; Dockyard does not change tables it does not own.

The veth probe runs in a throw-away network namespace (`unshare --net`), so
the host never sees the pair.
"""

from __future__ import annotations

import asyncio
import os
import platform
from typing import TYPE_CHECKING

from dockyard.check import ruleset
from dockyard.check.report import ERROR, INFO, WARNING, Finding, Report
from dockyard.errors import DockyardError
from dockyard.runtime import oci

if TYPE_CHECKING:
    from dockyard.engine import Engine

AREA = "host"
NAMESPACES = {
    "mnt": ERROR,
    "pid": ERROR,
    "net": ERROR,
    "ipc": ERROR,
    "uts": ERROR,
    "cgroup": WARNING,
    "user": WARNING,
}
# Controllers containers' limits need: v1 hierarchy names, v2 controller names.
V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuset", "freezer", "devices", "blkio")
V2_CONTROLLERS = ("memory", "pids", "cpu", "cpuset", "io")


async def check(engine: Engine, report: Report) -> None:
    report.count("host", 1)
    report.add(await asyncio.to_thread(_kernel))
    report.add(await _veth())
    report.add(_cgroups(engine))
    report.add(await _programs(engine))
    report.add(await _firewall(engine))
    report.add(_forwarding(engine))


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _kernel() -> list[Finding]:
    findings = []
    filesystems = {line.split()[-1] for line in _read("/proc/filesystems").splitlines() if line}
    if "overlay" not in filesystems:
        module_dir = f"/lib/modules/{platform.release()}/kernel/fs/overlayfs"
        if os.path.isdir(module_dir):
            findings.append(
                Finding(
                    AREA,
                    INFO,
                    "overlayfs",
                    "not loaded yet; the kernel loads its module at the first mount",
                )
            )
        else:
            findings.append(
                Finding(
                    AREA,
                    ERROR,
                    "overlayfs",
                    "the kernel has no overlay filesystem: no container can start",
                )
            )
    for name, severity in NAMESPACES.items():
        if not os.path.exists(f"/proc/self/ns/{name}"):
            findings.append(
                Finding(
                    AREA,
                    severity,
                    f"{name} namespaces",
                    "the kernel does not provide them"
                    + (": no container can start" if severity == ERROR else ""),
                )
            )
    return findings


async def _run(*argv: str) -> tuple[int, str]:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except FileNotFoundError:
        return 127, f"{argv[0]} is not installed"
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace").strip()


async def _veth() -> list[Finding]:
    code, out = await _run(
        "unshare",
        "--net",
        "ip",
        "link",
        "add",
        "dyprobe0",
        "type",
        "veth",
        "peer",
        "name",
        "dyprobe1",
    )
    if code == 0:
        return []
    return [
        Finding(
            AREA,
            ERROR,
            "veth pairs",
            f"a veth pair cannot be made ({out or f'exit status {code}'}): containers on "
            "bridge networks cannot start",
        )
    ]


def _cgroups(engine: Engine) -> list[Finding]:
    layout = engine.facts.cgroups
    if layout.mode == "v2":
        missing = [c for c in V2_CONTROLLERS if c not in layout.v2_controllers]
    else:
        missing = [c for c in V1_CONTROLLERS if c not in layout.v1]
    findings = []
    if missing:
        findings.append(
            Finding(
                AREA,
                WARNING,
                f"cgroups ({layout.mode})",
                f"controller(s) {', '.join(missing)} are not available: the limits they "
                "enforce cannot be applied"
                + (" and containers cannot be paused" if "freezer" in missing else ""),
            )
        )
    return findings


async def _programs(engine: Engine) -> list[Finding]:
    findings = []
    facts = engine.facts
    if not os.access(facts.conmon, os.X_OK):
        findings.append(
            Finding(
                AREA,
                ERROR,
                "conmon",
                f"the container monitor {facts.conmon} is gone: no container can start "
                "(install conmon, then restart the daemon)",
            )
        )
    for name, runtime in sorted(engine.runtimes.items()):
        info = await asyncio.to_thread(oci.find, runtime.path)
        if info is None:
            findings.append(
                Finding(
                    AREA,
                    ERROR,
                    f"runtime {name}",
                    f"its binary {runtime.path} is gone or cannot run: containers that use "
                    "it can be neither started nor stopped through it",
                )
            )
            continue
        problem = await asyncio.to_thread(
            oci.probe, oci.RuntimeInfo(name, info.path, info.version), engine.config.cgroup_parent
        )
        if problem:
            findings.append(
                Finding(
                    AREA,
                    ERROR if name == facts.default_runtime else WARNING,
                    f"runtime {name}",
                    f"it cannot run containers on this host any more: {problem}",
                )
            )
    for name, why in sorted(facts.unusable.items()):
        findings.append(
            Finding(
                AREA,
                INFO,
                f"runtime {name}",
                f"installed, but not used: it cannot run containers on this host ({why})",
            )
        )
    if facts.init_binary and not os.access(facts.init_binary, os.X_OK):
        findings.append(
            Finding(
                AREA,
                WARNING,
                "init binary",
                f"{facts.init_binary} is gone: containers run with --init cannot start",
            )
        )
    return findings


async def _firewall(engine: Engine) -> list[Finding]:
    config = engine.network.config
    code, out = await _run("nft", "list", "tables")
    if code:
        return [
            Finding(
                AREA,
                ERROR,
                "nftables",
                f"the ruleset cannot be read ({out}): published ports, NAT and network "
                "isolation do not work",
            )
        ]
    names = (
        config.bridge,
        config.bridge_prefix,
        *(rules.bridge for rules in engine.network.bridge.rules()),
    )
    try:
        current = await ruleset.live()
    except DockyardError as e:
        return [Finding(AREA, ERROR, "nftables", f"the ruleset cannot be read: {e.message}")]
    findings = [
        _blocker(chain, config.bridge_prefix)
        for chain in ruleset.forward_blockers(current, config.nftables_table, names)
    ]
    if await asyncio.to_thread(_legacy_filter_loaded):
        code, out = await _run("iptables-legacy", "-S", "FORWARD")
        if code == 0 and "-P FORWARD DROP" in out.splitlines():
            findings.append(_blocker("legacy iptables filter FORWARD", config.bridge_prefix))
    return findings


def _legacy_filter_loaded() -> bool:
    """Whether legacy iptables has a filter table (read without loading any module)."""
    return "filter" in _read("/proc/net/ip_tables_names").split()


def _blocker(chain: str, prefix: str) -> Finding:
    family, _, rest = chain.partition(" ")
    table, _, name = rest.partition(" ")
    if family in ("ip", "ip6", "inet"):
        hint = (
            f'`nft insert rule {family} {table} {name} iifname "{prefix}*" accept` and the '
            "same with oifname"
        )
    else:
        hint = f"`iptables-legacy -I FORWARD -i {prefix}+ -j ACCEPT` and the same with -o"
    return Finding(
        AREA,
        WARNING,
        f"firewall chain {chain}",
        "another firewall manager (Docker's daemon, ufw, firewalld...) set this chain to drop "
        "forwarded packets: containers on Dockyard's bridges cannot reach other networks or "
        f"the outside, and their published ports only answer locally. Allow the daemon's "
        f"bridges in it, e.g. {hint}; Dockyard does not change tables it does not own",
    )


def _forwarding(engine: Engine) -> list[Finding]:
    value = _read("/proc/sys/net/ipv4/ip_forward").strip()
    if value != "0":
        return []
    if engine.config.ip_forward:
        return [
            Finding(
                AREA,
                WARNING,
                "IPv4 forwarding",
                "net.ipv4.ip_forward is off though the daemon switches it on at start-up: "
                "something switched it off since, and containers cannot reach the outside "
                "(`sysctl -w net.ipv4.ip_forward=1`)",
            )
        ]
    return [
        Finding(
            AREA,
            INFO,
            "IPv4 forwarding",
            "net.ipv4.ip_forward is off, and the daemon is configured not to switch it on "
            "(ip-forward: false): containers reach only their own networks",
        )
    ]
