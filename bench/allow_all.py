"""The smallest authorization plugin: allows everything (the benchmark's baseline plugin)."""

from dockyard.sdk import AuthzPlugin


class AllowAll(AuthzPlugin):
    pass
