"""Log-driver plugins receive real container output, and serve `logs`.

The sequence and framing checks use a plugin written without the SDK (the
stdlib server, reading the FIFO itself); the example rotating-file plugin
(SDK, a separate process) checks delivery and ReadLogs end to end.
"""

from __future__ import annotations

import gzip
import json
import os
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.plugins.protocol import logentry
from tests.bare_plugin import BarePlugin, Call, Raw, wait_for
from tests.faults import FaultyDaemon
from tests.harness import Daemon
from tests.plugin_env import EXAMPLES, PluginDaemon, PluginProcess


class FifoReader:
    """The reading side of a log plugin, as a Go plugin would do it."""

    def __init__(self) -> None:
        self.entries: list[logentry.LogEntry] = []
        self.sessions: list[list[logentry.LogEntry]] = []  # per StartLogging, in order
        self.events: list[str] = []
        self._threads: dict[str, tuple[threading.Thread, threading.Event, int]] = {}

    def start(self, call: Call) -> dict[str, Any]:
        path = call.json["File"]
        mode = os.stat(path).st_mode
        self.events.append(f"start fifo={stat.S_ISFIFO(mode)} perm={oct(mode & 0o777)}")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        stop = threading.Event()
        session: list[logentry.LogEntry] = []
        self.sessions.append(session)
        thread = threading.Thread(target=self._read, args=(fd, stop, session), daemon=True)
        self._threads[path] = (thread, stop, fd)
        thread.start()
        return {}

    def _read(self, fd: int, stop: threading.Event, session: list[logentry.LogEntry]) -> None:
        reader = logentry.FrameReader()
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                data = None
            if not data:  # nothing yet, or no writer left (a daemon killed)
                if stop.is_set():
                    return
                time.sleep(0.01)
                continue
            entries = reader.feed(data)
            session += entries
            self.entries += entries

    def stop(self, call: Call) -> dict[str, Any]:
        path = call.json["File"]
        thread, stop, fd = self._threads.pop(path)
        stop.set()
        thread.join(10)
        os.close(fd)
        self.events.append(f"stop exists={os.path.exists(path)}")
        return {}

    def close(self) -> None:
        """Stop reading the FIFOs of sessions no StopLogging ended (their daemon died)."""
        for thread, stop, fd in self._threads.values():
            stop.set()
            thread.join(10)
            os.close(fd)
        self._threads.clear()

    def lines(self, source: str = "stdout") -> list[bytes]:
        return [e.line for e in self.entries if e.source == source]

    def numbers(self, session: int) -> list[int]:
        return [int(e.line) for e in self.sessions[session] if e.source == "stdout"]


@pytest.fixture
def daemon(busybox_tar: Path) -> Iterator[PluginDaemon]:
    d = PluginDaemon()
    (d.exec_root / "logging").mkdir(parents=True, mode=0o755)  # left by someone else
    d.start_with()
    d.cli("import", str(busybox_tar), "demo/busybox:1", check=True)
    yield d
    d.cleanup()


