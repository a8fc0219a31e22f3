"""The built-in local volume driver, with real mounts under a temporary root."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.errors import InvalidArgument, Unavailable
from dockyard.volumes.driver import VolumeDriver
from dockyard.volumes.local import LocalDriver
from tests.conformance.volume_driver import VolumeDriverConformance, new_id


def _unmount_below(root: Path) -> None:
    for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
        target = line.split()[1]
        if target.startswith(str(root)):
            subprocess.run(["umount", "-l", target], capture_output=True)


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "volumes"
    _unmount_below(tmp_path)


class TestLocalDriverConformance(VolumeDriverConformance):
    PROVISIONED_OPTIONS = {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}

    @pytest.fixture
    def driver(self, loop: asyncio.AbstractEventLoop, root: Path) -> VolumeDriver:
        return LocalDriver(str(root))

    def reopen(self, driver: VolumeDriver) -> VolumeDriver:
        assert isinstance(driver, LocalDriver)
        return LocalDriver(driver.root)


def test_bind_of_an_existing_directory(root: Path, tmp_path: Path) -> None:
    source = tmp_path / "exported"
    source.mkdir()
    (source / "file").write_text("from the host")
    driver = LocalDriver(str(root))

    async def scenario() -> None:
        await driver.create("bound", {"type": "none", "o": "bind", "device": str(source)})
        mount_id = new_id()
        path = await driver.mount("bound", mount_id)
        assert Path(path, "file").read_text() == "from the host"
        await driver.unmount("bound", mount_id)
        assert not os.path.ismount(path)
        assert not Path(path, "file").exists()
        await driver.remove("bound")
        assert source.joinpath("file").exists()  # removing the volume keeps the bound data

    asyncio.run(scenario())


def test_a_mount_that_fails_takes_no_reference(root: Path, tmp_path: Path) -> None:
    driver = LocalDriver(str(root))

    async def scenario() -> None:
        await driver.create("broken", {"type": "none", "o": "bind", "device": "/no/such/dir"})
        with pytest.raises(Unavailable, match="failed to mount local volume"):
            await driver.mount("broken", new_id())
        await driver.remove("broken")  # no active mount holds it
        assert await driver.get("broken") is None

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("a", {}, "volume name is too short"),
        ("../escape", {}, "includes invalid characters for a local volume name"),
        ("ok-name", {"colour": "blue"}, 'invalid option: "colour"'),
        ("ok-name", {"device": "tmpfs"}, 'missing required option: "type"'),
        ("ok-name", {"o": "size=1m", "type": "tmpfs"}, 'missing required option: "device"'),
        ("ok-name", {"size": "10m"}, "quota size requested but no quota support"),
    ],
)
def test_bad_names_and_options_are_refused(
    root: Path, name: str, options: dict[str, str], message: str
) -> None:
    driver = LocalDriver(str(root))
    with pytest.raises(InvalidArgument, match=message):
        asyncio.run(driver.create(name, options))
    assert os.listdir(root) == []


def test_many_volumes_keep_no_per_name_state(root: Path) -> None:
    """The driver forgets a volume's lock once nobody uses it: 1000 volumes made,
    mounted, unmounted and removed leave the driver as it was (the soak found ~2 KB
    per container lifecycle kept here)."""
    driver = LocalDriver(str(root))

    async def scenario() -> None:
        async def one(i: int) -> None:
            name = f"churn-{i}"
            await driver.create(name, {})
            mount_id = new_id()
            await driver.mount(name, mount_id)
            await driver.unmount(name, mount_id)
            await driver.remove(name)

        await asyncio.gather(*(one(i) for i in range(200)))
        for i in range(5):
            await driver.create(f"shared-{i}", {})
        # Contended names: many operations wait on one volume's lock at once.
        await asyncio.gather(*(driver.get(f"shared-{i % 5}") for i in range(100)))
        for i in range(5):
            await driver.remove(f"shared-{i}")
        assert driver._locks == {}
        assert await driver.list() == []

    asyncio.run(scenario())
