"""`system check` of plugins: does every plugin the daemon depends on answer?

The plugins looked at: every enabled managed plugin, the v1 plugins the
daemon has activated, and every plugin a record names (a volume's driver, a
network's driver or IPAM driver, a container's log driver, the authorization
chain). Each is found the way the daemon finds it, without the discovery
retry window, and asked `Plugin.Activate` once, with a short timeout: a
plugin that does not answer within `PROBE_TIMEOUT` fails the operations that
need it. Nothing here starts, stops or restarts a plugin (the daemon starts a
managed plugin that dies again by itself), so there is no repair: the message
says what depends on the plugin and where it was looked for.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dockyard.check.report import ERROR, Finding, Report
from dockyard.errors import DockyardError
from dockyard.logs.plugin import PluginLogging
from dockyard.network.manager import BUILTIN_DRIVERS, BUILTIN_IPAM
from dockyard.plugins.client import PluginClient
from dockyard.plugins.discovery import Endpoint
from dockyard.plugins.protocol import ActivateReply

if TYPE_CHECKING:
    from dockyard.engine import Engine

AREA = "plugins"
PROBE_TIMEOUT = 2.0


@dataclass
class _Wanted:
    name: str
    users: list[str] = field(default_factory=list)  # what depends on it, for the message


def _wanted(engine: Engine) -> dict[str, _Wanted]:
    wanted: dict[str, _Wanted] = {}

    def need(name: str, user: str) -> None:
        entry = wanted.setdefault(name, _Wanted(name))
        if user:
            entry.users.append(user)

    for managed in engine.plugins.managed.all():
        if managed.enabled:
            need(managed.name, "")
    for active in engine.plugins.legacy.active():
        need(active.name, "")
    for row in engine.db.all("SELECT name, driver FROM volumes ORDER BY name"):
        if row["driver"] not in engine.volumes.drivers:
            need(row["driver"], f"volume {row['name']}")
    for network in engine.network.networks.values():
        if network.driver not in BUILTIN_DRIVERS:
            need(network.driver, f"network {network.name}")
        if network.ipam_driver != BUILTIN_IPAM:
            need(network.ipam_driver, f"network {network.name} (IPAM)")
    for container in engine.containers.all():
        driver = container.host_config.log_config.type or ""
        if PluginLogging.is_plugin_driver(driver):
            need(driver, f"container {container.name} (logs)")
    for name in engine.authorization.names:
        need(name, "the authorization chain")
    return wanted


def _endpoint(engine: Engine, name: str) -> Endpoint:
    """Where the plugin `name` listens, found as the daemon finds it (no retries)."""
    managed = engine.plugins.managed.lookup(name)
    if managed is not None:
        if not managed.enabled:
            raise DockyardError(f"plugin {managed.name} is disabled")
        return Endpoint("unix", engine.plugins.managed.socket_path(managed))
    return engine.plugins.discovery.find(name)


async def _probe(engine: Engine, name: str) -> str | None:
    """None when the plugin answers, else why not."""
    try:
        endpoint = await asyncio.to_thread(_endpoint, engine, name)
    except DockyardError as e:
        return e.message
    client = PluginClient(name, endpoint, retry_window=0, timeout_cap=PROBE_TIMEOUT)
    try:
        await client.call("Plugin.Activate", None, ActivateReply, error_key=None, retry=False)
    except DockyardError as e:
        return e.message
    finally:
        await client.close()
    return None


async def check(engine: Engine, report: Report) -> None:
    wanted = _wanted(engine)
    report.count("plugins", len(wanted))
    names = sorted(wanted)
    answers = await asyncio.gather(*(_probe(engine, name) for name in names))
    for name, problem in zip(names, answers, strict=True):
        if problem is None:
            continue
        users = wanted[name].users
        needed = ""
        if users:
            needed = f"; {', '.join(users[:5])}{' ...' if len(users) > 5 else ''} need it"
        report.add(
            [
                Finding(
                    AREA,
                    ERROR,
                    f"plugin {name}",
                    f"it does not answer: {problem}{needed}. Start the plugin again (a "
                    "managed one: `plugin disable` and `plugin enable`)",
                )
            ]
        )
