"""The plugin protocols: one module per kind, each with its endpoints, its
request and reply messages (shared with the SDK) and a typed client.

Kinds are named as `/Plugin.Activate` reports them; v2 plugins declare them in
`config.json` as `docker.<kind lowercased>/<version>` capabilities.
"""

from __future__ import annotations

from dockyard.wire import Message, wire

VOLUME = "VolumeDriver"
NETWORK = "NetworkDriver"
IPAM = "IpamDriver"
AUTHZ = "authz"
LOG = "LogDriver"
METRICS = "MetricsCollector"
KINDS = (VOLUME, NETWORK, IPAM, AUTHZ, LOG, METRICS)


def capability(kind: str) -> str:
    """The v2 capability name of a kind: `VolumeDriver` -> `volumedriver`."""
    return kind.lower()


def kind_of_capability(cap: str) -> str | None:
    for kind in KINDS:
        if capability(kind) == cap.lower():
            return kind
    return None


class ActivateReply(Message):
    implements: list[str] = wire(default_factory=list)


class Empty(Message):
    """`{}`: the reply of methods that return nothing but a possible error."""
