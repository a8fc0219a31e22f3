"""The archive API: `docker cp` both ways, `docker export`, docker-py's get/put_archive.

Running and stopped containers, volumes, bind mounts and tmpfs, `/.` forms,
`-a`, Docker's errors, and hostile input: archives with `..`, absolute names,
links out and device nodes, and containers whose symlinks point at `/`. A
sentinel directory on the host, next to the daemon's data root, must stay
untouched throughout.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.harness import Daemon

IMAGE = "demo/busybox:1"
DIR_BIT = 1 << 31
SYMLINK_BIT = 1 << 27


# -- helpers -------------------------------------------------------------------------


def running(daemon: Daemon, name: str, *flags: str) -> str:
    """A running container that sleeps; returns its name."""
    daemon.cli("run", "-d", "--name", name, *flags, IMAGE, "sleep", "1000", check=True)
    return name


def created(daemon: Daemon, name: str, *flags: str, command: tuple[str, ...] = ("true",)) -> str:
    daemon.cli("create", "--name", name, *flags, IMAGE, *command, check=True)
    return name


def sh(daemon: Daemon, name: str, script: str) -> str:
    """Run a shell script in a running container; its output."""
    result = daemon.docker("exec", name, "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    return result.stdout


def cp(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return daemon.docker("cp", *args)


def tar_bytes(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def entry(name: str, kind: bytes = tarfile.REGTYPE, **attrs: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = 1_600_000_000
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def get_archive(client: docker.DockerClient, name: str, path: str) -> tuple[bytes, dict]:
    stream, found = client.api.get_archive(name, path)
    return b"".join(stream), found


def merged_dir(daemon: Daemon, client: docker.DockerClient, name: str) -> str:
    container_id = client.api.inspect_container(name)["Id"]
    return str(daemon.data_root / "containers" / container_id / "rootfs" / "merged")


def mounted(path: str) -> bool:
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return path in points


def unmounted_soon(path: str) -> bool:
    """The client may finish reading before the daemon has cleaned up behind it."""
    for _ in range(200):
        if not mounted(path):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(autouse=True)
def _leave_no_container(daemon: Daemon) -> Iterator[None]:
    """Each test removes what it made: the daemon is shared with later test files."""
    before = set(daemon.cli("ps", "-aq", "--no-trunc").stdout.split())
    yield
    made = set(daemon.cli("ps", "-aq", "--no-trunc").stdout.split()) - before
    if made:
        daemon.cli("rm", "-f", "-v", *made)


@pytest.fixture
def sentinel(daemon: Daemon) -> Iterator[Path]:
    """A directory on the host beside the daemon's data root; hostile input aims at it."""
    path = daemon.base / "sentinel"
    path.mkdir(exist_ok=True)
    (path / "secret").write_text("host secret\n")
    before = sorted(p.name for p in path.iterdir())
    yield path
    assert sorted(p.name for p in path.iterdir()) == before
    assert (path / "secret").read_text() == "host secret\n"
    assert (path / "secret").stat().st_nlink == 1


# -- docker cp out of a container -------------------------------------------------------


