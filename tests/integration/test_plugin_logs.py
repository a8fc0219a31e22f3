"""Log-driver plugins receive real container output, and serve `logs`.

The sequence and framing checks use a plugin written without the SDK (the
stdlib server, reading the FIFO itself); the example rotating-file plugin
(SDK, a separate process) checks delivery and ReadLogs end to end.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.plugins.protocol import logentry
from tests.bare_plugin import BarePlugin, Call, Raw, wait_for
from tests.plugin_env import EXAMPLES, PluginDaemon, PluginProcess


class FifoReader:
    """The reading side of a log plugin, as a Go plugin would do it."""

    def __init__(self) -> None:
        self.entries: list[logentry.LogEntry] = []
        self.events: list[str] = []
        self._threads: dict[str, tuple[threading.Thread, threading.Event, int]] = {}

    def start(self, call: Call) -> dict[str, Any]:
        path = call.json["File"]
        mode = os.stat(path).st_mode
        self.events.append(f"start fifo={stat.S_ISFIFO(mode)} perm={oct(mode & 0o777)}")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        stop = threading.Event()
        thread = threading.Thread(target=self._read, args=(fd, stop), daemon=True)
        self._threads[path] = (thread, stop, fd)
        thread.start()
        return {}

    def _read(self, fd: int, stop: threading.Event) -> None:
        reader = logentry.FrameReader()
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                if stop.is_set():
                    return
                time.sleep(0.01)
                continue
            self.entries += reader.feed(data)

    def stop(self, call: Call) -> dict[str, Any]:
        path = call.json["File"]
        thread, stop, fd = self._threads.pop(path)
        stop.set()
        thread.join(10)
        os.close(fd)
        self.events.append(f"stop exists={os.path.exists(path)}")
        return {}

    def lines(self, source: str = "stdout") -> list[bytes]:
        return [e.line for e in self.entries if e.source == source]


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
