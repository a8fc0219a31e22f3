"""Managed plugins: create from a directory, settings, enable/disable/rm, references,
restarts, events, and refusal of hostile or malformed input.

The plugin is the example rotating-file log plugin in a busybox root
filesystem; Python and the SDK come from the host through the config's
mounts, which exercises Mounts, Env and settable fields on the way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import tarfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bare_plugin import wait_for
from tests.harness import REPO
from tests.plugin_env import (
    PluginDaemon,
    hostile_tar,
    sdk_plugin_config,
    volume_plugin_config,
)

NAME = "dy/rotate:1"


def plugin_config(logs: Path, **changes: Any) -> dict[str, Any]:
    config = sdk_plugin_config(
        "/dockyard/plugins/log_rotate.py:RotatingLogs", "rotate.sock", ["docker.logdriver/1.0"]
    )
    config.update(
        description="rotating log files",
        documentation="https://example.invalid/rotate",
        workdir="/",
        linux={"capabilities": ["CAP_SYSLOG"]},
    )
    config["env"].insert(0, {"name": "LOG_DIR", "value": "/logs", "settable": ["value"]})
    config["mounts"].append(
        {
            "name": "logs",
            "source": str(logs),
            "destination": "/logs",
            "type": "bind",
            "options": ["rbind", "rw"],
            "settable": ["source"],
        }
    )
    config.update(changes)
    return config


def make_plugin_dir(base: Path, busybox_tar: Path, config: dict[str, Any]) -> Path:
    directory = base / "plugin-src"
    (directory / "rootfs").mkdir(parents=True)
    with tarfile.open(busybox_tar) as tar:
        tar.extractall(directory / "rootfs", filter="fully_trusted")
    (directory / "config.json").write_text(json.dumps(config))
    return directory


@pytest.fixture
def daemon(busybox_tar: Path) -> Iterator[PluginDaemon]:
    d = PluginDaemon()
    d.start_with()
    d.cli("import", str(busybox_tar), "demo/busybox:1", check=True)
    yield d
    d.cleanup()


def inspect(daemon: PluginDaemon, name: str = NAME) -> dict[str, Any]:
    status, body = daemon.api("GET", f"/v1.45/plugins/{name}/json")
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def plugin_pid(daemon: PluginDaemon, plugin_id: str) -> int:
    """The plugin process's pid (0 while it is being started again)."""
    try:
        path = daemon.exec_root / "plugins" / plugin_id[:12] / "bundle" / "pidfile"
        return int(path.read_text())
    except (FileNotFoundError, ValueError):
        return 0