def test_docker_cp_copies_a_file_out_of_a_running_container(
    daemon: Daemon, name: str, tmp_path: Path
) -> None:
    running(daemon, name)
    sh(daemon, name, "printf 'hello\\n' > /tmp/f && chmod 640 /tmp/f")
    result = cp(daemon, f"{name}:/tmp/f", str(tmp_path / "copy"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "copy").read_text() == "hello\n"
    assert stat.S_IMODE((tmp_path / "copy").stat().st_mode) == 0o640
    # Into an existing directory: under the source's name.
    assert cp(daemon, f"{name}:/tmp/f", str(tmp_path)).returncode == 0
    assert (tmp_path / "f").read_text() == "hello\n"
    # The container's own /etc/hosts (a bind mount of the container), not the host's.
    assert cp(daemon, f"{name}:/etc/hosts", str(tmp_path / "hosts")).returncode == 0
    hostname = json.loads(daemon.cli("inspect", name, check=True).stdout)[0]["Config"]["Hostname"]
    assert hostname in (tmp_path / "hosts").read_text()
    assert (tmp_path / "hosts").read_text() == sh(daemon, name, "cat /etc/hosts")


def test_docker_cp_directory_forms(daemon: Daemon, name: str, tmp_path: Path) -> None:
    running(daemon, name)
    sh(daemon, name, "mkdir -p /src/sub && echo a > /src/a && echo b > /src/sub/b")
    # DIR to a new name: the copy takes that name.
    assert cp(daemon, f"{name}:/src", str(tmp_path / "new")).returncode == 0
    assert (tmp_path / "new" / "a").read_text() == "a\n"
    assert (tmp_path / "new" / "sub" / "b").read_text() == "b\n"
    # DIR into an existing directory: a subdirectory of that name.
    (tmp_path / "existing").mkdir()
    assert cp(daemon, f"{name}:/src", str(tmp_path / "existing")).returncode == 0
    assert (tmp_path / "existing" / "src" / "a").read_text() == "a\n"
    # DIR/. into an existing directory: its contents.
    (tmp_path / "contents").mkdir()
    assert cp(daemon, f"{name}:/src/.", str(tmp_path / "contents")).returncode == 0
    assert sorted(os.listdir(tmp_path / "contents")) == ["a", "sub"]
    # DIR/ (trailing slash) behaves as DIR.
    assert cp(daemon, f"{name}:/src/", str(tmp_path / "slash")).returncode == 0
    assert (tmp_path / "slash" / "sub" / "b").read_text() == "b\n"
    # A file asserted to be a directory is refused by the daemon.
    result = cp(daemon, f"{name}:/src/a/", str(tmp_path / "nope"))
    assert result.returncode != 0
    assert "not a directory" in result.stderr
    # A directory onto an existing file is refused by the client.
    (tmp_path / "file").write_text("x")
    result = cp(daemon, f"{name}:/src", str(tmp_path / "file"))
    assert result.returncode != 0
    assert "cannot copy directory" in result.stderr


def test_docker_cp_to_stdout_is_the_archive(daemon: Daemon, name: str) -> None:
    running(daemon, name)
    sh(daemon, name, "mkdir /d && echo x > /d/x && ln -s x /d/link")
    result = subprocess.run(
        ["docker", "cp", f"{name}:/d", "-"],
        env={**os.environ, "DOCKER_HOST": daemon.host},
        capture_output=True,
    )
    assert result.returncode == 0, result.stderr
    found = members(result.stdout)
    assert list(found) == ["d", "d/link", "d/x"]
    assert found["d"].isdir() and found["d/link"].issym() and found["d/link"].linkname == "x"
    assert found["d/x"].uname == "" and found["d/x"].gname == ""


def test_docker_cp_from_a_stopped_container_and_its_volume(
    daemon: Daemon, client: docker.DockerClient, name: str, tmp_path: Path
) -> None:
    volume = f"{name}-vol"
    daemon.cli(
        "run",
        "--name",
        name,
        "-v",
        f"{volume}:/vol",
        IMAGE,
        "sh",
        "-c",
        "echo rootfs > /in-rootfs && echo volume > /vol/in-volume",
        check=True,
    )
    merged = merged_dir(daemon, client, name)
    assert not mounted(merged)
    assert cp(daemon, f"{name}:/in-rootfs", str(tmp_path / "a")).returncode == 0
    assert cp(daemon, f"{name}:/vol/in-volume", str(tmp_path / "b")).returncode == 0
    assert (tmp_path / "a").read_text() == "rootfs\n"
    assert (tmp_path / "b").read_text() == "volume\n"
    # Its /etc/hostname is the container's, as it saw it while it ran.
    assert cp(daemon, f"{name}:/etc/hostname", str(tmp_path / "h")).returncode == 0
    hostname = client.api.inspect_container(name)["Config"]["Hostname"]
    assert (tmp_path / "h").read_text() == hostname + "\n"
    # What the copy mounted is gone again, volumes included.
    assert unmounted_soon(merged)
    assert not [m for m in daemon.leftovers()["mounts"] if name in m or volume in m]
    client.api.remove_container(name)
    client.api.remove_volume(volume)


# -- docker cp into a container ---------------------------------------------------------


def test_docker_cp_into_a_running_container(daemon: Daemon, name: str, tmp_path: Path) -> None:
    running(daemon, name)
    (tmp_path / "f.txt").write_text("file\n")
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "t").write_text("t\n")
    (tmp_path / "tree" / "sub" / "s").write_text("s\n")
    os.chown(tmp_path / "f.txt", 1111, 2222)
    assert cp(daemon, str(tmp_path / "f.txt"), f"{name}:/tmp").returncode == 0
    assert cp(daemon, str(tmp_path / "f.txt"), f"{name}:/tmp/renamed").returncode == 0
    assert cp(daemon, str(tmp_path / "tree"), f"{name}:/newtree").returncode == 0
    assert cp(daemon, str(tmp_path / "tree"), f"{name}:/tmp").returncode == 0
    sh(daemon, name, "mkdir /contents")
    assert cp(daemon, str(tmp_path / "tree") + "/.", f"{name}:/contents").returncode == 0
    out = sh(
        daemon,
        name,
        "cat /tmp/f.txt /tmp/renamed /newtree/t /newtree/sub/s /tmp/tree/t; ls /contents; "
        "stat -c '%u:%g' /tmp/f.txt",
    )
    assert out.split() == ["file", "file", "t", "s", "t", "sub", "t", "1111:2222"]
    # Into a directory that does not exist (and whose parent does not either).
    result = cp(daemon, str(tmp_path / "f.txt"), f"{name}:/no/such/dir/")
    assert result.returncode != 0
    assert "Could not find the file" in result.stderr or "no such directory" in result.stderr


