"""`dockyard system check [--repair]`: each kind of damage planted on a private daemon is
found, `--repair` fixes what can be fixed without losing data and says what it did, and
the next check is clean; a daemon nobody has damaged reports clean.

The damage is what crashes, other programs and users leave behind: a blob with a flipped
byte, a layer directory deleted, a mount, a veth and an nftables rule nobody owns, a
container whose runtime state is gone, a volume plugin that stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bare_plugin import BarePlugin, DirectoryVolumes
from tests.harness import Daemon
from tests.plugin_env import PluginDaemon

IMAGE = "demo/busybox:1"


def check(daemon: Daemon, *flags: str) -> tuple[int, dict[str, Any]]:
    result = daemon.cli("system", "check", "--format", "json", *flags)
    assert result.stdout.strip(), result.stderr
    return result.returncode, json.loads(result.stdout)


def problems(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Findings that still need attention. An exited container's attach entry is left
    behind by the daemon today (issue 12, defect 9): `--repair` removes it, but the
    containers the repairs themselves stop leave a new one, so it is not counted here."""
    return [
        f
        for f in report["Findings"]
        if f["Severity"] != "info"
        and not f["Repaired"]
        and "attach socket entry" not in f["Message"]
    ]


def about(report: dict[str, Any], text: str) -> list[dict[str, Any]]:
    return [f for f in report["Findings"] if text in f["Subject"] or text in f["Message"]]


def assert_clean(daemon: Daemon) -> None:
    _, report = check(daemon)
    assert problems(report) == [], json.dumps(report, indent=1)


def container_id(daemon: Daemon, name: str) -> str:
    return daemon.cli("inspect", "-f", "{{.Id}}", name, check=True).stdout.strip()


def test_a_daemon_nobody_damaged_reports_clean(own_daemon: Daemon) -> None:
    own_daemon.cli("network", "create", "--subnet", own_daemon.subnet(3), "apps", check=True)
    own_daemon.cli(
        "run", "-d", "--name", "web", "--network", "apps", "-p", "127.0.0.1::80",
        "-v", "data:/data", IMAGE, "sleep", "1000", check=True,
    )  # fmt: skip
    own_daemon.cli("create", "--name", "idle", IMAGE, "true", check=True)

    result = own_daemon.cli("system", "check")
    assert result.returncode == 0, result.stdout
    assert "No problems found." in result.stdout
    status, report = own_daemon.api("GET", "/system/check")
    assert status == 200
    assert report["Summary"]["Ok"] is True
    assert report["Checked"]["containers"] == 2
    assert report["Checked"]["images"] == 1
    assert "system check" not in "".join(own_daemon.api("GET", "/info")[1]["Warnings"])


def test_a_corrupt_blob_is_quarantined_and_the_image_still_runs(own_daemon: Daemon) -> None:
    layer = json.loads(own_daemon.cli("image", "inspect", IMAGE, check=True).stdout)[0]
    diff_id = layer["RootFS"]["Layers"][0]
    blob = own_daemon.data_root / "content" / "blobs" / "sha256" / diff_id.removeprefix("sha256:")
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))

    code, report = check(own_daemon)
    assert code == 1
    [finding] = about(report, f"blob {diff_id}")
    assert finding["Severity"] == "error" and "corrupt" in finding["Message"]
    assert "quarantine" in finding["Repair"]
    # `info` warns until a check finds nothing wrong
    warnings = own_daemon.api("GET", "/info")[1]["Warnings"]
    assert any("system check" in w and "1 error" in w for w in warnings), warnings

    code, report = check(own_daemon, "--repair")
    [finding] = about(report, f"blob {diff_id}")
    assert "moved it to" in finding["Repaired"], finding
    kept = own_daemon.data_root / "check" / "quarantine" / diff_id.removeprefix("sha256:")
    assert kept.read_bytes() == bytes(data)  # kept for inspection, not deleted
    assert not blob.exists()
    assert code == 0, report

    code, report = check(own_daemon)
    assert code == 0 and problems(report) == []
    # the unpacked layer still serves containers; only save/push would need the blob
    assert about(report, "has no stored blob")[0]["Severity"] == "info"
    run = own_daemon.cli("run", "--rm", IMAGE, "echo", "still runs", check=True)
    assert run.stdout.strip() == "still runs"
    assert "system check" not in "".join(own_daemon.api("GET", "/info")[1]["Warnings"])


