"""A volume plugin (SDK) whose Create takes a while: for races with `plugin disable`.

Create writes `<root>/creating` when it starts, then waits for `CREATE_SECONDS`.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from dockyard.sdk import Volume, VolumePlugin


class SlowVolumes(VolumePlugin):
    def __init__(self) -> None:
        self.root = os.environ.get("VOLUME_ROOT", "/data")
        self.delay = float(os.environ.get("CREATE_SECONDS", "3"))

    async def create(self, name: str, opts: dict[str, str]) -> None:
        with open(os.path.join(self.root, "creating"), "w") as f:
            f.write(name)
        await asyncio.sleep(self.delay)
        os.makedirs(os.path.join(self.root, name), exist_ok=True)

    def remove(self, name: str) -> None:
        os.rmdir(os.path.join(self.root, name))

    def mount(self, name: str, id: str) -> str:
        return os.path.join(self.root, name)

    def path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def get(self, name: str) -> Any:
        path = os.path.join(self.root, name)
        return Volume(name, path) if os.path.isdir(path) else None

    def list(self) -> list[Volume]:
        names = [n for n in os.listdir(self.root) if os.path.isdir(os.path.join(self.root, n))]
        return [Volume(n, os.path.join(self.root, n)) for n in names]