def test_docker_cp_into_a_stopped_container_volume_and_bind_mount(
    daemon: Daemon, name: str, tmp_path: Path
) -> None:
    bind = tmp_path / "bind"
    bind.mkdir()
    volume = f"{name}-vol"
    created(
        daemon,
        name,
        "-v",
        f"{volume}:/vol",
        "-v",
        f"{bind}:/bind",
        command=("sh", "-c", "cat /vol/v /bind/b /rootfs-file"),
    )
    (tmp_path / "v").write_text("into the volume\n")
    (tmp_path / "b").write_text("into the bind mount\n")
    (tmp_path / "rootfs-file").write_text("into the rootfs\n")
    assert cp(daemon, str(tmp_path / "v"), f"{name}:/vol/v").returncode == 0
    assert cp(daemon, str(tmp_path / "b"), f"{name}:/bind/").returncode == 0
    assert cp(daemon, str(tmp_path / "rootfs-file"), f"{name}:/").returncode == 0
    assert (bind / "b").read_text() == "into the bind mount\n"
    assert (daemon.data_root / "volumes" / volume / "_data" / "v").exists()
    result = daemon.docker("start", "-a", name)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "into the volume\ninto the bind mount\ninto the rootfs\n"
    daemon.cli("rm", name, check=True)
    daemon.cli("volume", "rm", volume, check=True)


def test_docker_cp_into_a_running_containers_tmpfs_and_volume(
    daemon: Daemon, name: str, tmp_path: Path
) -> None:
    running(daemon, name, "--tmpfs", "/scratch", "-v", "/anon")
    (tmp_path / "f").write_text("seen by the container\n")
    assert cp(daemon, str(tmp_path / "f"), f"{name}:/scratch/").returncode == 0
    assert cp(daemon, str(tmp_path / "f"), f"{name}:/anon/").returncode == 0
    assert sh(daemon, name, "cat /scratch/f /anon/f") == "seen by the container\n" * 2
    result = cp(daemon, f"{name}:/scratch/f", str(tmp_path / "back"))
    assert result.returncode == 0
    assert (tmp_path / "back").read_text() == "seen by the container\n"


def test_docker_cp_archive_mode_chowns_to_the_containers_user(
    daemon: Daemon, name: str, tmp_path: Path
) -> None:
    running(daemon, name, "--user", "app")
    (tmp_path / "plain").write_text("x")
    (tmp_path / "archived").write_text("x")
    os.chown(tmp_path / "plain", 1111, 2222)
    os.chown(tmp_path / "archived", 1111, 2222)
    assert cp(daemon, str(tmp_path / "plain"), f"{name}:/tmp/").returncode == 0
    assert cp(daemon, "-a", str(tmp_path / "archived"), f"{name}:/tmp/").returncode == 0
    owners = sh(daemon, name, "stat -c '%n %u:%g' /tmp/plain /tmp/archived").split("\n")
    assert owners[:2] == ["/tmp/plain 1111:2222", "/tmp/archived 1000:1000"]


