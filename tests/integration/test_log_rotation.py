"""Bounded container logs: `--log-opt max-size/max-file/compress`, the `local` driver,
daemon.json defaults, option validation, and rotation while the daemon is down."""

from __future__ import annotations

import gzip
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from tests.harness import Daemon

IMAGE = "demo/busybox:1"
KB = 1000  # go-units' k, as `max-size=100k` means
# Each output line becomes one record of about 50 bytes: 2000 lines fill 100 kB. The lines
# come in bursts of 500 (a quarter of a 100 kB file) 10 ms apart: the log keeper re-arms
# rotation within that even on a loaded host (see docs/design.md for the bound).
COUNT = "i=1; while [ $i -le 40000 ]; do seq $i $((i+499)); i=$((i+500)); sleep 0.01; done"


def _inspect(d: Daemon, name: str) -> dict:
    return json.loads(d.docker("inspect", name).stdout)[0]


def _log_files(d: Daemon, name: str) -> list[Path]:
    """Every file holding the container's log, oldest first (a file with two names once)."""
    directory = d.data_root / "containers" / _inspect(d, name)["Id"]
    found: dict[int, Path] = {}
    for path in [*sorted((directory / "log").glob("*")), directory / "container.log"]:
        if path.is_file() and not path.is_symlink():
            found.setdefault(path.stat().st_ino, path)
    return list(found.values())


def _wait_exit(d: Daemon, name: str) -> None:
    result = d.docker("wait", name)
    assert result.returncode == 0, result.stderr


def _run(d: Daemon, name: str, *opts: str, command: str = COUNT) -> None:
    result = d.docker("run", "-d", "--name", name, *opts, IMAGE, "sh", "-c", command)
    assert result.returncode == 0, result.stderr


def _numbers(d: Daemon, name: str, *args: str) -> list[int]:
    result = d.docker("logs", *args, name)
    assert result.returncode == 0, result.stderr
    return [int(n) for n in result.stdout.split()]


def _settled(d: Daemon, name: str, check: Callable[[], bool]) -> None:
    """Compression and pruning finish shortly after the container exits."""
    for _ in range(100):
        if check():
            return
        time.sleep(0.1)
    assert check(), _log_files(d, name)


def test_json_file_rotation_keeps_at_most_max_file_files(daemon: Daemon, name: str) -> None:
    d = daemon
    _run(d, name, "--log-opt", "max-size=100k", "--log-opt", "max-file=3")
    _wait_exit(d, name)
    _settled(d, name, lambda: len(_log_files(d, name)) <= 3)
    files = _log_files(d, name)
    assert 2 <= len(files) <= 3, files
    assert all(f.stat().st_size <= 100 * KB for f in files), [f.stat().st_size for f in files]
    # `logs` reads across the files: the newest lines, contiguous, across more than one file.
    numbers = _numbers(d, name)
    assert numbers[-1] == 40000
    assert numbers == list(range(numbers[0], 40001))
    assert len(numbers) > 100 * KB // 50
    assert _numbers(d, name, "--tail", "7") == list(range(39994, 40001))
    config = _inspect(d, name)["HostConfig"]["LogConfig"]
    assert config == {"Type": "json-file", "Config": {"max-size": "100k", "max-file": "3"}}
    d.docker("rm", name)


def test_compressed_rotation_is_read_back(daemon: Daemon, name: str) -> None:
    d = daemon
    _run(
        d,
        name,
        "--log-opt",
        "max-size=100k",
        "--log-opt",
        "max-file=4",
        "--log-opt",
        "compress=true",
    )
    _wait_exit(d, name)
    _settled(d, name, lambda: sum(f.suffix == ".gz" for f in _log_files(d, name)) == 3)
    files = _log_files(d, name)
    assert len(files) == 4
    for f in files[:-1]:
        assert f.suffix == ".gz"
        assert len(gzip.decompress(f.read_bytes())) <= 100 * KB
    numbers = _numbers(d, name)
    assert numbers[-1] == 40000 and numbers == list(range(numbers[0], 40001))
    assert len(numbers) > 3 * 100 * KB // 60
    # A tail longer than the newest file reaches into the compressed ones.
    assert _numbers(d, name, "--tail", "5000") == list(range(35001, 40001))
    d.docker("rm", name)


