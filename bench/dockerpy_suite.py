"""docker-py's own integration suite (7.2.0) run against a private Dockyard daemon.

Usage (root):
    .venv/bin/python bench/dockerpy_suite.py --source DIR [--json FILE] [--junit FILE]
        [--out DIR] [--timeout S] [--host-mounts] [-- PYTEST ARGS...]

e.g. `-- -k ArchiveTest` runs only the archive tests.

DIR is a copy of the docker/docker-py repository at tag 7.2.0: a checkout made with
`git clone --branch 7.2.0 https://github.com/docker/docker-py`, its git directory (a
clone or mirror holding that tag), or an unpacked source tree of that tag. The copy is
checked against the tag's pinned commit and tree hashes below and refused if it is
anything else. Nothing is fetched from the network at run time except, the first time,
the suite's own Python test dependencies (pinned below) from PyPI into a virtualenv kept
under ~/.cache/dockyard-bench/ ($XDG_CACHE_HOME is honoured).

What it does:
* copies the suite's `docker/` package, `tests/` and `pytest.ini` into a run directory
  (so the source is never written to) and runs `tests/integration` with pytest,
  DOCKER_HOST pointing at a private Dockyard daemon (tests/harness.py `Daemon`) and
  DOCKER_TEST_API_VERSION=1.45;
* makes the images the suite expects locally, as a fixture would: `alpine:3.10` (the
  suite's TEST_IMG), `alpine:latest` and `busybox:latest`, from the example busybox root
  filesystem (examples/busybox/make-rootfs.sh); the alpine ones add what the tests
  rely on in Alpine's base layout (a `postgres` user, /var/opt);
* leaves out what issue 11 leaves out, plus one test that would send traffic off this
  machine (EXCLUDED, with a reason each), and marks the
  tests that cannot pass without Docker Hub (NEEDS_HUB, each checked to really pull)
  and the one that cannot pass over a unix socket (NEEDS_TCP), reported apart;
* prints the counts and one line per failure (the exception's message), and writes
  pytest's JUnit XML and a JSON summary for diffing runs.

Each run keeps its pytest log, JUnit XML, JSON summary and the daemon's log under
--out (default ~/.cache/dockyard-bench/dockerpy-runs/<time>/). The exit status is 0
when every test that ran passed or could not pass on this setup (the lists above).

Where / is not a shared mount (hosts without systemd), the run goes on in a mount
namespace of its own with / made rshared, as docker-py's CI (docker:dind) has it;
--host-mounts keeps the host's namespace.

A per-test time limit (--timeout, pytest-timeout) keeps one hung call from stalling
the whole run; it is a guard for the runner, not part of any test's assertion.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import engines  # noqa: E402
from tests.harness import Daemon, build_busybox_rootfs, new_base  # noqa: E402

TAG = "7.2.0"
# The pins: `git rev-parse 7.2.0^{commit}` and `git rev-parse 7.2.0:<path>` in docker-py.
PINNED_COMMIT = "5ad5327fba623897ee9a527d7eee1b01703e0726"
PINNED_PATHS = {
    "docker": "bbd96e8965a6e8dd89e26f0bbb06e2ff8dc1ddb1",  # tree
    "tests": "28abeb75a90c08a817d5680a6a598c6ea62d6fd0",  # tree
    "pytest.ini": "d4f718e78241abafb8ca6ac5ae3cfd9f354f76c9",  # blob
}
API_VERSION = "1.45"

# The suite's test dependencies, every one pinned and installed without resolution
# (--no-deps), so a run is the same wherever it happens. pytest 7.4.2 and
# pytest-timeout 2.1.0 are the versions docker-py 7.2.0's own `dev` extra pins;
# paramiko is imported by tests/helpers.py; websocket-client serves attach_socket(ws=True).
REQUIREMENTS = """\
pytest==7.4.2
iniconfig==2.0.0
packaging==24.1
pluggy==1.5.0
pytest-timeout==2.1.0
requests==2.32.3
urllib3==2.2.3
idna==3.10
certifi==2024.8.30
charset-normalizer==3.4.0
paramiko==3.5.0
bcrypt==4.2.0
cryptography==43.0.3
pynacl==1.5.0
cffi==1.17.1
pycparser==2.22
websocket-client==1.8.0
"""

_I = "tests/integration/"

# What issue 11 leaves out of the target, as pytest node id prefixes, and why.
EXCLUDED: dict[str, str] = {
    _I + "api_swarm_test.py": "swarm mode: Dockyard has no swarm",
    _I + "models_swarm_test.py": "swarm mode: Dockyard has no swarm",
    _I + "models_nodes_test.py": "swarm nodes: Dockyard has no swarm",
    _I + "api_service_test.py": "swarm services: Dockyard has no swarm",
    _I + "models_services_test.py": "swarm services: Dockyard has no swarm",
    _I + "api_secret_test.py": "swarm secrets: Dockyard has no swarm",
    _I + "api_config_test.py": "swarm configs: Dockyard has no swarm",
    _I + "api_network_test.py::TestNetworks::test_create_network_attachable": (
        "initialises a swarm and creates an overlay network"
    ),
    _I + "api_network_test.py::TestNetworks::test_create_network_ingress": (
        "initialises a swarm and creates an ingress overlay network"
    ),
    _I + "api_network_test.py::TestNetworks::test_create_inspect_network_with_scope": (
        "initialises a swarm and creates a swarm-scoped overlay network"
    ),
    _I + "context_api_test.py": "client-side contexts (~/.docker/contexts), no engine API",
    _I + "credentials/": "credential helpers: need docker-credential-pass and a gpg store",
    # The plugin tests install vieux/sshfs from Docker Hub; test_create_plugin builds
    # its plugin from the suite's own testdata and stays in.
    **{
        f"{_I}api_plugin_test.py::PluginTest::{test}": "installs vieux/sshfs from Docker Hub"
        for test in (
            "test_configure_plugin",
            "test_disable_plugin",
            "test_enable_plugin",
            "test_force_remove_plugin",
            "test_inspect_plugin",
            "test_install_plugin",
            "test_list_plugins",
            "test_plugin_privileges",
            "test_remove_plugin",
            "test_upgrade_plugin",
        )
    },
    # Not in issue 11's list, but this machine must not send traffic to addresses
    # that are not its own, and the test is about docker-py's socket timeout only.
    _I + "api_client_test.py::ConnectionTimeoutTest": (
        "connects to 192.168.10.2:4243, an address outside this machine"
    ),
}

# Tests that cannot pass without Docker Hub: each pulls (or queries) an image there.
# A pull goes to the registry even when a local image has the name, so local copies
# cannot stand in. Their failures are reported apart as "needs Docker Hub".
NEEDS_HUB: dict[str, str] = {
    _I + "api_image_test.py::PullImageTest::test_pull": "pulls hello-world",
    _I + "api_image_test.py::PullImageTest::test_pull_streaming": "pulls hello-world",
    _I + "api_image_test.py::ImportImageTest::test_get_load_image": "pulls hello-world:latest",
    _I + "api_image_test.py::PruneImagesTest::test_prune_images": "pulls hello-world:latest",
    _I + "api_image_test.py::InspectDistributionTest::test_inspect_distribution": (
        "asks Docker Hub for busybox:latest's manifest (GET /distribution/.../json)"
    ),
    _I + "models_images_test.py::ImageCollectionTest::test_list": "pulls alpine:latest",
    _I + "models_images_test.py::ImageCollectionTest::test_list_with_repository": (
        "pulls alpine:latest"
    ),
    _I + "models_images_test.py::ImageCollectionTest::test_pull": "pulls alpine:latest",
    _I + "models_images_test.py::ImageCollectionTest::test_pull_with_tag": "pulls alpine:3.10",
    _I + "models_images_test.py::ImageCollectionTest::test_pull_with_sha": (
        "pulls hello-world by digest"
    ),
    _I + "models_images_test.py::ImageCollectionTest::test_pull_multiple": (
        "pulls every tag of hello-world"
    ),
    _I + "models_images_test.py::ImageTest::test_tag_and_remove": "pulls alpine:latest",
    _I + "models_containers_test.py::ContainerCollectionTest::"
    "test_run_with_image_that_does_not_exist": (
        "pulls dockerpytest_does_not_exist and expects Docker Hub's 404 (ImageNotFound)"
    ),
}

# Tests that cannot pass while the suite reaches the daemon over a unix socket.
NEEDS_TCP: dict[str, str] = {
    _I + "api_container_test.py::AttachContainerTest::test_run_container_reading_socket_ws": (
        "docker-py's websocket attach works only with a tcp:// DOCKER_HOST: with unix:// "
        "it builds an http+docker:// URL that websocket-client refuses before any request"
    ),
}

# Alpine's base layout has users and directories that the tests use: `exec --user
# postgres` (api_exec_test), `exec --workdir /var/opt`. The example busybox rootfs has
# neither, so the alpine images get them on top.
ALPINE_PASSWD = b"""\
root:x:0:0:root:/root:/bin/sh
bin:x:1:1:bin:/bin:/sbin/nologin
daemon:x:2:2:daemon:/sbin:/sbin/nologin
postgres:x:70:70:postgres:/var/lib/postgresql:/bin/sh
nobody:x:65534:65534:nobody:/:/sbin/nologin
"""
ALPINE_GROUP = b"""\
root:x:0:root
bin:x:1:root,bin,daemon
daemon:x:2:root,bin,daemon
wheel:x:10:root
postgres:x:70:
nogroup:x:65533:
nobody:x:65534:
"""
ALPINE_DIRS = ("var", "var/opt", "var/tmp", "var/lib", "usr", "usr/local", "usr/local/bin")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Result:
    """One test's outcome as the summary and the JSON show it."""

    id: str
    outcome: str  # passed, failed, error, skipped, xfailed (the suite marks some xfail)
    reason: str
    seconds: float
    cannot_pass: str | None  # "needs Docker Hub: ..." or "needs a TCP DOCKER_HOST: ..."


