"""Volume plugins through the engine: the calls it makes and in which order (spec §3.3),
what users see (`volume ls/inspect`, containers' data), plugins that misbehave, and
restarts. The plugin is written without the SDK (tests/bare_plugin.py) and records every
call, so the engine is checked against the protocol."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bare_plugin import (
    BarePlugin,
    Call,
    DirectoryVolumes,
    Raw,
    bind_dead_socket,
    wait_for,
)
from tests.plugin_env import PluginDaemon, make_plugin_dir, volume_plugin_config

IMAGE = "demo/busybox:1"
HEX64 = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture
def daemon(busybox_tar: Path) -> Iterator[PluginDaemon]:
    d = PluginDaemon()
    d.start_with()
    d.cli("import", str(busybox_tar), IMAGE, check=True)
    yield d
    d.cleanup()


@pytest.fixture
def volumes(daemon: PluginDaemon) -> DirectoryVolumes:
    return DirectoryVolumes(str(daemon.base / "bare-volumes"))


@pytest.fixture
def plugin(daemon: PluginDaemon, volumes: DirectoryVolumes) -> Iterator[BarePlugin]:
    with BarePlugin(["VolumeDriver"], volumes.replies()).serve_unix(daemon.sock("bare")) as p:
        yield p


def volume_calls(plugin: BarePlugin, since: int = 0) -> list[str]:
    """The plugin's calls from index `since`, `/VolumeDriver.` left out."""
    with plugin.lock:
        calls = plugin.calls[since:]
    return [c.path.removeprefix("/VolumeDriver.") for c in calls]


def mark(plugin: BarePlugin) -> int:
    with plugin.lock:
        return len(plugin.calls)


def calls_since(plugin: BarePlugin, since: int, method: str) -> list[Call]:
    with plugin.lock:
        return [c for c in plugin.calls[since:] if c.path == f"/VolumeDriver.{method}"]


def volume_names(daemon: PluginDaemon) -> set[str]:
    return set(daemon.cli("volume", "ls", "-q", check=True).stdout.split())


def test_volume_create_inspect_and_rm_call_the_plugin_in_dockers_order(
    daemon: PluginDaemon, plugin: BarePlugin, volumes: DirectoryVolumes
) -> None:
    daemon.cli("volume", "create", "-d", "bare", "-o", "tmpfs=1m", "data", check=True)
    # first use: activation and capabilities, then Get, then Create; nothing else (V1)
    assert volume_calls(plugin) == ["/Plugin.Activate", "Capabilities", "Get", "Create"]
    assert plugin.calls_to("/VolumeDriver.Create")[0].json == {
        "Name": "data",
        "Opts": {"tmpfs": "1m"},
    }
    # the same again: the plugin has it, so no Create (V2)
    since = mark(plugin)
    assert daemon.cli("volume", "create", "-d", "bare", "data").returncode == 0
    assert volume_calls(plugin, since) == ["Get"]

    since = mark(plugin)
    shown = json.loads(daemon.cli("volume", "inspect", "data", check=True).stdout)[0]
    assert volume_calls(plugin, since) == ["Get"]
    assert shown["Driver"] == "bare"
    assert shown["Mountpoint"] == volumes.path("data")
    assert shown["Status"] == {"mounts": 0, "tmpfs": "1m"}
    assert shown["Scope"] == "local"
    assert shown["Options"] == {"tmpfs": "1m"}

    since = mark(plugin)
    assert daemon.cli("volume", "rm", "data").returncode == 0
    assert volume_calls(plugin, since) == ["Get", "Remove"]  # V5
    assert "data" not in volumes.volumes and "data" not in volume_names(daemon)


