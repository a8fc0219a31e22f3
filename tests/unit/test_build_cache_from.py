"""Pure parts of the classic build's `cachefrom` and of the step container configs."""

from __future__ import annotations

from typing import Any

from dockyard.build import imageconfig
from dockyard.build.builder import _extends
from dockyard.build.cache import State


def state(history: list[str], diff_ids: list[str]) -> State:
    config: dict[str, Any] = {
        "config": {},
        "history": [
            {"created": f"2024-01-0{i + 1}T00:00:00Z", "created_by": text}
            for i, text in enumerate(history)
        ],
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    return State.of(config, tuple({"digest": d} for d in diff_ids))


BASE = state(["import"], ["sha256:1"])
WITH_ENV = state(["import", "ENV A=1"], ["sha256:1"])
BUILT = state(["import", "ENV A=1", "RUN touch x"], ["sha256:1", "sha256:2"])


def test_an_image_extends_the_states_its_history_and_layers_begin_with() -> None:
    assert _extends(BUILT, BASE) and _extends(BUILT, WITH_ENV)
    assert _extends(BUILT, BUILT)  # itself, unless strictly longer is asked for
    assert not _extends(BUILT, BUILT, strict=True)
    assert _extends(BUILT, WITH_ENV, strict=True)
    assert not _extends(WITH_ENV, BUILT)


def test_a_different_step_or_layer_breaks_the_chain() -> None:
    other_step = state(["import", "ENV A=2"], ["sha256:1"])
    other_layer = state(["import", "ENV A=1", "RUN touch x"], ["sha256:1", "sha256:9"])
    assert not _extends(BUILT, other_step)
    assert not _extends(other_layer, state(["import", "ENV A=1", "RUN touch x"], BUILT.diff_ids))
    # The same created_by at another time is another history entry.
    later = State.of(
        {**WITH_ENV.config, "history": [*BASE.config["history"], {"created_by": "ENV A=1"}]},
        WITH_ENV.layers,
    )
    assert not _extends(BUILT, later)


def test_scratch_begins_every_image_but_an_image_without_history_extends_nothing() -> None:
    scratch = State("", {"config": {}, "rootfs": {"type": "layers", "diff_ids": []}}, ())
    assert _extends(BASE, scratch, strict=True)
    assert not _extends(state([], []), scratch)


def test_nop_command_is_the_argv_behind_a_history_line() -> None:
    config: dict[str, Any] = {}
    env = imageconfig.nop(config, "ENV A=1")
    assert env == "/bin/sh -c #(nop)  ENV A=1"
    assert imageconfig.nop_command(config, env) == ["/bin/sh", "-c", "#(nop) ", "ENV A=1"]
    copy = imageconfig.nop_single(config, "COPY file:ab in /dst ")
    assert imageconfig.nop_command(config, copy) == [
        "/bin/sh",
        "-c",
        "#(nop) COPY file:ab in /dst ",
    ]
    powershell = {"Shell": ["pwsh", "-Command"]}
    label = imageconfig.nop(powershell, "LABEL a=b")
    assert imageconfig.nop_command(powershell, label) == [
        "pwsh",
        "-Command",
        "#(nop) ",
        "LABEL a=b",
    ]
