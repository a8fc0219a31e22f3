"""Volumes, bind mounts and tmpfs: real mounts under each test daemon's data root."""

from __future__ import annotations

import io
import json
import os
import secrets
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker.types import Mount

from tests.harness import Daemon

IMAGE = "demo/busybox:1"
SEEDED = "demo/seeded:1"  # busybox plus /data/seed.txt, with VOLUME /data


@pytest.fixture(scope="session")
def seeded_image(daemon: Daemon, busybox_tar: Path) -> str:
    """An image whose VOLUME /data has content, made with `dockyard import`."""
    out = busybox_tar.parent / "seeded.tar"
    with tarfile.open(busybox_tar) as src, tarfile.open(out, "w") as dst:
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        directory = tarfile.TarInfo("data")
        directory.type, directory.mode = tarfile.DIRTYPE, 0o755
        dst.addfile(directory)
        content = b"from the image\n"
        seed = tarfile.TarInfo("data/seed.txt")
        seed.size, seed.uid, seed.gid, seed.mode = len(content), 1000, 1000, 0o640
        dst.addfile(seed, io.BytesIO(content))
    daemon.cli("import", "-c", "VOLUME /data", str(out), SEEDED, check=True)
    return SEEDED


def volume_path(daemon: Daemon, name: str) -> Path:
    return daemon.data_root / "volumes" / name / "_data"


def is_mounted(path: Path) -> bool:
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return str(path) in points


def inspect(daemon: Daemon, name: str) -> dict:
    return json.loads(daemon.cli("inspect", name, check=True).stdout)[0]


def volume_names(daemon: Daemon) -> set[str]:
    return set(daemon.cli("volume", "ls", "-q", check=True).stdout.split())


# -- named volumes, read-only, and the walkthrough -----------------------


def test_data_written_through_a_volume_is_read_by_a_later_container(
    daemon: Daemon, name: str
) -> None:
    daemon.cli("volume", "create", "--label", "team=a", name, check=True)
    for _ in range(2):
        daemon.cli(
            "run", "--rm", "-v", f"{name}:/var/lib/app", IMAGE,
            "sh", "-c", "echo 1 >> /var/lib/app/log",
            check=True,
        )  # fmt: skip
    result = daemon.cli(
        "run", "--rm", "--mount", f"type=volume,src={name},dst=/d,readonly", IMAGE, "cat", "/d/log"
    )
    assert (result.returncode, result.stdout) == (0, "1\n1\n")
    refused = daemon.cli(
        "run", "--rm", "--mount", f"type=volume,src={name},dst=/d,readonly", IMAGE,
        "sh", "-c", "echo x > /d/log",
    )  # fmt: skip
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr
    assert volume_path(daemon, name).joinpath("log").read_text() == "1\n1\n"
    info = json.loads(daemon.cli("volume", "inspect", name, check=True).stdout)[0]
    assert info["Labels"] == {"team": "a"} and info["Driver"] == "local"
    assert info["Mountpoint"] == str(volume_path(daemon, name)) and info["Scope"] == "local"
    daemon.cli("volume", "rm", name, check=True)
    assert not volume_path(daemon, name).parent.exists()