def test_call_sequence_fifo_and_framing(daemon: PluginDaemon) -> None:
    reader = FifoReader()
    plugin = BarePlugin(
        ["LogDriver"],
        {
            "/LogDriver.Capabilities": {"Cap": {"ReadLogs": False}},
            "/LogDriver.StartLogging": reader.start,
            "/LogDriver.StopLogging": reader.stop,
        },
    ).serve_unix(daemon.sock("bare"))
    try:
        script = "echo out1; echo err1 >&2; head -c 20000 /dev/zero | tr '\\0' x; echo; echo out2"
        result = daemon.cli(
            "run",
            "--name",
            "logged",
            "--log-driver",
            "bare",
            "--log-opt",
            "tag=x",
            "demo/busybox:1",
            "sh",
            "-c",
            script,
        )
        assert result.returncode == 0, result.stderr
        assert wait_for(lambda: "/LogDriver.StopLogging" in plugin.paths())
    finally:
        plugin.stop()
    # L1/L4: activation on first use (at create), then per container start
    assert plugin.paths() == [
        "/Plugin.Activate",
        "/LogDriver.Capabilities",
        "/LogDriver.StartLogging",
        "/LogDriver.StopLogging",
    ]
    start = plugin.calls_to("/LogDriver.StartLogging")[0].json
    container = daemon.api("GET", "/v1.45/containers/logged/json")[1]
    assert start["Info"]["ContainerID"] == container["Id"]
    assert start["Info"]["ContainerName"] == "/logged"
    assert start["Info"]["Config"] == {"tag": "x"}
    assert (
        os.path.basename(start["File"]) != container["Id"]
        and len(os.path.basename(start["File"])) == 64
    )
    assert reader.events == ["start fifo=True perm=0o700", "stop exists=True"]
    assert stat.S_IMODE(os.stat(os.path.dirname(start["File"])).st_mode) == 0o700
    assert not os.path.exists(start["File"])  # removed after StopLogging
    assert plugin.calls_to("/LogDriver.StopLogging")[0].json == {"File": start["File"]}
    full = [e for e in reader.entries if not e.partial]
    assert [e.line for e in full if e.source == "stdout"] == [b"out1", b"out2"]
    assert reader.lines("stderr") == [b"err1"]
    assert all(e.time_nano > 1_600_000_000 * 10**9 for e in reader.entries)
    pieces = [e for e in reader.entries if e.partial]
    assert len(pieces) >= 2 and b"".join(p.line for p in pieces) == b"x" * 20000
    metas = [p.partial_log_metadata for p in pieces]
    assert all(m is not None and m.id == metas[0].id for m in metas)  # type: ignore[union-attr]
    assert [m.ordinal for m in metas] == list(range(1, len(metas) + 1))  # type: ignore[union-attr]
    assert [m.last for m in metas] == [False] * (len(metas) - 1) + [True]  # type: ignore[union-attr]


def test_unknown_log_driver_keeps_dockers_message(daemon: PluginDaemon) -> None:
    result = daemon.cli("run", "--rm", "--log-driver", "nope", "demo/busybox:1", "true")
    assert result.returncode == 125
    assert "logger: no log driver named 'nope' is registered" in result.stderr


def test_a_hung_log_plugin_fails_the_start_without_blocking_the_api(daemon: PluginDaemon) -> None:
    plugin = BarePlugin(
        ["LogDriver"],
        {
            "/LogDriver.StartLogging": Raw(200, b"{}", delay=60),
            "/LogDriver.Capabilities": Raw(404, b""),
        },
    ).serve_unix(daemon.sock("hung"))
    try:
        created = daemon.cli(
            "create", "--name", "stuck", "--log-driver", "hung", "demo/busybox:1", "true"
        )
        assert created.returncode == 0, created.stderr
        done: dict[str, Any] = {}

        def start() -> None:
            t = time.monotonic()
            done["result"] = daemon.cli("start", "stuck")
            done["took"] = time.monotonic() - t

        thread = threading.Thread(target=start)
        thread.start()
        time.sleep(1)
        t = time.monotonic()
        status, _ = daemon.api("GET", "/v1.45/containers/json")
        assert status == 200 and time.monotonic() - t < 1
        thread.join(30)
        assert done["took"] < 15  # the call timeout is 5 s in these daemons
        result = done["result"]
        assert result.returncode != 0
        assert (
            "plugin hung failed with error: LogDriver.StartLogging: timed out after 5s"
            in result.stderr
        )
        assert daemon.api("GET", "/v1.45/containers/stuck/json")[1]["State"]["Running"] is False
    finally:
        plugin.stop()


def test_rotating_log_example_receives_output_and_serves_logs(
    daemon: PluginDaemon, tmp_path: Path
) -> None:
    logs_dir = tmp_path / "logs"
    with PluginProcess(
        f"{EXAMPLES}/log_rotate.py:RotatingLogs", daemon.sock("rotate"), {"LOG_DIR": str(logs_dir)}
    ):
        result = daemon.cli(
            "run",
            "--name",
            "rot",
            "--log-driver",
            "rotate",
            "--log-opt",
            "max-size=1k",
            "--log-opt",
            "max-file=2",
            "demo/busybox:1",
            "sh",
            "-c",
            "for i in $(seq 1 100); do echo line-$i; done; echo oops >&2",
        )
        assert result.returncode == 0, result.stderr
        cid = daemon.api("GET", "/v1.45/containers/rot/json")[1]["Id"]
        current = logs_dir / f"{cid}.log"
        assert wait_for(lambda: current.exists() and b"oops" in current.read_bytes())
        assert (logs_dir / f"{cid}.log.1").exists() and not (logs_dir / f"{cid}.log.2").exists()
        assert current.stat().st_size <= 1024
        last = [json.loads(line) for line in current.read_text().splitlines()][-1]
        assert last["stream"] == "stderr" and last["log"] == "oops"
        # `logs` reads through the plugin: a record only the plugin has shows up
        with open(current, "a") as f:
            f.write(
                json.dumps(
                    {
                        "time": last["time"] + 1,
                        "stream": "stdout",
                        "log": "from-plugin",
                        "partial": False,
                    }
                )
                + "\n"
            )
        out = daemon.cli("logs", "rot")
        lines = out.stdout.splitlines()
        assert lines[-1] == "from-plugin"
        assert "oops" in out.stderr
        assert lines[0].startswith("line-")  # older lines rotated away
        tail = daemon.cli("logs", "--tail", "2", "rot")
        assert tail.stdout.splitlines() == ["from-plugin"] and tail.stderr.strip() == "oops"
        # docker-py reads the same stream
        import docker

        client = docker.DockerClient(base_url=daemon.host)
        try:
            assert client.containers.get("rot").logs(tail=1).strip() == b"from-plugin"
        finally:
            client.close()


