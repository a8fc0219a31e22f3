"""Building images: every instruction, cache, stages, ignore rules, args, errors, interruptions.

Builds run against a real daemon from the example busybox image, through our
CLI, the docker CLI (classic builder, DOCKER_BUILDKIT=0) and docker-py.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.harness import Daemon

BASE = "demo/busybox:1"


def context(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def build(daemon: Daemon, path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return daemon.cli("build", *args, str(path))


def docker_build(daemon: Daemon, path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`DOCKER_BUILDKIT=0 docker build`: the docker CLI's classic builder client."""
    env = {
        **os.environ,
        "DOCKER_HOST": daemon.host,
        "DOCKER_CONFIG": str(daemon.base / "docker"),
        "DOCKER_BUILDKIT": "0",
    }
    return subprocess.run(
        ["docker", "build", *args, str(path)], env=env, capture_output=True, text=True, timeout=300
    )


def inspect(daemon: Daemon, name: str) -> dict[str, Any]:
    return json.loads(daemon.cli("image", "inspect", name, check=True).stdout)[0]


def config_blob(daemon: Daemon, image_id: str) -> dict[str, Any]:
    blob = daemon.data_root / "content" / "blobs" / "sha256" / image_id.removeprefix("sha256:")
    return json.loads(blob.read_bytes())


def layer_names(daemon: Daemon, diff_id: str) -> list[str]:
    blob = daemon.data_root / "content" / "blobs" / "sha256" / diff_id.removeprefix("sha256:")
    with tarfile.open(blob) as tar:
        return tar.getnames()


def run(daemon: Daemon, image: str, *cmd: str) -> str:
    result = daemon.cli("run", "--rm", image, *cmd)
    assert result.returncode == 0, result.stderr
    return result.stdout


def steps_using_cache(output: str) -> list[int]:
    """Step numbers that were cache hits."""
    hits, current = [], 0
    for line in output.splitlines():
        if line.startswith("Step "):
            current = int(line.split()[1].split("/")[0])
        elif line.strip() == "---> Using cache":
            hits.append(current)
    return hits