def test_copy_uid_gid_with_an_unknown_user_is_refused(
    daemon: Daemon, client: docker.DockerClient, name: str
) -> None:
    created(daemon, name, "--user", "ghost:nogroup")
    status, body = daemon.api(
        "PUT",
        f"/containers/{name}/archive?path=/tmp&copyUIDGID=1",
        tar_bytes((entry("f"), b"x")),
        {"Content-Type": "application/x-tar"},
    )
    assert status == 400
    assert body["message"] == (
        'failed to look up user "ghost" in container: unable to find user ghost: '
        "no matching entries in passwd file"
    )


# -- export ----------------------------------------------------------------------------------


def test_docker_export_is_the_root_filesystem_without_volumes(
    daemon: Daemon, client: docker.DockerClient, name: str, tmp_path: Path
) -> None:
    running(daemon, name, "-v", "/vol")
    sh(daemon, name, "echo mine > /etc/added && echo vol > /vol/in-volume")
    out = tmp_path / "export.tar"
    result = daemon.docker("export", "-o", str(out), name)
    assert result.returncode == 0, result.stderr
    found = members(out.read_bytes())
    assert "bin/busybox" in found and found["bin/sh"].issym()
    assert found["etc/added"].isfile()
    assert "vol/in-volume" not in found
    assert not [n for n in found if n.startswith(("proc/", "sys/"))]
    # Stopped: the same, from a temporarily mounted rootfs that is unmounted afterwards.
    daemon.cli("stop", "-t", "0", name, check=True)
    exported = b"".join(client.containers.get(name).export())
    assert "etc/added" in members(exported)
    assert unmounted_soon(merged_dir(daemon, client, name))
    # Our CLI.
    assert daemon.cli("export", "-o", str(tmp_path / "cli.tar"), name).returncode == 0
    assert "etc/added" in members((tmp_path / "cli.tar").read_bytes())


# -- docker-py -------------------------------------------------------------------------------


def test_docker_py_put_and_get_archive_and_stat(
    daemon: Daemon, client: docker.DockerClient, name: str
) -> None:
    created(daemon, name, "-v", "/vol1", command=("cat", "/vol1/data.txt"))
    data = b"The Maid and the Pocket Watch of Blood"
    assert client.api.put_archive(name, "/vol1", tar_bytes((entry("data.txt"), data)))
    content, found = get_archive(client, name, "/vol1/data.txt")
    assert found["name"] == "data.txt" and found["size"] == len(data)
    assert found["mode"] == 0o644 and found["linkTarget"] == ""
    assert members(content)["data.txt"].size == len(data)
    client.api.start(name)
    assert client.api.wait(name)["StatusCode"] == 0
    assert client.api.logs(name).strip() == data
    _, found = get_archive(client, name, "/vol1")
    assert found["name"] == "vol1" and found["mode"] & DIR_BIT
    _, found = get_archive(client, name, "/vol1/.")
    assert found["name"] == "."


def test_stat_of_symlinks_resolves_inside_the_container(
    daemon: Daemon, client: docker.DockerClient, name: str, tmp_path: Path
) -> None:
    running(daemon, name)
    sh(
        daemon,
        name,
        "ln -s / /rootlink && echo container-shadow > /etc/shadow && "
        "ln -s /etc/shadow /shadowlink && ln -s ../../../../../../etc /etc/up && "
        "ln -s /nowhere/file /dangling",
    )
    _, found = get_archive(client, name, "/rootlink")
    assert found["mode"] & SYMLINK_BIT and found["linkTarget"] == "/"
    _, found = get_archive(client, name, "/etc/up")
    assert found["linkTarget"] == "/etc"
    _, found = get_archive(client, name, "/dangling")
    assert found["linkTarget"] == "/nowhere/file"
    # The last element is not followed without -L: the archive holds the link itself.
    content, _ = get_archive(client, name, "/shadowlink")
    assert members(content)["shadowlink"].issym()
    # With -L, the container's /etc/shadow, not the host's.
    assert cp(daemon, "-L", f"{name}:/shadowlink", str(tmp_path / "s")).returncode == 0
    assert (tmp_path / "s").read_text() == "container-shadow\n"
    # A trailing slash follows the link: the container's root, not the host's.
    content, found = get_archive(client, name, "/rootlink/")
    assert found["name"] == "rootlink" and found["mode"] & DIR_BIT
    names = members(content)
    assert "rootlink/bin/busybox" in names and "rootlink/etc/shadow" in names
    assert not [n for n in names if n.startswith(("rootlink/proc/", "rootlink/sys/"))]
    assert not any(str(daemon.base).lstrip("/") in n for n in names)
    # Writes through it land in the container.
    (tmp_path / "through").write_text("x")
    assert cp(daemon, str(tmp_path / "through"), f"{name}:/rootlink/tmp/").returncode == 0
    assert sh(daemon, name, "cat /tmp/through") == "x"