def test_a_missing_layer_directory_is_unpacked_again(own_daemon: Daemon) -> None:
    layers = json.loads(own_daemon.cli("image", "inspect", IMAGE, check=True).stdout)[0]
    chain = layers["RootFS"]["Layers"][0]  # one layer: its ChainID is its DiffID
    shutil.rmtree(own_daemon.data_root / "layers" / chain.removeprefix("sha256:"))
    assert own_daemon.cli("run", "--rm", IMAGE, "true").returncode != 0

    code, report = check(own_daemon)
    assert code == 1
    [finding] = about(report, f"layer {chain}")
    assert "directory is gone" in finding["Message"]
    assert finding["Repair"].startswith("unpack it again")

    code, report = check(own_daemon, "--repair")
    assert code == 0
    assert "unpacked it again" in about(report, f"layer {chain}")[0]["Repaired"]
    assert_clean(own_daemon)
    run = own_daemon.cli("run", "--rm", IMAGE, "cat", "/etc/passwd", check=True)
    assert "root" in run.stdout


def test_a_stray_mount_is_unmounted(own_daemon: Daemon) -> None:
    own_daemon.cli("create", "--name", "idle", IMAGE, "true", check=True)
    merged = own_daemon.data_root / "containers" / container_id(own_daemon, "idle") / "rootfs"
    merged = merged / "merged"
    subprocess.run(["mount", "-t", "tmpfs", "leftover", str(merged)], check=True)

    code, report = check(own_daemon)
    assert code == 1
    [finding] = about(report, f"mount {merged}")
    assert "does not run" in finding["Message"]

    code, report = check(own_daemon, "--repair")
    assert about(report, f"mount {merged}")[0]["Repaired"] == "unmounted it"
    assert str(merged) not in Path("/proc/self/mounts").read_text()
    assert_clean(own_daemon)
    own_daemon.cli("start", "idle", check=True)  # its real root filesystem mounts again


def test_a_stray_veth_is_deleted_through_the_api(own_daemon: Daemon) -> None:
    host_end, peer = own_daemon.veth_prefix + "lost", own_daemon.veth_prefix + "lostp"
    subprocess.run(
        ["ip", "link", "add", host_end, "type", "veth", "peer", "name", peer], check=True
    )

    status, report = own_daemon.api("GET", "/system/check")
    assert status == 200 and report["Summary"]["Ok"] is False
    assert {f["Subject"] for f in about(report, "no network or container owns")} == {
        f"device {host_end}",
        f"device {peer}",
    }

    status, report = own_daemon.api("POST", "/system/check?repair=1")
    assert status == 200
    assert report["Summary"]["Ok"] is True, report
    assert host_end not in own_daemon.links() and peer not in own_daemon.links()
    assert_clean(own_daemon)


def test_stray_rules_in_the_daemons_table_are_written_away(own_daemon: Daemon) -> None:
    own_daemon.cli(
        "run", "-d", "--name", "web", "-p", "127.0.0.1::80", IMAGE, "sleep", "1000", check=True
    )
    before = own_daemon.nft_ruleset()
    table = own_daemon.nft_table
    subprocess.run(
        ["nft", "add", "rule", "ip", table, "forward", "iifname", "eth9", "accept"], check=True
    )
    subprocess.run(
        ["nft", "add", "element", "ip", table, "tcp_any", "{ 9999 : 10.0.0.5 . 80 }"], check=True
    )

    code, report = check(own_daemon)
    assert code == 1
    found = about(report, f"nftables table ip {table}")
    messages = " | ".join(f["Message"] for f in found)
    assert 'iifname "eth9" accept' in messages
    assert "map tcp_any" in messages and "9999" in messages

    code, report = check(own_daemon, "--repair")
    assert code == 0, report
    assert own_daemon.nft_ruleset() == before
    assert_clean(own_daemon)