def test_docker_cli_volume_lifecycle_filters_and_in_use_refusal(daemon: Daemon, name: str) -> None:
    other = name + "-other"
    assert daemon.docker("volume", "create", "--label", "tier=db", name).stdout == f"{name}\n"
    # The same name and driver again is the same volume (idempotent).
    assert daemon.docker("volume", "create", name).returncode == 0
    daemon.docker("volume", "create", other)
    daemon.docker("run", "-d", "--name", name, "-v", f"{name}:/d", IMAGE, "sleep", "60")
    try:
        ls = daemon.docker("volume", "ls", "-q", "--filter", "dangling=true").stdout.split()
        assert other in ls and name not in ls
        ls = daemon.docker("volume", "ls", "-q", "--filter", "dangling=false").stdout.split()
        assert name in ls and other not in ls
        assert daemon.docker("volume", "ls", "-q", "-f", "label=tier=db").stdout.split() == [name]
        assert set(daemon.docker("volume", "ls", "-q", "-f", f"name={name}").stdout.split()) == {
            name,
            other,
        }
        assert name in daemon.docker("volume", "ls", "-q", "-f", "driver=local").stdout.split()
        container_id = daemon.docker("inspect", "-f", "{{.Id}}", name).stdout.strip()
        refused = daemon.docker("volume", "rm", name)
        assert refused.returncode == 1
        assert f"remove {name}: volume is in use - [{container_id}]" in refused.stderr
        assert (
            daemon.api("DELETE", f"/v1.45/volumes/{name}?force=1")[0] == 409
        )  # force does not take a volume from a container
    finally:
        daemon.docker("rm", "-f", name)
    assert daemon.docker("volume", "rm", name, other).returncode == 0
    assert not {name, other} & volume_names(daemon)


def test_unknown_volumes_are_404(daemon: Daemon) -> None:
    for method in ("GET", "DELETE"):
        status, body = daemon.api(method, "/v1.45/volumes/no-such-volume")
        assert (status, body["message"]) == (404, "get no-such-volume: no such volume")
    assert daemon.api("DELETE", "/v1.45/volumes/no-such-volume?force=1")[0] == 204
    result = daemon.cli("volume", "inspect", "no-such-volume")
    assert result.returncode == 1 and "no such volume" in result.stderr


@pytest.mark.parametrize(
    ("host_config", "message"),
    [
        ({"Binds": ["a:b:c:d"]}, "invalid volume specification: 'a:b:c:d'"),
        (
            {"Binds": ["/tmp:relative"]},
            "invalid volume specification: '/tmp:relative': invalid mount config for type "
            "\"bind\": invalid mount path: 'relative' mount path must be absolute",
        ),
        ({"Binds": ["/tmp:/x:sideways"]}, "invalid mode: sideways"),
        ({"Binds": ["/tmp:/x", "/var:/x"]}, "Duplicate mount point: /x"),
        (
            {"Mounts": [{"Type": "nfs", "Target": "/x"}]},
            'invalid mount config for type "nfs": mount type unknown',
        ),
        (
            {"Mounts": [{"Type": "bind", "Source": "/no/such/dir", "Target": "/x"}]},
            'invalid mount config for type "bind": bind source path does not exist: /no/such/dir',
        ),
        ({"Tmpfs": {"/t": "size=1m,colour=blue"}}, 'invalid tmpfs option ["colour" "blue"]'),
        ({"VolumesFrom": ["no-such-container"]}, "No such container: no-such-container"),
        (
            {"Binds": ["x:/x"]},
            "create x: volume name is too short, names should be at least two alphanumeric"
            " characters",
        ),
    ],
)
def test_invalid_mount_specs_are_400_with_dockers_messages(
    daemon: Daemon, host_config: dict, message: str
) -> None:
    before = volume_names(daemon)
    status, body = daemon.api(
        "POST",
        "/v1.45/containers/create",
        {"Image": IMAGE, "Cmd": ["true"], "HostConfig": host_config},
    )
    assert (status, body["message"]) == (400, message)
    assert volume_names(daemon) == before  # nothing half-created


def test_a_refused_create_leaves_no_volume_behind(daemon: Daemon, name: str) -> None:
    daemon.cli("create", "--name", name, IMAGE, "true", check=True)
    try:
        before = volume_names(daemon)
        result = daemon.cli(
            "create", "--name", name, "-v", "/anon", "-v", f"{name}x:/n", IMAGE, "true"
        )
        assert result.returncode == 125 and "is already in use" in result.stderr
        assert volume_names(daemon) == before
    finally:
        daemon.cli("rm", name, check=True)


def test_unknown_volume_driver_is_404(daemon: Daemon, name: str) -> None:
    # within 2 s, in Docker's words, then where the lookup looked
    status, body = daemon.api("POST", "/v1.45/volumes/create", {"Name": name, "Driver": "nope"})
    assert status == 404
    assert body["message"].startswith(
        f'create {name}: error looking up volume plugin nope: plugin "nope" not found ('
    )
    assert name not in volume_names(daemon)