# -- Docker's errors ------------------------------------------------------------------------


def test_missing_paths_and_containers(daemon: Daemon, name: str) -> None:
    running(daemon, name)
    status, body = daemon.api("GET", f"/containers/{name}/archive?path=/nope")
    assert (status, body["message"]) == (404, f"Could not find the file /nope in container {name}")
    status, _ = daemon.api("HEAD", f"/containers/{name}/archive?path=/nope")
    assert status == 404
    status, body = daemon.api(
        "PUT", f"/containers/{name}/archive?path=/nope", tar_bytes((entry("f"), b"x"))
    )
    assert (status, body["message"]) == (404, f"Could not find the file /nope in container {name}")
    status, body = daemon.api(
        "PUT", f"/containers/{name}/archive?path=/etc/passwd", tar_bytes((entry("f"), b"x"))
    )
    assert (status, body["message"]) == (400, "extraction point is not a directory")
    status, body = daemon.api("GET", f"/containers/{name}/archive")
    assert (status, body["message"]) == (400, "bad parameter: path cannot be empty")
    long_name = "/tmp/" + "a" * 300  # no file system has a name this long
    for method in ("HEAD", "GET"):
        status, _ = daemon.api(method, f"/containers/{name}/archive?path={long_name}")
        assert status == 400, method
    status, body = daemon.api("GET", "/containers/no-such-container/archive?path=/")
    assert (status, body["message"]) == (404, "No such container: no-such-container")
    status, body = daemon.api("GET", "/containers/no-such-container/export")
    assert status == 404
    result = cp(daemon, f"{name}:/nope", "/tmp/")
    assert result.returncode == 1
    assert f"Could not find the file /nope in container {name}" in result.stderr


def test_read_only_rootfs_and_volume_refuse_writes(
    daemon: Daemon, client: docker.DockerClient, name: str, tmp_path: Path
) -> None:
    bind = tmp_path / "bind"
    bind.mkdir()
    running(daemon, name, "--read-only", "-v", f"{bind}:/ro:ro", "-v", "/rw", "--tmpfs", "/t")
    archive = tar_bytes((entry("f"), b"x"))
    for path, message in (
        ("/tmp", "container rootfs is marked read-only"),
        ("/ro", "mounted volume is marked read-only"),
    ):
        status, body = daemon.api("PUT", f"/containers/{name}/archive?path={path}", archive)
        assert (status, body["message"]) == (403, message)
    assert not (bind / "f").exists()
    result = cp(daemon, str(bind), f"{name}:/tmp/x")
    assert result.returncode == 1
    assert "container rootfs is marked read-only" in result.stderr
    # Its writable mounts take copies.
    for path in ("/rw", "/t"):
        status, _ = daemon.api("PUT", f"/containers/{name}/archive?path={path}", archive)
        assert status == 200
    # A symlink in the archive cannot reach around the check: the kernel refuses.
    sneaky = tar_bytes((entry("up", tarfile.SYMTYPE, linkname="/ro"), None), (entry("up/f"), b"x"))
    status, _ = daemon.api("PUT", f"/containers/{name}/archive?path=/rw", sneaky)
    assert status == 500
    assert not (bind / "f").exists()
    # Stopped, the same rules hold, and the read-only view is enforced too.
    daemon.cli("stop", "-t", "0", name, check=True)
    status, body = daemon.api("PUT", f"/containers/{name}/archive?path=/tmp", archive)
    assert (status, body["message"]) == (403, "container rootfs is marked read-only")
    status, _ = daemon.api("PUT", f"/containers/{name}/archive?path=/rw", sneaky)
    assert status == 500
    assert not (bind / "f").exists()
    into_rootfs = tar_bytes(
        (entry("down", tarfile.SYMTYPE, linkname="/tmp"), None), (entry("down/f"), b"x")
    )
    status, _ = daemon.api("PUT", f"/containers/{name}/archive?path=/rw", into_rootfs)
    assert status == 500
    assert daemon.api("HEAD", f"/containers/{name}/archive?path=/tmp/f")[0] == 404
    assert unmounted_soon(merged_dir(daemon, client, name))


