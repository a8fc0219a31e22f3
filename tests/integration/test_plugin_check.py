"""`dockyard plugin check` against the example plugins (SDK), against plugins written
without the SDK (unix socket, and TCP found through a .spec file), and against a
plugin that breaks the protocol."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bare_plugin import BarePlugin, Call, DirectoryVolumes, Raw
from tests.harness import REPO
from tests.plugin_env import EXAMPLES, PluginDaemon, PluginProcess
from tests.registry import make_ca, server_cert


def check(*args: str, host: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"DOCKYARD_HOST": host} if host else {}
    import os

    return subprocess.run(
        [sys.executable, "-m", "dockyard", "plugin", "check", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


class MemoryVolumes:
    """A correct VolumeDriver as canned handlers (no SDK)."""

    def __init__(self, root: Path, *, broken: bool = False) -> None:
        self.root = root
        self.volumes: set[str] = set()
        self.broken = broken

    def replies(self) -> dict[str, Any]:
        def create(call: Call) -> dict[str, Any]:
            self.volumes.add(call.json["Name"])
            return {}

        def remove(call: Call) -> Any:
            if call.json["Name"] not in self.volumes:
                return Raw(500, b'{"Err":"no such volume"}')
            self.volumes.discard(call.json["Name"])
            return {}

        def mount(call: Call) -> Any:
            if call.json["Name"] not in self.volumes and not self.broken:
                return {"Err": "no such volume"}
            return {
                "Mountpoint": "relative/path" if self.broken else f"{self.root}/{call.json['Name']}"
            }

        def get(call: Call) -> Any:
            name = call.json["Name"]
            if name in self.volumes or self.broken:
                return {"Volume": {"Name": name, "Mountpoint": f"{self.root}/{name}"}}
            return {"Err": "no such volume"}

        return {
            "/VolumeDriver.Capabilities": {"Capabilities": {"Scope": "local"}},
            "/VolumeDriver.Create": create,
            "/VolumeDriver.Remove": remove,
            "/VolumeDriver.Mount": mount,
            "/VolumeDriver.Unmount": {},
            "/VolumeDriver.Path": {"Mountpoint": ""},
            "/VolumeDriver.Get": get,
            "/VolumeDriver.List": lambda call: {
                "Volumes": [{"Name": n} for n in sorted(self.volumes)]
            },
        }


def test_a_plugin_without_the_sdk_on_a_unix_socket(tmp_path: Path) -> None:
    with BarePlugin(["VolumeDriver"], MemoryVolumes(tmp_path).replies()).serve_unix(
        str(tmp_path / "mem.sock")
    ) as plugin:
        result = check(str(tmp_path / "mem.sock"))
    assert result.returncode == 0, result.stdout
    assert "Implements: VolumeDriver" in result.stdout
    assert "PASS  Create with null Opts" in result.stdout
    assert "0 failed" in result.stdout
    # the calls follow the order an engine makes
    volume_calls = [p for p in plugin.paths() if p.startswith("/VolumeDriver.")]
    assert volume_calls[:4] == [
        "/VolumeDriver.Capabilities",
        "/VolumeDriver.Get",
        "/VolumeDriver.Create",
        "/VolumeDriver.Get",
    ]


def test_protocol_violations_are_reported(tmp_path: Path) -> None:
    replies = MemoryVolumes(tmp_path, broken=True).replies()
    replies["/VolumeDriver.Unmount"] = Raw(200, b"")  # an empty 200 is a failure
    with BarePlugin(["VolumeDriver", "Frobnicator"], replies).serve_unix(
        str(tmp_path / "bad.sock")
    ):
        result = check("--json", str(tmp_path / "bad.sock"))
    assert result.returncode == 1
    report = json.loads(result.stdout)
    failed = {r["check"]: r["detail"] for r in report["results"] if r["status"] == "fail"}
    assert failed["Get of an unknown volume"] == "returned a volume"
    assert "not an absolute path" in failed["Mount"]
    assert "empty body" in failed["Unmount"]
    warned = [r["check"] for r in report["results"] if r["status"] == "warn"]
    assert "known kinds" in warned


def test_a_tcp_plugin_found_through_a_spec_file(busybox_tar: Path) -> None:
    daemon = PluginDaemon()
    replies = {
        "/AuthZPlugin.AuthZReq": lambda call: {"Allow": True},
        "/AuthZPlugin.AuthZRes": {"allow": True},  # keys in any case
    }
    with BarePlugin(["authz"], replies).serve_tcp() as plugin:
        (daemon.spec_dir / "tcpauthz.spec").write_text(f"tcp://{plugin.address}\n")
        try:
            daemon.start_with(authorization_plugins=["tcpauthz"])
            local = check(str(daemon.spec_dir / "tcpauthz.spec"))
            assert local.returncode == 0, local.stdout
            assert f"at tcp://{plugin.address}" in local.stdout
            # by name: the daemon finds it as it would for use, and runs the checks
            remote = check("tcpauthz", host=daemon.host)
            assert remote.returncode == 0, remote.stdout + remote.stderr
            assert "PASS  AuthZRes: allowed" in remote.stdout
            assert daemon.api("GET", "/v1.45/_ping")[0] == 200  # and it authorizes requests
            assert any(
                c.json["RequestUri"] == "/v1.45/_ping"
                for c in plugin.calls_to("/AuthZPlugin.AuthZReq")
            )
        finally:
            daemon.cleanup()


@pytest.fixture
def examples(tmp_path: Path) -> Iterator[dict[str, str]]:
    sockets = {}
    processes = []
    env = {
        "VOLUME_ROOT": str(tmp_path / "volumes"),
        "IPAM_STATE": str(tmp_path / "ipam" / "state.json"),
        "LOG_DIR": str(tmp_path / "logs"),
        "POLICY_FILE": str(tmp_path / "policy.json"),
    }
    (tmp_path / "policy.json").write_text(json.dumps({"default": "allow"}))
    for name, target in (
        ("snap", "volume_snap.py:SnapshotVolumes"),
        ("fileipam", "ipam_file.py:FileIpam"),
        ("rotate", "log_rotate.py:RotatingLogs"),
        ("policy", "authz_policy.py:PolicyPlugin"),
    ):
        sockets[name] = str(tmp_path / f"{name}.sock")
        processes.append(PluginProcess(f"{EXAMPLES}/{target}", sockets[name], env))
    try:
        yield sockets
    finally:
        for process in processes:
            process.stop()


@pytest.mark.parametrize(
    ("name", "kind", "count"),
    [
        ("snap", "VolumeDriver", 17),
        ("fileipam", "IpamDriver", 13),
        ("rotate", "LogDriver", 8),
        ("policy", "authz", 5),
    ],
)
def test_the_example_plugins_pass(
    examples: dict[str, str], name: str, kind: str, count: int
) -> None:
    result = check(examples[name])
    assert result.returncode == 0, result.stdout
    assert f"Implements: {kind}" in result.stdout
    assert f"{count} passed, 0 failed, 0 warnings" in result.stdout


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_the_bridge_network_example_passes_in_a_private_netns(tmp_path: Path) -> None:
    import os
    import signal
    import time

    sock = str(tmp_path / "vbridge.sock")
    proc = subprocess.Popen(
        [
            "unshare",
            "--net",
            sys.executable,
            "-m",
            "dockyard.sdk",
            "run",
            f"{EXAMPLES}/net_bridge.py:BridgeNetwork",
            "--socket",
            sock,
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        result = check(sock)
        assert result.returncode == 0, result.stdout
        assert "PASS  Join: interface vbc" in result.stdout
        assert "ProgramExternalConnectivity: not implemented (404)" in result.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def test_the_built_in_local_driver_passes_the_same_checks(busybox_tar: Path) -> None:
    daemon = PluginDaemon()
    try:
        daemon.start_with()
        daemon.cli("volume", "create", "mine", check=True)
        result = check("local", host=daemon.host)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Implements: VolumeDriver" in result.stdout
        assert "PASS  second Mount (another ID)" in result.stdout
        assert "17 passed, 0 failed, 0 warnings" in result.stdout  # as many as the example
        # on a scratch directory: the daemon's own volumes are untouched, nothing is left
        assert daemon.cli("volume", "ls", "-q").stdout.split() == ["mine"]
        assert sorted(p.name for p in (daemon.data_root / "volumes").iterdir()) == ["mine"]
        assert not [p for p in daemon.data_root.iterdir() if p.name.startswith("check-")]
        as_json = json.loads(check("--json", "local", host=daemon.host).stdout)
        assert as_json["plugin"] == "local" and as_json["address"].startswith("unix://")
    finally:
        daemon.cleanup()


@pytest.mark.parametrize(
    ("name", "kind", "count"), [("bridge", "NetworkDriver", 15), ("default", "IpamDriver", 13)]
)
def test_the_builtin_drivers_pass(daemon: Any, name: str, kind: str, count: int) -> None:
    """The built-in bridge driver and IPAM, served over the protocol by the daemon for the
    check: the same checks as any plugin, on a pool of the daemon's and in a sandbox."""
    links, ruleset, allocations = daemon.links(), daemon.nft_ruleset(), daemon.allocations()
    result = check(name, host=daemon.host)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Implements: {kind}" in result.stdout
    assert f"{count} passed, 0 failed, 0 warnings" in result.stdout, result.stdout
    if name == "bridge":
        assert "PASS  Join: interface" in result.stdout
    # nothing of the check is left behind
    assert (daemon.links(), daemon.nft_ruleset(), daemon.allocations()) == (
        links,
        ruleset,
        allocations,
    )
    refused = check("host", host=daemon.host)
    assert refused.returncode != 0 and "nothing to check" in refused.stderr


