"""Real ecosystem clients for integration tests: compose v2 and buildx as docker CLI
plugins, and compose v1, run against a test daemon without touching the host's setup.

* Compose v2 (2.26.x) and buildx (0.13.x) come from Debian trixie's `docker-compose`
  and `docker-buildx` packages (static Go binaries that run on Debian 12 too). apt
  downloads them with a sources list, package lists, cache and dpkg status of this
  module's own, so the host's apt state and sources stay as they are; `dpkg-deb -x`
  unpacks them into the cache. Nothing is installed on the host.
* Compose v1 (1.29.2) is the Python program from PyPI, in a virtualenv of its own with
  every dependency pinned: docker-py 5.0 as it was released with (7 dropped arguments
  it passes), requests < 2.32 (which broke docker-py < 7.1's unix socket adapter) and
  PyYAML < 6, which has no wheel for current Pythons and builds from source (pure
  Python when no compiler is present).
* `docker_config(daemon)` is the daemon's own DOCKER_CONFIG directory (the one
  `Daemon.docker()` already uses) with `cli-plugins/` linking to the cached binaries,
  so `daemon.docker("compose", ...)` works; `client_env(daemon)` is the environment
  for running `docker compose`, `docker buildx` or `docker-compose` against it,
  `compose_command("v1" | "v2")` the command line of either compose, and
  `run_client(daemon, argv, cwd)` runs one.

The cache lives under $DOCKYARD_TEST_CACHE (default ~/.cache/dockyard-tests), is made
once and shared by every test session; a lock file keeps concurrent sessions from
downloading at the same time, and each part appears by an atomic rename when whole.
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.harness import Daemon

DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

# package -> the upstream version its Debian version must start with
CLI_PLUGIN_PACKAGES = {"docker-compose": "2.26.", "docker-buildx": "0.13."}
CLI_PLUGINS_PATH = "usr/libexec/docker/cli-plugins"

# Compose v1 and everything it imports, pinned; installed with --no-deps.
COMPOSE_V1_BUILD_REQUIREMENTS = """\
setuptools==69.5.1
wheel==0.44.0
cython==0.29.37
"""
COMPOSE_V1_REQUIREMENTS = """\
docker-compose==1.29.2
docker==5.0.3
requests==2.31.0
urllib3==1.26.20
idna==3.10
certifi==2024.8.30
charset-normalizer==3.4.0
packaging==24.1
websocket-client==0.59.0
dockerpty==0.4.1
six==1.16.0
docopt==0.6.2
texttable==1.7.0
jsonschema==3.2.0
attrs==24.2.0
pyrsistent==0.20.0
python-dotenv==0.21.1
distro==1.9.0
PyYAML==5.4.1
paramiko==3.5.0
bcrypt==4.2.0
cryptography==43.0.3
pynacl==1.5.0
cffi==1.17.1
pycparser==2.22
"""


def cache_root() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dockyard-tests"
    root = Path(os.environ.get("DOCKYARD_TEST_CACHE") or default)
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextmanager
def _cache_lock() -> Iterator[None]:
    """Held while a part of the cache is made, across processes."""
    with open(cache_root() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(argv: Sequence[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr}")
    return result


# -- Debian packages through a private apt -------------------------------------


def _apt_options(state: Path) -> list[str]:
    """apt options that confine apt to `state`: sources, lists, cache and dpkg status."""
    return [
        f"-o=Dir::Etc::SourceList={state / 'sources.list'}",
        "-o=Dir::Etc::SourceParts=/dev/null",
        f"-o=Dir::State::Lists={state / 'lists'}",
        f"-o=Dir::State::Status={state / 'status'}",
        f"-o=Dir::Cache={state / 'cache'}",
        "-o=APT::Sandbox::User=root",  # the private dirs are root's; _apt cannot write them
    ]


def debian_packages(suite: str, packages: Sequence[str]) -> Path:
    """A directory with `packages` from Debian `suite` unpacked into it (made once)."""
    root = cache_root() / "debian" / suite / "-".join(sorted(packages))
    if root.is_dir():
        return root
    with _cache_lock():
        if root.is_dir():
            return root
        state = cache_root() / "debian" / suite / "apt"
        for sub in ("lists/partial", "cache/archives/partial"):
            (state / sub).mkdir(parents=True, exist_ok=True)
        (state / "status").touch()
        (state / "sources.list").write_text(
            f"deb [signed-by={DEBIAN_KEYRING}] {DEBIAN_MIRROR} {suite} main\n"
        )
        options = _apt_options(state)
        _run(["apt-get", "-q", *options, "update"])
        with tempfile.TemporaryDirectory(dir=root.parent) as work:
            debs = Path(work) / "debs"
            debs.mkdir()
            _run(["apt-get", "-q", *options, "download", *packages], cwd=debs)
            unpacked = Path(work) / "root"
            for deb in sorted(debs.glob("*.deb")):
                _run(["dpkg-deb", "-x", str(deb), str(unpacked)])
                name = _run(["dpkg-deb", "-f", str(deb), "Package"]).stdout.strip()
                version = _run(["dpkg-deb", "-f", str(deb), "Version"]).stdout.strip()
                (unpacked / f".{name}.version").write_text(version + "\n")
            unpacked.rename(root)
    return root


@functools.cache
def cli_plugins() -> Path:
    """The directory holding compose v2's and buildx's docker CLI plugin binaries."""
    root = debian_packages("trixie", sorted(CLI_PLUGIN_PACKAGES))
    for package, upstream in CLI_PLUGIN_PACKAGES.items():
        version = (root / f".{package}.version").read_text().strip()
        if not version.startswith(upstream):
            raise RuntimeError(f"Debian trixie's {package} is {version}, not {upstream}x")
    return root / CLI_PLUGINS_PATH


def docker_config(daemon: Daemon) -> Path:
    """The daemon's DOCKER_CONFIG directory, with compose and buildx as CLI plugins."""
    config = daemon.base / "docker"
    plugins = config / "cli-plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    for binary in ("docker-compose", "docker-buildx"):
        link = plugins / binary
        if not link.exists():
            link.symlink_to(cli_plugins() / binary)
    return config


