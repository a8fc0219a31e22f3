"""Managed plugins through a real registry (Debian's docker-registry): a plugin made with
`plugin create` is pushed by one daemon, installed from the registry by another and used
there (the example volume plugin through the volume layer), then upgraded; privileges are
checked against what the user grants, and hostile or foreign images are refused."""

from __future__ import annotations

import gzip
import json
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.plugin_env import PluginDaemon, hostile_tar, make_plugin_dir, volume_plugin_config
from tests.registry import Registry, digest_of, tar_of

IMAGE = "demo/busybox:1"


@pytest.fixture
def daemons(busybox_tar: Path) -> Iterator[tuple[PluginDaemon, PluginDaemon]]:
    """A daemon that makes and pushes plugins, and one that installs them."""
    maker, user = PluginDaemon(), PluginDaemon()
    try:
        for daemon in (maker, user):
            daemon.start_with()
            daemon.cli("import", str(busybox_tar), IMAGE, check=True)
        yield maker, user
    finally:
        maker.cleanup()
        user.cleanup()


def inspect(daemon: PluginDaemon, name: str) -> dict[str, Any]:
    status, body = daemon.api("GET", f"/v1.45/plugins/{name}/json")
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def create_plugin(
    daemon: PluginDaemon, busybox_tar: Path, name: str, marker: str, **changes: Any
) -> None:
    """The example volume plugin, with /marker in its rootfs to tell versions apart."""
    source = make_plugin_dir(
        daemon.base / f"src-{marker}", busybox_tar, volume_plugin_config(**changes)
    )
    (source / "rootfs" / "marker").write_text(marker)
    daemon.cli("plugin", "create", name, str(source), check=True)


