"""Where a managed plugin's volume mountpoints are on the host (Docker's ScopedPath)."""

from __future__ import annotations

import pytest

from dockyard.plugins.managed import host_path


@pytest.mark.parametrize(
    ("propagated", "inside", "host"),
    [
        ("/data", "/data/volumes/v", "/p/propagated-mount/volumes/v"),
        ("/data", "/data", "/p/propagated-mount"),
        ("/data/", "/data/v/", "/p/propagated-mount/v"),
        ("/data", "/database/v", "/p/rootfs/database/v"),  # a prefix of the name is not inside
        ("/data", "/srv/v", "/p/rootfs/srv/v"),
        ("", "/data/v", "/p/rootfs/data/v"),
        ("/data", "/data/../../etc", "/p/rootfs/etc"),  # never out of the plugin's directory
        ("/data", "relative/v", "/p/rootfs/relative/v"),
        ("/data", "", ""),
    ],
)
def test_paths_inside_a_plugin_as_the_host_sees_them(
    propagated: str, inside: str, host: str
) -> None:
    assert host_path("/p", propagated, inside) == host