def test_special_files(
    daemon: Daemon, client: docker.DockerClient, name: str, tmp_path: Path
) -> None:
    running(daemon, name)
    sh(daemon, name, "mkdir /s && mkfifo /s/fifo && echo x > /s/x")
    # A FIFO is archived as one, never read (reading it would block forever).
    content, found = get_archive(client, name, "/s/fifo")
    assert found["mode"] & (1 << 25)
    assert members(content)["fifo"].isfifo()
    content, _ = get_archive(client, name, "/s")
    assert members(content)["s/fifo"].isfifo() and members(content)["s/x"].size == 2
    # Devices: stat says so, and the docker CLI refuses them as destinations.
    _, found = get_archive(client, name, "/dev/null")
    assert found["mode"] & (1 << 26) and found["mode"] & (1 << 21)
    (tmp_path / "f").write_text("x")
    result = cp(daemon, str(tmp_path / "f"), f"{name}:/dev/null")
    assert result.returncode == 1
    assert "must be a directory or a regular file: got a device" in result.stderr


def test_no_overwrite_dir_non_dir(daemon: Daemon, name: str) -> None:
    running(daemon, name)
    sh(daemon, name, "mkdir -p /d/sub && echo f > /d/file")
    file_over_dir = tar_bytes((entry("sub"), b"x"))
    status, body = daemon.api(
        "PUT", f"/containers/{name}/archive?path=/d&noOverwriteDirNonDir=true", file_over_dir
    )
    assert (status, body["message"]) == (
        500,
        'cannot overwrite directory "sub" with non-directory "/d"',
    )
    dir_over_file = tar_bytes((entry("file", tarfile.DIRTYPE), None))
    status, body = daemon.api(
        "PUT", f"/containers/{name}/archive?path=/d&noOverwriteDirNonDir=1", dir_over_file
    )
    assert (status, body["message"]) == (
        500,
        'cannot overwrite non-directory "file" with directory "/d"',
    )
    # Without the flag (docker-py's put_archive) both are replaced.
    assert daemon.api("PUT", f"/containers/{name}/archive?path=/d", file_over_dir)[0] == 200
    assert daemon.api("PUT", f"/containers/{name}/archive?path=/d", dir_over_file)[0] == 200
    assert sh(daemon, name, "test -f /d/sub && test -d /d/file && echo ok") == "ok\n"


def test_compressed_archives_are_accepted(daemon: Daemon, name: str) -> None:
    import bz2
    import gzip
    import lzma

    import zstandard

    running(daemon, name)
    for suffix, compress in (
        ("gz", gzip.compress),
        ("bz2", bz2.compress),
        ("xz", lzma.compress),
        ("zst", zstandard.ZstdCompressor().compress),
    ):
        archive = compress(tar_bytes((entry(f"f.{suffix}"), suffix.encode())))
        status, _ = daemon.api("PUT", f"/containers/{name}/archive?path=/tmp", archive)
        assert status == 200, suffix
    assert sh(daemon, name, "cat /tmp/f.gz /tmp/f.bz2 /tmp/f.xz /tmp/f.zst") == "gzbz2xzzst"


# -- hostile archives -----------------------------------------------------------------------


