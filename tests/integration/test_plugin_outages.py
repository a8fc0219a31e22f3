"""Volume plugins that are gone, refuse connections, hang or fail: the engine never waits on
them at start-up or at stop, fails calls to them quickly and says what it tried, and keeps
its records and the plugins' state in step (rm, inspect, one Unmount per Mount).

The daemons here use Docker's own retry window (30 s): a dead plugin must still fail a
call within 2 s; only a managed plugin the engine is starting is waited for.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bare_plugin import BarePlugin, Call, DirectoryVolumes, Raw, bind_dead_socket, wait_for
from tests.plugin_env import PluginDaemon, make_plugin_dir, volume_plugin_config

IMAGE = "demo/busybox:1"


@pytest.fixture
def daemon(busybox_tar: Path) -> Iterator[PluginDaemon]:
    d = PluginDaemon()
    d.start_with(plugin_retry_timeout=30)
    d.cli("import", str(busybox_tar), IMAGE, check=True)
    yield d
    d.cleanup()


@pytest.fixture
def volumes(daemon: PluginDaemon) -> DirectoryVolumes:
    return DirectoryVolumes(str(daemon.base / "bare-volumes"))


def restart(daemon: PluginDaemon) -> int:
    """Stop and start the daemon; the size its log had, to wait for lines written after."""
    daemon.stop()
    mark = daemon.log_path.stat().st_size
    daemon.start("--config-file", str(daemon.config_file))
    return mark


def logged(daemon: PluginDaemon, since: int, text: str) -> bool:
    with open(daemon.log_path, "rb") as f:
        f.seek(since)
        return text.encode() in f.read()


def reconciled(daemon: PluginDaemon, since: int) -> bool:
    return wait_for(lambda: logged(daemon, since, "done reconciling volumes"), 60)


def timed(call):  # type: ignore[no-untyped-def]
    start = time.monotonic()
    result = call()
    return result, time.monotonic() - start


# -- defect 5: never wait on a dead plugin -------------------------------------------


def test_the_daemon_serves_at_once_while_its_volume_plugins_hang_or_are_gone(
    busybox_tar: Path,
) -> None:
    daemon = PluginDaemon()
    # Calls may take a minute here: waiting for the hanging Get would hold up the start
    # past the harness's 30 s.
    daemon.start_with(plugin_retry_timeout=30, plugin_call_timeout=60)
    volumes = DirectoryVolumes(str(daemon.base / "bare-volumes"))
    replies = volumes.replies()
    release = threading.Event()
    answer_get = replies["/VolumeDriver.Get"]

    answered = threading.Event()

    def hanging_get(call: Call) -> object:
        release.wait(45)  # until the test has seen the daemon answer (or 45 s)
        answered.set()
        return answer_get(call)  # type: ignore[operator]

    hanging = BarePlugin(["VolumeDriver"], replies).serve_unix(daemon.sock("hanging"))
    gone = BarePlugin(["VolumeDriver"], volumes.replies()).serve_unix(daemon.sock("gone"))
    try:
        daemon.cli("volume", "create", "-d", "hanging", "h", check=True)
        daemon.cli("volume", "create", "-d", "gone", "g", check=True)
        daemon.stop()
        gone.stop()  # its socket is gone with it
        hanging.replies["/VolumeDriver.Get"] = hanging_get
        mark = daemon.log_path.stat().st_size
        # The harness returns at the first answer to /_ping: the daemon answers while the
        # hanging plugin still holds its Get (and the lookup of the gone one fails).
        daemon.start("--config-file", str(daemon.config_file))
        assert not answered.is_set()
        status, listed = daemon.api("GET", "/v1.45/volumes")
        assert status == 200 and {"h", "g"} <= {v["Name"] for v in listed["Volumes"]}
        assert wait_for(lambda: bool(hanging.calls_to("/VolumeDriver.Get")))
        release.set()
        assert reconciled(daemon, mark)
        # the volume of the plugin that is gone is kept: nobody knows it was removed
        assert "g" in {v["Name"] for v in daemon.api("GET", "/v1.45/volumes")[1]["Volumes"]}
    finally:
        release.set()
        hanging.stop()
        daemon.cleanup()


def test_the_daemon_serves_at_once_while_a_log_plugin_hangs(busybox_tar: Path) -> None:
    daemon = PluginDaemon()
    daemon.start_with(plugin_retry_timeout=30, plugin_call_timeout=60)
    daemon.cli("import", str(busybox_tar), IMAGE, check=True)
    replies = {
        "/LogDriver.Capabilities": {"Cap": {"ReadLogs": False}},
        "/LogDriver.StartLogging": {},
        "/LogDriver.StopLogging": {},
    }
    plugin = BarePlugin(["LogDriver"], replies).serve_unix(daemon.sock("slowlog"))
    try:
        daemon.cli(
            "run", "-d", "--name", "chatty", "--log-driver", "slowlog", IMAGE,
            "sh", "-c", "echo hello; sleep 300", check=True,
        )  # fmt: skip
        daemon.stop()  # the container keeps running
        plugin.replies["/LogDriver.StartLogging"] = Raw(200, b"{}", delay=20)
        _, elapsed = timed(lambda: daemon.start("--config-file", str(daemon.config_file)))
        assert elapsed < 10  # not held up by the StartLogging of the restored container
        status, listed = daemon.api("GET", "/v1.45/containers/json")
        assert status == 200 and [c["Names"] for c in listed] == [["/chatty"]]
        # the delivery resumes in the background, once the plugin answers
        assert wait_for(lambda: len(plugin.calls_to("/LogDriver.StartLogging")) == 2, 40)
        # rm waits for no plugin either: the session ends once StartLogging is answered
        daemon.cli("rm", "-f", "chatty", check=True)
        assert wait_for(lambda: len(plugin.calls_to("/LogDriver.StopLogging")) == 2, 40)
    finally:
        plugin.stop()
        daemon.cleanup()


def test_a_container_that_exited_while_the_daemon_was_down_waits_for_no_log_plugin(
    busybox_tar: Path,
) -> None:
    """It exited while no daemon ran; at restart its log plugin hangs in StartLogging: the
    daemon answers (the exit is recorded) while the plugin holds the call, and the output
    is delivered and the session ended in the background once it answers."""
    daemon = PluginDaemon()
    daemon.start_with(plugin_retry_timeout=30, plugin_call_timeout=60)
    daemon.cli("import", str(busybox_tar), IMAGE, check=True)
    replies = {
        "/LogDriver.Capabilities": {"Cap": {"ReadLogs": False}},
        "/LogDriver.StartLogging": {},
        "/LogDriver.StopLogging": {},
    }
    plugin = BarePlugin(["LogDriver"], replies).serve_unix(daemon.sock("slowlog"))
    release = threading.Event()

    def hanging_start(call: Call) -> object:
        release.wait(45)
        return {}

    try:
        daemon.cli(
            "run", "-d", "--name", "brief", "--log-driver", "slowlog", IMAGE,
            "sh", "-c", "echo hello; exec sleep 300", check=True,
        )  # fmt: skip
        pid = daemon.api("GET", "/v1.45/containers/brief/json")[1]["State"]["Pid"]
        daemon.stop()  # ends the first logging session (StopLogging)
        os.kill(pid, signal.SIGKILL)  # it ends while no daemon runs
        plugin.replies["/LogDriver.StartLogging"] = hanging_start
        daemon.start("--config-file", str(daemon.config_file))
        assert not release.is_set()
        status, body = daemon.api("GET", "/v1.45/containers/brief/json")
        assert status == 200 and body["State"]["Status"] == "exited", body["State"]
        assert body["State"]["ExitCode"] == 137
        assert wait_for(lambda: len(plugin.calls_to("/LogDriver.StartLogging")) == 2)
        assert len(plugin.calls_to("/LogDriver.StopLogging")) == 1  # not before it started
        release.set()
        assert wait_for(lambda: len(plugin.calls_to("/LogDriver.StopLogging")) == 2)
        second = plugin.calls_to("/LogDriver.StartLogging")[1].json["File"]
        assert plugin.calls_to("/LogDriver.StopLogging")[1].json["File"] == second
        assert not os.path.exists(second)  # its FIFO is gone with the session
        # it starts again, with a delivery of its own
        daemon.cli("start", "brief", check=True)
        assert wait_for(lambda: len(plugin.calls_to("/LogDriver.StartLogging")) == 3)
        daemon.cli("rm", "-f", "brief", check=True)
        assert wait_for(lambda: len(plugin.calls_to("/LogDriver.StopLogging")) == 3)
    finally:
        release.set()
        plugin.stop()
        daemon.cleanup()


def test_a_logging_session_a_crash_left_open_is_ended_at_restart(busybox_tar: Path) -> None:
    """kill -9 of the daemon leaves the plugin reading a FIFO nobody writes: at restart
    the FIFO is removed and the plugin is told StopLogging for it, before the new session."""
    daemon = PluginDaemon()
    daemon.start_with()
    daemon.cli("import", str(busybox_tar), IMAGE, check=True)
    replies = {
        "/LogDriver.Capabilities": {"Cap": {"ReadLogs": False}},
        "/LogDriver.StartLogging": {},
        "/LogDriver.StopLogging": {},
    }
    plugin = BarePlugin(["LogDriver"], replies).serve_unix(daemon.sock("crashlog"))
    try:
        daemon.cli(
            "run", "-d", "--name", "long", "--log-driver", "crashlog", IMAGE, "sleep", "300",
            check=True,
        )  # fmt: skip
        first = plugin.calls_to("/LogDriver.StartLogging")[0].json["File"]
        assert os.path.exists(first)
        daemon.kill9()
        daemon.start("--config-file", str(daemon.config_file))
        assert wait_for(lambda: len(plugin.calls_to("/LogDriver.StartLogging")) == 2)
        stops = plugin.calls_to("/LogDriver.StopLogging")
        assert [c.json["File"] for c in stops] == [first]
        assert stops[0].at < plugin.calls_to("/LogDriver.StartLogging")[1].at
        assert not os.path.exists(first)
        daemon.cli("rm", "-f", "long", check=True)
        assert wait_for(lambda: len(plugin.calls_to("/LogDriver.StopLogging")) == 2)
        assert os.listdir(daemon.exec_root / "logging") == []
    finally:
        plugin.stop()
        daemon.cleanup()


def test_a_dead_plugin_fails_a_call_within_2s_naming_it_and_what_was_tried(
    daemon: PluginDaemon, volumes: DirectoryVolumes
) -> None:
    plugin = BarePlugin(["VolumeDriver"], volumes.replies()).serve_unix(daemon.sock("dead"))
    daemon.cli("volume", "create", "-d", "dead", "v", check=True)
    daemon.cli("run", "-d", "--name", "user", "-v", "v:/d", IMAGE, "sleep", "300", check=True)
    plugin.stop()  # gone mid-use: its socket removed

    (status, body), elapsed = timed(lambda: daemon.api("GET", "/v1.45/volumes/v"))
    assert elapsed < 2.0
    assert status == 500
    message = body["message"]
    assert message.startswith(
        'get v: error while checking if volume "v" exists in driver "dead": '
        "plugin dead failed with error: VolumeDriver.Get: connecting to "
        f"unix://{daemon.sock('dead')}: "
    )
    assert "No such file or directory" in message and "attempts in" in message

    # a socket nobody listens on: refused, just as quickly
    bind_dead_socket(daemon.sock("dead"))
    (status, body), elapsed = timed(lambda: daemon.api("GET", "/v1.45/volumes/v"))
    assert elapsed < 2.0 and status == 500
    assert "Connection refused" in body["message"]

    # stopping the container does not wait on the plugin either (Docker: 16 s here)
    (status, _), elapsed = timed(lambda: daemon.api("POST", "/v1.45/containers/user/stop?t=0"))
    assert status == 204
    assert elapsed < 4.0
    assert daemon.api("GET", "/v1.45/containers/user/json")[1]["State"]["Running"] is False
    (status, _), elapsed = timed(lambda: daemon.api("DELETE", "/v1.45/containers/user"))
    assert status == 204
    assert elapsed < 4.0


def test_a_plugin_nobody_provides_fails_within_2s_saying_where_it_looked(
    daemon: PluginDaemon,
) -> None:
    (status, body), elapsed = timed(
        lambda: daemon.api("POST", "/v1.45/volumes/create", {"Name": "v", "Driver": "nowhere"})
    )
    assert elapsed < 2.0
    assert status == 404
    assert body["message"].startswith(
        'create v: error looking up volume plugin nowhere: plugin "nowhere" not found ('
        f"no socket or spec file in {daemon.socket_dir}, {daemon.spec_dir}; looked "
    )


def test_calls_wait_for_a_managed_plugin_the_engine_is_starting_again(
    daemon: PluginDaemon, busybox_tar: Path
) -> None:
    source = make_plugin_dir(daemon.base / "snap-src", busybox_tar, volume_plugin_config())
    daemon.cli("plugin", "create", "dy/snap", str(source), check=True)
    daemon.cli("plugin", "enable", "dy/snap", check=True)
    plugin_id = daemon.api("GET", "/v1.45/plugins/dy/snap/json")[1]["Id"]
    daemon.cli("volume", "create", "-d", "dy/snap", "data", check=True)
    pidfile = daemon.exec_root / "plugins" / plugin_id[:12] / "bundle" / "pidfile"
    try:
        # the plugin dies: the engine starts it again at once, and a call made meanwhile
        # waits for it rather than failing after 2 s
        os.kill(int(pidfile.read_text()), signal.SIGKILL)
        status, body = daemon.api("GET", "/v1.45/volumes/data")
        assert status == 200, body
        assert body["Mountpoint"].endswith("/propagated-mount/volumes/data")
        # found dead at daemon start: started in the background, and waited for by calls
        daemon.kill9()
        os.kill(int(pidfile.read_text()), signal.SIGKILL)
        daemon.start("--config-file", str(daemon.config_file))
        status, body = daemon.api("GET", "/v1.45/volumes/data")
        assert status == 200, body
        daemon.cli("volume", "rm", "data", check=True)
    finally:
        daemon.cli("plugin", "rm", "-f", "dy/snap")


# -- defect 6: what the engine records follows what the plugin has ------------------


def test_volume_rm_removes_what_the_plugin_lists_when_its_get_fails(
    daemon: PluginDaemon, volumes: DirectoryVolumes
) -> None:
    replies = volumes.replies()
    replies["/VolumeDriver.Get"] = Raw(500, b'{"Err": "metadata service unavailable"}')
    with BarePlugin(["VolumeDriver"], replies).serve_unix(daemon.sock("flaky")) as plugin:
        daemon.cli("volume", "create", "-d", "flaky", "kept", check=True)
        daemon.cli("volume", "create", "-d", "flaky", "lost", check=True)
        assert set(volumes.volumes) == {"kept", "lost"}
        start = len(plugin.calls)
        assert daemon.api("DELETE", "/v1.45/volumes/kept")[0] == 204
        assert [c.path.removeprefix("/VolumeDriver.") for c in plugin.calls[start:]] == [
            "Get",
            "List",
            "Remove",
        ]
        assert "kept" not in volumes.volumes  # really removed, not only forgotten
        # a volume neither Get nor List knows is only forgotten (nothing to remove)
        del volumes.volumes["lost"]
        start = len(plugin.calls)
        assert daemon.api("DELETE", "/v1.45/volumes/lost")[0] == 204
        assert [c.path for c in plugin.calls[start:]] == [
            "/VolumeDriver.Get",
            "/VolumeDriver.List",
        ]
        # and when the plugin's Remove fails, the rm fails: nothing is forgotten
        daemon.cli("volume", "create", "-d", "flaky", "stuck", check=True)
        plugin.replies["/VolumeDriver.Remove"] = Raw(500, b'{"Err": "device busy"}')
        status, body = daemon.api("DELETE", "/v1.45/volumes/stuck")
        assert status == 500
        assert body["message"] == (
            "remove stuck: plugin flaky failed with error: VolumeDriver.Remove: device busy"
        )
        listed = daemon.api("GET", "/v1.45/volumes")[1]["Volumes"]
        assert "stuck" in {v["Name"] for v in listed}


def test_volume_inspect_returns_the_plugins_error(
    daemon: PluginDaemon, volumes: DirectoryVolumes
) -> None:
    with BarePlugin(["VolumeDriver"], volumes.replies()).serve_unix(daemon.sock("flaky")) as p:
        daemon.cli("volume", "create", "-d", "flaky", "v", check=True)
        p.replies["/VolumeDriver.Get"] = Raw(500, b'{"Err": "backend offline"}')
        status, body = daemon.api("GET", "/v1.45/volumes/v")
        assert (status, body["message"]) == (
            500,
            'get v: error while checking if volume "v" exists in driver "flaky": '
            "plugin flaky failed with error: VolumeDriver.Get: backend offline",
        )
        result = daemon.docker("volume", "inspect", "v")
        assert result.returncode != 0 and "backend offline" in result.stderr
        # a plugin that answers it has no such volume: 404
        p.replies["/VolumeDriver.Get"] = {"Volume": None}
        status, body = daemon.api("GET", "/v1.45/volumes/v")
        assert (status, body["message"]) == (
            404,
            'get v: error while checking if volume "v" exists in driver "flaky": no such volume',
        )


def _unmount_ids(plugin: BarePlugin) -> list[str]:
    return [c.json["ID"] for c in plugin.calls_to("/VolumeDriver.Unmount")]


def test_a_failed_unmount_is_sent_once_and_not_again(
    daemon: PluginDaemon, volumes: DirectoryVolumes
) -> None:
    replies = volumes.replies()
    replies["/VolumeDriver.Unmount"] = Raw(500, b'{"Err": "target is busy"}')
    with BarePlugin(["VolumeDriver"], replies).serve_unix(daemon.sock("busy")) as plugin:
        daemon.cli("volume", "create", "-d", "busy", "v", check=True)
        daemon.cli("run", "-d", "--name", "ctr", "-v", "v:/d", IMAGE, "sleep", "300", check=True)
        mount_id = plugin.calls_to("/VolumeDriver.Mount")[0].json["ID"]
        daemon.cli("stop", "-t", "0", "ctr", check=True)
        assert _unmount_ids(plugin) == [mount_id]
        mark = restart(daemon)
        assert reconciled(daemon, mark)
        daemon.cli("rm", "ctr", check=True)
        assert _unmount_ids(plugin) == [mount_id]  # once, as docs/plugins.md promises


def test_an_unmount_that_never_reached_the_plugin_is_sent_when_it_is_back(
    daemon: PluginDaemon, volumes: DirectoryVolumes
) -> None:
    replies = volumes.replies()
    plugin = BarePlugin(["VolumeDriver"], replies).serve_unix(daemon.sock("late"))
    try:
        daemon.cli("volume", "create", "-d", "late", "v", check=True)
        daemon.cli("run", "-d", "--name", "ctr", "-v", "v:/d", IMAGE, "sleep", "300", check=True)
        mount_id = plugin.calls_to("/VolumeDriver.Mount")[0].json["ID"]
        plugin.stop()
        daemon.cli("stop", "-t", "0", "ctr", check=True)  # the Unmount cannot be sent
        plugin.serve_unix(daemon.sock("late"))
        mark = restart(daemon)
        assert reconciled(daemon, mark)
        assert _unmount_ids(plugin) == [mount_id]
        assert volumes.volumes["v"]["mounts"] == set()
        mark = restart(daemon)
        assert reconciled(daemon, mark)
        daemon.cli("rm", "ctr", check=True)
        assert _unmount_ids(plugin) == [mount_id]
    finally:
        plugin.stop()


def test_restart_checks_recorded_volumes_in_the_background(
    daemon: PluginDaemon, volumes: DirectoryVolumes
) -> None:
    with BarePlugin(["VolumeDriver"], volumes.replies()).serve_unix(daemon.sock("bare")) as p:
        for name in ("kept", "lost"):
            daemon.cli("volume", "create", "-d", "bare", name, check=True)
        del volumes.volumes["lost"]  # the plugin lost one while the engine was down
        mark = restart(daemon)
        assert reconciled(daemon, mark)
        gets = sorted(c.json["Name"] for c in p.calls_to("/VolumeDriver.Get"))
        assert gets.count("lost") >= 2  # at create, and at start
        names = {v["Name"] for v in daemon.api("GET", "/v1.45/volumes")[1]["Volumes"]}
        assert "kept" in names and "lost" not in names
        assert (
            json.loads(daemon.cli("volume", "inspect", "kept", check=True).stdout)[0]["Driver"]
            == "bare"
        )