def stream(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


def tar_of(files: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def no_leftovers(daemon: Daemon) -> None:
    assert daemon.cli("ps", "-aq").stdout.split() == []
    assert [m for m in daemon.leftovers()["mounts"] if "/build/" in m or "/containers/" in m] == []
    assert list((daemon.data_root / "build").iterdir()) == []


def test_every_instruction_through_our_cli(daemon: Daemon, tmp_path: Path) -> None:
    ctx = context(
        tmp_path,
        {
            "hello.txt": "hello\n",
            "tree/a.txt": "a\n",
            "tree/sub/b.txt": "b\n",
            "Dockerfile": f"""
ARG BASE={BASE}
FROM $BASE
MAINTAINER someone@example.com
ARG WHO=world
ENV GREETING=hi PLACE="the lab"
LABEL org.example.name="every instruction" stage=one
WORKDIR /app
COPY --chown=app:app hello.txt ./
COPY --chmod=700 tree /app/tree/
ADD tree/a.txt /added/
RUN echo "$GREETING $WHO in $PLACE" > greeting && id -u > built-by && cat greeting
USER app
RUN touch /home/app/mine
USER root
EXPOSE 8080 53/udp 7000-7001
VOLUME ["/data"]
SHELL ["/bin/sh", "-ec"]
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=30s --timeout=3s --retries=2 CMD test -f /app/greeting
ONBUILD RUN echo from-trigger
ENTRYPOINT ["/bin/sh", "-c", "exec \\"$@\\"", "entry"]
CMD ["cat", "/app/greeting"]
""",
        },
    )
    result = build(daemon, ctx, "-t", "every/thing:1", "--label", "extra=yes")
    assert result.returncode == 0, result.stderr
    assert "hi world in the lab" in result.stdout  # RUN output is shown
    assert result.stdout.count("Step ") == 23  # the ARG before FROM, FROM, 20 lines, --label
    assert "Successfully tagged every/thing:1" in result.stdout
    image = inspect(daemon, "every/thing:1")
    assert result.stdout.strip().endswith("Successfully tagged every/thing:1")
    assert f"Successfully built {image['Id'][7:19]}" in result.stdout
    config = image["Config"]
    assert config["Env"] == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "GREETING=hi",
        "PLACE=the lab",
    ]
    assert config["Labels"] == {
        "org.example.name": "every instruction",
        "stage": "one",
        "extra": "yes",
    }
    assert config["WorkingDir"] == "/app"
    assert config["User"] == "root"
    assert set(config["ExposedPorts"]) == {"8080/tcp", "53/udp", "7000/tcp", "7001/tcp"}
    assert config["Volumes"] == {"/data": {}}
    assert config["Shell"] == ["/bin/sh", "-ec"]
    assert config["StopSignal"] == "SIGQUIT"
    assert config["Healthcheck"] == {  # Docker's shape: the zero durations left out
        "Test": ["CMD-SHELL", "test -f /app/greeting"],
        "Interval": 30_000_000_000,
        "Timeout": 3_000_000_000,
        "Retries": 2,
    }
    assert config["OnBuild"] == ["RUN echo from-trigger"]
    assert config["Entrypoint"] == ["/bin/sh", "-c", 'exec "$@"', "entry"]
    assert config["Cmd"] == ["cat", "/app/greeting"]
    assert image["Author"] == "someone@example.com"
    # the history: one entry per step, non-empty ones lined up with the layers
    blob = config_blob(daemon, image["Id"])
    history = blob["history"]
    layers = blob["rootfs"]["diff_ids"]
    assert len([h for h in history if not h.get("empty_layer")]) == len(layers)
    created_by = [h["created_by"] for h in history[1:]]
    assert "/bin/sh -c #(nop)  ENV GREETING=hi PLACE=the lab" in created_by
    assert "/bin/sh -c #(nop) WORKDIR /app" in created_by
    assert any(c.startswith("|1 WHO=world /bin/sh -c echo") for c in created_by)
    assert '/bin/sh -ec #(nop)  CMD ["cat" "/app/greeting"]' in created_by
    # the files
    assert run(daemon, "every/thing:1") == "hi world in the lab\n"
    listing = run(daemon, "every/thing:1", "ls", "-ln", "/app")
    assert " 1000 " in next(line for line in listing.splitlines() if "hello.txt" in line)
    tree = run(daemon, "every/thing:1", "ls", "-l", "/app/tree")
    assert next(line for line in tree.splitlines() if line.endswith(" a.txt")).startswith(
        "-rwx------"
    )
    assert next(line for line in tree.splitlines() if line.endswith(" sub")).startswith(
        "drwx------"
    )
    assert run(daemon, "every/thing:1", "cat", "/added/a.txt") == "a\n"
    assert run(daemon, "every/thing:1", "cat", "/app/built-by") == "0\n"
    assert "/home/app/mine" in run(daemon, "every/thing:1", "ls", "/home/app/mine")
    # BLD-13: the mountpoints the runtime made for /etc/hosts etc. are in no layer
    for diff_id in layers[1:]:
        names = layer_names(daemon, diff_id)
        assert not any(
            n.startswith(("etc/hosts", "etc/resolv.conf", "etc/hostname")) for n in names
        )
    daemon.cli("rmi", "every/thing:1", check=True)


def test_cache_hits_and_misses_through_the_docker_cli(daemon: Daemon, tmp_path: Path) -> None:
    ctx = context(
        tmp_path,
        {
            "app.txt": "v1\n",
            "other.txt": "o\n",
            "Dockerfile": f"FROM {BASE}\nARG USED=1\nENV A=1\nCOPY app.txt /app.txt\n"
            "RUN cat /app.txt > /copy.txt\nCOPY other.txt /other.txt\nRUN echo $USED > /used\n",
        },
    )
    first = docker_build(daemon, ctx, "-t", "cache/t:1")
    assert first.returncode == 0, first.stderr
    assert steps_using_cache(first.stdout) == []
    image_id = inspect(daemon, "cache/t:1")["Id"]
    again = docker_build(daemon, ctx, "-t", "cache/t:1")
    assert steps_using_cache(again.stdout) == [2, 3, 4, 5, 6, 7]
    assert inspect(daemon, "cache/t:1")["Id"] == image_id  # same image, byte for byte
    # a new mtime alone is no change
    os.utime(ctx / "app.txt", (time.time() + 100, time.time() + 100))
    assert steps_using_cache(docker_build(daemon, ctx, "-t", "cache/t:1").stdout) == [
        2,
        3,
        4,
        5,
        6,
        7,
    ]
    # an unused build argument changes nothing
    unused = docker_build(daemon, ctx, "-t", "cache/t:1", "--build-arg", "NOBODY=x")
    assert steps_using_cache(unused.stdout) == [2, 3, 4, 5, 6, 7]
    assert "[Warning] One or more build-args [NOBODY] were not consumed" in unused.stdout
    # new content misses at that COPY and at every later step
    (ctx / "app.txt").write_text("v2\n")
    changed = docker_build(daemon, ctx, "-t", "cache/t:2")
    assert steps_using_cache(changed.stdout) == [2, 3]
    assert run(daemon, "cache/t:2", "cat", "/copy.txt") == "v2\n"
    # a declared build argument with a new value misses from the first RUN after its ARG
    # (every RUN sees the ARGs in scope, as in Docker)
    arg = docker_build(daemon, ctx, "-t", "cache/t:3", "--build-arg", "USED=2")
    assert steps_using_cache(arg.stdout) == [2, 3, 4]
    assert run(daemon, "cache/t:3", "cat", "/used") == "2\n"
    nocache = docker_build(daemon, ctx, "-t", "cache/t:4", "--no-cache")
    assert steps_using_cache(nocache.stdout) == []
    daemon.cli("rmi", "cache/t:1", "cache/t:2", "cache/t:3", "cache/t:4", check=True)


def test_multistage_target_and_copy_from_through_docker_py(
    client: Any, daemon: Daemon, tmp_path: Path
) -> None:
    context(
        tmp_path,
        {
            "Dockerfile": f"""
FROM {BASE} AS builder
LABEL stage=builder
RUN mkdir /out && echo artifact > /out/result && echo two > /out/second

FROM {BASE} AS never
RUN echo this stage is not needed && exit 3

FROM scratch AS final
LABEL stage=final
COPY --from=builder /out/result /result
COPY --from=0 /out/second /bin/busybox /
CMD ["/busybox", "cat", "/result"]

FROM final AS test
RUN ["/busybox", "test", "-f", "/second"]
""",
        },
    )
    image, logs = client.images.build(
        path=str(tmp_path), tag="multi/t:final", target="final", rm=True
    )
    output = "".join(chunk.get("stream", "") for chunk in logs)
    assert "this stage is not needed" not in output
    assert "Step 1/8 : FROM" in output  # the skipped stage's steps are not counted
    assert image.labels == {"stage": "final"}
    assert client.containers.run("multi/t:final", remove=True) == b"artifact\n"
    assert len(image.attrs["RootFS"]["Layers"]) == 2  # only the final stage's layers
    test_image, _ = client.images.build(path=str(tmp_path), tag="multi/t:test", rm=True)
    assert test_image.id != image.id
    with pytest.raises(docker.errors.BuildError):
        client.images.build(path=str(tmp_path), target="never")
    with pytest.raises(docker.errors.APIError, match="target stage"):
        client.images.build(path=str(tmp_path), target="nosuch")
    client.images.remove("multi/t:final")
    client.images.remove("multi/t:test")


def test_dockerignore_with_a_context_from_stdin(daemon: Daemon) -> None:
    files = {
        ".dockerignore": "*.log\n**/*.tmp\ndocs\n!docs/keep.md\nDockerfile\n",
        "Dockerfile": f"FROM {BASE}\nCOPY . /ctx/\nRUN cd /ctx && find . | sort\n",
        "a.log": "x",
        "app.py": "print()",
        "sub/b.tmp": "x",
        "sub/c.txt": "c",
        "docs/skip.md": "x",
        "docs/keep.md": "k",
    }
    result = daemon.cli("build", "-t", "ignore/t:1", "-", input=tar_of(files))
    assert result.returncode == 0, result.stderr
    found = {line.strip() for line in result.stdout.splitlines() if line.startswith("./")}
    assert found == {
        "./.dockerignore",  # not ignored itself, so it is in the context like any file
        "./app.py",
        "./sub",
        "./sub/c.txt",
        "./docs",
        "./docs/keep.md",
    }
    # an ignored file cannot be copied, and says so
    files["Dockerfile"] = f"FROM {BASE}\nCOPY a.log /\n"
    failed = daemon.cli("build", "-", input=tar_of(files))
    assert failed.returncode == 1
    assert (
        "COPY failed: file not found in build context or excluded by .dockerignore: "
        "stat a.log: file does not exist" in failed.stderr
    )
    # <Dockerfile>.dockerignore beside the Dockerfile wins over .dockerignore
    files["build.Dockerfile"] = f"FROM {BASE}\nCOPY a.log /\n"
    files["build.Dockerfile.dockerignore"] = "docs\n"
    own = daemon.cli(
        "build", "-f", "build.Dockerfile", "-t", "ignore/t:2", "-", input=tar_of(files)
    )
    assert own.returncode == 0, own.stderr
    # a lone Dockerfile on stdin builds with an empty context
    lone = daemon.cli("build", "-t", "ignore/t:3", "-", input=f"FROM {BASE}\nRUN true\n".encode())
    assert lone.returncode == 0, lone.stderr
    daemon.cli("rmi", "ignore/t:1", "ignore/t:2", "ignore/t:3", check=True)


def test_build_arguments_and_their_scope(daemon: Daemon, tmp_path: Path) -> None:
    context(
        tmp_path,
        {
            "Dockerfile": """
ARG TAG=1
ARG GLOBAL=global-default
FROM demo/busybox:$TAG
RUN echo "before:[$GLOBAL]" > /before
ARG GLOBAL
ARG LOCAL=local-default
ENV FROMENV=env-value
ARG FROMENV=arg-value
RUN echo "$GLOBAL $LOCAL $FROMENV http_proxy=$http_proxy" > /args
""",
        },
    )
    result = build(
        daemon,
        tmp_path,
        "-t",
        "args/t:1",
        "--build-arg",
        "LOCAL=from-cli",
        "--build-arg",
        "http_proxy=http://proxy.invalid:3128",
    )
    assert result.returncode == 0, result.stderr
    assert run(daemon, "args/t:1", "cat", "/before") == "before:[]\n"
    assert run(daemon, "args/t:1", "cat", "/args") == (
        "global-default from-cli env-value http_proxy=http://proxy.invalid:3128\n"
    )
    history = " ".join(
        h["created_by"] for h in config_blob(daemon, inspect(daemon, "args/t:1")["Id"])["history"]
    )
    assert "proxy.invalid" not in history  # predefined proxy args stay out of history
    assert "LOCAL=from-cli" in history
    assert "FROMENV" not in run(daemon, "args/t:1", "env").replace("FROMENV=env-value", "")
    daemon.cli("rmi", "args/t:1", check=True)


def test_a_failing_run_shows_its_output_and_code_and_leaves_nothing(
    daemon: Daemon, tmp_path: Path
) -> None:
    context(
        tmp_path,
        {"Dockerfile": f"FROM {BASE}\nRUN echo partial > /x\nRUN echo about-to-fail && exit 7\n"},
    )
    images_before = daemon.cli("images", "-q").stdout
    result = docker_build(daemon, tmp_path, "-t", "fails/t:1")
    assert result.returncode == 7
    assert "about-to-fail" in result.stdout
    assert "The command '/bin/sh -c echo about-to-fail && exit 7' returned a non-zero code: 7" in (
        result.stderr
    )
    assert "fails/t" not in daemon.cli("images").stdout
    assert daemon.cli("images", "-q").stdout == images_before
    no_leftovers(daemon)
    # through our CLI too, with the same exit code
    ours = build(daemon, tmp_path, "-t", "fails/t:1")
    assert ours.returncode == 7 and "returned a non-zero code: 7" in ours.stderr
    no_leftovers(daemon)


def test_syntax_errors_are_refused_before_anything_runs(daemon: Daemon) -> None:
    body = tar_of({"Dockerfile": f"FROM {BASE}\nRUN echo should-not-run\nNOPE x\n"})
    status, reply = daemon.api(
        "POST", "/v1.45/build?t=bad:1", body=body, headers={"Content-Type": "application/x-tar"}
    )
    assert status == 400
    assert reply["message"] == "dockerfile parse error on line 3: unknown instruction: NOPE"
    status, reply = daemon.api(
        "POST",
        "/v1.45/build",
        body=tar_of({"x": ""}),
        headers={"Content-Type": "application/x-tar"},
    )
    assert status == 400 and reply["message"] == "Cannot locate specified Dockerfile: Dockerfile"
    status, reply = daemon.api("POST", "/v1.45/build?version=2", body=body)
    assert status == 400 and "BuildKit" in reply["message"]
    status, reply = daemon.api("POST", "/v1.45/build?t=UPPER:case", body=body)
    assert status == 400 and "invalid reference format" in reply["message"]
    no_leftovers(daemon)


def test_copy_sources_cannot_escape_the_context(daemon: Daemon, tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to("/etc/passwd")
    (tmp_path / "dirlink").symlink_to("..")
    for source, shown in (("link", "link"), ("../secret", "../secret"), ("dirlink/x", "dirlink/x")):
        (tmp_path / "Dockerfile").write_text(f"FROM {BASE}\nCOPY {source} /x\n")
        result = build(daemon, tmp_path)
        assert result.returncode == 1
        assert f"COPY failed: forbidden path outside the build context: {shown} (" in result.stderr
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE}\nCOPY missing.txt /\n")
    missing = docker_build(daemon, tmp_path)
    assert "COPY failed: file not found in build context or excluded by .dockerignore: " in (
        missing.stderr
    )
    no_leftovers(daemon)


def test_a_client_that_goes_away_cancels_the_build(daemon: Daemon, tmp_path: Path) -> None:
    context(tmp_path, {"Dockerfile": f"FROM {BASE}\nRUN echo started && sleep 60\n"})
    env = {**os.environ, "DOCKYARD_HOST": daemon.host}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dockyard", "build", "-t", "gone/t:1", str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line == b"started\n":
            break
    assert daemon.cli("ps", "-q").stdout.strip()  # the step's container runs
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while daemon.cli("ps", "-aq").stdout.strip() and time.monotonic() < deadline:
        time.sleep(0.2)
    no_leftovers(daemon)
    assert "gone/t" not in daemon.cli("images").stdout


def test_kill9_of_the_daemon_mid_build_leaves_nothing(own_daemon: Daemon, tmp_path: Path) -> None:
    d = own_daemon
    context(
        tmp_path, {"f": "x", "Dockerfile": f"FROM {BASE}\nCOPY f /\nRUN echo started && sleep 60\n"}
    )
    env = {**os.environ, "DOCKYARD_HOST": d.host}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dockyard", "build", "-t", "crash/t:1", str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line == b"started\n":
            break
    d.kill9()
    proc.wait()
    d.start()
    assert d.cli("ps", "-aq").stdout.strip() == ""
    assert "crash/t" not in d.cli("images").stdout
    assert d.leftovers()["monitors"] == []
    no_leftovers(d)
    # the steps finished before the crash stay cached
    (tmp_path / "Dockerfile.fast").write_text(f"FROM {BASE}\nCOPY f /\nRUN echo fast\n")
    again = build(d, tmp_path, "-f", str(tmp_path / "Dockerfile.fast"), "-t", "crash/t:1")
    assert again.returncode == 0, again.stderr
    assert steps_using_cache(again.stdout) == [2]


def test_the_cache_survives_a_restart_and_prune_empties_it(
    own_daemon: Daemon, tmp_path: Path
) -> None:
    d = own_daemon
    context(tmp_path, {"f": "x", "Dockerfile": f"FROM {BASE}\nCOPY f /f\nRUN echo built > /b\n"})
    assert build(d, tmp_path, "-t", "keep/t:1").returncode == 0
    d.stop()
    d.start()
    again = build(d, tmp_path, "-t", "keep/t:1")
    assert steps_using_cache(again.stdout) == [2, 3]
    pruned = d.cli("builder", "prune", "-a", "-f")
    assert pruned.returncode == 0 and "Total reclaimed space" in pruned.stdout
    after = build(d, tmp_path, "-t", "keep/t:2")
    assert steps_using_cache(after.stdout) == []
    # the image built before still works: pruning the cache keeps what images use
    assert run(d, "keep/t:1", "cat", "/b") == "built\n"


def test_commit_and_diff(daemon: Daemon, name: str) -> None:
    daemon.cli(
        "run",
        "--name",
        name,
        BASE,
        "sh",
        "-c",
        "echo new > /tmp/added; echo changed >> /etc/group; rm /bin/ls; mkdir -p /srv/data",
        check=True,
    )
    changes = daemon.cli("diff", name, check=True).stdout.splitlines()
    assert changes == [
        "C /bin",
        "D /bin/ls",
        "C /etc",
        "C /etc/group",
        "A /srv",
        "A /srv/data",
        "C /tmp",
        "A /tmp/added",
    ]
    docker_changes = daemon.docker("diff", name).stdout.splitlines()
    assert docker_changes == changes
    image_id = daemon.cli(
        "commit",
        "-m",
        "my change",
        "-a",
        "me",
        "-c",
        'CMD ["cat", "/tmp/added"]',
        name,
        "committed/t:1",
    ).stdout.strip()
    assert image_id.startswith("sha256:")
    assert run(daemon, "committed/t:1") == "new\n"
    assert "changed" in run(daemon, "committed/t:1", "cat", "/etc/group")
    assert daemon.cli("run", "--rm", "committed/t:1", "ls").returncode == 127  # deleted
    image = inspect(daemon, "committed/t:1")
    assert image["Author"] == "me" and image["Comment"] == "my change"
    assert len(image["RootFS"]["Layers"]) == 2
    # the docker CLI's commit (fully qualified repo, tag apart) works too
    result = daemon.docker("commit", "--change", "ENV X=1", name, "committed/t:2")
    assert result.returncode == 0, result.stderr
    assert "X=1" in run(daemon, "committed/t:2", "env")
    daemon.cli("rm", name, check=True)
    daemon.cli("rmi", "committed/t:1", "committed/t:2", check=True)


def test_docker_py_streams_and_raises(client: Any, tmp_path: Path) -> None:
    context(tmp_path, {"Dockerfile": f"FROM {BASE}\nARG MSG\nRUN echo $MSG\n"})
    image, logs = client.images.build(
        path=str(tmp_path), tag="py/t:1", buildargs={"MSG": "from-py"}
    )
    chunks = list(logs)
    assert any(c.get("stream") == "from-py\n" for c in chunks)
    assert any(c.get("aux", {}).get("ID") == image.id for c in chunks)
    assert "py/t:1" in image.tags
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE}\nRUN echo oops >&2; exit 3\n")
    with pytest.raises(docker.errors.BuildError) as caught:
        client.images.build(path=str(tmp_path), tag="py/t:2")
    assert "returned a non-zero code: 3" in str(caught.value)
    client.images.remove("py/t:1")