def test_local_driver_round_trip_and_its_bounds(daemon: Daemon, name: str) -> None:
    d = daemon
    _run(d, name, "--log-driver", "local", command="echo out; echo err >&2")
    _wait_exit(d, name)
    out = d.docker("logs", name)
    assert (out.stdout, out.stderr) == ("out\n", "err\n")
    assert _inspect(d, name)["HostConfig"]["LogConfig"] == {"Type": "local", "Config": {}}
    d.docker("rm", name)
    # local compresses by default and keeps max-file files.
    _run(d, name, "--log-driver", "local", "--log-opt", "max-size=100k", "--log-opt", "max-file=2")
    _wait_exit(d, name)
    _settled(d, name, lambda: [f.suffix for f in _log_files(d, name)] == [".gz", ".log"])
    numbers = _numbers(d, name)
    assert numbers[-1] == 40000 and numbers == list(range(numbers[0], 40001))
    d.docker("rm", name)


def test_invalid_log_options_are_refused_at_create(daemon: Daemon) -> None:
    d = daemon
    cases = [
        ("json-file", {"max-size": "abc"}, "invalid size: 'abc'"),
        ("json-file", {"max-size": "10k", "max-file": "0"}, "max-file cannot be less than 1"),
        ("json-file", {"color": "red"}, "unknown log opt 'color' for json-file log driver"),
        (
            "json-file",
            {"compress": "true"},
            "compress cannot be true when max-file is less than 2 or max-size is not set",
        ),
        ("local", {"max-file": "x"}, "invalid value for max-file: x"),
        ("local", {"color": "red"}, "unknown log opt 'color' for log driver local"),
        ("json-file", {"mode": "fast"}, "logger: logging mode not supported: fast"),
    ]
    before = [c["Id"] for c in d.api("GET", "/containers/json?all=1")[1]]
    for driver, opts, message in cases:
        status, body = d.api(
            "POST",
            "/containers/create",
            {
                "Image": IMAGE,
                "Cmd": ["true"],
                "HostConfig": {"LogConfig": {"Type": driver, "Config": opts}},
            },
        )
        assert status == 400, (opts, body)
        assert message in body["message"], (opts, body)
    after = [c["Id"] for c in d.api("GET", "/containers/json?all=1")[1]]
    assert after == before  # nothing half-made
    # The docker CLI shows the same error.
    result = d.docker("create", "--log-opt", "max-size=abc", IMAGE, "true")
    assert result.returncode != 0 and "invalid size: 'abc'" in result.stderr


def test_daemon_json_log_defaults(own_daemon: Daemon, name: str) -> None:
    d = own_daemon
    d.stop()
    d.config["log-opts"] = {"max-size": "100k", "max-file": "2"}
    d.start()
    info = json.loads(d.docker("info", "--format", "{{json .}}").stdout)
    assert info["LoggingDriver"] == "json-file"
    _run(d, name)
    _wait_exit(d, name)
    config = _inspect(d, name)["HostConfig"]["LogConfig"]
    assert config == {"Type": "json-file", "Config": {"max-size": "100k", "max-file": "2"}}
    _settled(d, name, lambda: len(_log_files(d, name)) <= 2)
    assert all(f.stat().st_size <= 100 * KB for f in _log_files(d, name))
    # A container's own options win key by key.
    other = name + "-own"
    _run(d, other, "--log-opt", "max-file=5", command="true")
    config = _inspect(d, other)["HostConfig"]["LogConfig"]
    assert config == {"Type": "json-file", "Config": {"max-size": "100k", "max-file": "5"}}
    # Another driver does not take json-file's defaults.
    _run(d, name + "-none", "--log-driver", "none", command="true")
    assert _inspect(d, name + "-none")["HostConfig"]["LogConfig"] == {"Type": "none", "Config": {}}
    # The daemon's driver applies to containers that name none.
    d.stop()
    d.config["log-driver"] = "local"
    d.config["log-opts"] = {"max-size": "1m"}
    d.start()
    _run(d, name + "-local", command="echo hi")
    _wait_exit(d, name + "-local")
    config = _inspect(d, name + "-local")["HostConfig"]["LogConfig"]
    assert config == {"Type": "local", "Config": {"max-size": "1m"}}
    assert d.docker("logs", name + "-local").stdout == "hi\n"
    # Bad defaults stop the daemon from starting, as dockerd refuses them.
    d.stop()
    d.config["log-opts"] = {"max-size": "abc"}
    try:
        d.start()
        started = True
    except RuntimeError as e:
        started = False
        assert "invalid size: 'abc'" in str(e)
    assert not started
    d.config["log-opts"] = {}
    d.start()  # the fixture's cleanup needs it running