def test_lifecycle_settings_references_and_events(daemon: PluginDaemon, busybox_tar: Path) -> None:
    logs, other_logs = daemon.base / "logs", daemon.base / "logs2"
    logs.mkdir()
    other_logs.mkdir()
    source = make_plugin_dir(daemon.base, busybox_tar, plugin_config(logs))
    since = str(time.time())
    assert daemon.cli("plugin", "create", NAME, str(source)).returncode == 0
    listed = daemon.cli("plugin", "ls")
    assert "dy/rotate:1" in listed.stdout and "rotating log files" in listed.stdout
    assert "false" in listed.stdout.splitlines()[1]
    body = inspect(daemon)
    assert body["Enabled"] is False
    assert body["Settings"]["Env"] == [
        "LOG_DIR=/logs",
        f"PYTHONPATH=/dockyard:{sysconfig.get_paths()['purelib']}",
        "PYTHONDONTWRITEBYTECODE=1",
    ]
    assert body["Config"]["Interface"]["Types"] == ["docker.logdriver/1.0"]
    assert body["Config"]["Rootfs" if "Rootfs" in body["Config"] else "rootfs"]["diff_ids"][
        0
    ].startswith("sha256:")
    assert inspect(daemon, "dy/rotate:1")["Id"] == inspect(daemon, body["Id"][:10])["Id"]
    # the docker CLI sees the same
    docker_ls = daemon.docker("plugin", "ls", "--format", "{{.Name}} {{.Enabled}}")
    assert docker_ls.stdout.strip() == "dy/rotate:1 false"

    # settings change only while disabled, only settable fields
    assert (
        daemon.cli(
            "plugin", "set", NAME, "LOG_DIR=/logs/sub", f"logs.source={other_logs}"
        ).returncode
        == 0
    )
    (other_logs / "sub").mkdir()
    body = inspect(daemon)
    assert "LOG_DIR=/logs/sub" in body["Settings"]["Env"]
    assert [m["Source"] for m in body["Settings"]["Mounts"] if m["Name"] == "logs"] == [
        str(other_logs)
    ]
    refused = daemon.cli("plugin", "set", NAME, "PYTHONPATH=/x")
    assert refused.returncode != 0 and "not settable" in refused.stderr

    assert daemon.cli("plugin", "enable", NAME).returncode == 0
    body = inspect(daemon)
    assert body["Enabled"] is True
    socket_path = daemon.exec_root / "plugins" / body["Id"][:12] / "sock" / "rotate.sock"
    assert socket_path.is_socket()
    assert (
        "cannot set on an active plugin" in daemon.cli("plugin", "set", NAME, "LOG_DIR=/x").stderr
    )
    assert daemon.api("POST", f"/v1.45/plugins/{NAME}/enable")[0] == 409
    info = daemon.api("GET", "/v1.45/info")[1]
    assert NAME in info["Plugins"]["Log"]
    assert f"  Log: json-file local {NAME}" in daemon.cli("info").stdout.splitlines()

    # a running container's logger holds a reference
    daemon.cli(
        "run",
        "-d",
        "--name",
        "talker",
        "--log-driver",
        NAME,
        "demo/busybox:1",
        "sh",
        "-c",
        "echo hello-plugin; sleep 300",
        check=True,
    )
    cid = daemon.api("GET", "/v1.45/containers/talker/json")[1]["Id"]
    log_file = other_logs / "sub" / f"{cid}.log"
    assert wait_for(lambda: log_file.exists() and b"hello-plugin" in log_file.read_bytes())
    assert daemon.cli("logs", "talker").stdout.strip() == "hello-plugin"
    status, error = daemon.api("POST", f"/v1.45/plugins/{NAME}/disable")
    assert (status, error["message"]) == (409, f"plugin {NAME} is in use")
    status, error = daemon.api("DELETE", f"/v1.45/plugins/{NAME}")
    assert (status, error["message"]) == (409, f"plugin {NAME} is in use")
    daemon.cli("stop", "-t", "0", "talker", check=True)
    status, error = daemon.api("DELETE", f"/v1.45/plugins/{NAME}")
    assert status == 409 and "is enabled" in error["message"]
    assert daemon.cli("plugin", "disable", NAME).returncode == 0
    assert not socket_path.exists()
    assert daemon.cli("plugin", "enable", NAME).returncode == 0
    assert daemon.cli("plugin", "rm", "-f", NAME).returncode == 0
    assert daemon.api("GET", f"/v1.45/plugins/{NAME}/json")[0] == 404
    assert not (daemon.data_root / "plugins" / body["Id"]).exists()
    assert daemon.leftovers()["mounts"] == []
    events = daemon.cli(
        "events", "--since", since, "--until", str(time.time()), "-f", "type=plugin"
    )
    actions = [line.split()[2] for line in events.stdout.splitlines()]
    # `rm -f` of an enabled plugin stops it without a "disable" event, as in Docker
    assert actions == ["create", "enable", "disable", "enable", "remove"]


