"""The VolumeDriver conformance suite: what any volume driver must do for the engine.

Subclass `VolumeDriverConformance` in a test module and provide the `driver`
fixture (and, where they apply, `reopen` and `PROVISIONED_OPTIONS`); every
test here then runs against that implementation: the built-in local driver
today, a remote plugin adapter speaking `/VolumeDriver.*` tomorrow. The tests
observe a driver only through the interface and the host paths it returns,
as the engine does.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from dockyard.volumes.driver import VolumeDriver

T = TypeVar("T")


def new_id() -> str:
    return secrets.token_hex(32)


class VolumeDriverConformance:
    # Options that make the driver provision something on the first Mount and release
    # it on the last Unmount (for the local driver: a tmpfs); None if it has no such mode.
    PROVISIONED_OPTIONS: dict[str, str] | None = None

    @pytest.fixture
    def loop(self) -> Iterator[asyncio.AbstractEventLoop]:
        loop = asyncio.new_event_loop()
        yield loop
        loop.close()

    @pytest.fixture
    def driver(self, loop: asyncio.AbstractEventLoop) -> VolumeDriver:
        raise NotImplementedError("a conformance test module provides the driver fixture")

    def reopen(self, driver: VolumeDriver) -> VolumeDriver:
        """A new handle on the same driver state (an engine restart); the same by default."""
        return driver

    def is_provisioned(self, path: str) -> bool:
        """Whether what PROVISIONED_OPTIONS provisions is in place at `path`."""
        return os.path.ismount(path)

    @pytest.fixture
    def run(self, loop: asyncio.AbstractEventLoop) -> Any:
        def run(coro: Coroutine[Any, Any, T]) -> T:
            return loop.run_until_complete(coro)

        return run

    @pytest.fixture
    def volume(self, driver: VolumeDriver, run: Any) -> Iterator[str]:
        name = "conf-" + secrets.token_hex(4)
        run(driver.create(name, {}))
        yield name
        if run(driver.get(name)) is not None:
            run(driver.remove(name))

    # -- the tests ------------------------------------------------------------

    def test_scope_is_local_or_global(self, driver: VolumeDriver, run: Any) -> None:
        assert run(driver.capabilities()).scope.lower() in ("local", "global")

    def test_unknown_volume_is_none(self, driver: VolumeDriver, run: Any) -> None:
        assert run(driver.get("conf-never-created-" + secrets.token_hex(4))) is None

    def test_created_volume_is_got_and_listed(
        self, driver: VolumeDriver, run: Any, volume: str
    ) -> None:
        info = run(driver.get(volume))
        assert info is not None and info.name == volume
        assert volume in {v.name for v in run(driver.list())}

    def test_mount_gives_a_directory_whose_data_outlives_the_mount(
        self, driver: VolumeDriver, run: Any, volume: str
    ) -> None:
        first = new_id()
        path = run(driver.mount(volume, first))
        assert os.path.isabs(path) and os.path.isdir(path)
        with open(os.path.join(path, "kept"), "w") as f:
            f.write("data")
        run(driver.unmount(volume, first))
        second = new_id()
        path = run(driver.mount(volume, second))
        with open(os.path.join(path, "kept")) as f:
            assert f.read() == "data"
        assert run(driver.path(volume)) == path
        run(driver.unmount(volume, second))

    def test_removed_volume_is_gone(self, driver: VolumeDriver, run: Any, volume: str) -> None:
        run(driver.remove(volume))
        assert run(driver.get(volume)) is None
        assert volume not in {v.name for v in run(driver.list())}

    def test_each_mount_id_holds_its_own_reference(self, driver: VolumeDriver, run: Any) -> None:
        if self.PROVISIONED_OPTIONS is None:
            pytest.skip("the driver provisions nothing per mount")
        name = "conf-" + secrets.token_hex(4)
        run(driver.create(name, self.PROVISIONED_OPTIONS))
        try:
            a, b = new_id(), new_id()
            path = run(driver.mount(name, a))
            assert self.is_provisioned(path)
            assert run(driver.mount(name, b)) == path
            with open(os.path.join(path, "shared"), "w") as f:
                f.write("x")
            run(driver.unmount(name, a))
            assert self.is_provisioned(path)  # b still holds it
            assert os.path.exists(os.path.join(path, "shared"))
            run(driver.unmount(name, a))  # a repeated unmount (after a crash) changes nothing
            run(driver.unmount(name, new_id()))  # and so does an id never mounted
            assert self.is_provisioned(path)
            run(driver.unmount(name, b))
            assert not self.is_provisioned(path)
        finally:
            run(driver.remove(name))

    def test_references_survive_a_restart_of_the_driver(
        self, driver: VolumeDriver, run: Any
    ) -> None:
        if self.PROVISIONED_OPTIONS is None:
            pytest.skip("the driver provisions nothing per mount")
        name = "conf-" + secrets.token_hex(4)
        run(driver.create(name, self.PROVISIONED_OPTIONS))
        try:
            a, b = new_id(), new_id()
            path = run(driver.mount(name, a))
            again = self.reopen(driver)
            assert run(again.mount(name, b)) == path
            run(again.unmount(name, a))
            assert self.is_provisioned(path)
            run(again.unmount(name, b))
            assert not self.is_provisioned(path)
        finally:
            run(driver.remove(name))