class _Files(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"downloaded\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_add_extracts_local_archives_and_downloads_urls(daemon: Daemon, tmp_path: Path) -> None:
    payload = tmp_path / "payload"
    context(payload, {"inner/file.txt": "inside\n"})
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        tar.add(payload / "inner", arcname="inner")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/dl/file.txt"
        context(
            tmp_path / "ctx",
            {
                "data.bin": archive.getvalue(),  # a gzipped tar, whatever its name
                "Dockerfile": f"FROM {BASE}\nADD data.bin /x/\nCOPY data.bin /y/\nADD {url} /dl/\n",
            },
        )
        result = build(daemon, tmp_path / "ctx", "-t", "add/t:1")
        assert result.returncode == 0, result.stderr
    finally:
        server.shutdown()
    assert run(daemon, "add/t:1", "cat", "/x/inner/file.txt") == "inside\n"
    good = "sha256:" + hashlib.sha256(b"downloaded\n").hexdigest()
    bad = "sha256:" + hashlib.sha256(b"something else").hexdigest()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/dl/file.txt"
        for checksum, source, error in (
            (good, url, None),
            (bad, url, f"digest mismatch for {url}: expected {bad}, got {good}"),
            ("sha256:12", url, "invalid checksum digest format: sha256:12"),
            (good, "data.bin", "checksum can't be specified for non-HTTP(S) sources"),
        ):
            (tmp_path / "ctx" / "Dockerfile").write_text(
                f"FROM {BASE}\nADD --checksum={checksum} {source} /c/\n"
            )
            checked = build(daemon, tmp_path / "ctx", "-t", "add/t:2")
            if error is None:
                assert checked.returncode == 0, checked.stderr
            else:
                assert checked.returncode == 1 and error in checked.stderr, checked.stderr
    finally:
        server.shutdown()
    assert run(daemon, "add/t:2", "cat", "/c/file.txt") == "downloaded\n"
    daemon.cli("rmi", "add/t:2", check=True)
    assert "data.bin" in run(daemon, "add/t:1", "ls", "/y")
    listing = run(daemon, "add/t:1", "ls", "-l", "--full-time", "/dl/file.txt")
    assert listing.startswith("-rw-------") and "2015-10-21" in listing
    daemon.cli("rmi", "add/t:1", check=True)


def test_heredocs(daemon: Daemon, tmp_path: Path) -> None:
    context(
        tmp_path,
        {
            "Dockerfile": f"""FROM {BASE}
ENV NAME=world
RUN <<EOF
echo "hello $NAME" > /greeting
echo second line >> /greeting
EOF
COPY <<EOF /expanded.txt
name=$NAME
EOF
COPY <<-'EOF' /literal.txt
\tname=$NAME
\tEOF
RUN <<EOF
#!/bin/sh -e
echo "script run by $0" > /script.txt
EOF
""",
        },
    )
    result = build(daemon, tmp_path, "-t", "heredoc/t:1")
    assert result.returncode == 0, result.stderr
    assert run(daemon, "heredoc/t:1", "cat", "/greeting") == "hello world\nsecond line\n"
    assert run(daemon, "heredoc/t:1", "cat", "/expanded.txt") == "name=world\n"
    assert run(daemon, "heredoc/t:1", "cat", "/literal.txt") == "name=$NAME\n"
    assert run(daemon, "heredoc/t:1", "cat", "/script.txt") == "script run by /dev/stdin\n"
    daemon.cli("rmi", "heredoc/t:1", check=True)


def test_onbuild_triggers_run_in_the_child_only(daemon: Daemon, tmp_path: Path) -> None:
    context(tmp_path / "parent", {"Dockerfile": f"FROM {BASE}\nONBUILD RUN echo triggered > /t\n"})
    assert build(daemon, tmp_path / "parent", "-t", "onbuild/parent:1").returncode == 0
    context(tmp_path / "child", {"Dockerfile": "FROM onbuild/parent:1\nRUN cat /t\n"})
    child = build(daemon, tmp_path / "child", "-t", "onbuild/child:1")
    assert child.returncode == 0, child.stderr
    assert "# Executing 1 build trigger" in child.stdout
    assert run(daemon, "onbuild/child:1", "cat", "/t") == "triggered\n"
    assert inspect(daemon, "onbuild/child:1")["Config"]["OnBuild"] is None
    assert inspect(daemon, "onbuild/parent:1")["Config"]["OnBuild"] == ["RUN echo triggered > /t"]
    daemon.cli("rmi", "onbuild/child:1", "onbuild/parent:1", check=True)


def test_run_steps_use_the_requested_network(daemon: Daemon, tmp_path: Path) -> None:
    # The RUN step records its network namespace and devices. Compared with the daemon's
    # namespace, not with the host's devices: others on this machine change those.
    context(
        tmp_path,
        {
            "Dockerfile": f"FROM {BASE}\n"
            "RUN readlink /proc/self/ns/net > /ns && ls /sys/class/net > /devices\n"
        },
    )
    assert daemon.proc is not None
    host_ns = os.readlink(f"/proc/{daemon.proc.pid}/ns/net")
    isolated = build(daemon, tmp_path, "-t", "net/t:none", "--network", "none")
    assert isolated.returncode == 0, isolated.stderr
    assert run(daemon, "net/t:none", "cat", "/ns").strip() != host_ns
    assert run(daemon, "net/t:none", "cat", "/devices").split() == ["lo"]  # loopback only
    host = build(daemon, tmp_path, "-t", "net/t:host", "--network", "host")
    assert host.returncode == 0, host.stderr
    assert run(daemon, "net/t:host", "cat", "/ns").strip() == host_ns
    daemon.cli("rmi", "net/t:none", "net/t:host", check=True)


def test_quiet_iidfile_and_a_dockerfile_outside_the_context(daemon: Daemon, tmp_path: Path) -> None:
    context(tmp_path / "ctx", {"data.txt": "data\n"})
    (tmp_path / "elsewhere.Dockerfile").write_text(f"FROM {BASE}\nCOPY data.txt /\n")
    iidfile = tmp_path / "iid"
    result = daemon.cli(
        "build",
        "-q",
        "--iidfile",
        str(iidfile),
        "-f",
        str(tmp_path / "elsewhere.Dockerfile"),
        "-t",
        "quiet/t:1",
        str(tmp_path / "ctx"),
    )
    assert result.returncode == 0, result.stderr
    image_id = inspect(daemon, "quiet/t:1")["Id"]
    assert result.stdout == image_id + "\n"  # -q: only the ID
    assert iidfile.read_text() == image_id
    assert run(daemon, "quiet/t:1", "cat", "/data.txt") == "data\n"
    # the Dockerfile travelled in the context under a private name, not copied by `COPY .`
    (tmp_path / "elsewhere.Dockerfile").write_text(f"FROM {BASE}\nCOPY . /ctx/\n")
    docker = docker_build(
        daemon, tmp_path / "ctx", "-f", str(tmp_path / "elsewhere.Dockerfile"), "-t", "quiet/t:2"
    )
    assert docker.returncode == 0, docker.stderr
    assert run(daemon, "quiet/t:2", "ls", "/ctx").split() == ["data.txt"]
    daemon.cli("rmi", "quiet/t:1", "quiet/t:2", check=True)


def test_copy_through_symlinks_in_the_image_stays_in_its_root(
    daemon: Daemon, tmp_path: Path
) -> None:
    host = tmp_path / "host"  # a real host directory the image's symlinks name
    host.mkdir()
    (host / "secret").write_text("host secret\n")
    ctx = context(
        tmp_path / "ctx",
        {
            ".dockerignore": "tree/sub\n!tree/sub/kept\n",
            "x": "from the context\n",
            "tree/top": "top\n",
            "tree/sub/kept": "kept\n",
            "tree/sub/dropped": "dropped\n",
            "Dockerfile": f"""
FROM {BASE} AS stage
RUN mkdir -p {host} && echo stage > {host}/instage && ln -s {host} /hostlink

FROM {BASE}
RUN ln -s /etc /app && ln -s {host} /out && mkdir /merge && ln -s {host} /merge/sub \\
 && mkdir -p {host} && echo image > {host}/mine
COPY x /app/
COPY x /out/
COPY x {host}/deep/
COPY tree /merge/
COPY --from=stage /hostlink/ /fromstage/
RUN cat /etc/x /out/x {host}/x {host}/deep/x /merge/top /merge/sub/kept \\
 && test ! -L /merge/sub && ls /fromstage
""",
        },
    )
    result = build(daemon, ctx, "-t", "links/t:1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("from the context") == 4
    assert "kept\n" in result.stdout and "dropped" not in result.stdout
    assert "host secret" not in result.stdout
    assert run(daemon, "links/t:1", "ls", "/fromstage") == "instage\n"
    # Nothing was written to the host directory the symlinks name.
    assert sorted(p.name for p in host.iterdir()) == ["secret"]
    assert run(daemon, "links/t:1", "cat", f"{host}/mine") == "image\n"
    daemon.cli("rmi", "links/t:1", check=True)
