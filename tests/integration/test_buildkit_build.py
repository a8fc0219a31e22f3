"""Builds through BuildKit's door, driven by the real buildx (0.13), docker CLI 28 (which
hands `docker build` to buildx) and compose v2 (2.26): the Dockerfile and context travel
over the session, Dockyard's one builder runs the steps, buildx draws them, and the
image lands in the engine's store under its tags."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests import ecosystem
from tests.harness import Daemon

APP = """\
FROM demo/busybox:1
ARG GREETING=hello
WORKDIR /app
COPY message.txt ./
RUN echo "$GREETING from RUN" > /app/greeting && echo to-stderr >&2
CMD ["sh", "-c", "cat /app/message.txt /app/greeting"]
"""


BUILD = ["docker", "buildx", "build", "--progress=plain"]


def build(daemon: Daemon, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`docker buildx build` with plain progress (what a terminal-less run shows too)."""
    return ecosystem.run_client(daemon, [*BUILD, *args], cwd=cwd)


def built(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stderr  # buildx draws its progress on stderr


def run(daemon: Daemon, *args: str) -> str:
    result = ecosystem.run_client(daemon, ["docker", "run", "--rm", *args])
    assert result.returncode == 0, result.stderr
    return result.stdout


def inspect(daemon: Daemon, image: str) -> dict[str, Any]:
    result = ecosystem.run_client(daemon, ["docker", "image", "inspect", image])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)[0]


@pytest.fixture
def app(tmp_path: Path) -> Path:
    context = tmp_path / "app"
    context.mkdir()
    (context / "Dockerfile").write_text(APP)
    (context / "message.txt").write_text("message from the context\n")
    return context


def test_buildx_build_load_stores_the_tagged_image_and_shows_each_step(
    daemon: Daemon, app: Path
) -> None:
    progress = built(build(daemon, "--load", "-t", "bk/app:1", str(app)))

    assert 'building with "default" instance using docker driver' in progress
    for step in (
        "[internal] load build definition from Dockerfile",
        "[internal] load build context",
        "[1/4] FROM docker.io/demo/busybox:1",
        "[2/4] WORKDIR /app",
        "[3/4] COPY message.txt ./",
        '[4/4] RUN echo "$GREETING from RUN" > /app/greeting && echo to-stderr >&2',
        "exporting to image",
        "naming to docker.io/bk/app:1",
    ):
        assert step in progress, progress
    assert re.search(r"^#\d+ [\d.]+ to-stderr$", progress, re.M), progress  # the RUN's output
    assert run(daemon, "bk/app:1") == "message from the context\nhello from RUN\n"
    config = inspect(daemon, "bk/app:1")["Config"]
    assert config["WorkingDir"] == "/app"
    assert config["Cmd"] == ["sh", "-c", "cat /app/message.txt /app/greeting"]

    # built again: every step from the cache, the same image
    again = built(build(daemon, "--load", "-t", "bk/app:2", str(app)))
    assert re.search(r"\[4/4\] RUN .*\n#\d+ CACHED", again), again
    assert inspect(daemon, "bk/app:2")["Id"] == inspect(daemon, "bk/app:1")["Id"]


def test_docker_build_is_buildx_building_in_the_engine(daemon: Daemon, app: Path) -> None:
    result = ecosystem.run_client(daemon, ["docker", "build", "-t", "bk/plain:1", str(app)])
    progress = built(result)
    assert "docker driver" in progress
    assert "moby/buildkit" not in progress
    assert run(daemon, "bk/plain:1").endswith("hello from RUN\n")

    # -q prints the image's ID alone, as scripts expect
    quiet = ecosystem.run_client(daemon, ["docker", "build", "-q", "-t", "bk/plain:2", str(app)])
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.strip() == inspect(daemon, "bk/plain:2")["Id"]