def manifest_of(registry: Registry, repo: str, tag: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://{registry.host}/v2/{repo}/manifests/{tag}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    with urllib.request.urlopen(request) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def test_push_install_use_and_upgrade(
    daemons: tuple[PluginDaemon, PluginDaemon], busybox_tar: Path, registry: Registry
) -> None:
    maker, user = daemons
    repo = f"myorg/vol{int(time.time() * 1000) % 100000}"
    name = f"{registry.host}/{repo}"
    create_plugin(maker, busybox_tar, f"{name}:1", "one")
    pushed = maker.cli("plugin", "push", f"{name}:1")
    assert pushed.returncode == 0, pushed.stderr
    assert f"The push refers to repository [{name}]" in pushed.stdout
    assert "1: digest: sha256:" in pushed.stdout
    # Docker's distribution format: schema 2, the plugin config media type, a gzip layer
    manifest = manifest_of(registry, repo, "1")
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert manifest["config"]["mediaType"] == "application/vnd.docker.plugin.v1+json"
    assert [layer["mediaType"] for layer in manifest["layers"]] == [
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    ]

    # what the plugin asks for, in Docker's order
    status, privileges = user.api("GET", f"/v1.45/plugins/privileges?remote={name}:1")
    assert status == 200
    assert [p["Name"] for p in privileges] == ["mount"] * len(volume_plugin_config()["mounts"]) + [
        "capabilities"
    ]
    assert privileges[-1]["Value"] == ["CAP_SYS_ADMIN"]

    # without consent nothing is installed
    refused = user.cli("plugin", "install", f"{name}:1", input=b"n\n")
    assert refused.returncode == 1
    assert f'Plugin "{name}:1" is requesting the following privileges:' in refused.stdout
    assert " - capabilities: [CAP_SYS_ADMIN]" in refused.stdout.splitlines()
    assert "permission denied while installing plugin" in refused.stderr
    assert user.api("GET", "/v1.45/plugins")[1] == []

    since = str(time.time())
    installed = user.cli("plugin", "install", "--grant-all-permissions", f"{name}:1")
    assert installed.returncode == 0, installed.stderr
    assert f"Installed plugin {name}:1" in installed.stdout
    body = inspect(user, f"{name}:1")
    assert body["Enabled"] is True
    assert body["PluginReference"] == f"{name}:1"
    assert body["Config"]["Interface"]["Types"] == ["docker.volumedriver/1.0"]
    plugin_id = body["Id"]
    plugin_dir = user.data_root / "plugins" / plugin_id
    assert (plugin_dir / "rootfs" / "marker").read_text() == "one"

    # used: the volume plugin through the volume layer, data in its propagated mount
    user.cli("volume", "create", "-d", f"{name}:1", "data", check=True)
    run = user.cli("run", "--rm", "-v", "data:/d", IMAGE, "sh", "-c", "echo v1-data > /d/f")
    assert run.returncode == 0, run.stderr
    assert (plugin_dir / "propagated-mount" / "volumes" / "data" / "f").read_text() == ("v1-data\n")
    events = user.cli("events", "--since", since, "--until", str(time.time()), "-f", "type=plugin")
    assert [line.split()[2] for line in events.stdout.splitlines()][:2] == ["pull", "enable"]

    # version 2: another rootfs, a changed description, and settings kept across the upgrade
    create_plugin(maker, busybox_tar, f"{name}:2", "two", description="version two")
    maker.cli("plugin", "push", f"{name}:2", check=True)
    user.cli("plugin", "disable", "-f", f"{name}:1", check=True)  # its volume holds it
    user.cli("plugin", "set", f"{name}:1", "VOLUME_ROOT=/data", check=True)
    # privileges not granted (an empty body): refused before anything is downloaded
    status, body = user.api("POST", f"/v1.45/plugins/{name}:1/upgrade?remote={name}:2")
    assert (status, body["message"]) == (400, "incorrect privileges")
    # another reference than the one installed: the CLI asks first
    asked = user.cli("plugin", "upgrade", "--grant-all-permissions", f"{name}:1", f"{name}:2")
    assert asked.returncode == 1 and "does not match the plugin's reference" in asked.stdout
    upgraded = user.cli(
        "plugin", "upgrade", "--grant-all-permissions", f"{name}:1", f"{name}:2", input=b"y\n"
    )
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"Upgraded plugin {name}:1 to {name}:2" in upgraded.stdout
    after = inspect(user, f"{name}:1")
    assert after["Id"] == plugin_id and after["Name"] == f"{name}:1"
    assert after["Config"]["Description"] == "version two"
    assert after["PluginReference"] == f"{name}:2"
    assert "VOLUME_ROOT=/data" in after["Settings"]["Env"]
    assert (plugin_dir / "rootfs" / "marker").read_text() == "two"
    assert not (plugin_dir / "rootfs-old").exists()
    user.cli("plugin", "enable", f"{name}:1", check=True)
    kept = user.cli("run", "--rm", "-v", "data:/d", IMAGE, "cat", "/d/f")
    assert kept.stdout == "v1-data\n", kept.stderr  # the propagated mount's content survived


# -- images pushed by hand: hostile, foreign, malformed --------------------------------


def push_image(
    registry: Registry, repo: str, tag: str, config: Any, layer: bytes, **kw: str
) -> None:
    """Upload a config and one gzip layer and a schema-2 manifest with plain HTTP, as any
    client may (nothing of Dockyard's)."""
    config_type = kw.get("config_type", "application/vnd.docker.plugin.v1+json")
    config_blob = json.dumps(config).encode()
    layer_blob = gzip.compress(layer)
    for blob in (config_blob, layer_blob):
        start = urllib.request.Request(
            f"http://{registry.host}/v2/{repo}/blobs/uploads/", method="POST", data=b""
        )
        with urllib.request.urlopen(start) as resp:
            location = resp.headers["Location"]
        if location.startswith("/"):
            location = f"http://{registry.host}{location}"
        separator = "&" if "?" in location else "?"
        put = urllib.request.Request(
            f"{location}{separator}digest={digest_of(blob)}", method="PUT", data=blob
        )
        put.add_header("Content-Type", "application/octet-stream")
        urllib.request.urlopen(put).close()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": config_type, "digest": digest_of(config_blob),
                   "size": len(config_blob)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "digest": digest_of(layer_blob), "size": len(layer_blob)}],
    }  # fmt: skip
    put = urllib.request.Request(
        f"http://{registry.host}/v2/{repo}/manifests/{tag}",
        method="PUT",
        data=json.dumps(manifest).encode(),
    )
    put.add_header("Content-Type", manifest["mediaType"])
    urllib.request.urlopen(put).close()


