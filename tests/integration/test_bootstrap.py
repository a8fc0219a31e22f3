"""Base images from the Debian archive, apt inside RUN, and the README's three PHP apps (slow).

These download from the Debian archive (the mirror this host's apt uses). A
test daemon leaves the host's global `ip_forward` switch as it is, so outbound
NAT from its bridge cannot be counted on here: the builds use `--network host`
for their RUN steps to reach the archive (the README's main job builds on the
default bridge). The apps are published on the host's loopback as usual.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import REPO, Daemon, new_base

pytestmark = pytest.mark.slow

APPS = REPO / "examples" / "three-apps"


@pytest.fixture(scope="module")
def debian() -> Iterator[Daemon]:
    d = Daemon(new_base())
    d.start()
    yield d
    d.cleanup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_bootstrap_makes_a_base_image_once(debian: Daemon) -> None:
    first = debian.cli("bootstrap", "debian:bookworm", timeout=900)
    assert first.returncode == 0, first.stdout + first.stderr
    assert (
        "mmdebstrap" in first.stdout and "Successfully bootstrapped debian:bookworm" in first.stdout
    )
    image = json.loads(debian.cli("image", "inspect", "debian:bookworm", check=True).stdout)[0]
    assert image["Config"]["Cmd"] == ["bash"]
    assert len(image["RootFS"]["Layers"]) == 1
    assert debian.cli(
        "run", "--rm", "debian:bookworm", "cat", "/etc/debian_version"
    ).stdout.startswith("12.")
    # the same inputs again: no download, the same image, tagged again
    started = time.monotonic()
    again = debian.cli("bootstrap", "debian:bookworm", check=True)
    assert time.monotonic() - started < 10
    assert "bootstrapped before" in again.stdout
    again_id = json.loads(debian.cli("image", "inspect", "debian:bookworm").stdout)[0]["Id"]
    assert again_id == image["Id"]
    bad = debian.cli("bootstrap", "debian")
    assert bad.returncode != 0 and "NAME:SUITE" in bad.stderr


def test_apt_get_install_inside_run(debian: Daemon, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM debian:bookworm\n"
        "RUN apt-get update && apt-get install -y --no-install-recommends hello "
        "&& rm -rf /var/lib/apt/lists/*\n"
        'CMD ["hello"]\n'
    )
    # --network host: the RUN step needs the Debian archive (see the module docstring)
    result = debian.cli(
        "build", "--network", "host", "-t", "hello/deb:1", str(tmp_path), timeout=900
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Setting up hello" in result.stdout
    assert debian.cli("run", "--rm", "hello/deb:1").stdout == "Hello, world!\n"
    cached = debian.cli("build", "--network", "host", "-t", "hello/deb:1", str(tmp_path))
    assert cached.stdout.count("Using cache") == 2


def test_the_three_apps_answer_with_their_own_php(debian: Daemon) -> None:
    bullseye = debian.cli("bootstrap", "debian:bullseye", timeout=900)
    assert bullseye.returncode == 0, bullseye.stdout + bullseye.stderr
    builds = [
        ("app1", []),
        ("app2", ["--build-arg", "PHP=7.4"]),
        ("app3", []),
    ]
    for app, extra in builds:
        result = debian.cli(
            "build",
            "--network",
            "host",
            "-t",
            f"shop/{app}:1",
            *extra,
            str(APPS / app),
            timeout=900,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    expected = {
        "app1": "App1 running on PHP 8.2.",
        "app2": "App2 running on PHP 7.4.",
        "app3": "App3 running on PHP 8.2.",
    }
    ports = {}
    for app in expected:
        ports[app] = free_port()
        debian.cli(
            "run",
            "-d",
            "--name",
            app,
            "-p",
            f"127.0.0.1:{ports[app]}:80",
            f"shop/{app}:1",
            check=True,
        )
    try:
        for app, prefix in expected.items():
            answer = ""
            for _ in range(100):
                try:
                    url = f"http://127.0.0.1:{ports[app]}/"
                    answer = urllib.request.urlopen(url, timeout=2).read().decode()
                    break
                except OSError:
                    time.sleep(0.1)
            assert answer.startswith(prefix), (app, answer)
    finally:
        debian.cli("rm", "-f", *expected)