def test_one_builder_a_buildkit_build_reuses_what_the_classic_builder_made(
    daemon: Daemon, client: Any, app: Path
) -> None:
    (app / "message.txt").write_text("shared by both doors\n")
    classic, _ = client.images.build(path=str(app), tag="bk/classic:1", rm=True)

    progress = built(build(daemon, "--load", "-t", "bk/fromkit:1", str(app)))
    assert re.search(r"\[4/4\] RUN .*\n#\d+ CACHED", progress), progress
    assert inspect(daemon, "bk/fromkit:1")["Id"] == classic.id


def test_build_args_target_and_a_dockerfile_outside_the_context(
    daemon: Daemon, tmp_path: Path
) -> None:
    context = tmp_path / "context"
    context.mkdir()
    (context / "data.txt").write_text("data\n")
    elsewhere = tmp_path / "build-files"
    elsewhere.mkdir()
    (elsewhere / "Build.dockerfile").write_text(
        "FROM demo/busybox:1 AS base\n"
        "ARG FLAVOUR=plain\n"
        "COPY data.txt /data.txt\n"
        'RUN echo "$FLAVOUR" > /flavour\n'
        "FROM base AS extra\n"
        "RUN echo extra > /extra\n"
    )
    dockerfile = str(elsewhere / "Build.dockerfile")
    progress = built(
        build(
            daemon,
            "-f",
            dockerfile,
            "--target",
            "base",
            "--build-arg",
            "FLAVOUR=salty",
            "--label",
            "org.example.kind=test",
            "--load",
            "-t",
            "bk/target:1",
            str(context),
        )
    )
    assert "load build definition from Build.dockerfile" in progress
    assert "[base 3/3] RUN" in progress
    assert "[extra" not in progress  # the target's stage and what it needs, no more
    assert run(daemon, "bk/target:1", "cat", "/data.txt", "/flavour") == "data\nsalty\n"
    assert run(daemon, "bk/target:1", "ls", "/").count("extra") == 0
    labels = inspect(daemon, "bk/target:1")["Config"]["Labels"]
    assert labels["org.example.kind"] == "test"

    # --no-cache runs the steps again
    again = built(build(daemon, "-f", dockerfile, "--target", "base", "--no-cache", str(context)))
    assert "CACHED" not in again, again


def test_a_failing_run_shows_its_output_and_exit_code_and_leaves_nothing(
    daemon: Daemon, client: Any, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM demo/busybox:1\nRUN echo about to fail; echo failing loudly >&2; exit 3\n"
    )
    containers = {c.id for c in client.containers.list(all=True)}
    images = {i.id for i in client.images.list(all=True)}

    result = build(daemon, "-t", "bk/fails:1", str(tmp_path))

    assert result.returncode != 0
    error = (
        'process "/bin/sh -c echo about to fail; echo failing loudly >&2; exit 3" '
        "did not complete successfully: exit code: 3"
    )
    assert f"ERROR: failed to solve: {error}" in result.stderr, result.stderr
    assert re.search(r"^#\d+ ERROR: " + re.escape(error), result.stderr, re.M)
    assert "failing loudly" in result.stderr and "about to fail" in result.stderr
    assert {c.id for c in client.containers.list(all=True)} == containers
    assert {i.id for i in client.images.list(all=True)} == images


@pytest.mark.parametrize(
    ("dockerfile", "args", "message"),
    [
        ("FROM demo/busybox:1\nCOPY missing.txt /\n", (), "file not found in build context"),
        ("FROM demo/busybox:1\nBOGUS x\n", (), "unknown instruction: BOGUS"),
        ("FROM demo/busybox:1\n", ("--platform", "linux/s390x"), "platform is not supported"),
        ("FROM demo/busybox:1\n", ("-f", "nothere"), "failed to read dockerfile: open nothere"),
        ("FROM demo/busybox:1\n", ("--output", "type=local,dest=out"), 'exporter "local"'),
    ],
)
def test_bad_builds_end_with_buildkits_error_shape(
    daemon: Daemon, tmp_path: Path, dockerfile: str, args: tuple[str, ...], message: str
) -> None:
    (tmp_path / "Dockerfile").write_text(dockerfile)
    result = build(daemon, *args, str(tmp_path), cwd=tmp_path)
    assert result.returncode != 0
    assert "ERROR: failed to solve: " in result.stderr, result.stderr
    assert message in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def transferred(progress: str) -> int:
    """The bytes the context transfer reported (`transferring context: 12.3kB done`)."""
    block = progress.split("[internal] load build context", 1)[1]
    amount, unit = re.search(r"transferring context: ([\d.]+)(k?B|MB) done", block).groups()
    return int(float(amount) * {"B": 1, "kB": 1000, "MB": 1000_000}[unit])


