"""`RUN --mount` through BuildKit's door, driven by the real buildx (0.13): cache mounts
kept between builds and never in the image, tmpfs and bind mounts, secrets from the
client's session that never reach a layer or the history, and the classic builder's
refusal of all of them."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from tests import ecosystem
from tests.harness import Daemon

BUILD = ["docker", "buildx", "build", "--progress=plain"]


def build(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return ecosystem.run_client(daemon, [*BUILD, *args])


def built(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stderr


def run(daemon: Daemon, *args: str) -> str:
    result = ecosystem.run_client(daemon, ["docker", "run", "--rm", *args])
    assert result.returncode == 0, result.stderr
    return result.stdout


def context(tmp_path: Path, dockerfile: str, **files: str) -> Path:
    directory = tmp_path / "ctx"
    directory.mkdir(exist_ok=True)
    (directory / "Dockerfile").write_text(dockerfile)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def saved(daemon: Daemon, image: str) -> bytes:
    result = subprocess.run(
        ["docker", "save", image],
        env=ecosystem.client_env(daemon),
        capture_output=True,
        check=True,
    )
    return result.stdout


def image_files(daemon: Daemon, image: str) -> bytes:
    """`docker save`'s archive and every layer's names and contents (to grep)."""
    raw = saved(daemon, image)
    everything = [raw]
    with tarfile.open(fileobj=io.BytesIO(raw)) as outer:
        for member in outer.getmembers():
            data = outer.extractfile(member)
            if data is None:
                continue
            try:
                with tarfile.open(fileobj=io.BytesIO(data.read())) as layer:
                    for entry in layer.getmembers():
                        everything.append(entry.name.encode())
                        content = layer.extractfile(entry)
                        if content is not None:
                            everything.append(content.read())
            except tarfile.TarError:
                continue
    return b"\n".join(everything)


def layer_paths(daemon: Daemon, image: str) -> set[str]:
    raw = saved(daemon, image)
    paths: set[str] = set()
    with tarfile.open(fileobj=io.BytesIO(raw)) as outer:
        for member in outer.getmembers():
            data = outer.extractfile(member)
            if data is None:
                continue
            try:
                with tarfile.open(fileobj=io.BytesIO(data.read())) as layer:
                    paths.update(e.name for e in layer.getmembers())
            except tarfile.TarError:
                continue
    return paths


CACHED = """\
FROM demo/busybox:1
ARG RUN_ID
RUN --mount=type=cache,target=/var/cache/demo \\
    ls /var/cache/demo > /seen; date +%s%N > /var/cache/demo/stamp-$RUN_ID; echo made