def test_rotation_goes_on_while_the_daemon_is_down(own_daemon: Daemon, name: str) -> None:
    d = own_daemon
    # About 600 kB/s: several rotations of 100 kB while no daemon looks.
    writer = "i=0; while :; do seq $i $((i+999)); i=$((i+1000)); sleep 0.1; done"
    _run(d, name, "--log-opt", "max-size=100k", "--log-opt", "max-file=3", command=writer)
    directory = d.data_root / "containers" / _inspect(d, name)["Id"]
    time.sleep(1)
    d.kill9()
    time.sleep(4)
    # Down, the files stay bounded: at most two files beyond max-file, each within max-size.
    files = [
        p
        for p in [directory / "container.log", *(directory / "log").glob("*")]
        if p.is_file() and not p.is_symlink()
    ]
    inodes = {os.stat(p).st_ino: p for p in files}
    assert len(inodes) <= 3 + 2, files
    assert all(p.stat().st_size <= 100 * KB for p in inodes.values())
    d.start()
    time.sleep(1)
    _settled(d, name, lambda: len(_log_files(d, name)) <= 3)
    numbers = _numbers(d, name)
    # Still logging, and what is kept is in order.
    assert numbers == sorted(numbers)
    time.sleep(1)
    assert _numbers(d, name)[-1] > numbers[-1]
    assert all(f.stat().st_size <= 100 * KB for f in _log_files(d, name))
    d.docker("rm", "-f", name)


def test_follow_reads_on_across_rotations(daemon: Daemon, name: str) -> None:
    d = daemon
    # 20 000 lines in bursts: about 20 rotations while the follower reads.
    writer = "i=1; while [ $i -le 20000 ]; do seq $i $((i+999)); i=$((i+1000)); sleep 0.05; done"
    _run(d, name, "--log-opt", "max-size=50k", "--log-opt", "max-file=100", command=writer)
    followed = d.docker("logs", "-f", name)
    assert followed.returncode == 0, followed.stderr
    assert [int(n) for n in followed.stdout.split()] == list(range(1, 20001))
    assert len(_log_files(d, name)) > 10
    # --since finds its place in the middle of the files (skipping the earlier ones).
    stamped = d.docker("logs", "-t", name).stdout.splitlines()
    since = stamped[10000].split()[0]  # line 10001's time, shared by its burst
    numbers = _numbers(d, name, "--since", since)
    assert numbers == list(range(numbers[0], 20001))
    assert 9000 < numbers[0] <= 10001
    d.docker("rm", name)


def test_a_restarted_container_logs_on_within_its_bounds(daemon: Daemon, name: str) -> None:
    d = daemon
    _run(
        d,
        name,
        "--log-opt",
        "max-size=100k",
        "--log-opt",
        "max-file=3",
        "--log-opt",
        "compress=true",
        command="seq 1 3000",
    )
    _wait_exit(d, name)
    for _ in range(3):
        assert d.docker("start", "-a", name).returncode == 0
    _settled(d, name, lambda: len(_log_files(d, name)) <= 3)
    files = _log_files(d, name)
    assert all(f.stat().st_size <= 100 * KB for f in files)
    # Four runs of 1..3000 (about 150 kB each): the newest ones kept, in order.
    numbers = _numbers(d, name)
    assert numbers[-3000:] == list(range(1, 3001))
    assert numbers[-6000:-3000] == list(range(1, 3001))
    assert _numbers(d, name, "--tail", "3001") == [3000, *range(1, 3001)]
    d.docker("rm", name)


def test_every_driver_takes_the_cache_options_and_keeps_its_own_bounds(
    daemon: Daemon, name: str
) -> None:
    """The dual-logging cache's options (for plugin drivers) are moby's built-in options:
    a built-in driver accepts them, checked, and is not bounded by them."""
    d = daemon
    _run(d, name, "--log-opt", "cache-max-size=1k", "--log-opt", "cache-max-file=2")
    _wait_exit(d, name)
    config = _inspect(d, name)["HostConfig"]["LogConfig"]
    assert config == {
        "Type": "json-file",
        "Config": {"cache-max-size": "1k", "cache-max-file": "2"},
    }
    files = _log_files(d, name)
    assert len(files) == 1 and files[0].stat().st_size > 1000 * KB  # json-file: unbounded
    numbers = _numbers(d, name)
    assert numbers == list(range(1, 40001))
    result = d.docker("create", "--log-opt", "cache-disabled=maybe", IMAGE, "true")
    assert result.returncode != 0
    assert "invalid value for option cache-disabled: maybe" in result.stderr
    d.docker("rm", name)