def test_a_running_container_the_runtime_lost_is_stopped_and_can_be_removed(
    own_daemon: Daemon,
) -> None:
    own_daemon.cli("run", "-d", "--name", "lost", IMAGE, "sleep", "1000", check=True)
    cid = container_id(own_daemon, "lost")
    shutil.rmtree(own_daemon.exec_root / "runtime" / "runc" / cid)

    code, report = check(own_daemon)
    assert code == 1
    [finding] = about(report, "has no state for it")
    assert finding["Subject"] == f"container lost ({cid[:12]})"

    code, report = check(own_daemon, "--repair")
    assert "recorded as exited (137)" in about(report, "has no state for it")[0]["Repaired"]
    state = json.loads(own_daemon.cli("inspect", "lost", check=True).stdout)[0]["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 137
    assert_clean(own_daemon)
    own_daemon.cli("rm", "lost", check=True)
    assert own_daemon.leftovers()["monitors"] == []


@pytest.fixture
def plugin_daemon(busybox_tar: Path) -> Iterator[PluginDaemon]:
    d = PluginDaemon()
    d.start_with()
    d.cli("import", str(busybox_tar), IMAGE, check=True)
    yield d
    d.cleanup()


def test_a_stopped_volume_plugin_is_reported_with_what_needs_it(
    plugin_daemon: PluginDaemon,
) -> None:
    volumes = DirectoryVolumes(str(plugin_daemon.base / "bare-volumes"))
    socket = plugin_daemon.sock("bare")
    with BarePlugin(["VolumeDriver"], volumes.replies()).serve_unix(socket):
        plugin_daemon.cli("volume", "create", "-d", "bare", "shared", check=True)
        assert_clean(plugin_daemon)
    # the plugin process is gone; its socket file is left, refusing connections

    code, report = check(plugin_daemon)
    assert code == 1
    [finding] = about(report, "plugin bare")
    assert finding["Severity"] == "error"
    assert "does not answer" in finding["Message"] and "volume shared" in finding["Message"]
    assert finding["Repair"] == ""  # starting a plugin is its owner's business

    code, report = check(plugin_daemon, "--repair")
    assert code == 1  # still a problem, and said so
    assert about(report, "plugin bare")[0]["Repaired"] == ""

    with BarePlugin(["VolumeDriver"], volumes.replies()).serve_unix(socket):
        assert_clean(plugin_daemon)
        assert os.path.exists(socket)


def test_leftovers_under_the_daemons_own_names_are_reported_and_repaired(
    own_daemon: Daemon,
) -> None:
    """With a container running: a committed image's config blob deleted, a mount on an
    idle volume's data, an empty cgroup and a cgroup with a process in it, all under
    this daemon's own data root and cgroup parent. Each is reported in words;
    --repair fixes what it can and leaves the running process alone (it may be
    someone's); the running container is untouched throughout."""
    own_daemon.cli("run", "-d", "--name", "web", IMAGE, "sleep", "1000", check=True)
    web = container_id(own_daemon, "web")
    own_daemon.cli("commit", "web", "demo/committed:1", check=True)
    committed = own_daemon.cli("inspect", "-f", "{{.Id}}", "demo/committed:1", check=True)
    committed_id = committed.stdout.strip()
    blobs = own_daemon.data_root / "content" / "blobs" / "sha256"
    (blobs / committed_id.removeprefix("sha256:")).unlink()

    own_daemon.cli("volume", "create", "idle-data", check=True)
    volume = own_daemon.cli("volume", "inspect", "-f", "{{.Mountpoint}}", "idle-data", check=True)
    mount_point = Path(volume.stdout.strip())  # no container holds the volume
    subprocess.run(["mount", "-t", "tmpfs", "leftover", str(mount_point)], check=True)
    hierarchy = Path("/sys/fs/cgroup/pids") / own_daemon.cgroup_parent
    assert hierarchy.is_dir()  # the running container's cgroup is below it
    empty, busy = hierarchy / ("e" * 64), hierarchy / ("b" * 64)
    empty.mkdir()
    busy.mkdir()
    stranger = subprocess.Popen(["sleep", "1000"])
    try:
        (busy / "cgroup.procs").write_text(str(stranger.pid))

        result = own_daemon.cli("system", "check")
        assert result.returncode == 1
        assert "demo/committed:1" in result.stdout and "config is missing" in result.stdout
        code, report = check(own_daemon)
        assert code == 1
        [image] = about(report, "its config is missing")
        assert "no container uses it" in image["Message"]
        [mounted] = about(report, f"mount {mount_point}")
        assert "volume idle-data, which no container has mounted" in mounted["Message"]
        assert mounted["Repair"] == "unmount it"
        [idle] = about(report, f"/{own_daemon.cgroup_parent}/{'e' * 64}")
        assert "an empty cgroup" in idle["Message"] and idle["Repair"] == "remove it"
        [running] = about(report, f"/{own_daemon.cgroup_parent}/{'b' * 64}")
        assert running["Severity"] == "error"
        assert f"pids {stranger.pid}" in running["Message"] and running["Repair"] == ""

        code, report = check(own_daemon, "--repair")
        assert code == 1  # the cgroup with a process in it is still there, and said so
        assert "forgot the image record" in about(report, "its config is missing")[0]["Repaired"]
        assert about(report, f"mount {mount_point}")[0]["Repaired"] == "unmounted it"
        assert about(report, f"/{'e' * 64}")[0]["Repaired"] == "removed it"
        assert stranger.poll() is None and busy.is_dir()
        assert str(mount_point) not in Path("/proc/self/mounts").read_text()
        assert not empty.exists()
        assert own_daemon.cli("image", "inspect", "demo/committed:1").returncode != 0
    finally:
        stranger.kill()
        stranger.wait()
    for _ in range(100):  # the killed process leaves its cgroup a moment later
        try:
            busy.rmdir()
            break
        except OSError:
            time.sleep(0.05)

    code, report = check(own_daemon)
    assert code == 0 and problems(report) == [], json.dumps(report, indent=1)
    status, report = own_daemon.api("GET", "/system/check")
    assert status == 200 and report["Summary"]["Ok"] is True
    state = json.loads(own_daemon.cli("inspect", "web", check=True).stdout)[0]["State"]
    assert state["Running"] and state["Pid"] > 0, state
    assert container_id(own_daemon, "web") == web


def test_an_operation_no_restore_settled_is_reported_until_a_restart_settles_it(
    own_daemon: Daemon,
) -> None:
    """An intent in the journal older than the daemon is an operation a crash cut short
    and restore left open (planted here while the daemon runs, as a restore that failed
    half way would leave it); the next start-up settles it."""
    own_daemon.cli("run", "-d", "--name", "web", IMAGE, "sleep", "1000", check=True)
    web = container_id(own_daemon, "web")
    assert_clean(own_daemon)
    db = sqlite3.connect(own_daemon.data_root / "dockyard.db")
    with db:
        db.execute(
            "INSERT INTO container_intents(id, container_id, action, detail, started) "
            "VALUES (?,?,?,?,?)",
            ("a" * 32, web, "restart", "{}", time.time() - 3600),
        )
    db.close()

    code, report = check(own_daemon)
    assert code == 1
    [finding] = about(report, "was never settled")
    assert finding["Subject"] == f"container web ({web[:12]})"
    assert finding["Message"].startswith("a restart begun at ")
    assert "Restart the daemon" in finding["Message"] and finding["Repair"] == ""

    own_daemon.stop()
    own_daemon.start()
    code, report = check(own_daemon)
    assert about(report, "was never settled") == [] and problems(report) == [], report
    assert code == 0