# -- anonymous volumes, copy-up, --rm and rm -v ---------------------------------


def test_copy_up_fills_a_new_volume_once_and_never_over_existing_data(
    daemon: Daemon, seeded_image: str, name: str
) -> None:
    # An anonymous volume from the image's VOLUME gets the image's content, owners kept.
    result = daemon.cli("run", "--rm", seeded_image, "sh", "-c", "stat -c '%u %a' /data/seed.txt")
    assert result.stdout == "1000 640\n", result.stderr
    # A new named volume is filled on the first mount...
    daemon.cli(
        "run", "--name", name, "-v", f"{name}:/data", seeded_image,
        "sh", "-c", "cat /data/seed.txt; rm /data/seed.txt; echo mine > /data/own.txt",
        check=True,
    )  # fmt: skip
    assert inspect(daemon, name)["State"]["ExitCode"] == 0
    assert daemon.cli("logs", name).stdout == "from the image\n"
    # ...once: restarting the container does not copy again,
    daemon.cli("start", "-a", name, check=True)
    assert sorted(os.listdir(volume_path(daemon, name))) == ["own.txt"]
    # and a volume with data in it is never copied over by another container.
    result = daemon.cli("run", "--rm", "-v", f"{name}:/data", seeded_image, "ls", "/data")
    assert result.stdout.split() == ["own.txt"]
    daemon.cli("rm", name, check=True)
    # nocopy leaves a new volume empty.
    empty = name + "-nocopy"
    result = daemon.cli("run", "--rm", "-v", f"{empty}:/data:nocopy", seeded_image, "ls", "/data")
    assert (result.returncode, result.stdout) == (0, "")
    daemon.cli("volume", "rm", name, empty, check=True)


def test_rm_removes_anonymous_volumes_and_keeps_named_ones(
    daemon: Daemon, seeded_image: str, name: str
) -> None:
    before = volume_names(daemon)
    daemon.cli(
        "run", "--rm", "-v", f"{name}:/named", "-v", "/anon", seeded_image, "true", check=True
    )
    assert volume_names(daemon) - before == {name}  # /anon and the image's /data are gone

    daemon.cli("create", "--name", name, "-v", "/anon", seeded_image, "true", check=True)
    anonymous = volume_names(daemon) - before - {name}
    assert len(anonymous) == 2
    for volume in anonymous:
        labels = json.loads(daemon.cli("volume", "inspect", volume).stdout)[0]["Labels"]
        assert labels == {"com.docker.volume.anonymous": ""}
    daemon.cli("rm", name, check=True)  # without -v the anonymous volumes stay
    assert anonymous <= volume_names(daemon)
    daemon.cli("volume", "rm", *anonymous, check=True)

    daemon.cli("create", "--name", name, "-v", "/anon", seeded_image, "true", check=True)
    daemon.cli("rm", "-v", name, check=True)
    assert volume_names(daemon) - before == {name}
    daemon.cli("volume", "rm", name, check=True)


def test_prune_takes_anonymous_volumes_unless_all_or_an_old_api(daemon: Daemon, name: str) -> None:
    daemon.cli("volume", "create", name, check=True)
    anonymous = daemon.api("POST", "/v1.45/volumes/create", {})[1]["Name"]
    status, report = daemon.api("POST", "/v1.45/volumes/prune")
    assert status == 200 and anonymous in report["VolumesDeleted"]
    assert name not in report["VolumesDeleted"]
    assert name in volume_names(daemon)
    # API 1.41 clients (before prune became anonymous-only) prune named volumes too.
    status, report = daemon.api("POST", "/v1.41/volumes/prune")
    assert name in report["VolumesDeleted"]
    daemon.cli("volume", "create", name, check=True)
    result = daemon.cli("volume", "prune", "-a", "-f", check=True)
    assert name in result.stdout and name not in volume_names(daemon)