"""


def test_a_cache_mount_keeps_its_files_between_builds_and_out_of_the_image(
    own_daemon: Daemon, tmp_path: Path
) -> None:
    ctx = context(tmp_path, CACHED)
    built(build(own_daemon, "--build-arg", "RUN_ID=one", "-t", "bk/cache:1", str(ctx)))
    assert run(own_daemon, "bk/cache:1", "cat", "/seen") == ""

    built(build(own_daemon, "--build-arg", "RUN_ID=two", "-t", "bk/cache:2", str(ctx)))
    # the second build's step saw what the first one left in the cache
    assert run(own_daemon, "bk/cache:2", "cat", "/seen") == "stamp-one\n"
    # and neither image holds the cache or the mountpoint the runtime made for it
    for image in ("bk/cache:1", "bk/cache:2"):
        paths = layer_paths(own_daemon, image)
        assert not any("var/cache/demo" in p for p in paths), sorted(paths)
        assert run(own_daemon, image, "sh", "-c", "ls -a /var/cache/demo 2>&1 || true") in (
            "",
            "ls: /var/cache/demo: No such file or directory\n",
        )

    du = ecosystem.run_client(own_daemon, ["docker", "buildx", "du", "--verbose"])
    assert du.returncode == 0, du.stderr
    caches = [b for b in du.stdout.split("\n\n") if "exec.cachemount" in b]
    assert len(caches) == 1, du.stdout
    assert "cached mount /var/cache/demo from exec" in caches[0]

    pruned = ecosystem.run_client(own_daemon, ["docker", "builder", "prune", "-f", "--verbose"])
    assert pruned.returncode == 0, pruned.stderr
    assert "cached mount /var/cache/demo" in pruned.stdout
    du = ecosystem.run_client(own_daemon, ["docker", "buildx", "du", "--verbose"])
    assert "exec.cachemount" not in du.stdout
    # pruned: a third build starts from an empty cache
    built(build(own_daemon, "--build-arg", "RUN_ID=three", "-t", "bk/cache:3", str(ctx)))
    assert run(own_daemon, "bk/cache:3", "cat", "/seen") == ""


def test_cache_mount_ids_sharing_and_ownership(daemon: Daemon, tmp_path: Path) -> None:
    ctx = context(
        tmp_path,
        "FROM demo/busybox:1\n"
        "RUN --mount=type=cache,id=shared-one,target=/a,uid=1000,gid=1000,mode=0700,"
        "sharing=locked echo x > /a/f && stat -c '%u %g %a' /a > /owner\n"
        "RUN --mount=type=cache,id=shared-one,target=/b,sharing=private cat /b/f > /same\n",
    )
    built(build(daemon, "-t", "bk/cacheid:1", str(ctx)))
    assert run(daemon, "bk/cacheid:1", "cat", "/owner", "/same") == "1000 1000 700\nx\n"

    bad = build(
        daemon,
        str(
            context(
                tmp_path,
                "FROM demo/busybox:1\nRUN --mount=type=cache,target=/c,sharing=mine true\n",
            )
        ),
    )
    assert bad.returncode != 0
    assert 'unsupported sharing value "mine"' in bad.stderr


def test_tmpfs_and_bind_mounts(daemon: Daemon, tmp_path: Path) -> None:
    ctx = context(
        tmp_path,
        "FROM demo/busybox:1 AS tools\n"
        "RUN mkdir /tools && echo from-stage > /tools/hello\n"
        "FROM demo/busybox:1\n"
        "RUN --mount=type=tmpfs,target=/scratch,size=1m "
        "echo t > /scratch/x && df -k /scratch | tail -1 | awk '{print $2}' > /tmpfs-size\n"
        "RUN --mount=type=bind,source=data.txt,target=/mnt/data.txt cat /mnt/data.txt > /copied "
        "&& (echo no > /mnt/data.txt 2>/dev/null && echo writable || echo read-only) > /ro\n"
        "RUN --mount=type=bind,target=/ctx,rw echo changed > /ctx/data.txt && cat /ctx/data.txt "
        "> /rw\n"
        "RUN --mount=type=bind,from=tools,source=/tools,target=/t cat /t/hello > /from-stage\n",
        **{"data.txt": "from the context\n"},
    )
    built(build(daemon, "-t", "bk/mounts:1", str(ctx)))
    out = run(daemon, "bk/mounts:1", "cat", "/tmpfs-size", "/copied", "/ro", "/rw", "/from-stage")
    assert out == "1024\nfrom the context\nread-only\nchanged\nfrom-stage\n"
    # writes through mounts stay out of the image, and the context is untouched
    assert (ctx / "data.txt").read_text() == "from the context\n"
    paths = layer_paths(daemon, "bk/mounts:1")
    for mountpoint in ("scratch", "mnt", "ctx", "t"):
        assert not any(p == mountpoint or p.startswith(mountpoint + "/") for p in paths), paths

    # a changed bind source is a changed step: no stale cache hit
    (ctx / "data.txt").write_text("changed in the context\n")
    built(build(daemon, "-t", "bk/mounts:2", str(ctx)))
    assert run(daemon, "bk/mounts:2", "cat", "/copied") == "changed in the context\n"


SECRET = """\
FROM demo/busybox:1
RUN --mount=type=secret,id=token cat /run/secrets/token > /dev/null && \\
    wc -c < /run/secrets/token > /length && stat -c '%a %u' /run/secrets/token > /mode