# -- a host like docker-py's CI ---------------------------------------------------

SHARED_ROOT_MARK = "DOCKYARD_BENCH_SHARED_ROOT"


def root_is_shared() -> bool:
    """Whether / is a shared mount here, as systemd (and docker:dind) make it."""
    shared = False
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == "/":  # the last entry for / is the one on top
            shared = any(f.startswith("shared:") for f in fields[6 : fields.index("-")])
    return shared


def with_shared_root() -> None:
    """Go on in a mount namespace of this run's own whose / is shared.

    The suite's `rshared` bind test needs its /tmp source on a shared mount, and a
    daemon answers as moby does ("... is not a shared mount") where / is private, as
    on hosts without systemd. docker-py's CI runs under docker:dind, which makes /
    rshared, so the run does the same, in a namespace where every mount is first
    made private: nothing propagates to or from the host's mounts.
    """
    if os.environ.get(SHARED_ROOT_MARK) == "1":
        subprocess.run(["mount", "--make-rshared", "/"], check=True)
        return
    if root_is_shared():
        return
    argv = ["unshare", "--mount", "--propagation", "private", "--"]
    argv += [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]]
    os.execvpe("unshare", argv, {**os.environ, SHARED_ROOT_MARK: "1"})


# -- the pinned source ---------------------------------------------------------