# -- docker-py ---------------------------------------------------------------------


def test_docker_py_volumes_and_mounts(client, daemon: Daemon, tmp_path: Path, name: str) -> None:
    volume = client.volumes.create(name, labels={"via": "docker-py"})
    assert client.volumes.get(name).attrs["Labels"] == {"via": "docker-py"}
    assert name in [v.name for v in client.volumes.list(filters={"label": "via=docker-py"})]
    host = tmp_path / "host"
    host.mkdir()
    (host / "hello").write_text("from the host\n")
    before = volume_names(daemon)
    output = client.containers.run(
        IMAGE,
        "sh -c 'cat /h/hello; echo v > /d/file; touch /h/nope 2>/dev/null || echo ro'",
        volumes={name: {"bind": "/d", "mode": "rw"}, str(host): {"bind": "/h", "mode": "ro"}},
        remove=True,
    )
    assert output == b"from the host\nro\n"
    output = client.containers.run(
        IMAGE,
        "sh -c 'cat /d/file; echo x > /d/file 2>/dev/null || echo refused'",
        volumes={name: {"bind": "/d", "mode": "ro"}},
        remove=True,
    )
    assert output == b"v\nrefused\n"
    # docker-py also lists the bind targets in Config.Volumes: no anonymous volume came of it.
    assert volume_names(daemon) == before
    output = client.containers.run(
        IMAGE,
        "sh -c 'cat /m/file; grep \" /t \" /proc/mounts'",
        mounts=[
            Mount("/m", name, type="volume", read_only=True),
            Mount("/t", None, type="tmpfs", tmpfs_size="2m"),
        ],
        remove=True,
    )
    assert output.startswith(b"v\ntmpfs /t tmpfs ") and b"size=2048k" in output
    volume.remove()
    with pytest.raises(docker.errors.NotFound):
        client.volumes.get(name)
    client.volumes.create(name + "-unused")
    pruned = client.volumes.prune(filters={"all": "true"})
    assert name + "-unused" in pruned["VolumesDeleted"]


# -- bind mounts and tmpfs --------------------------------------------------------