def _count(daemon: PluginDaemon, name: str, n: int, *, pause: float) -> None:
    """A detached container logging to the rotate plugin: 0 .. n-1, a line each `pause`."""
    script = f"i=0; while [ $i -lt {n} ]; do echo $i; i=$((i+1)); sleep {pause}; done"
    daemon.cli(
        "run", "-d", "--name", name, "--log-driver", "rotate", "demo/busybox:1", "sh", "-c", script,
        check=True,
    )  # fmt: skip


def test_no_output_lost_or_repeated_across_a_daemon_restart(
    daemon: PluginDaemon, tmp_path: Path
) -> None:
    logs_dir = tmp_path / "logs"
    with PluginProcess(
        f"{EXAMPLES}/log_rotate.py:RotatingLogs", daemon.sock("rotate"), {"LOG_DIR": str(logs_dir)}
    ):
        _count(daemon, "counter", 60, pause=0.05)
        cid = daemon.api("GET", "/v1.45/containers/counter/json")[1]["Id"]
        time.sleep(0.8)
        daemon.stop()  # the container keeps running and printing
        time.sleep(0.8)
        daemon.start()
        assert daemon.cli("wait", "counter").stdout.strip() == "0"
        log = logs_dir / f"{cid}.log"
        assert wait_for(lambda: log.exists() and b'"59"' in log.read_bytes())
        numbers = [int(json.loads(line)["log"]) for line in log.read_text().splitlines()]
        assert numbers == list(range(60))


def test_output_of_a_container_that_exits_while_the_daemon_is_down_is_delivered(
    daemon: PluginDaemon, tmp_path: Path
) -> None:
    logs_dir = tmp_path / "logs"
    with PluginProcess(
        f"{EXAMPLES}/log_rotate.py:RotatingLogs", daemon.sock("rotate"), {"LOG_DIR": str(logs_dir)}
    ):
        _count(daemon, "short", 20, pause=0.2)
        inspect = daemon.api("GET", "/v1.45/containers/short/json")[1]
        cid, pid = inspect["Id"], inspect["State"]["Pid"]
        log = logs_dir / f"{cid}.log"
        assert wait_for(lambda: log.exists() and b'"0"' in log.read_bytes())
        daemon.stop()
        assert b'"19"' not in log.read_bytes()
        # the container, and its monitor, finish while no daemon runs
        monitor = int((daemon.exec_root / "containers" / cid / "conmon.pid").read_text())
        for gone in (pid, monitor):
            assert wait_for(lambda: not os.path.exists(f"/proc/{gone}"), timeout=30)  # noqa: B023
        daemon.start()
        state = daemon.api("GET", "/v1.45/containers/short/json")[1]["State"]
        assert (state["Status"], state["ExitCode"]) == ("exited", 0)
        assert wait_for(lambda: b'"19"' in log.read_bytes())
        numbers = [int(json.loads(line)["log"]) for line in log.read_text().splitlines()]
        assert numbers == list(range(20))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_an_sdk_log_plugin_rests_when_the_engine_dies(daemon: PluginDaemon, tmp_path: Path) -> None:
    logs_dir = tmp_path / "logs"
    with PluginProcess(
        f"{EXAMPLES}/log_rotate.py:RotatingLogs", daemon.sock("rotate"), {"LOG_DIR": str(logs_dir)}
    ) as plugin:
        daemon.cli(
            "run", "-d", "--name", "orphan", "--log-driver", "rotate", "demo/busybox:1",
            "sh", "-c", "echo hello; sleep 300",
            check=True,
        )  # fmt: skip
        assert wait_for(lambda: any(b"hello" in p.read_bytes() for p in logs_dir.glob("*.log")))
        daemon.kill9()  # the FIFO loses its only writer, without StopLogging
        time.sleep(0.5)
        before = _cpu_seconds(plugin.proc.pid)
        time.sleep(2)
        assert _cpu_seconds(plugin.proc.pid) - before < 0.5  # not spinning on EOF
        assert plugin.proc.poll() is None