def git_object_id(kind: str, body: bytes) -> str:
    return hashlib.sha1(f"{kind} {len(body)}\0".encode() + body).hexdigest()


def git_tree_id(path: Path) -> str | None:
    """The id git gives the tree at `path` (None for a tree git would not store).

    Python's byte-code caches are not part of the tree and are left out.
    """
    entries: list[tuple[bytes, bytes, str]] = []
    for child in path.iterdir():
        if child.name in ("__pycache__", ".pytest_cache") or child.name.endswith(".pyc"):
            continue
        info = child.lstat()
        if stat.S_ISLNK(info.st_mode):
            mode, oid = b"120000", git_object_id("blob", os.fsencode(os.readlink(child)))
        elif stat.S_ISDIR(info.st_mode):
            sub = git_tree_id(child)
            if sub is None:
                continue
            mode, oid = b"40000", sub
        else:
            mode = b"100755" if info.st_mode & stat.S_IXUSR else b"100644"
            oid = git_object_id("blob", child.read_bytes())
        name = os.fsencode(child.name)
        entries.append((name + (b"/" if mode == b"40000" else b""), mode + b" " + name, oid))
    if not entries:
        return None
    entries.sort()
    body = b"".join(head + b"\0" + bytes.fromhex(oid) for _, head, oid in entries)
    return git_object_id("tree", body)