def test_bind_mounts(daemon: Daemon, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("hi")
    result = daemon.docker(
        "run",
        "--rm",
        "-v",
        f"{site}:/www:ro",
        IMAGE,
        "sh",
        "-c",
        "cat /www/index.html; touch /www/x",
    )
    assert result.stdout == "hi" and "Read-only file system" in result.stderr
    # z and Z (SELinux relabelling) are accepted and change nothing here.
    written = daemon.cli(
        "run", "--rm", "-v", f"{site}:/www:z", IMAGE, "sh", "-c", "echo w > /www/w"
    )
    assert written.returncode == 0 and (site / "w").read_text() == "w\n"
    # A missing host path is created for -v ...
    missing = tmp_path / "made" / "by" / "run"
    daemon.cli("run", "--rm", "-v", f"{missing}:/m", IMAGE, "touch", "/m/f", check=True)
    assert (missing / "f").exists()
    # ... and refused for --mount, with docker's message.
    absent = tmp_path / "absent"
    result = daemon.docker(
        "run", "--rm", "--mount", f"type=bind,src={absent},dst=/m", IMAGE, "true"
    )
    assert result.returncode == 125
    assert (
        f'invalid mount config for type "bind": bind source path does not exist: {absent}'
        in result.stderr
    )
    assert not absent.exists()


@pytest.fixture
def shared_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory that is its own shared mount (as / is on a systemd host)."""
    path = tmp_path / "shared"
    path.mkdir()
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    subprocess.run(["mount", "--make-shared", str(path)], check=True)
    yield path
    subprocess.run(["umount", "-R", "-l", str(path)], check=True)


def test_rslave_bind_sees_mounts_made_on_the_host_later(
    daemon: Daemon, shared_dir: Path, tmp_path: Path, name: str
) -> None:
    daemon.cli(
        "run", "-d", "--name", name,
        "--mount", f"type=bind,src={shared_dir},dst=/h,bind-propagation=rslave",
        IMAGE, "sleep", "60",
        check=True,
    )  # fmt: skip
    try:
        later = shared_dir / "later"
        later.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(later)], check=True)
        (later / "seen").write_text("yes")
        result = daemon.cli("exec", name, "cat", "/h/later/seen")
        assert result.stdout == "yes"
        mount = inspect(daemon, name)["Mounts"][0]
        assert (mount["Type"], mount["Propagation"], mount["RW"]) == ("bind", "rslave", True)
    finally:
        daemon.cli("rm", "-f", name)
    # A source that does not propagate still mounts (Podman's choice; Docker refuses): the
    # propagation holds inside the container, and inspect shows what was asked for.
    private = tmp_path / "private"
    private.mkdir()
    (private / "f").write_text("here")
    for propagation in ("rslave", "rshared"):
        result = daemon.cli(
            "run", "--rm", "--mount",
            f"type=bind,src={private},dst=/h,bind-propagation={propagation}",
            IMAGE, "cat", "/h/f",
        )  # fmt: skip
        assert (result.returncode, result.stdout) == (0, "here"), result.stderr


def test_tmpfs_mounts_with_size_and_mode(daemon: Daemon) -> None:
    result = daemon.cli(
        "run", "--rm", "--tmpfs", "/scratch:size=16m,mode=1777", IMAGE,
        "sh", "-c", "grep ' /scratch ' /proc/mounts; stat -c %a /scratch",
    )  # fmt: skip
    fields = result.stdout.split()
    assert fields[:3] == ["tmpfs", "/scratch", "tmpfs"], result.stderr
    assert "size=16384k" in fields[3] and "noexec" in fields[3] and fields[-1] == "1777"
    result = daemon.docker(
        "run", "--rm", "--mount", "type=tmpfs,dst=/t,tmpfs-size=1m", IMAGE,
        "sh", "-c", "grep ' /t ' /proc/mounts",
    )  # fmt: skip
    assert result.stdout.startswith("tmpfs /t tmpfs ") and "size=1024k" in result.stdout


def test_volumes_from_shares_a_containers_volumes(
    daemon: Daemon, seeded_image: str, name: str
) -> None:
    daemon.cli("run", "-d", "--name", name, seeded_image, "sleep", "60", check=True)
    try:
        result = daemon.cli(
            "run", "--rm", "--volumes-from", name, IMAGE,
            "sh", "-c", "cat /data/seed.txt; echo shared > /data/new",
        )  # fmt: skip
        assert result.stdout == "from the image\n", result.stderr
        assert daemon.cli("exec", name, "cat", "/data/new").stdout == "shared\n"
        refused = daemon.docker(
            "run", "--rm", "--volumes-from", f"{name}:ro", IMAGE, "touch", "/data/x"
        )
        assert "Read-only file system" in refused.stderr
        volume = inspect(daemon, name)["Mounts"][0]["Name"]
        # The volume is in use by the source container, so -v on a borrower keeps it.
        assert volume in volume_names(daemon)
    finally:
        daemon.cli("rm", "-f", "-v", name, check=True)
    assert volume not in volume_names(daemon)


def test_mounts_in_inspect_and_in_the_container_list(
    daemon: Daemon, tmp_path: Path, name: str
) -> None:
    daemon.cli(
        "create", "--name", name,
        "-v", f"{tmp_path}:/host:ro",
        "-v", f"{name}:/vol",
        "--mount", "type=tmpfs,dst=/t",
        "--tmpfs", "/scratch",
        IMAGE, "true",
        check=True,
    )  # fmt: skip
    try:
        mounts = {m["Destination"]: m for m in inspect(daemon, name)["Mounts"]}
        assert mounts["/host"] == {
            "Type": "bind",
            "Source": str(tmp_path),
            "Destination": "/host",
            "Mode": "ro",
            "RW": False,
            "Propagation": "rprivate",
        }
        assert mounts["/vol"] == {
            "Type": "volume",
            "Name": name,
            "Source": str(volume_path(daemon, name)),
            "Destination": "/vol",
            "Driver": "local",
            "Mode": "z",
            "RW": True,
            "Propagation": "",
        }
        assert mounts["/t"]["Type"] == "tmpfs"
        assert "/scratch" not in mounts  # --tmpfs shows in HostConfig.Tmpfs only, as in docker
        listed = daemon.api(
            "GET", f"/v1.45/containers/json?all=1&filters=%7B%22name%22%3A%5B%22{name}%22%5D%7D"
        )[1]
        assert {m["Destination"] for m in listed[0]["Mounts"]} == {"/host", "/vol", "/t"}
        by_volume = daemon.cli("ps", "-a", "-q", "--no-trunc", "-f", f"volume={name}").stdout
        assert by_volume.split() == [inspect(daemon, name)["Id"]]
    finally:
        daemon.cli("rm", "-v", name, check=True)
        daemon.cli("volume", "rm", name, check=True)


# -- local driver options, failures, reference counting ---------------------------


def test_local_driver_tmpfs_volume_lives_while_mounted(daemon: Daemon, name: str) -> None:
    daemon.cli(
        "volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=8m", name,
        check=True,
    )  # fmt: skip
    result = daemon.cli(
        "run", "--rm", "-v", f"{name}:/s", IMAGE, "sh", "-c", "df -k /s; touch /s/f"
    )
    assert result.stdout.splitlines()[1].split()[1] == "8192", result.stdout
    assert not is_mounted(volume_path(daemon, name))  # unmounted with its last user
    options = json.loads(daemon.cli("volume", "inspect", name).stdout)[0]["Options"]
    assert options == {"type": "tmpfs", "device": "tmpfs", "o": "size=8m"}
    daemon.cli("volume", "rm", name, check=True)


def test_a_mount_failing_at_start_leaves_nothing_mounted(own_daemon: Daemon) -> None:
    d = own_daemon
    d.cli("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "good", check=True)
    d.cli(
        "volume", "create", "-o", "type=none", "-o", "o=bind", "-o", "device=/no/such/dir", "bad",
        check=True,
    )  # fmt: skip
    result = d.cli("run", "--name", "broken", "-v", "good:/a", "-v", "bad:/b", IMAGE, "true")
    # Docker's wording; its "no such file or directory" makes the CLI exit 127, as docker's.
    assert result.returncode == 127
    assert (
        f"failed to mount local volume: mount /no/such/dir:{volume_path(d, 'bad')}, flags: 0x1000: "
        "no such file or directory" in result.stderr
    )
    state = inspect(d, "broken")["State"]
    assert state["Status"] == "created" and state["Pid"] == 0
    assert d.leftovers()["mounts"] == [] and d.leftovers()["monitors"] == []
    d.cli("rm", "broken", check=True)
    d.cli("volume", "rm", "bad", check=True)
    # Every Mount was paired: the good volume is free again and can be removed.
    d.cli("run", "--rm", "-v", "good:/a", IMAGE, "true", check=True)
    d.cli("volume", "rm", "good", check=True)


def test_mounts_pair_with_unmounts_across_daemon_and_container_crashes(
    own_daemon: Daemon,
) -> None:
    d = own_daemon
    d.cli("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "shared", check=True)
    path = volume_path(d, "shared")
    for ctr in ("one", "two"):
        d.cli("run", "-d", "--name", ctr, "-v", "shared:/s", IMAGE, "sleep", "300", check=True)
    assert is_mounted(path)
    pid_one = inspect(d, "one")["State"]["Pid"]
    d.kill9()
    os.kill(pid_one, 9)  # a container crashes while the daemon is away
    time.sleep(1)
    d.start()
    assert inspect(d, "one")["State"]["Status"] == "exited"
    assert is_mounted(path)  # "two" still holds its reference
    # A container crash with the daemon up releases its reference too.
    os.kill(inspect(d, "two")["State"]["Pid"], 9)
    deadline = time.monotonic() + 20
    while inspect(d, "two")["State"]["Running"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_mounted(path)
    assert not os.listdir(path.parent / "mounts")  # the driver holds no mount ids
    d.cli("rm", "one", "two", check=True)
    d.cli("volume", "rm", "shared", check=True)
    assert d.leftovers()["mounts"] == []


def test_system_df_volume_rows(tmp_path: Path) -> None:
    """The engine's volume rows for `/system/df`: size on disk and reference count."""
    import asyncio

    from dockyard.events.bus import EventBus
    from dockyard.state.db import Database
    from dockyard.volumes.local import LocalDriver
    from dockyard.volumes.mounts import MountPoint
    from dockyard.volumes.service import VolumeService

    service = VolumeService(
        Database(str(tmp_path / "db")), [LocalDriver(str(tmp_path / "volumes"))], EventBus()
    )

    async def scenario() -> None:
        used = await service.create("used")
        await service.create("idle")
        Path(used.mountpoint, "blob").write_bytes(secrets.token_bytes(5000))
        service.container_mounts = lambda: {
            "c1": [MountPoint(type="volume", destination="/d", name="used")]
        }
        rows = {row.volume.name: (row.size, row.ref_count) for row in await service.usage()}
        assert rows == {"used": (5000, 1), "idle": (0, 0)}

    asyncio.run(scenario())


def test_an_image_volume_is_only_ever_a_destination(daemon: Daemon, busybox_tar: Path) -> None:
    """An image's `VOLUME "/:/host"` names a directory, never a bind of the host's root."""
    result = daemon.cli(
        "import", "--change", 'VOLUME ["/:/host"]', str(busybox_tar), "hostile/volume:1"
    )
    assert result.returncode == 0, result.stderr
    try:
        inside = daemon.cli(
            "run", "--rm", "hostile/volume:1", "sh", "-c", "ls /host 2>&1; ls -d '/:/host'"
        )
        assert inside.returncode == 0, inside.stderr
        assert "No such file or directory" in inside.stdout  # no /host at all
        assert "/:/host" in inside.stdout  # the literal path is the anonymous volume
    finally:
        daemon.cli("rmi", "hostile/volume:1")


def test_a_volume_subpath_mounts_one_directory_and_never_leads_out(
    daemon: Daemon, name: str
) -> None:
    volume = f"{name}-v"
    # Fill the volume: a directory, and a link planted to lead to the host's root.
    daemon.cli(
        "run", "--rm", "-v", f"{volume}:/v", IMAGE,
        "sh", "-c", "mkdir -p /v/sub && echo inside > /v/sub/f && ln -s / /v/escape",
        check=True,
    )  # fmt: skip
    try:
        result = daemon.docker(
            "run", "--rm", "--mount", f"type=volume,src={volume},dst=/d,volume-subpath=sub",
            IMAGE, "sh", "-c", "cat /d/f; ls /d",
        )  # fmt: skip
        assert (result.returncode, result.stdout) == (0, "inside\nf\n"), result.stderr
        # Through the planted link the path resolves inside the volume: no /etc there.
        escaped = daemon.docker(
            "run", "--rm", "--mount",
            f"type=volume,src={volume},dst=/d,volume-subpath=escape/etc",
            IMAGE, "ls", "/d",
        )  # fmt: skip
        assert escaped.returncode != 0
        assert "cannot access path escape/etc" in escaped.stderr
        assert "passwd" not in escaped.stdout
        missing = daemon.docker(
            "run", "--rm", "--mount", f"type=volume,src={volume},dst=/d,volume-subpath=nope",
            IMAGE, "true",
        )  # fmt: skip
        assert missing.returncode != 0 and "cannot access path nope" in missing.stderr
        # The staging mounts are gone once the containers have started or failed.
        mounts = Path("/proc/self/mountinfo").read_text()
        assert str(daemon.exec_root / "subpaths") not in mounts
    finally:
        daemon.cli("volume", "rm", "-f", volume)
