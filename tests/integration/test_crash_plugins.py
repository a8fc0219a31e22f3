"""Crash consistency of managed plugins: the daemon is killed (`kill -9`) in the middle
of `plugin enable` (the plugin runs, `enabled` not yet recorded) and of `plugin disable`
(`enabled` cleared, the plugin not yet stopped). The next daemon shows the plugin
disabled, and nothing of it runs any more.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bare_plugin import wait_for
from tests.faults import CRASHPOINTS_ENV, Background, CrashPoints, assert_check_clean
from tests.integration.test_plugin_managed import (
    NAME,
    inspect,
    make_plugin_dir,
    plugin_config,
    plugin_pid,
)
from tests.plugin_env import PluginDaemon


@pytest.fixture
def daemon(busybox_tar: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PluginDaemon]:
    d = PluginDaemon()
    crash = CrashPoints(d.base / "crashpoints")
    monkeypatch.setenv(CRASHPOINTS_ENV, str(crash.file))  # inherited by every daemon start
    d.crash = crash  # type: ignore[attr-defined]
    d.start_with()
    logs = d.base / "logs"
    logs.mkdir()
    source = make_plugin_dir(d.base, busybox_tar, plugin_config(logs))
    d.cli("plugin", "create", NAME, str(source), check=True)
    yield d
    d.cleanup()


@pytest.fixture
def d(daemon: PluginDaemon, busybox_tar: Path) -> PluginDaemon:
    daemon.cli("import", str(busybox_tar), "demo/busybox:1", check=True)
    return daemon


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _crash_during(d: PluginDaemon, point: str, *args: str) -> int:
    """Kill the daemon at `point` while it runs `args`; returns the plugin's pid then."""
    plugin_id = inspect(d)["Id"]
    d.crash.arm(point)  # type: ignore[attr-defined]
    client = Background(d, *args)
    assert d.proc is not None
    d.proc.wait(timeout=60)
    assert d.proc.returncode == -9, f"the daemon did not reach {point}"
    d.crash.disarm()  # type: ignore[attr-defined]
    client.join()
    pid = plugin_pid(d, plugin_id)
    d.start()
    return pid


def test_enable_cut_short_leaves_the_plugin_disabled_and_stopped(d: PluginDaemon) -> None:
    pid = _crash_during(d, "plugin:started", "plugin", "enable", NAME)
    assert pid > 0, "the plugin was not running when the daemon died"
    assert inspect(d)["Enabled"] is False
    assert wait_for(lambda: not _running(pid), 20), "the plugin of an unfinished enable runs on"
    bundle = d.exec_root / "plugins" / inspect(d)["Id"][:12] / "bundle"
    assert not bundle.exists(), "its bundle was not released"
    d.cli("plugin", "enable", NAME, check=True)
    assert inspect(d)["Enabled"] is True
    assert plugin_pid(d, inspect(d)["Id"]) not in (0, pid)
    assert_check_clean(d)


def test_disable_cut_short_leaves_the_plugin_disabled_and_stopped(d: PluginDaemon) -> None:
    d.cli("plugin", "enable", NAME, check=True)
    pid = _crash_during(d, "plugin:disabled", "plugin", "disable", NAME)
    assert pid > 0 and inspect(d)["Enabled"] is False
    assert wait_for(lambda: not _running(pid), 20), "a disabled plugin runs on"
    d.cli("plugin", "enable", NAME, check=True)
    result = d.cli("run", "--rm", "--log-driver", NAME, "demo/busybox:1", "echo", "hi")
    assert result.returncode == 0, result.stderr
    assert_check_clean(d)