def test_dockerignore_keeps_files_out_of_the_context(daemon: Daemon, tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    (context / "logs").mkdir(parents=True)
    (context / "logs" / "a.log").write_text("log\n")
    (context / "logs" / "keep.log").write_text("kept by an exception\n")
    (context / "secret.env").write_text("TOKEN=x\n" + "#" * 300_000)
    (context / "src.txt").write_text("source\n")
    (context / ".dockerignore").write_text("secret.env\nlogs/*.log\n!logs/keep.log\n")
    (context / "Dockerfile").write_text(
        "FROM demo/busybox:1\nCOPY . /ctx/\nRUN cd /ctx && find . -type f | sort\n"
    )
    progress = built(build(daemon, "--load", "-t", "bk/ignore:1", str(context)))
    assert "[internal] load .dockerignore" in progress
    assert transferred(progress) < 100_000  # what is ignored is not even sent
    listing = run(daemon, "bk/ignore:1", "sh", "-c", "cd /ctx && find . -type f | sort")
    assert listing.split() == [
        "./.dockerignore",
        "./Dockerfile",
        "./logs/keep.log",
        "./src.txt",
    ]

    # a Dockerfile's own ignore file wins over the context's
    (context / "Dockerfile.dockerignore").write_text("src.txt\n")
    built(build(daemon, "--load", "-t", "bk/ignore:2", str(context)))
    listing = run(daemon, "bk/ignore:2", "sh", "-c", "cd /ctx && find . -type f | sort")
    assert "./src.txt" not in listing.split() and "./secret.env" in listing.split()


def test_a_second_upload_sends_only_what_changed(daemon: Daemon, tmp_path: Path) -> None:
    context = tmp_path / "incremental"
    context.mkdir()
    (context / "big.bin").write_bytes(b"x" * 500_000)
    (context / "small.txt").write_text("one\n")
    (context / "Dockerfile").write_text("FROM demo/busybox:1\nCOPY . /ctx/\n")
    first = transferred(built(build(daemon, "--load", "-t", "bk/inc:1", str(context))))
    assert first > 500_000

    (context / "small.txt").write_text("two\n")
    second = transferred(built(build(daemon, "--load", "-t", "bk/inc:2", str(context))))
    assert second < 10_000
    assert run(daemon, "bk/inc:2", "cat", "/ctx/small.txt") == "two\n"
    assert run(daemon, "bk/inc:2", "wc", "-c", "/ctx/big.bin").split()[0] == "500000"


def test_builds_of_one_context_at_the_same_time_both_succeed(
    daemon: Daemon, tmp_path: Path
) -> None:
    """Two builds of one directory share its context mirror: their transfers take turns,
    and each build gets the context as it was sent to it."""
    context = tmp_path / "together"
    context.mkdir()
    (context / "data.bin").write_bytes(b"z" * 200_000)
    (context / "Dockerfile").write_text(
        "FROM demo/busybox:1\nCOPY . /ctx/\nARG N\nRUN echo $N > /n\n"
    )
    processes = [
        subprocess.Popen(
            [*BUILD, "--build-arg", f"N={n}", "-t", f"bk/together:{n}", str(context)],
            env=ecosystem.client_env(daemon),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in (1, 2)
    ]
    for process in processes:
        _, err = process.communicate()
        assert process.returncode == 0, err
    for n in (1, 2):
        assert run(daemon, f"bk/together:{n}", "sh", "-c", "cat /n; wc -c < /ctx/data.bin") == (
            f"{n}\n200000\n"
        )


COMPOSE = """\
services:
  web:
    build:
      context: ./web
      args:
        GREETING: bonjour
    image: bk/compose-web:1
  worker:
    build:
      context: ./worker
      dockerfile: Worker.dockerfile
    image: bk/compose-worker:1
"""


def test_compose_build_builds_every_service_in_the_engine(
    daemon: Daemon, tmp_path: Path, app: Path
) -> None:
    project = tmp_path / "project"
    (project / "worker").mkdir(parents=True)
    app.rename(project / "web")
    (project / "worker" / "Worker.dockerfile").write_text(
        'FROM demo/busybox:1\nRUN echo worker > /role\nCMD ["cat", "/role"]\n'
    )
    (project / "compose.yaml").write_text(COMPOSE)

    result = ecosystem.run_client(daemon, ["docker", "compose", "build"], cwd=project)
    assert result.returncode == 0, result.stderr
    assert "docker driver" in result.stdout + result.stderr
    assert run(daemon, "bk/compose-web:1").endswith("bonjour from RUN\n")
    assert run(daemon, "bk/compose-worker:1") == "worker\n"


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "killed"])
def test_a_cancelled_build_leaves_no_container_mount_or_image(
    own_daemon: Daemon, tmp_path: Path, how: signal.Signals
) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM demo/busybox:1\nRUN echo first > /first\nRUN echo started && sleep 600\n"
    )
    process = subprocess.Popen(
        ["docker", "buildx", "build", "--progress=plain", "-t", "bk/cancel:1", str(tmp_path)],
        env=ecosystem.client_env(own_daemon),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    seen = ""
    while not re.search(r"^#\d+ [\d.]+ started$", seen, re.M):
        line = process.stdout.readline()
        assert line, seen
        seen += line
    assert own_daemon.docker("ps", "-q").stdout.strip()  # the step's container runs

    process.send_signal(how)
    rest = process.communicate()[0]
    assert process.returncode != 0
    if how == signal.SIGINT:
        assert "CANCELED" in rest or "context canceled" in rest, rest

    # The step sleeps for 10 minutes: it is stopped and removed long before that.
    for _ in range(600):
        if not own_daemon.docker("ps", "-aq").stdout.strip():
            break
        time.sleep(0.1)
    assert own_daemon.docker("ps", "-aq").stdout.strip() == ""
    for _ in range(100):
        if not list((own_daemon.data_root / "build").iterdir()):
            break
        time.sleep(0.1)
    assert list((own_daemon.data_root / "build").iterdir()) == []
    assert [m for m in own_daemon.leftovers()["mounts"] if "/build/" in m] == []
    assert "bk/cancel" not in own_daemon.docker("images").stdout


def test_du_lists_the_kept_context_and_prune_frees_it(own_daemon: Daemon, tmp_path: Path) -> None:
    context = tmp_path / "kept"
    context.mkdir()
    (context / "big.bin").write_bytes(b"k" * 300_000)
    (context / "Dockerfile").write_text("FROM demo/busybox:1\nCOPY big.bin /\n")
    first = transferred(built(build(own_daemon, "-t", "bk/kept:1", str(context))))

    du = ecosystem.run_client(own_daemon, ["docker", "buildx", "du", "--verbose"])
    assert du.returncode == 0, du.stderr
    kept = [block for block in du.stdout.split("\n\n") if "local source for context" in block]
    assert len(kept) == 1, du.stdout
    assert "source.local" in kept[0]

    pruned = ecosystem.run_client(own_daemon, ["docker", "buildx", "prune", "-f", "--verbose"])
    assert pruned.returncode == 0, pruned.stderr
    assert "local source for context" in pruned.stdout
    du = ecosystem.run_client(own_daemon, ["docker", "buildx", "du", "--verbose"])
    assert "local source for context" not in du.stdout
    # with the kept copy gone, the whole context travels again
    assert transferred(built(build(own_daemon, "-t", "bk/kept:2", str(context)))) >= first