RUN --mount=type=secret,id=token,target=/etc/tok,mode=0440,uid=7 stat -c '%a %u' /etc/tok > /mode2
RUN --mount=type=secret,id=token,env=TOKEN printf %s "$TOKEN" | wc -c > /env
"""


def test_a_secret_is_readable_in_the_step_and_nowhere_in_the_image(
    own_daemon: Daemon, tmp_path: Path
) -> None:
    ctx = context(tmp_path, SECRET)
    secret = tmp_path / "token.txt"
    secret.write_text("s3cr3t-value-42")
    built(build(own_daemon, "--secret", f"id=token,src={secret}", "-t", "bk/secret:1", str(ctx)))
    assert run(own_daemon, "bk/secret:1", "cat", "/length", "/mode", "/mode2", "/env") == (
        "15\n400 0\n440 7\n15\n"
    )
    assert b"s3cr3t-value-42" not in image_files(own_daemon, "bk/secret:1")
    paths = layer_paths(own_daemon, "bk/secret:1")
    assert not any(p.startswith(("run/secrets", "etc/tok")) for p in paths), paths
    history = ecosystem.run_client(own_daemon, ["docker", "history", "--no-trunc", "bk/secret:1"])
    assert history.returncode == 0 and "s3cr3t" not in history.stdout
    inspect = ecosystem.run_client(own_daemon, ["docker", "image", "inspect", "bk/secret:1"])
    assert "s3cr3t" not in inspect.stdout
    assert "s3cr3t" not in own_daemon.log_path.read_text(errors="replace")

    # a required secret that is not given fails with BuildKit's words
    needed = context(
        tmp_path, "FROM demo/busybox:1\nRUN --mount=type=secret,id=absent,required true\n"
    )
    failed = build(own_daemon, str(needed))
    assert failed.returncode != 0
    assert "secret absent: not found" in failed.stderr
    # an optional one is simply not there
    optional = context(
        tmp_path,
        "FROM demo/busybox:1\nRUN --mount=type=secret,id=absent "
        "test ! -e /run/secrets/absent && echo none > /none\n",
    )
    built(build(own_daemon, "-t", "bk/secret:2", str(optional)))
    assert run(own_daemon, "bk/secret:2", "cat", "/none") == "none\n"


def test_the_classic_builder_refuses_run_mounts_as_docker_does(
    daemon: Daemon, client: Any, tmp_path: Path
) -> None:
    ctx = context(tmp_path, "FROM demo/busybox:1\nRUN --mount=type=cache,target=/c true\n")
    with pytest.raises(docker.errors.BuildError) as failure:
        client.images.build(path=str(ctx), tag="bk/classic-mount:1")
    assert "the --mount option requires BuildKit" in str(failure.value)
    # the build stopped at that step: nothing was tagged
    assert "bk/classic-mount" not in daemon.docker("images").stdout


def test_syntax_directive_builtin_names_build_and_others_are_refused(
    daemon: Daemon, tmp_path: Path
) -> None:
    for n, syntax in enumerate(("docker/dockerfile:1", "docker.io/docker/dockerfile:1.7-labs")):
        ctx = tmp_path / f"ok{n}"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(f"# syntax={syntax}\nFROM demo/busybox:1\nRUN true\n")
        progress = built(build(daemon, "-t", f"bk/syntax:{n}", str(ctx)))
        assert "directive" not in progress and "WARN" not in progress, progress

    other = tmp_path / "other"
    other.mkdir()
    (other / "Dockerfile").write_text(
        "# syntax=example.com/custom/frontend:2\nFROM demo/busybox:1\nRUN true\n"
    )
    failed = build(daemon, "-t", "bk/syntax:other", str(other))
    assert failed.returncode != 0
    assert 'frontend image "example.com/custom/frontend:2"' in failed.stderr, failed.stderr
    assert "bk/syntax" in daemon.docker("images").stdout
    assert "other" not in daemon.docker("images", "bk/syntax").stdout