@pytest.mark.parametrize("state", ["running", "stopped"])
def test_hostile_archives_write_nothing_outside(
    daemon: Daemon, client: docker.DockerClient, name: str, sentinel: Path, state: str
) -> None:
    if state == "running":
        running(daemon, name)
    else:
        created(daemon, name)
    host_path = str(sentinel).lstrip("/")
    climb = "../" * 12

    def put(archive: bytes, path: str = "/tmp") -> tuple[int, dict]:
        return daemon.api("PUT", f"/containers/{name}/archive?path={path}", archive)

    # `..` that climbs out of the destination.
    status, body = put(tar_bytes((entry(f"{climb}{host_path}/pwned"), b"x")))
    assert (status, body["message"]) == (500, f'invalid entry name "{climb}{host_path}/pwned"')
    # A hard link to a file outside.
    status, body = put(
        tar_bytes((entry("h", tarfile.LNKTYPE, linkname=f"{climb}{host_path}/secret"), None))
    )
    assert (status, body["message"]) == (
        500,
        f'invalid hardlink target "{climb}{host_path}/secret"',
    )
    # A symlink to the host path, then a file through it: the link resolves in the
    # container, where that path does not exist.
    status, _ = put(
        tar_bytes(
            (entry("escape", tarfile.SYMTYPE, linkname=str(sentinel)), None),
            (entry("escape/pwned"), b"x"),
        )
    )
    assert status in (404, 500)
    # A symlink climbing to `/`, then a file through it: the container's root.
    status, _ = put(
        tar_bytes(
            (entry("up", tarfile.SYMTYPE, linkname=climb), None),
            (entry("up/tmp/through-up"), b"inside\n"),
        )
    )
    assert status == 200
    # Absolute names land below the destination, as Docker extracts them.
    status, _ = put(tar_bytes((entry("/abs-name"), b"abs\n")))
    assert status == 200
    # Device nodes are refused.
    status, body = put(tar_bytes((entry("null2", tarfile.CHRTYPE, devmajor=1, devminor=3), None)))
    assert status == 400
    assert body["message"].startswith('refusing to create device node "null2"')
    # What did land is inside the container.
    content, _ = get_archive(client, name, "/tmp/through-up")
    assert members(content)["through-up"].size == len(b"inside\n")
    content, _ = get_archive(client, name, "/tmp/abs-name")
    assert members(content)["abs-name"].isfile()
    assert daemon.api("HEAD", f"/containers/{name}/archive?path=/tmp/null2")[0] == 404
    assert not Path("/abs-name").exists()
    assert state == "running" or unmounted_soon(merged_dir(daemon, client, name))


def test_symlink_swapping_container_cannot_redirect_a_copy(
    daemon: Daemon, name: str, sentinel: Path, tmp_path: Path
) -> None:
    """CVE-2018-15664: the container swaps a directory for a symlink to `/` while copies
    run; whatever it wins, the copy stays in the container."""
    running(daemon, name)
    target = str(sentinel)
    daemon.docker(
        "exec",
        "-d",
        name,
        "sh",
        "-c",
        f"mkdir -p /w; while true; do ln -sfn {target} /w.link; mv -T /w.link /w 2>/dev/null;"
        " rm -f /w; mkdir -p /w; done",
    )
    (tmp_path / "pwned").write_text("x")
    for _ in range(15):
        cp(daemon, str(tmp_path / "pwned"), f"{name}:/w/")
        cp(daemon, f"{name}:/w/", str(tmp_path / "out"))
        shutil.rmtree(tmp_path / "out", ignore_errors=True)