def test_plugin_survives_crashes_and_daemon_restarts(
    daemon: PluginDaemon, busybox_tar: Path
) -> None:
    logs = daemon.base / "logs"
    logs.mkdir()
    daemon.cli(
        "plugin",
        "create",
        NAME,
        str(make_plugin_dir(daemon.base, busybox_tar, plugin_config(logs))),
        check=True,
    )
    daemon.cli("plugin", "enable", NAME, check=True)
    plugin_id = inspect(daemon)["Id"]
    first = plugin_pid(daemon, plugin_id)
    os.kill(first, signal.SIGKILL)  # the plugin dies while enabled: it is started again
    assert wait_for(lambda: plugin_pid(daemon, plugin_id) not in (0, first), 20)
    assert inspect(daemon)["Enabled"] is True
    assert wait_for(
        lambda: (daemon.exec_root / "plugins" / plugin_id[:12] / "sock" / "rotate.sock").is_socket()
    )
    second = plugin_pid(daemon, plugin_id)
    daemon.stop()
    assert os.path.exists(f"/proc/{second}")  # plugins keep running, like containers
    daemon.start()
    assert inspect(daemon)["Enabled"] is True
    assert plugin_pid(daemon, plugin_id) == second
    result = daemon.cli(
        "run", "--rm", "--log-driver", NAME, "demo/busybox:1", "echo", "after-restart"
    )
    assert result.returncode == 0, result.stderr
    assert wait_for(lambda: any(b"after-restart" in p.read_bytes() for p in logs.glob("*.log")))
    check = daemon.cli("plugin", "check", NAME)
    assert check.returncode == 0, check.stdout
    assert "StopLogging (drains the FIFO)" in check.stdout and "0 failed" in check.stdout


def test_enable_fails_when_no_socket_appears(daemon: PluginDaemon, busybox_tar: Path) -> None:
    config = plugin_config(daemon.base, entrypoint=["/bin/sleep", "300"])
    daemon.cli(
        "plugin",
        "create",
        "dy/mute",
        str(make_plugin_dir(daemon.base, busybox_tar, config)),
        check=True,
    )
    started = time.monotonic()
    result = daemon.cli("plugin", "enable", "dy/mute")
    assert result.returncode != 0
    assert "plugin dy/mute:latest failed to start: no socket rotate.sock after 10s" in result.stderr
    assert time.monotonic() - started < 20
    assert inspect(daemon, "dy/mute")["Enabled"] is False
    assert daemon.leftovers()["mounts"] == []


GOOD_CONFIG = json.dumps(
    {"entrypoint": ["/bin/true"], "interface": {"types": ["docker.authz/1.0"], "socket": "a.sock"}}
).encode()
DIR = {"type": tarfile.DIRTYPE}


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([("rootfs/", None, DIR), ("rootfs/bin/x", b"x", {})], "config not found"),
        ([("config.json", GOOD_CONFIG, {})], "no rootfs found"),
        ([("config.json", b"{nope", {}), ("rootfs/x", b"x", {})], "invalid plugin config.json"),
        (
            [
                (
                    "config.json",
                    b'{"interface": {"types": ["docker.authz/1.0"]}, "entrypoint": ["/x"]}',
                    {},
                ),
                ("rootfs/x", b"", {}),
            ],
            "Interface.Socket is empty",
        ),
        ([("config.json", GOOD_CONFIG, {}), ("rootfs/../../escape", b"x", {})], "outside"),
        ([("config.json", GOOD_CONFIG, {}), ("rootfs/a/../../../escape", b"x", {})], "outside"),
        (
            [
                ("config.json", GOOD_CONFIG, {}),
                ("rootfs/link", None, {"type": tarfile.SYMTYPE, "linkname": "/etc"}),
                ("rootfs/link/passwd", b"x", {}),
            ],
            "symlink",
        ),
        (
            [
                ("config.json", GOOD_CONFIG, {}),
                ("rootfs/hard", None, {"type": tarfile.LNKTYPE, "linkname": "etc/passwd"}),
            ],
            "links outside rootfs",
        ),
    ],
)
def test_hostile_or_malformed_uploads_are_refused(
    daemon: PluginDaemon, entries: list[Any], message: str
) -> None:
    status, body = daemon.api(
        "POST",
        "/v1.45/plugins/create?name=dy/bad",
        hostile_tar(entries),
        headers={"Content-Type": "application/x-tar"},
    )
    assert status == 400, body
    assert message in body["message"]
    assert daemon.api("GET", "/v1.45/plugins")[1] == []
    assert [p.name for p in (daemon.data_root / "plugins").iterdir()] == ["storage"]
    assert not (Path("/etc") / "escape").exists() and not Path("/escape").exists()