PLAIN_CONFIG = {
    "entrypoint": ["/bin/plugin"],
    "interface": {"types": ["docker.volumedriver/1.0"], "socket": "p.sock"},
}


@pytest.mark.parametrize(
    ("config", "layer", "config_type", "message"),
    [
        (PLAIN_CONFIG, hostile_tar([("../../escape", b"x", {})]), None, "points outside"),
        (
            PLAIN_CONFIG,
            hostile_tar(
                [
                    ("link", None, {"type": tarfile.SYMTYPE, "linkname": "/etc"}),
                    ("link/evil", b"x", {}),
                ]
            ),
            None,
            "'link' is a symlink; refusing to go through it",
        ),
        (
            {
                **PLAIN_CONFIG,
                "interface": {"types": ["docker.volumedriver/1.0"], "socket": "../../x.sock"},
            },
            tar_of({"bin/plugin": b"#!/bin/sh\n"}),
            None,
            "Interface.Socket must be a name under /run/docker/plugins",
        ),
        (
            {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}},
            tar_of({"bin/app": b""}),
            "application/vnd.docker.container.image.v1+json",
            "is not a plugin",
        ),
    ],
    ids=["dot-dot", "through-symlink", "bad-config", "an-image"],
)
def test_hostile_or_foreign_images_are_refused_at_install(
    busybox_tar: Path,
    registry: Registry,
    config: Any,
    layer: bytes,
    config_type: str | None,
    message: str,
) -> None:
    daemon = PluginDaemon()
    repo = f"bad/p{time.monotonic_ns() % 10**9}"
    push_image(
        registry, repo, "1", config, layer, **({"config_type": config_type} if config_type else {})
    )
    try:
        daemon.start_with()
        status, body = daemon.api(
            "POST", f"/v1.45/plugins/pull?remote={registry.host}/{repo}:1", []
        )
        text = body["message"] if isinstance(body, dict) else body.decode()
        if status == 200:  # refused after the stream started: the error is its last message
            text = [json.loads(line) for line in text.splitlines() if line.strip()][-1]["error"]
        assert status in (200, 400), text
        assert message in text
        assert daemon.api("GET", "/v1.45/plugins")[1] == []
        leftovers = sorted(p.name for p in (daemon.data_root / "plugins").iterdir())
        assert leftovers == ["storage"]
        storage = daemon.data_root / "plugins" / "storage" / "blobs" / "sha256"
        assert not storage.exists() or list(storage.iterdir()) == []
        assert not Path("/escape").exists() and not Path("/etc/evil").exists()
    finally:
        daemon.cleanup()