# -- compose v1 ----------------------------------------------------------------


@functools.cache
def compose_v1() -> Path:
    """The `docker-compose` 1.29.2 executable, from a virtualenv of its own (made once)."""
    venv = cache_root() / "compose-v1.29.2"
    executable = venv / "bin" / "docker-compose"
    stamp = venv / "requirements.txt"
    wanted = COMPOSE_V1_BUILD_REQUIREMENTS + COMPOSE_V1_REQUIREMENTS
    if stamp.exists() and stamp.read_text() == wanted:
        return executable
    with _cache_lock():
        if stamp.exists() and stamp.read_text() == wanted:
            return executable
        shutil.rmtree(venv, ignore_errors=True)
        _run([sys.executable, "-m", "venv", str(venv)])
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        pip += ["--disable-pip-version-check", "--no-deps"]
        for requirements, extra in (
            (COMPOSE_V1_BUILD_REQUIREMENTS, []),
            # PyYAML 5.4.1 builds with the Cython 0.29 installed above, not the newest
            (COMPOSE_V1_REQUIREMENTS, ["--no-build-isolation"]),
        ):
            with tempfile.NamedTemporaryFile("w", suffix=".txt") as file:
                file.write(requirements)
                file.flush()
                _run([*pip, *extra, "-r", file.name])
        stamp.write_text(wanted)  # last: an interrupted install is redone next time
    return executable


# -- running them --------------------------------------------------------------


def client_env(daemon: Daemon) -> dict[str, str]:
    """Environment for `docker compose`, `docker buildx` and `docker-compose` (v1)
    against `daemon`: its socket and its own DOCKER_CONFIG with the CLI plugins."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))}
    env["DOCKER_HOST"] = daemon.host
    env["DOCKER_CONFIG"] = str(docker_config(daemon))
    return env


def compose_command(version: str) -> list[str]:
    """The compose command line for "v1" (docker-compose 1.29) or "v2" (docker compose)."""
    if version == "v2":
        return ["docker", "compose"]
    if version == "v1":
        return [str(compose_v1())]
    raise ValueError(f"compose version {version!r}: v1 or v2")


def run_client(
    daemon: Daemon, argv: Sequence[str], cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run a client command line (e.g. ["docker", "compose", "up", "-d"]) against `daemon`."""
    return subprocess.run(
        list(argv),
        env=client_env(daemon),
        cwd=cwd,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
    )