def verify_tree(root: Path) -> None:
    """Refuse a tree whose docker/, tests/ or pytest.ini differ from the tag's."""
    wrong = []
    for name, pinned in PINNED_PATHS.items():
        path = root / name
        if path.is_dir():
            found = git_tree_id(path)
        elif path.is_file():
            found = git_object_id("blob", path.read_bytes())
        else:
            found = None
        if found != pinned:
            wrong.append(f"{name} ({'missing' if found is None else 'differs'})")
    if wrong:
        raise SystemExit(
            f"{root} is not docker-py {TAG}: {', '.join(wrong)} from the tag's content. "
            f"Get the right copy with: git clone --branch {TAG} "
            "https://github.com/docker/docker-py"
        )


def is_git_dir(path: Path) -> bool:
    return (path / "HEAD").is_file() and (path / "objects").is_dir()


def stage_source(source: Path, run_dir: Path) -> Path:
    """The suite's files from `source`, verified, copied into `run_dir/docker-py`."""
    target = run_dir / "docker-py"
    target.mkdir()
    parts = list(PINNED_PATHS)
    if (source / "docker").is_dir() and (source / "tests").is_dir():
        verify_tree(source)
        for name in parts:
            if (source / name).is_dir():
                shutil.copytree(
                    source / name, target / name, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                shutil.copy2(source / name, target / name)
    elif is_git_dir(source) or is_git_dir(source / ".git"):
        git_dir = source if is_git_dir(source) else source / ".git"
        git = ["git", f"--git-dir={git_dir}"]
        tagged = subprocess.run(
            [*git, "rev-parse", "--verify", "-q", f"refs/tags/{TAG}^{{commit}}"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        if tagged and tagged != PINNED_COMMIT:
            raise SystemExit(f"{source}: tag {TAG} is {tagged}, not docker-py's {PINNED_COMMIT}")
        has_commit = subprocess.run(
            [*git, "cat-file", "-e", f"{PINNED_COMMIT}^{{commit}}"], capture_output=True
        )
        if has_commit.returncode != 0:
            raise SystemExit(
                f"{source} does not hold docker-py {TAG} (commit {PINNED_COMMIT}). Get it "
                f"with: git clone --branch {TAG} https://github.com/docker/docker-py"
            )
        archive = subprocess.run(
            [*git, "archive", "--format=tar", PINNED_COMMIT, *parts],
            capture_output=True,
            check=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(target, filter="data")
        verify_tree(target)
    else:
        raise SystemExit(
            f"{source} is neither a docker-py source tree nor a git directory. Get one with: "
            f"git clone --branch {TAG} https://github.com/docker/docker-py"
        )
    return target


# -- the suite's Python --------------------------------------------------------


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dockyard-bench"


def suite_python() -> Path:
    """A virtualenv of the suite's own with REQUIREMENTS, made once and reused."""
    venv = cache_dir() / f"dockerpy-{TAG}-venv"
    python = venv / "bin" / "python"
    stamp = venv / "requirements.txt"
    if python.exists() and stamp.exists() and stamp.read_text() == REQUIREMENTS:
        return python
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    print(f"making the suite's virtualenv in {venv} (PyPI, pinned)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as reqs:
        reqs.write(REQUIREMENTS)
        reqs.flush()
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
             "--no-deps", "--only-binary=:all:", "-r", reqs.name],
            check=True,
        )  # fmt: skip
    stamp.write_text(REQUIREMENTS)  # written last: a broken install is redone next time
    return python


# -- the images ----------------------------------------------------------------


def alpine_rootfs(busybox_tar: Path) -> bytes:
    """The busybox rootfs with Alpine's users, groups and directories the tests use."""
    out = io.BytesIO()
    with tarfile.open(busybox_tar) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for member in src.getmembers():
            if member.name.lstrip("./") in ("etc/passwd", "etc/group"):
                continue
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        for name in ALPINE_DIRS:
            info = tarfile.TarInfo("./" + name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
            dst.addfile(info)
        for name, data in (("etc/passwd", ALPINE_PASSWD), ("etc/group", ALPINE_GROUP)):
            info = tarfile.TarInfo("./" + name)
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            dst.addfile(info, io.BytesIO(data))
    return out.getvalue()


def import_image(daemon: Daemon, rootfs: bytes, repo: str, tag: str, changes: list[str]) -> None:
    query = urllib.parse.urlencode(
        [("fromSrc", "-"), ("repo", repo), ("tag", tag), *(("changes", c) for c in changes)]
    )
    status, body = daemon.api(
        "POST", f"/images/create?{query}", rootfs, {"Content-Type": "application/x-tar"}
    )
    if status != 200 or '"error' in (
        body.decode() if isinstance(body, bytes) else json.dumps(body)
    ):
        raise RuntimeError(f"importing {repo}:{tag} failed: {status} {body!r}")


def make_images(daemon: Daemon, base: Path) -> None:
    busybox_tar = build_busybox_rootfs(base)
    alpine = alpine_rootfs(busybox_tar)
    env = f"ENV PATH={PATH}"
    # Imported one by one, so each name is its own image as on a real machine.
    import_image(daemon, alpine, "alpine", "3.10", [env, 'CMD ["/bin/sh"]'])
    import_image(daemon, alpine, "alpine", "latest", [env, 'CMD ["/bin/sh"]'])
    import_image(daemon, busybox_tar.read_bytes(), "busybox", "latest", [env, 'CMD ["sh"]'])


# -- running and reading the results ---------------------------------------------


def node_id(case: ET.Element, suite: Path) -> str:
    """pytest's node id back from a JUnit test case (its classname is dotted)."""
    parts = case.get("classname", "").split(".")
    name = case.get("name", "")
    # tests.integration.api_container_test.SomeTest: the longest prefix that names a
    # file of the suite is the module; what follows it is the class, if any.
    for i in range(len(parts), 0, -1):
        module = "/".join(parts[:i]) + ".py"
        if (suite / module).is_file():
            return "::".join([module, *parts[i:], name])
    return "::".join([*parts, name])


def one_line(message: str) -> str:
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def cannot_pass(test: str) -> str | None:
    if test in NEEDS_HUB:
        return "needs Docker Hub: " + NEEDS_HUB[test]
    if test in NEEDS_TCP:
        return "needs a TCP DOCKER_HOST: " + NEEDS_TCP[test]
    return None


def read_junit(path: Path, suite: Path) -> list[Result]:
    results: list[Result] = []
    for case in ET.parse(path).getroot().iter("testcase"):
        test = node_id(case, suite)
        outcome, reason = "passed", ""
        # A test that fails and then errors in teardown counts as failed.
        for kind in ("error", "failure", "skipped"):
            element = case.find(kind)
            if element is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[kind]
                if element.get("type") == "pytest.xfail":
                    outcome = "xfailed"
                reason = one_line(element.get("message", "") or (element.text or ""))
        results.append(
            Result(test, outcome, reason, float(case.get("time", "0")), cannot_pass(test))
        )
    return results


def run_suite(
    python: Path, suite: Path, daemon: Daemon, out: Path, timeout: int, extra: list[str]
) -> Path:
    junit = out / "junit.xml"
    config = out / "docker-config"  # an empty client config: no host proxies or auths
    config.mkdir(exist_ok=True)
    # The suite's temporary files and bind-mount sources (some of which it never
    # removes) go with the daemon's directory, not into the host's /tmp.
    tmp = daemon.base / "tmp"
    tmp.mkdir(exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DOCKER_") and k not in ("PYTHONPATH", "PYTHONHOME")
    }
    env.update(
        DOCKER_HOST=daemon.host,
        DOCKER_TEST_API_VERSION=API_VERSION,
        DOCKER_CONFIG=str(config),
        PYTHONDONTWRITEBYTECODE="1",
        TMPDIR=str(tmp),
    )
    selection = []
    for prefix in EXCLUDED:
        if prefix.endswith(".py") or prefix.endswith("/"):
            selection.append(f"--ignore={prefix}")
        else:
            selection.append(f"--deselect={prefix}")
    argv = [
        str(python), "-m", "pytest", "tests/integration", "-v", "-p", "no:cacheprovider",
        f"--junitxml={junit}", f"--timeout={timeout}", *selection, *extra,
    ]  # fmt: skip
    log_path = out / "pytest.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            argv, cwd=suite, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        echo = True  # the per-test lines live; tracebacks and summaries go to the log only
        for line in proc.stdout:
            log.write(line)
            if line.startswith("=") and any(
                word in line for word in ("FAILURES", "ERRORS", "warnings summary", "short test")
            ):
                echo = False
            if echo:
                sys.stdout.write(line)
                sys.stdout.flush()
        proc.wait()
    if not junit.exists():
        raise SystemExit(f"pytest wrote no results (exit {proc.returncode}); see {log_path}")
    return junit


def summarise(results: list[Result]) -> tuple[dict[str, int], str]:
    counts = {k: 0 for k in ("passed", "failed", "error", "skipped", "xfailed")}
    for r in results:
        counts[r.outcome] += 1
    bad = [r for r in results if r.outcome in ("failed", "error")]
    own = [r for r in bad if not r.cannot_pass]
    outside = [r for r in bad if r.cannot_pass]
    lines = [
        f"docker-py {TAG} tests/integration against Dockyard (API {API_VERSION}): "
        f"{counts['passed']} passed, {counts['failed']} failed, {counts['error']} errors, "
        f"{counts['skipped']} skipped, {counts['xfailed']} xfailed of {len(results)}",
        f"  not passing for Dockyard's own reasons: {len(own)}; for want of Docker Hub: "
        f"{sum(1 for r in outside if r.id in NEEDS_HUB)}; for want of a TCP API socket: "
        f"{sum(1 for r in outside if r.id in NEEDS_TCP)}",
    ]
    if own:
        lines.append("\nFailures:")
        lines += [f"  {r.outcome.upper():6} {r.id}\n         {r.reason}" for r in own]
    if outside:
        lines.append("\nCannot pass on this setup (offline, unix socket):")
        lines += [
            f"  {r.outcome.upper():6} {r.id}\n         {r.cannot_pass}\n         {r.reason}"
            for r in outside
        ]
    skipped = [r for r in results if r.outcome in ("skipped", "xfailed")]
    if skipped:
        lines.append("\nSkipped and expected failures (as the suite marks them):")
        lines += [f"  {r.id} ({r.outcome}): {r.reason}" for r in skipped]
    passed_anyway = [r for r in results if r.cannot_pass and r.outcome == "passed"]
    if passed_anyway:
        lines.append("\nListed as unable to pass here, but passed (update the lists):")
        lines += [f"  {r.id}" for r in passed_anyway]
    return counts, "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--source",
        type=Path,
        required=True,
        help=f"docker-py at tag {TAG}: a checkout, its git dir or an unpacked tree "
        f"(git clone --branch {TAG} https://github.com/docker/docker-py)",
    )
    parser.add_argument("--json", type=Path, help="also write the JSON summary here")
    parser.add_argument("--junit", type=Path, help="also write pytest's JUnit XML here")
    parser.add_argument("--out", type=Path, help="directory for this run's logs and results")
    parser.add_argument(
        "--timeout", type=int, default=120, help="seconds before one hung test is stopped"
    )
    parser.add_argument(
        "--host-mounts",
        action="store_true",
        help="run in the host's mount namespace even where / is not a shared mount",
    )
    parser.add_argument("pytest_args", nargs="*", help="after --: more pytest arguments")
    args = engines.parse_as_root(parser)
    if not args.host_mounts:
        with_shared_root()

    out = args.out or cache_dir() / "dockerpy-runs" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    python = suite_python()
    daemon = Daemon(new_base())
    try:
        suite = stage_source(args.source.resolve(), daemon.base)
        daemon.start()
        make_images(daemon, daemon.base)
        junit = run_suite(python, suite, daemon, out, args.timeout, args.pytest_args)
        results = read_junit(junit, suite)
    finally:
        if daemon.log_path.exists():
            shutil.copy(daemon.log_path, out / "daemon.log")
        daemon.cleanup()

    counts, text = summarise(results)
    print()
    print(text)
    document = {
        "suite": f"docker-py {TAG} tests/integration",
        "commit": PINNED_COMMIT,
        "api_version": API_VERSION,
        "counts": {**counts, "total": len(results)},
        "tests": [asdict(r) for r in results],
        "excluded": EXCLUDED,
        "needs_hub": NEEDS_HUB,
        "needs_tcp": NEEDS_TCP,
    }
    (out / "results.json").write_text(json.dumps(document, indent=1) + "\n")
    if args.json:
        args.json.write_text(json.dumps(document, indent=1) + "\n")
    if args.junit:
        shutil.copy(junit, args.junit)
    print(f"\nlogs and results: {out}")
    own_failures = [r for r in results if r.outcome in ("failed", "error") and not r.cannot_pass]
    sys.exit(1 if own_failures else 0)


if __name__ == "__main__":
    main()