def test_run_mounts_with_a_fresh_id_per_start_and_unmounts_at_stop(
    daemon: PluginDaemon, plugin: BarePlugin, volumes: DirectoryVolumes
) -> None:
    # created on demand at container create, by --volume-driver
    since = mark(plugin)
    run = daemon.cli(
        "run", "--rm", "--volume-driver", "bare", "-v", "fresh:/d", IMAGE,
        "sh", "-c", "echo written-in-container > /d/f",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert volume_calls(plugin, since) == [
        "/Plugin.Activate", "Capabilities", "Get", "Create", "Mount", "Unmount",
    ]  # fmt: skip
    mount, unmount = (calls_since(plugin, since, m)[0].json for m in ("Mount", "Unmount"))
    assert HEX64.match(mount["ID"]) and unmount == mount
    assert Path(volumes.path("fresh"), "f").read_text() == "written-in-container\n"
    assert "fresh" in volume_names(daemon)  # --rm keeps named volumes

    # an existing plugin volume by name (no driver given): Get at create, then each start
    # mounts with a new id and each stop unmounts it (V3); ids are never the container's
    since = mark(plugin)
    daemon.cli("create", "--name", "user", "-v", "fresh:/d", IMAGE, "sleep", "300", check=True)
    assert volume_calls(plugin, since) == ["Get"]
    cid = daemon.api("GET", "/v1.45/containers/user/json")[1]["Id"]
    ids = []
    for _ in range(2):
        since = mark(plugin)
        daemon.cli("start", "user", check=True)
        daemon.cli("stop", "-t", "0", "user", check=True)
        assert volume_calls(plugin, since) == ["Mount", "Unmount"]
        mount, unmount = (calls_since(plugin, since, m)[0].json for m in ("Mount", "Unmount"))
        assert mount == unmount and mount["ID"] != cid
        ids.append(mount["ID"])
    assert ids[0] != ids[1]

    # rm refuses a volume a container references, without asking the plugin (V5)
    since = mark(plugin)
    status, body = daemon.api("DELETE", "/v1.45/volumes/fresh")
    assert status == 409 and "volume is in use" in body["message"]
    assert volume_calls(plugin, since) == []
    daemon.cli("rm", "user", check=True)


def test_concurrent_containers_get_their_own_mount_ids(
    daemon: PluginDaemon, plugin: BarePlugin, volumes: DirectoryVolumes
) -> None:
    daemon.cli("volume", "create", "-d", "bare", "-o", "tmpfs=1m", "shared", check=True)
    for name in ("one", "two"):
        daemon.cli("run", "-d", "--name", name, "-v", "shared:/s", IMAGE, "sleep", "300",
                   check=True)  # fmt: skip
    mounts = [c.json["ID"] for c in plugin.calls_to("/VolumeDriver.Mount")]
    assert len(mounts) == 2 and mounts[0] != mounts[1]  # V4
    daemon.cli("exec", "one", "sh", "-c", "echo from-one > /s/x", check=True)
    assert daemon.cli("exec", "two", "cat", "/s/x", check=True).stdout == "from-one\n"
    daemon.cli("stop", "-t", "0", "one", check=True)
    # the plugin's tmpfs stays while `two` holds its mount, and goes with the last one
    assert volumes.volumes["shared"]["mounts"] == {mounts[1]}
    assert daemon.cli("exec", "two", "cat", "/s/x").stdout == "from-one\n"
    daemon.cli("rm", "-f", "one", "two", check=True)
    assert volumes.volumes["shared"]["mounts"] == set()


def test_anonymous_plugin_volumes_go_with_rm_v_and_named_ones_stay(
    daemon: PluginDaemon, plugin: BarePlugin, volumes: DirectoryVolumes
) -> None:
    daemon.cli(
        "create", "--name", "ctr", "--volume-driver", "bare", "-v", "/anon", "-v", "named:/n",
        IMAGE, "true",
    check=True)  # fmt: skip
    anonymous = [n for n in volumes.volumes if HEX64.match(n)]
    assert len(anonymous) == 1 and "named" in volumes.volumes
    since = mark(plugin)
    daemon.cli("rm", "-v", "ctr", check=True)
    assert volume_calls(plugin, since) == ["Get", "Remove"]  # V6
    assert calls_since(plugin, since, "Remove")[0].json == {"Name": anonymous[0]}
    assert set(volumes.volumes) == {"named"}


def test_volume_ls_merges_every_plugins_list_and_warns_about_broken_ones(
    daemon: PluginDaemon, plugin: BarePlugin, volumes: DirectoryVolumes
) -> None:
    # a volume the plugin has that the engine never created, and a plugin that cannot list
    volumes.create(Call("POST", "/VolumeDriver.Create", {}, b'{"Name": "outside"}'))
    with BarePlugin(
        ["VolumeDriver"],
        {
            "/VolumeDriver.Capabilities": {"Capabilities": {"Scope": "global"}},
            "/VolumeDriver.List": Raw(500, b"<html><body>Internal Server Error</body></html>"),
        },
    ).serve_unix(daemon.sock("broken")):
        status, body = daemon.api("GET", "/v1.45/volumes")
    assert status == 200
    listed = {v["Name"]: v for v in body["Volumes"]}
    assert listed["outside"]["Driver"] == "bare"
    assert listed["outside"]["Mountpoint"] == volumes.path("outside")
    assert body["Warnings"] == [
        "list broken: plugin broken failed with error: VolumeDriver.List: "
        "<html><body>Internal Server Error</body></html>"
    ]
    # List answers come without a Get per volume
    assert "/VolumeDriver.Get" not in {c.path for c in plugin.calls}
    shown = daemon.docker("volume", "ls", "--format", "{{.Driver}} {{.Name}}")
    assert "bare outside" in shown.stdout.splitlines()


def test_scope_comes_from_capabilities_and_a_failing_capabilities_is_local(
    daemon: PluginDaemon, volumes: DirectoryVolumes
) -> None:
    replies = volumes.replies()
    replies["/VolumeDriver.Capabilities"] = {"Capabilities": {"Scope": "Global"}}
    odd = {**volumes.replies(), "/VolumeDriver.Capabilities": Raw(404, b"404 page not found")}
    with (
        BarePlugin(["VolumeDriver"], replies).serve_unix(daemon.sock("wide")),
        BarePlugin(["VolumeDriver"], odd).serve_unix(daemon.sock("odd")),
    ):
        daemon.cli("volume", "create", "-d", "wide", "w", check=True)
        daemon.cli("volume", "create", "-d", "odd", "o", check=True)
        scopes = daemon.cli("volume", "inspect", "-f", "{{.Scope}}", "w", "o", check=True)
    assert scopes.stdout.split() == ["global", "local"]  # V8


# -- a plugin that misbehaves ---------------------------------------------------


def _creates_then(reply: Raw, volumes: DirectoryVolumes):  # type: ignore[no-untyped-def]
    """A Create that does its work, then answers `reply` (late, broken, ...)."""

    def create(call: Call) -> Raw:
        volumes.create(call)
        return reply

    return create


@pytest.mark.parametrize(
    ("reply", "detail", "half_made"),
    [
        (Raw(200, b"\x00\x01garbage"), "invalid JSON reply", False),
        (Raw(500, b"<html><body>Internal Server Error</body></html>"), "<html><body>", False),
        (Raw(200, b""), "empty reply (EOF)", False),
        (Raw(200, b'{"Err": "disk full"}'), "disk full", False),
        (Raw(200, b"{}", delay=8), "timed out after 5s", True),
    ],
    ids=["garbage", "html-500", "empty-200", "err", "timeout"],
)
def test_a_failing_create_names_the_plugin_and_the_call_and_leaves_nothing(
    daemon: PluginDaemon,
    volumes: DirectoryVolumes,
    reply: Raw,
    detail: str,
    half_made: bool,
) -> None:
    replies = volumes.replies()
    replies["/VolumeDriver.Create"] = _creates_then(reply, volumes) if half_made else reply
    with BarePlugin(["VolumeDriver"], replies).serve_unix(daemon.sock("flaky")) as plugin:
        status, body = daemon.api("POST", "/v1.45/volumes/create", {"Name": "v", "Driver": "flaky"})
        assert status == 500
        assert body["message"].startswith(
            "create v: plugin flaky failed with error: VolumeDriver.Create: "
        )
        assert detail in body["message"]
        assert "v" not in volume_names(daemon)
        if half_made:  # the plugin made it after all: the engine removed it again
            assert [c.json for c in plugin.calls_to("/VolumeDriver.Remove")] == [{"Name": "v"}]
        assert "v" not in volumes.volumes
        run = daemon.cli("run", "--rm", "-v", "v2:/d", "--volume-driver", "flaky", IMAGE, "true")
        assert run.returncode == 125
        assert "plugin flaky failed with error: VolumeDriver.Create: " in run.stderr
        assert daemon.cli("ps", "-aq").stdout.strip() == ""
        assert "v2" not in volume_names(daemon)


def test_a_plugin_that_dies_mid_call(daemon: PluginDaemon, volumes: DirectoryVolumes) -> None:
    plugin = BarePlugin(["VolumeDriver"], volumes.replies())

    def die(call: Call) -> Raw:
        volumes.create(call)
        threading.Thread(target=plugin.stop).start()  # the process is gone mid-reply
        return Raw(200, b"{}", delay=1)

    plugin.replies["/VolumeDriver.Create"] = die
    plugin.serve_unix(daemon.sock("dying"))
    try:
        started = time.monotonic()
        status, body = daemon.api("POST", "/v1.45/volumes/create", {"Name": "v", "Driver": "dying"})
        elapsed = time.monotonic() - started
    finally:
        plugin.stop()
    assert status == 500
    assert body["message"].startswith(
        "create v: plugin dying failed with error: VolumeDriver.Create: "
    )
    assert elapsed < 15  # the retry window (3 s) and the one attempt to clean up
    assert "v" not in volume_names(daemon)


def test_a_failing_mount_fails_the_start_and_pairs_the_mount(
    daemon: PluginDaemon, volumes: DirectoryVolumes
) -> None:
    replies = volumes.replies()
    replies["/VolumeDriver.Mount"] = Raw(500, b'{"Err": "backend offline"}')
    with BarePlugin(["VolumeDriver"], replies).serve_unix(daemon.sock("flaky")) as plugin:
        daemon.cli("volume", "create", "-d", "flaky", "v", check=True)
        run = daemon.cli("run", "--name", "ctr", "-v", "v:/d", IMAGE, "true")
        assert run.returncode == 125
        assert "plugin flaky failed with error: VolumeDriver.Mount: backend offline" in run.stderr
        mount = plugin.calls_to("/VolumeDriver.Mount")[0].json
        assert [c.json for c in plugin.calls_to("/VolumeDriver.Unmount")] == [mount]
        state = daemon.api("GET", "/v1.45/containers/ctr/json")[1]["State"]
        assert state["Running"] is False and "backend offline" in state["Error"]
        # a relative mountpoint is refused as well
        plugin.replies["/VolumeDriver.Mount"] = {"Mountpoint": "some/dir"}
        again = daemon.cli("start", "ctr")
        assert again.returncode != 0 and "is not an absolute path" in again.stderr
        daemon.cli("rm", "ctr", check=True)


def test_an_unknown_or_unreachable_driver(daemon: PluginDaemon) -> None:
    result = daemon.cli("volume", "create", "-d", "nowhere", "v")
    # looked for the plugin a few times (in case it is just appearing), briefly
    assert result.returncode != 0
    assert 'create v: error looking up volume plugin nowhere: plugin "nowhere" not found' in (
        result.stderr
    )
    assert "; looked 3 times in " in result.stderr
    bind_dead_socket(daemon.sock("dead"))
    result = daemon.cli("volume", "create", "-d", "dead", "v")
    assert "plugin dead failed with error: Plugin.Activate: connecting to unix://" in result.stderr
    assert volume_names(daemon) == set()


# -- restarts ---------------------------------------------------------------------


def test_restart_checks_recorded_volumes_and_pairs_mounts(
    daemon: PluginDaemon, plugin: BarePlugin, volumes: DirectoryVolumes
) -> None:
    for name in ("kept", "lost"):
        daemon.cli("volume", "create", "-d", "bare", name, check=True)
    daemon.cli("run", "-d", "--name", "ctr", "-v", "kept:/k", IMAGE, "sleep", "300", check=True)
    mount = plugin.calls_to("/VolumeDriver.Mount")[0].json
    daemon.kill9()  # the container keeps running under its monitor
    del volumes.volumes["lost"]  # the plugin lost one while the engine was down
    since = mark(plugin)
    logged = daemon.log_path.stat().st_size
    daemon.start("--config-file", str(daemon.config_file))
    # start-up, in the background: Get for each recorded plugin volume (V10); the lost
    # one is forgotten
    assert wait_for(lambda: b"done reconciling volumes" in daemon.log_path.read_bytes()[logged:])
    gets = sorted(c.json["Name"] for c in calls_since(plugin, since, "Get"))
    assert gets == ["kept", "lost"]
    assert volume_names(daemon) == {"kept"}
    daemon.cli("stop", "-t", "0", "ctr", check=True)
    assert [c.json for c in calls_since(plugin, since, "Unmount")] == [mount]
    daemon.cli("rm", "ctr", check=True)


def test_docker_cli_and_docker_py_use_plugin_volumes(
    daemon: PluginDaemon, plugin: BarePlugin, volumes: DirectoryVolumes
) -> None:
    import docker

    result = daemon.docker("volume", "create", "--driver", "bare", "--opt", "tmpfs=2m", "dv")
    assert result.returncode == 0, result.stderr
    out = daemon.docker(
        "run", "--rm", "--mount", "type=volume,src=dm,dst=/m,volume-driver=bare", IMAGE,
        "sh", "-c", "echo via-mount > /m/f",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert Path(volumes.path("dm"), "f").read_text() == "via-mount\n"
    client = docker.DockerClient(base_url=daemon.host, timeout=60)
    try:
        volume = client.volumes.get("dv")
        assert (volume.attrs["Driver"], volume.attrs["Options"]) == ("bare", {"tmpfs": "2m"})
        output = client.containers.run(
            IMAGE, "sh -c 'df -t tmpfs /v | tail -1'", volumes={"dv": {"bind": "/v"}}, remove=True
        )
        assert b"/v" in output  # the plugin's tmpfs, provisioned by its Mount
    finally:
        client.close()


# -- a managed (v2) volume plugin -------------------------------------------------


def test_managed_volume_plugin_references_and_propagated_mountpoints(
    daemon: PluginDaemon, busybox_tar: Path
) -> None:
    source = make_plugin_dir(daemon.base / "snap-src", busybox_tar, volume_plugin_config())
    daemon.cli("plugin", "create", "dy/snap", str(source), check=True)
    daemon.cli("plugin", "enable", "dy/snap", check=True)
    plugin_id = daemon.api("GET", "/v1.45/plugins/dy/snap/json")[1]["Id"]
    propagated = daemon.data_root / "plugins" / plugin_id / "propagated-mount"

    # the name as typed, recorded with its tag; the mountpoint the plugin gives (/data/...)
    # is the host's propagated-mount directory (M12)
    daemon.cli("volume", "create", "-d", "dy/snap", "data", check=True)
    shown = json.loads(daemon.cli("volume", "inspect", "data", check=True).stdout)[0]
    assert shown["Driver"] == "dy/snap:latest"
    assert shown["Mountpoint"] == str(propagated / "volumes" / "data")
    run = daemon.cli(
        "run", "--rm", "-v", "data:/d", IMAGE, "sh", "-c", "echo kept > /d/f; cat /d/f"
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert (propagated / "volumes" / "data" / "f").read_text() == "kept\n"
    snapshot = daemon.cli(
        "run", "--rm", "--mount", "type=volume,src=copy,dst=/c,volume-driver=dy/snap,"
        "volume-opt=from=data", IMAGE, "cat", "/c/f",
    )  # fmt: skip
    assert snapshot.stdout == "kept\n", snapshot.stderr

    # each volume holds a reference: no disable or rm without force (M5)
    for method, path in (("POST", "disable"), ("DELETE", "")):
        status, body = daemon.api(method, f"/v1.45/plugins/dy/snap:latest/{path}".rstrip("/"))
        assert (status, body["message"]) == (409, "plugin dy/snap:latest is in use")
    # the references are taken again after a daemon restart
    daemon.stop()
    daemon.start("--config-file", str(daemon.config_file))
    assert daemon.api("POST", "/v1.45/plugins/dy/snap/disable")[0] == 409
    assert daemon.cli("volume", "ls", "-q", "-f", "driver=dy/snap:latest").stdout.split() == [
        "copy",
        "data",
    ]
    daemon.cli("volume", "rm", "data", "copy", check=True)
    assert not (propagated / "volumes" / "data").exists()
    assert daemon.cli("plugin", "disable", "dy/snap").returncode == 0
    # a disabled plugin is refused at once, without falling back to v1 discovery
    refused = daemon.cli("volume", "create", "-d", "dy/snap", "late")
    assert "plugin dy/snap:latest found but disabled" in refused.stderr
    daemon.cli("plugin", "enable", "dy/snap", check=True)
    check = daemon.cli("plugin", "check", "dy/snap")
    assert check.returncode == 0, check.stdout
    daemon.cli("plugin", "rm", "-f", "dy/snap", check=True)