def test_container_nss_libraries_are_never_loaded(
    daemon: Daemon, client: docker.DockerClient, name: str, tmp_path: Path
) -> None:
    """CVE-2019-14271: a container's NSS module must not run in the copier."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is needed to build the booby-trapped NSS module")
    source = tmp_path / "nss.c"
    source.write_text(
        "#include <fcntl.h>\n#include <unistd.h>\n"
        "__attribute__((constructor)) static void trap(void) {\n"
        '  int fd = open("/nss-module-ran", O_CREAT | O_WRONLY, 0644);\n'
        "  if (fd >= 0) close(fd);\n}\n"
    )
    library = tmp_path / "libnss_dockyardtrap.so.2"
    subprocess.run([gcc, "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    running(daemon, name, "--user", "app")
    # Under the service name the container's nsswitch.conf gives, and under the names
    # of the host's own modules, which glibc may load lazily on a first lookup.
    module = library.read_bytes()
    names = ("dockyardtrap", "files", "compat", "systemd", "sss", "ldap")
    trap = tar_bytes(
        (entry("lib", tarfile.DIRTYPE), None),
        (entry("lib/x86_64-linux-gnu", tarfile.DIRTYPE), None),
        *((entry(f"lib/libnss_{n}.so.2", mode=0o755), module) for n in names),
        *((entry(f"lib/x86_64-linux-gnu/libnss_{n}.so.2", mode=0o755), module) for n in names),
        (entry("etc/nsswitch.conf"), b"passwd: dockyardtrap\ngroup: dockyardtrap\n"),
    )
    assert client.api.put_archive(name, "/", trap)
    sh(daemon, name, "echo x > /tmp/owned && true")
    (tmp_path / "f").write_text("x")
    os.chown(tmp_path / "f", 4321, 4321)
    assert cp(daemon, "-a", str(tmp_path / "f"), f"{name}:/tmp/").returncode == 0
    assert cp(daemon, f"{name}:/tmp", str(tmp_path / "out")).returncode == 0
    assert cp(daemon, f"{name}:/etc", str(tmp_path / "etc")).returncode == 0
    daemon.cli("stop", "-t", "0", name, check=True)
    assert cp(daemon, f"{name}:/tmp", str(tmp_path / "out2")).returncode == 0
    assert daemon.docker("export", "-o", str(tmp_path / "e.tar"), name).returncode == 0
    assert "nss-module-ran" not in members((tmp_path / "e.tar").read_bytes())
    assert not Path("/nss-module-ran").exists()


# -- events, and our CLI ---------------------------------------------------------------------


def test_events(daemon: Daemon, client: docker.DockerClient, name: str, tmp_path: Path) -> None:
    running(daemon, name)
    since = time.time() - 1
    (tmp_path / "f").write_text("x")
    assert cp(daemon, str(tmp_path / "f"), f"{name}:/tmp/").returncode == 0
    assert cp(daemon, f"{name}:/tmp/f", str(tmp_path / "g")).returncode == 0
    assert daemon.docker("export", "-o", str(tmp_path / "e.tar"), name).returncode == 0
    events = client.events(
        since=since, until=time.time() + 0.5, decode=True, filters={"container": name}
    )
    archive_actions = ("extract-to-dir", "archive-path", "export")
    actions = [e["Action"] for e in events if e["Action"] in archive_actions]
    assert actions == list(archive_actions)


def test_dockyard_cp_both_ways(daemon: Daemon, name: str, tmp_path: Path) -> None:
    running(daemon, name)
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "sub" / "f").write_text("f\n")
    result = daemon.cli("cp", str(tmp_path / "tree"), f"{name}:/copied")
    assert result.returncode == 0, result.stderr
    assert sh(daemon, name, "cat /copied/sub/f") == "f\n"
    result = daemon.cli("cp", f"{name}:/copied/.", str(tmp_path / "back"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "back" / "sub" / "f").read_text() == "f\n"
    result = daemon.cli("cp", f"{name}:/copied/sub/f", "-")
    assert result.returncode == 0
    assert "sub/f" not in result.stdout and "f\n" in result.stdout
    archive = tar_bytes((entry("from-stdin"), b"stdin\n"))
    result = daemon.cli("cp", "-", f"{name}:/tmp", input=archive)
    assert result.returncode == 0, result.stderr
    assert sh(daemon, name, "cat /tmp/from-stdin") == "stdin\n"
    result = daemon.cli("cp", f"{name}:/nope", str(tmp_path))
    assert result.returncode == 1
    assert f"Error response from daemon: Could not find the file /nope in container {name}" in (
        result.stderr
    )
    result = daemon.cli("cp", str(tmp_path), str(tmp_path))
    assert "must specify at least one container source" in result.stderr
    assert json.loads(daemon.cli("inspect", name, check=True).stdout)[0]["State"]["Running"]


def test_interrupted_copies_leave_nothing_behind(
    daemon: Daemon, client: docker.DockerClient, name: str
) -> None:
    """A client that goes away mid-archive or mid-upload: the copier ends, the stopped
    container's mounts go, and its lock is free for the next request."""
    import socket

    daemon.cli(
        "run", "--name", name, IMAGE, "sh", "-c", "head -c 50000000 /dev/zero > /big", check=True
    )
    merged = merged_dir(daemon, client, name)

    def interrupted(request: bytes, body: bytes = b"") -> None:
        """Send a request, wait until the copy is under way, and hang up."""
        with socket.socket(socket.AF_UNIX) as conn:
            conn.connect(daemon.socket)
            conn.sendall(request + body)
            for _ in range(200):
                if mounted(merged):
                    break
                time.sleep(0.05)
            assert mounted(merged)

    interrupted(f"GET /containers/{name}/archive?path=/big HTTP/1.1\r\nHost: d\r\n\r\n".encode())
    assert unmounted_soon(merged)
    upload = tar_bytes((entry("partial"), bytes(10 << 20)))
    interrupted(
        f"PUT /containers/{name}/archive?path=/tmp HTTP/1.1\r\nHost: d\r\n"
        f"Content-Length: {len(upload)}\r\n\r\n".encode(),
        upload[: 1 << 20],
    )
    assert unmounted_soon(merged)
    content, found = get_archive(client, name, "/big")
    assert found["size"] == 50_000_000 and members(content)["big"].size == 50_000_000
    daemon.cli("start", name, check=True)
    assert client.api.wait(name)["StatusCode"] == 0