def test_https_plugins_are_verified_as_docker_does(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "ca")
    cert, key = server_cert(ca, tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    replies = {"/AuthZPlugin.AuthZReq": {"Allow": True}, "/AuthZPlugin.AuthZRes": {"Allow": True}}
    with BarePlugin(["authz"], replies).serve_tcp(tls) as plugin:
        url = f"https://{plugin.address}"
        specs = {
            # a .json file without TLSConfig: the system's CAs, which do not know ours
            "system.json": {"Addr": url},
            "ca.json": {"Addr": url, "TLSConfig": {"CAFile": str(ca.cert)}},
            "skip.json": {"Addr": url, "TLSConfig": {"InsecureSkipVerify": True}},
        }
        for name, spec in specs.items():
            (tmp_path / name).write_text(json.dumps(spec))
        (tmp_path / "plain.spec").write_text(url)  # Docker: .spec URLs are not verified
        refused = check(str(tmp_path / "system.json"))
        assert refused.returncode != 0
        assert "CERTIFICATE_VERIFY_FAILED" in refused.stdout + refused.stderr
        for name in ("ca.json", "skip.json", "plain.spec"):
            passed = check(str(tmp_path / name))
            assert passed.returncode == 0, passed.stdout + passed.stderr
            assert f"at https://{plugin.address}" in passed.stdout


# -- real plugins that work: no false failures, and nothing left behind -------------------


def results(report: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """check -> (status, detail); the last result of a check that appears twice."""
    return {r["check"]: (r["status"], r["detail"]) for r in report["results"]}


def test_a_failing_path_is_a_warning_and_the_checks_go_on(tmp_path: Path) -> None:
    volumes = DirectoryVolumes(str(tmp_path / "vols"))
    replies = volumes.replies()
    replies["/VolumeDriver.Path"] = Raw(500, b'{"Err": "Path is not implemented"}')
    with BarePlugin(["VolumeDriver"], replies).serve_unix(str(tmp_path / "nopath.sock")) as p:
        result = check("--json", str(tmp_path / "nopath.sock"))
        assert result.returncode == 0, result.stdout
        found = results(json.loads(result.stdout))
        assert found["Path"] == ("warn", "VolumeDriver.Path: HTTP 500: "
                                 '{"Err": "Path is not implemented"}')  # fmt: skip
        for later in ("Mount", "second Mount (another ID)", "last Unmount", "Get after Remove"):
            assert found[later][0] == "pass", (later, found[later])
        assert "/VolumeDriver.Mount" in p.paths()
    assert volumes.volumes == {}


def test_driver_options_reach_the_checks_creates(tmp_path: Path, busybox_tar: Path) -> None:
    volumes = DirectoryVolumes(str(tmp_path / "vols"))
    replies = volumes.replies()
    create = replies["/VolumeDriver.Create"]

    def needs_a_device(call: Call) -> Any:
        opts = call.json.get("Opts") or {}
        if "device" not in opts:
            return {"Err": "option device is required"}
        body = json.dumps({"Name": call.json["Name"], "Opts": {}}).encode()  # understood
        return create(Call(call.method, call.path, call.headers, body))

    replies["/VolumeDriver.Create"] = needs_a_device
    sock = tmp_path / "fuse.sock"
    with BarePlugin(["VolumeDriver"], replies).serve_unix(str(sock)) as plugin:
        # without the option, the plugin cannot be checked
        assert "option device is required" in check(str(sock)).stdout
        result = check("--opt", "device=/dev/fuse", "-o", "mode=ro", str(sock))
        assert result.returncode == 0, result.stdout
        assert "WARN  Create with null Opts" in result.stdout  # legal for such a plugin
        sent = [c.json["Opts"] for c in plugin.calls_to("/VolumeDriver.Create")]
        assert {"device": "/dev/fuse", "mode": "ro"} in sent
        assert volumes.volumes == {}
        sdk = subprocess.run(
            [sys.executable, "-m", "dockyard.sdk", "check", "-o", "device=/dev/fd", str(sock)],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert sdk.returncode == 0, sdk.stdout + sdk.stderr
        assert {"device": "/dev/fd"} in [
            c.json["Opts"] for c in plugin.calls_to("/VolumeDriver.Create")
        ]
        # by name, through the daemon: the same options
        daemon = PluginDaemon()
        try:
            daemon.start_with()
            os.symlink(sock, daemon.sock("fuse"))
            remote = check("fuse", "--opt", "device=/dev/fuse", host=daemon.host)
            assert remote.returncode == 0, remote.stdout + remote.stderr
            assert {"device": "/dev/fuse"} in [
                c.json["Opts"] for c in plugin.calls_to("/VolumeDriver.Create")
            ]
            bad = check("fuse", "--opt", "device", host=daemon.host)
            assert bad.returncode != 0 and "expected KEY=VALUE" in bad.stderr
        finally:
            daemon.cleanup()
    assert volumes.volumes == {}


def test_the_checker_removes_its_volumes_when_the_plugins_remove_fails(tmp_path: Path) -> None:
    volumes = DirectoryVolumes(str(tmp_path / "vols"))
    replies = volumes.replies()
    unmount = replies["/VolumeDriver.Unmount"]
    unmounts = 0

    def busy_once(call: Call) -> Any:
        # the last Unmount fails once ("busy"): the volume stays mounted, so the plugin
        # refuses to remove it
        nonlocal unmounts
        unmounts += 1
        if unmounts == 2:
            return {"Err": "target is busy"}
        return unmount(call)

    replies["/VolumeDriver.Unmount"] = busy_once
    with BarePlugin(["VolumeDriver"], replies).serve_unix(str(tmp_path / "busy.sock")):
        result = check("--json", str(tmp_path / "busy.sock"))
    assert result.returncode == 1
    found = results(json.loads(result.stdout))
    assert found["last Unmount"] == ("fail", "VolumeDriver.Unmount: Err: target is busy")
    assert found["clean-up"][0] == "pass" and "dockyard-check-" in found["clean-up"][1]
    assert volumes.volumes == {}  # unmounted and removed in the end

    # a plugin that never removes anything: the checker tries, and says what is left
    stuck = DirectoryVolumes(str(tmp_path / "stuck"))
    replies = stuck.replies()
    replies["/VolumeDriver.Remove"] = Raw(500, b'{"Err": "read-only backend"}')
    with BarePlugin(["VolumeDriver"], replies).serve_unix(str(tmp_path / "stuck.sock")) as p:
        result = check("--json", str(tmp_path / "stuck.sock"))
        removes = [c.json["Name"] for c in p.calls_to("/VolumeDriver.Remove")]
    assert result.returncode == 1
    found = results(json.loads(result.stdout))
    status, detail = found["clean-up"]
    assert status == "fail"
    [left] = list(stuck.volumes)
    assert f"could not remove, remove by hand: {left} (read-only backend)" == detail
    assert removes.count(left) == 3  # the check's Remove, and twice more at the clean-up
