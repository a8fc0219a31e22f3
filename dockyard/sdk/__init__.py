"""Write Docker engine plugins in Python: volume, network, IPAM, authorization, logging.

A plugin is a class deriving from one of the kinds below whose methods answer
the engine's calls; `run()` serves it on a unix socket where Docker and
Dockyard find it (`/run/docker/plugins/NAME.sock`). A whole plugin:

    from dockyard.sdk import AuthzPlugin, deny, run

    class ReadOnly(AuthzPlugin):
        def authorize_request(self, req):
            return req.request_method in ("GET", "HEAD") or deny("read-only")

    run(ReadOnly(), "readonly")

Methods may be plain functions or coroutines; plain ones run on the server's
event loop one at a time, so a plugin that blocks (disk, network, mounting)
should be written with `async def` (and `asyncio.to_thread` for blocking
calls). Raise `PluginError(message)` to answer with an error the user sees.

The request and reply models are dataclasses (`dockyard.plugins.protocol.*`)
with Python names; they read keys in any case, as engines and plugins written
in Go do. `dockyard.sdk.testing` runs a plugin in a thread for tests and checks
it against the protocol; `python -m dockyard.sdk run FILE_OR_MODULE:CLASS
--name NAME` serves a plugin class from the command line.
"""

from dockyard.plugins.protocol.logentry import LogEntry, PartialMetadata
from dockyard.plugins.protocol.volume import Volume
from dockyard.sdk.authz import AuthzPlugin, AuthzRequest, allow, deny
from dockyard.sdk.base import Plugin, PluginError
from dockyard.sdk.ipam import IpamPlugin
from dockyard.sdk.log import Info, LogPlugin, ReadConfig
from dockyard.sdk.network import NetworkPlugin
from dockyard.sdk.server import run, serve
from dockyard.sdk.volume import VolumePlugin

__all__ = [
    "AuthzPlugin",
    "AuthzRequest",
    "Info",
    "IpamPlugin",
    "LogEntry",
    "LogPlugin",
    "NetworkPlugin",
    "PartialMetadata",
    "Plugin",
    "PluginError",
    "ReadConfig",
    "Volume",
    "VolumePlugin",
    "allow",
    "deny",
    "run",
    "serve",
]
