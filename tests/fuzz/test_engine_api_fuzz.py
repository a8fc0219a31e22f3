"""The Engine-API fuzz test: every operation of Docker's OpenAPI document for API 1.45,
`EXAMPLES` generated requests each (valid and invalid), against one private daemon;
`engine_api` says what must hold for each request. `bench/fuzz.py` runs the same with
many more examples."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fuzz.engine_api import Target, fuzz, labels, operations
from tests.harness import Daemon, new_base

# Per operation; with about 90 operations this keeps the run to a few minutes.
EXAMPLES = int(os.environ.get("DOCKYARD_FUZZ_EXAMPLES", "12"))
OPERATIONS = operations()


@pytest.fixture(scope="module")
def target(busybox_tar: Path) -> Iterator[Target]:
    daemon = Daemon(new_base())
    daemon.config["plugin-retry-timeout"] = 1  # random plugin names: give up quickly
    daemon.start()
    daemon.cli("import", str(busybox_tar), "demo/busybox:1", check=True)
    target = Target(daemon, busybox_tar)
    if os.environ.get("DOCKYARD_FUZZ_TRACE"):  # every request, appended before it is sent
        target.trace = Path(os.environ["DOCKYARD_FUZZ_TRACE"])
    target.ensure()
    yield target
    daemon.cleanup()


@pytest.mark.parametrize("operation", OPERATIONS, ids=list(labels(OPERATIONS)))
def test_generated_requests_never_fail_the_daemon(target: Target, operation: Any) -> None:
    fuzz(target, operation, EXAMPLES, shrink=True)