def test_plugin_endpoints_errors(daemon: PluginDaemon) -> None:
    assert daemon.api("GET", "/v1.45/plugins/nothere/json") == (
        404,
        {"message": 'plugin "nothere" not found'},
    )
    assert daemon.api("POST", "/v1.45/plugins/nothere/enable")[0] == 404
    assert daemon.api("DELETE", "/v1.45/plugins/nothere")[0] == 404
    assert daemon.api("POST", "/v1.45/plugins/nothere/push")[0] == 404
    status, body = daemon.api("POST", "/v1.45/plugins/pull?remote=127.0.0.1:9/x/y")
    assert status == 500 and 'Get "http://127.0.0.1:9/v2/"' in body["message"]
    assert daemon.api("POST", "/v1.45/plugins/pull")[0] == 400  # no remote
    assert (
        daemon.api(
            "GET", "/v1.45/plugins?filters=" + urllib.parse.quote(json.dumps({"nope": ["x"]}))
        )[0]
        == 400
    )
    result = daemon.docker("plugin", "inspect", "nothere")
    assert result.returncode != 0


def test_the_docker_cli_manages_plugins(daemon: PluginDaemon, busybox_tar: Path) -> None:
    logs = daemon.base / "logs"
    logs.mkdir()
    source = make_plugin_dir(daemon.base, busybox_tar, plugin_config(logs))
    assert daemon.docker("plugin", "create", "dy/x", str(source)).returncode == 0
    assert daemon.docker("plugin", "set", "dy/x", "LOG_DIR=/logs").returncode == 0
    assert daemon.docker("plugin", "enable", "dy/x").returncode == 0
    shown = daemon.docker(
        "plugin", "inspect", "-f", "{{.Enabled}} {{.Config.Interface.Socket}}", "dy/x"
    )
    assert shown.stdout.strip() == "true rotate.sock"
    refused = daemon.docker("plugin", "rm", "dy/x")
    assert refused.returncode != 0 and "is enabled" in refused.stderr
    assert daemon.docker("plugin", "disable", "dy/x").returncode == 0
    assert daemon.docker("plugin", "rm", "dy/x").returncode == 0
    assert daemon.docker("plugin", "ls", "-q").stdout.strip() == ""


def test_a_restarted_plugin_keeps_the_mounts_it_serves(
    daemon: PluginDaemon, busybox_tar: Path
) -> None:
    source = make_plugin_dir(daemon.base, busybox_tar, volume_plugin_config())
    daemon.cli("plugin", "create", "dy/snap", str(source), check=True)
    daemon.cli("plugin", "enable", "dy/snap", check=True)
    plugin_id = inspect(daemon, "dy/snap")["Id"]
    daemon.cli("volume", "create", "-d", "dy/snap", "data", check=True)
    served = daemon.data_root / "plugins" / plugin_id / "propagated-mount" / "volumes" / "data"
    # what the plugin mounts for a volume in use (a sized volume's loop mount), as the
    # host sees it through the propagated mount
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "served", str(served)], check=True)
    try:
        (served / "in-use").write_text("still here")
        first = plugin_pid(daemon, plugin_id)
        os.kill(first, signal.SIGKILL)  # the plugin crashes: it is started again
        assert wait_for(lambda: plugin_pid(daemon, plugin_id) not in (0, first), 20)
        assert os.path.ismount(served) and (served / "in-use").read_text() == "still here"
        daemon.stop()  # a daemon restart that finds the plugin dead starts it again too
        os.kill(plugin_pid(daemon, plugin_id), signal.SIGKILL)
        daemon.start()
        assert inspect(daemon, "dy/snap")["Enabled"] is True
        assert os.path.ismount(served) and (served / "in-use").read_text() == "still here"
        # disabled for good: its mounts go, as in Docker
        daemon.cli("plugin", "disable", "-f", "dy/snap", check=True)
        assert not os.path.ismount(served)
    finally:
        if os.path.ismount(served):
            subprocess.run(["umount", str(served)], check=False)
        daemon.cli("volume", "rm", "-f", "data")
        daemon.cli("plugin", "rm", "-f", "dy/snap")