# -- the engine's copy (Docker's dual-logging cache) and delivery across its rotations ----

KB = 1000  # go-units' k
BATCH_LINES = 64 * 1024 // 40  # the most records of a forwarder's batch (64 KiB of log)


class FifoPlugin:
    """A bare LogDriver plugin reading its FIFOs (no ReadLogs), served at `socket`."""

    def __init__(self, socket_path: str, *, can_read: bool = False) -> None:
        self.reader = FifoReader()
        self.plugin = BarePlugin(
            ["LogDriver"],
            {
                "/LogDriver.Capabilities": {"Cap": {"ReadLogs": can_read}},
                "/LogDriver.StartLogging": self.reader.start,
                "/LogDriver.StopLogging": self.reader.stop,
            },
        ).serve_unix(socket_path)

    def stopped(self, sessions: int) -> bool:
        """`sessions` logging sessions were ended with StopLogging."""
        return len(self.plugin.calls_to("/LogDriver.StopLogging")) >= sessions

    def __enter__(self) -> FifoPlugin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.plugin.stop()
        self.reader.close()


def _log_files(d: Daemon, cid: str) -> list[Path]:
    """The files of a container's log, oldest first (a file with two names once)."""
    directory = d.data_root / "containers" / cid
    found: dict[int, Path] = {}
    for path in [*sorted((directory / "log").glob("*")), directory / "container.log"]:
        try:
            st = path.lstat()
        except FileNotFoundError:  # pruned or compressed meanwhile
            continue
        if stat.S_ISREG(st.st_mode):
            found.setdefault(st.st_ino, path)
    return list(found.values())


def _content_size(path: Path) -> int:
    return len(gzip.decompress(path.read_bytes())) if path.suffix == ".gz" else path.stat().st_size


def _settled(check: Callable[[], bool]) -> bool:
    """Pruning and compression finish shortly after the container exits."""
    return wait_for(check, timeout=30)