def test_pull_checks_privileges_and_names(
    daemons: tuple[PluginDaemon, PluginDaemon], busybox_tar: Path, registry: Registry
) -> None:
    maker, user = daemons
    name = f"{registry.host}/myorg/priv{time.monotonic_ns() % 10**9}"
    create_plugin(maker, busybox_tar, name, "one")
    maker.cli("plugin", "push", name, check=True)
    required = user.api("GET", f"/v1.45/plugins/privileges?remote={name}")[1]
    # fewer privileges than asked for, or others: refused, nothing downloaded
    other = {"Name": "capabilities", "Value": ["CAP_NET_ADMIN"]}
    for granted in ([], required[:-1], [*required[:-1], other]):
        status, body = user.api("POST", f"/v1.45/plugins/pull?remote={name}", granted)
        assert (status, body["message"]) == (400, "incorrect privileges")
    assert user.api("GET", "/v1.45/plugins")[1] == []
    # exactly those, in any order: installed under the alias, named in the header
    import http.client
    import socket

    class Conn(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(user.socket)

    conn = Conn("localhost", timeout=60)
    conn.request(
        "POST",
        f"/v1.45/plugins/pull?remote={name}&name=local/alias",
        body=json.dumps(list(reversed(required))),
        headers={"Content-Type": "application/json"},
    )
    resp = conn.getresponse()
    lines = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    conn.close()
    assert resp.status == 200 and resp.getheader("Docker-Plugin-Name") == "local/alias:latest"
    assert lines[0] == {"status": f"Pulling from {name}", "id": "latest"}
    assert not any("error" in line for line in lines)
    body = inspect(user, "local/alias")
    assert body["Enabled"] is False and body["PluginReference"] == f"{name}:latest"
    status, error = user.api(
        "POST", f"/v1.45/plugins/pull?remote={name}&name=local/alias", required
    )
    assert (status, error["message"]) == (409, 'plugin "local/alias:latest" already exists')
    status, error = user.api("POST", f"/v1.45/plugins/pull?remote={registry.host}/no/such:1", [])
    assert status == 404 and "not found" in error["message"]


def test_the_docker_cli_installs_and_pushes_plugins(
    daemons: tuple[PluginDaemon, PluginDaemon], busybox_tar: Path, registry: Registry
) -> None:
    maker, user = daemons
    name = f"{registry.host}/myorg/dk{time.monotonic_ns() % 10**9}:1"
    create_plugin(maker, busybox_tar, name, "one")
    pushed = maker.docker("plugin", "push", name)
    assert pushed.returncode == 0, pushed.stderr
    assert "digest: sha256:" in pushed.stdout
    installed = user.docker("plugin", "install", "--grant-all-permissions", name)
    assert installed.returncode == 0, installed.stderr
    assert f"Installed plugin {name}" in installed.stdout
    shown = user.docker("plugin", "ls", "--format", "{{.Name}} {{.Enabled}}")
    assert shown.stdout.strip() == f"{name} true"
    assert user.docker("volume", "create", "-d", name, "dv").returncode == 0
    assert user.docker("run", "--rm", "-v", "dv:/d", IMAGE, "touch", "/d/x").returncode == 0
    # a declined prompt installs nothing (the docker CLI asks on stdin)
    again = user.docker("plugin", "install", "--alias", "other", name, input=b"n\n")
    assert again.returncode != 0
    assert user.docker("plugin", "ls", "-q").stdout.split() == [inspect(user, name)["Id"][:12]]


def test_install_applies_settings_and_leaves_nothing_when_they_fail(
    daemons: tuple[PluginDaemon, PluginDaemon], busybox_tar: Path, registry: Registry
) -> None:
    maker, user = daemons
    name = f"{registry.host}/myorg/set{time.monotonic_ns() % 10**9}:1"
    create_plugin(maker, busybox_tar, name, "one")
    maker.cli("plugin", "push", name, check=True)
    done = user.cli(
        "plugin", "install", "--grant-all-permissions", "--disable", "--alias", "dy/set",
        name, "VOLUME_ROOT=/data/sub",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    body = inspect(user, "dy/set")
    assert body["Enabled"] is False and "VOLUME_ROOT=/data/sub" in body["Settings"]["Env"]
    # a setting the plugin does not have: the install is undone, as the docker CLI does
    failed = user.cli(
        "plugin", "install", "--grant-all-permissions", "--alias", "dy/bad", name, "NOPE=1"
    )
    assert failed.returncode == 1 and "setting 'NOPE' not found" in failed.stderr
    assert [p["Name"] for p in user.api("GET", "/v1.45/plugins")[1]] == ["dy/set:latest"]