def test_a_plugin_cannot_be_disabled_under_a_volume_create(
    daemon: PluginDaemon, busybox_tar: Path
) -> None:
    config = sdk_plugin_config(
        "/dockyard/tests/slow_plugins.py:SlowVolumes", "slow.sock", ["docker.volumedriver/1.0"],
        propagatedMount="/data",
    )  # fmt: skip
    source = make_plugin_dir(daemon.base, busybox_tar, config)
    daemon.cli("plugin", "create", "dy/slow", str(source), check=True)
    daemon.cli("plugin", "enable", "dy/slow", check=True)
    plugin_id = inspect(daemon, "dy/slow")["Id"]
    creating = daemon.data_root / "plugins" / plugin_id / "propagated-mount" / "busy"
    create = subprocess.Popen(
        [sys.executable, "-m", "dockyard", "volume", "create", "-d", "dy/slow", "v1"],
        cwd=REPO,
        env={**os.environ, "DOCKYARD_HOST": daemon.host},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(creating.exists, 20)  # the plugin is inside Create
        status, body = daemon.api("POST", "/v1.45/plugins/dy/slow/disable")
        assert (status, body["message"]) == (409, "plugin dy/slow:latest is in use")
        _, err = create.communicate(timeout=60)
        assert create.returncode == 0, err
        assert daemon.cli("volume", "ls", "-q").stdout.split() == ["v1"]
    finally:
        if create.poll() is None:
            create.kill()
        daemon.cli("volume", "rm", "-f", "v1")
        daemon.cli("plugin", "rm", "-f", "dy/slow")


def test_a_plugin_cannot_be_disabled_under_a_network_create(
    daemon: PluginDaemon, busybox_tar: Path
) -> None:
    config = sdk_plugin_config(
        "/dockyard/tests/slow_plugins.py:SlowIpam", "slowipam.sock", ["docker.ipamdriver/1.0"]
    )
    state = daemon.base / "slowipam-state"
    state.mkdir()
    config["mounts"].append(
        {"source": str(state), "destination": "/state", "type": "bind", "options": ["rbind"]}
    )
    config["env"].append({"name": "STATE_DIR", "value": "/state"})
    source = make_plugin_dir(daemon.base, busybox_tar, config)
    daemon.cli("plugin", "create", "dy/slowipam", str(source), check=True)
    daemon.cli("plugin", "enable", "dy/slowipam", check=True)
    create = subprocess.Popen(
        [sys.executable, "-m", "dockyard", "network", "create", "--ipam-driver", "dy/slowipam",
         "--subnet", "10.197.0.0/24", "slownet"],
        cwd=REPO,
        env={**os.environ, "DOCKYARD_HOST": daemon.host},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert wait_for((state / "busy").exists, 20)  # the plugin is inside RequestPool
        status, body = daemon.api("POST", "/v1.45/plugins/dy/slowipam/disable")
        assert (status, body["message"]) == (409, "plugin dy/slowipam:latest is in use")
        _, err = create.communicate(timeout=60)
        assert create.returncode == 0, err
        assert "slownet" in daemon.cli("network", "ls").stdout
    finally:
        if create.poll() is None:
            create.kill()
        daemon.cli("network", "rm", "slownet")
        daemon.cli("plugin", "rm", "-f", "dy/slowipam")