def _run_plugin_logged(d: Daemon, name: str, driver: str, script: str, *opts: str) -> str:
    args = ["run", "-d", "--name", name, "--log-driver", driver]
    for opt in opts:
        args += ["--log-opt", opt]
    result = d.cli(*args, "demo/busybox:1", "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    return d.api("GET", f"/v1.45/containers/{name}/json")[1]["Id"]


def _counter(last: int, burst: int, pause: float) -> str:
    """Prints 1 .. last, `burst` lines at a time, `pause` seconds apart."""
    return (
        f"i=1; while [ $i -le {last} ]; do seq $i $((i+{burst - 1})); "
        f"i=$((i+{burst})); sleep {pause}; done"
    )


def test_a_chatty_containers_cache_stays_bounded_and_the_plugin_gets_every_line(
    daemon: PluginDaemon,
) -> None:
    with FifoPlugin(daemon.sock("bare")) as fifo:
        # About 100 kB/s (a record is about 50 bytes): two 50 kB files a second, ten in all.
        cid = _run_plugin_logged(
            daemon, "chatty", "bare", _counter(10000, 100, 0.05),
            "cache-max-size=50k", "cache-max-file=3",
        )  # fmt: skip
        most = 0
        while daemon.api("GET", "/v1.45/containers/chatty/json")[1]["State"]["Running"]:
            most = max(most, len(_log_files(daemon, cid)))
            time.sleep(0.1)
        assert wait_for(lambda: fifo.stopped(1), timeout=60)
        # Every line reached the plugin, once and in order, across about ten rotations.
        assert [int(line) for line in fifo.reader.lines()] == list(range(1, 10001))
        assert _settled(lambda: len(_log_files(daemon, cid)) == 3), _log_files(daemon, cid)
        files = _log_files(daemon, cid)
        assert [f.suffix for f in files] == [".gz", ".gz", ".log"]  # compressed by default
        assert all(_content_size(f) <= 50 * KB for f in files)
        assert most <= 3 + 2  # while it ran: what conmon made before the keeper pruned
        # `logs` reads the engine's copy (the plugin cannot read): the newest lines only.
        out = daemon.cli("logs", "chatty")
        assert out.returncode == 0, out.stderr
        kept = [int(n) for n in out.stdout.split()]
        assert kept[-1] == 10000 and kept == list(range(kept[0], 10001)) and kept[0] > 5000


def _assert_delivered_once(first: list[int], second: list[int], last: int, *, repeat: int) -> None:
    """Session one delivered 1 .. k, session two took over and delivered the rest up to
    `last`: nothing lost, and at most `repeat` lines delivered twice."""
    assert first == list(range(1, len(first) + 1))
    assert second and second == list(range(second[0], last + 1))
    repeated = len(first) + 1 - second[0]
    assert 0 <= repeated <= repeat, (len(first), second[0])


def test_delivery_goes_on_across_rotations_and_a_daemon_restart(daemon: PluginDaemon) -> None:
    with FifoPlugin(daemon.sock("bare")) as fifo:
        # About 7 kB/s: a 20 kB file every three seconds, so the outage sees at most one
        # rotation (conmon's third without the keeper would lose a file, see files.py).
        cid = _run_plugin_logged(
            daemon, "restarted", "bare", _counter(1500, 15, 0.1),
            "cache-max-size=20k", "cache-max-file=3",
        )  # fmt: skip
        assert wait_for(lambda: len(fifo.reader.entries) >= 500, timeout=60)
        daemon.stop()  # delivers what was written, records the position, StopLogging
        assert fifo.stopped(1)
        time.sleep(0.5)
        daemon.start()
        assert daemon.cli("wait", "restarted").stdout.strip() == "0"
        assert wait_for(lambda: fifo.stopped(2), timeout=60)
        assert len(fifo.reader.sessions) == 2
        first, second = fifo.reader.numbers(0), fifo.reader.numbers(1)
        _assert_delivered_once(first, second, 1500, repeat=0)
        assert second[0] == len(first) + 1
        assert _settled(lambda: len(_log_files(daemon, cid)) <= 3)
        assert daemon.cli("logs", "restarted").stdout.split()[-1] == "1500"


@pytest.mark.parametrize("crash", ["kill-9", "between-write-and-position"])
def test_a_daemon_crash_loses_nothing_and_repeats_at_most_one_batch(
    faulty: FaultyDaemon, crash: str
) -> None:
    d = faulty
    with FifoPlugin(str(d.base / "plugins" / "bare.sock")) as fifo:
        cid = _run_plugin_logged(
            d, "crashed", "bare", _counter(1500, 15, 0.1),
            "cache-max-size=20k", "cache-max-file=3",
        )  # fmt: skip
        assert wait_for(lambda: len(fifo.reader.entries) >= 500, timeout=60)
        if crash == "kill-9":
            d.kill9()
        else:  # the worst moment: a batch is in the FIFO, its position not yet recorded
            d.crash.arm("logs:delivered")
            d.wait_dead()
            d.crash.disarm()
        assert not fifo.stopped(1)
        d.start()
        assert d.cli("wait", "crashed").stdout.strip() == "0"
        assert wait_for(lambda: fifo.stopped(1), timeout=60)
        assert len(fifo.reader.sessions) == 2
        first, second = fifo.reader.numbers(0), fifo.reader.numbers(1)
        _assert_delivered_once(first, second, 1500, repeat=BATCH_LINES)
        if crash != "kill-9":
            assert second[0] <= len(first)  # that batch came again, whole
        assert _settled(lambda: len(_log_files(d, cid)) <= 3)


def test_invalid_cache_options_are_refused_at_create(daemon: PluginDaemon) -> None:
    with FifoPlugin(daemon.sock("bare")):
        cases = [
            (
                {"cache-max-size": "abc"},
                "invalid value for cache-max-size: abc: invalid size: 'abc'",
            ),
            ({"cache-max-file": "two"}, "invalid value for cache-max-file: two"),
            ({"cache-compress": "maybe"}, "invalid boolean value for cache-compress"),
            ({"cache-disabled": "maybe"}, "invalid value for option cache-disabled: maybe"),
            ({"cache-max-file": "1"}, "compression cannot be enabled when max file count is 1"),
        ]
        before = daemon.api("GET", "/v1.45/containers/json?all=1")[1]
        for opts, message in cases:
            status, body = daemon.api(
                "POST",
                "/v1.45/containers/create",
                {
                    "Image": "demo/busybox:1",
                    "Cmd": ["true"],
                    "HostConfig": {"LogConfig": {"Type": "bare", "Config": opts}},
                },
            )
            assert status == 400, (opts, body)
            assert message in body["message"], (opts, body)
        assert daemon.api("GET", "/v1.45/containers/json?all=1")[1] == before  # nothing made
        env = {**os.environ, "DOCKER_HOST": daemon.host}
        result = subprocess.run(
            ["docker", "create", "--log-driver", "bare", "--log-opt", "cache-max-size=abc",
             "demo/busybox:1", "true"],
            capture_output=True, text=True, env=env,
        )  # fmt: skip
        assert result.returncode != 0
        assert "invalid value for cache-max-size: abc: invalid size: 'abc'" in result.stderr


def _monitor_arguments(d: Daemon, cid: str) -> list[str]:
    pid = int((d.exec_root / "containers" / cid / "conmon.pid").read_text())
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def test_a_plugins_copy_is_bounded_by_default_as_dockers_cache(daemon: PluginDaemon) -> None:
    with FifoPlugin(daemon.sock("bare")) as fifo:
        # No options: the monitor rotates at 20 MiB, the log is laid out to keep files.
        cid = _run_plugin_logged(daemon, "plain", "bare", "echo hi; sleep 300")
        arguments = _monitor_arguments(daemon, cid)
        assert arguments[arguments.index("--log-size-max") + 1] == str(20 * 1024 * 1024)
        directory = daemon.data_root / "containers" / cid
        assert (directory / "container.log").is_symlink()
        assert wait_for(lambda: fifo.reader.lines() == [b"hi"])
        inspect = daemon.api("GET", "/v1.45/containers/plain/json")[1]
        assert inspect["HostConfig"]["LogConfig"] == {"Type": "bare", "Config": {}}
        daemon.cli("rm", "-f", "plain", check=True)
        # The daemon's cache options reach a plugin's containers whatever the default
        # driver; without cache-max-file, five files are kept, the closed ones compressed.
        daemon.stop()
        daemon.config["log-opts"] = {"cache-max-size": "1k", "max-size": "1m"}
        daemon.start()
        cid = _run_plugin_logged(daemon, "tiny", "bare", _counter(400, 10, 0.05))
        inspect = daemon.api("GET", "/v1.45/containers/tiny/json")[1]
        assert inspect["HostConfig"]["LogConfig"] == {
            "Type": "bare",
            "Config": {"cache-max-size": "1k"},
        }
        assert daemon.cli("wait", "tiny").stdout.strip() == "0"
        assert _settled(lambda: len(_log_files(daemon, cid)) == 5), _log_files(daemon, cid)
        assert wait_for(
            lambda: [f.suffix for f in _log_files(daemon, cid)] == [".gz"] * 4 + [".log"]
        )
        assert all(_content_size(f) <= 1 * KB for f in _log_files(daemon, cid))


def test_with_the_cache_disabled_logs_refuses_for_a_plugin_that_cannot_read(
    daemon: PluginDaemon,
) -> None:
    with FifoPlugin(daemon.sock("bare")) as fifo:
        _run_plugin_logged(daemon, "uncached", "bare", "echo one; echo two", "cache-disabled=true")
        assert daemon.cli("wait", "uncached").stdout.strip() == "0"
        assert wait_for(lambda: fifo.stopped(1))
        assert fifo.reader.lines() == [b"one", b"two"]  # delivery goes through the files
        status, body = daemon.api("GET", "/v1.45/containers/uncached/logs?stdout=1")
        assert status == 501
        assert body["message"] == "configured logging driver does not support reading"
        result = daemon.cli("logs", "uncached")
        assert result.returncode != 0
        assert "configured logging driver does not support reading" in result.stderr
        # With the cache (the default) the same plugin's output is read from the copy.
        _run_plugin_logged(daemon, "cached", "bare", "echo three", "cache-disabled=false")
        assert daemon.cli("wait", "cached").stdout.strip() == "0"
        assert daemon.cli("logs", "cached").stdout == "three\n"
