"""Fault injection for the crash-consistency tests.

Three ways to break a daemon at a chosen moment, each driven from the test through
files in the daemon's own directory (nothing on the host is shared):

* `Wrapper` in front of the OCI runtime: the daemon is configured to use it as its
  runtime (daemon.json `runtimes` and `default-runtime`); it forwards every call to
  runc, except that a subcommand (`create`, `start`, `kill`, `delete`, `state`, ...)
  named in its control directory stalls until the test releases it, or fails.
* `Wrapper` in front of the container monitor (daemon.json `conmon-path`), with the
  monitor's two jobs as its "subcommands": `create` (a container's monitor) and
  `exec` (an exec's monitor).
* `CrashPoints`: the daemon's named crash points (`dockyard.state.crashpoints`); arm
  one and the daemon kills itself with SIGKILL when it reaches that step.

A stall lets the test kill the daemon while the runtime or monitor is in the middle
of its work and then let that work finish with no daemon to see it: the interleaving
a real crash produces. `FaultyDaemon` is a `Daemon` wired to all three.

After a restart, `HostView` reads what this daemon's containers really hold on the
host (processes, mounts, cgroups, runtime state, bundles, attach links, network
namespaces, veths, nftables rules, monitors) so that a test can assert it is exactly
what the running containers need: nothing leaked, nothing missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dockyard.runtime import cgroups
from tests.harness import Daemon, new_base

CRASHPOINTS_ENV = "DOCKYARD_CRASHPOINTS"
WAIT = 60.0  # seconds before a wait for the daemon (or a process) is given up as hung

_WRAPPER = r"""#!/bin/sh
# {what} wrapper for fault-injection tests: forwards to {real}, unless the control
# directory names this call's subcommand: "stall" waits until that file is removed,
# "exit N" fails with status N.
control='{control}'
sub=''
skip=0
for arg in "$@"; do
    if [ "$skip" = 1 ]; then skip=0; continue; fi
    case "$arg" in
        {options_with_values}) skip=1 ;;
        -e|--exec) sub=exec; break ;;
        -*) ;;
        *) [ -z '{fixed}' ] && {{ sub="$arg"; break; }} ;;
    esac
done
[ -z "$sub" ] && sub='{fixed}'
action=''
[ -n "$sub" ] && [ -f "$control/$sub" ] && read -r action code < "$control/$sub"
if [ "$action" = stall ]; then
    echo $$ > "$control/$sub.reached"
    # Held until the file goes (the call proceeds) or says "exit N" (the call fails).
    while [ "$action" = stall ]; do
        sleep 0.05
        action=''
        [ -f "$control/$sub" ] && read -r action code < "$control/$sub"
    done
fi
if [ "$action" = exit ]; then
    echo "injected failure at $sub" >&2
    exit "${{code:-1}}"
fi
exec '{real}' "$@"
"""


class Wrapper:
    """A script standing in for `real`, told through files in `control` to stall or fail.

    `runtime=True` finds the subcommand as the first word after the global options (a
    runtime's command line); otherwise the call is `exec` when the monitor is asked
    for an exec (`-e`), else `create`.
    """

    def __init__(self, path: Path, real: str, *, runtime: bool) -> None:
        self.path = path
        self.control = path.parent / (path.name + ".control")
        self.control.mkdir(parents=True, exist_ok=True)
        path.write_text(
            _WRAPPER.format(
                what="OCI runtime" if runtime else "container monitor",
                real=real,
                control=self.control,
                # runc's global options that take a value; conmon's take values too,
                # but the monitor's "subcommand" is decided by -e alone.
                options_with_values="--root|--log|--log-format|--criu" if runtime else "--nothing",
                fixed="" if runtime else "create",
            )
        )
        path.chmod(0o755)

    def stall(self, sub: str) -> None:
        """The next calls of `sub` wait (before doing anything) until `release(sub)`."""
        (self.control / f"{sub}.reached").unlink(missing_ok=True)
        self._write(sub, "stall")

    def fail(self, sub: str, code: int = 1) -> None:
        """Calls of `sub` (and one held there now) fail with status `code` until `clear`."""
        self._write(sub, f"exit {code}")

    def _write(self, sub: str, text: str) -> None:
        # Atomically: the wrapper must never read a half-written file.
        tmp = self.control / f".{sub}.tmp"
        tmp.write_text(text + "\n")
        tmp.rename(self.control / sub)

    def wait_stalled(self, sub: str, daemon: Daemon | None = None) -> int:
        """Wait until a call of `sub` is held; returns the held wrapper's pid."""
        marker = self.control / f"{sub}.reached"
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                return int(marker.read_text())
            except (FileNotFoundError, ValueError):
                pass
            if daemon is not None and daemon.proc is not None and daemon.proc.poll() is not None:
                raise AssertionError(f"the daemon died before reaching {sub}")
            time.sleep(0.02)
        raise AssertionError(f"no call of {sub} within {WAIT} s")

    def release(self, sub: str) -> None:
        (self.control / sub).unlink(missing_ok=True)

    def clear(self, sub: str) -> None:
        self.release(sub)
        (self.control / f"{sub}.reached").unlink(missing_ok=True)


class CrashPoints:
    """Arms the daemon's crash points through a file named in its environment."""

    def __init__(self, file: Path) -> None:
        self.file = file
        file.write_text("")

    def arm(self, name: str) -> None:
        self.file.write_text(name + "\n")

    def disarm(self) -> None:
        self.file.write_text("")


class FaultyDaemon(Daemon):
    """A daemon whose runtime and monitor are fault-injection wrappers, with crash points."""

    def __init__(self, base: Path) -> None:
        super().__init__(base)
        faults = base / "faults"
        faults.mkdir(parents=True, exist_ok=True)
        runc = shutil.which("runc")
        conmon = shutil.which("conmon")
        assert runc and conmon, "the fault tests need runc and conmon"
        self.runtime = Wrapper(faults / "runc", runc, runtime=True)
        self.monitor = Wrapper(faults / "conmon", conmon, runtime=False)
        self.crash = CrashPoints(faults / "crashpoints")
        self.config["runtimes"] = {"faulty": {"path": str(self.runtime.path)}}
        self.config["default-runtime"] = "faulty"
        self.config["conmon-path"] = str(self.monitor.path)

    def start(self, *extra: str) -> None:
        # The daemon inherits the test's environment: name the crash-point file in it
        # for this start only.
        saved = os.environ.get(CRASHPOINTS_ENV)
        os.environ[CRASHPOINTS_ENV] = str(self.crash.file)
        try:
            super().start(*extra)
        finally:
            if saved is None:
                del os.environ[CRASHPOINTS_ENV]
            else:
                os.environ[CRASHPOINTS_ENV] = saved

    def wait_dead(self) -> None:
        """Wait for the daemon to have killed itself at an armed crash point."""
        assert self.proc is not None
        try:
            self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            raise AssertionError("the daemon did not reach the armed crash point") from None
        assert self.proc.returncode == -9, f"daemon exited with {self.proc.returncode}"

    def runtime_status(self, container_id: str) -> str:
        """What runc itself says of a container ("" when it has none)."""
        root = self.exec_root / "runtime" / "faulty"
        result = subprocess.run(
            ["runc", "--root", str(root), "state", container_id], capture_output=True, text=True
        )
        if result.returncode != 0:
            return ""
        status: str = json.loads(result.stdout)["status"]
        return status


class Background:
    """A client command run on a thread (it blocks while the daemon is stalled)."""

    def __init__(self, daemon: Daemon, *args: str) -> None:
        self.result: subprocess.CompletedProcess[str] | None = None
        self._thread = threading.Thread(target=self._run, args=(daemon, args), daemon=True)
        self._thread.start()

    def _run(self, daemon: Daemon, args: tuple[str, ...]) -> None:
        self.result = daemon.cli(*args, timeout=WAIT * 3)

    def join(self) -> subprocess.CompletedProcess[str] | None:
        self._thread.join(WAIT * 3)
        return self.result


def wait_for(what: str, condition: Any, timeout: float = WAIT) -> None:
    """Poll `condition()` until it is true (a guard against hanging, not a time limit)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


# -- what the host really holds ---------------------------------------------------


@dataclass
class HostView:
    """One daemon's containers as the host has them, read from the kernel and files."""

    mounts: list[str] = field(default_factory=list)
    cgroups: set[str] = field(default_factory=set)  # container IDs with a cgroup dir
    cgroup_pids: dict[str, set[int]] = field(default_factory=dict)
    runtime_state: set[str] = field(default_factory=set)
    bundles: set[str] = field(default_factory=set)
    attach_links: set[str] = field(default_factory=set)
    netns: set[str] = field(default_factory=set)
    veths: list[str] = field(default_factory=list)
    monitors: list[str] = field(default_factory=list)  # conmon processes' command lines
    dnat_targets: set[str] = field(default_factory=set)

    @classmethod
    def read(cls, d: Daemon) -> HostView:
        view = cls()
        with open("/proc/self/mounts") as f:
            view.mounts = [line.split()[1] for line in f if str(d.base) in line.split()[1]]
        layout = cgroups.detect()
        for root in layout.dirs(d.cgroup_parent):
            parent = Path(root)
            if not parent.is_dir():
                continue
            for child in parent.iterdir():
                if child.is_dir():
                    view.cgroups.add(child.name)
                    procs = child / "cgroup.procs"
                    pids = {int(p) for p in procs.read_text().split()} if procs.exists() else set()
                    view.cgroup_pids.setdefault(child.name, set()).update(pids)
        runtime_root = d.exec_root / "runtime"
        if runtime_root.is_dir():
            for runtime in runtime_root.iterdir():
                view.runtime_state |= {p.name for p in runtime.iterdir() if p.is_dir()}
        view.bundles = _names(d.exec_root / "containers")
        view.attach_links = _names(d.exec_root / "attach")
        view.netns = _names(d.exec_root / "netns")
        view.veths = [name for name in d.links() if name.startswith(d.veth_prefix)]
        pgrep = subprocess.run(
            ["pgrep", "-a", "-f", f"conmon.*{d.exec_root}"], capture_output=True, text=True
        )
        view.monitors = [line for line in pgrep.stdout.splitlines() if "pgrep" not in line]
        # Container addresses in the rules (the port maps' targets); subnets are not.
        pattern = rf"\b10\.{d.net_octet}\.\d+\.\d+\b(?!/)"
        view.dnat_targets = set(re.findall(pattern, d.nft_ruleset()))
        return view


def _names(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()} if directory.is_dir() else set()


def containers(d: Daemon) -> list[dict[str, Any]]:
    """Every container's inspect document (`ps -a`, then inspect)."""
    status, listed = d.api("GET", "/containers/json?all=1")
    assert status == 200, listed
    found = []
    for entry in listed:
        status, doc = d.api("GET", f"/containers/{entry['Id']}/json")
        assert status == 200, doc
        found.append(doc)
    return found


def assert_matches_reality(d: Daemon, *, check: bool = True) -> dict[str, dict[str, Any]]:
    """`ps -a` tells the truth and nothing of a container that is not running is left on
    the host; returns the containers by name."""
    docs = containers(d)
    view = HostView.read(d)
    running = {c["Id"] for c in docs if c["State"]["Running"]}
    for c in docs:
        cid, state = c["Id"], c["State"]
        pids = view.cgroup_pids.get(cid, set())
        if state["Running"]:
            assert state["Pid"] in pids, f"{c['Name']} shown running, its pid is not in its cgroup"
            assert os.path.exists(f"/proc/{state['Pid']}"), f"{c['Name']}: pid {state['Pid']} gone"
            assert d.exec_root.joinpath("containers", cid).is_dir(), f"{c['Name']}: no bundle"
        else:
            assert not pids, f"{c['Name']} shown {state['Status']}, but processes run: {pids}"
    leaked = {
        "cgroups": view.cgroups - running,
        "runtime state": view.runtime_state - running,
        "bundles": view.bundles - running,
        "attach links": view.attach_links - running,
        "netns": view.netns - running,
    }
    assert not any(leaked.values()), f"leaked: {leaked}"
    needed = {
        str(path)
        for cid in running
        for path in (
            d.data_root / "containers" / cid / "rootfs" / "merged",
            d.data_root / "containers" / cid / "shm",
            d.exec_root / "netns" / cid,
        )
    }
    stray = [m for m in view.mounts if m not in needed]
    assert not stray, f"mounts left: {stray}"
    assert len(view.monitors) == len(running), f"monitors: {view.monitors}"
    on_bridges = [
        c
        for c in docs
        if c["State"]["Running"]
        and any(n.get("IPAddress") for n in (c["NetworkSettings"].get("Networks") or {}).values())
    ]
    endpoints = sum(
        sum(1 for n in c["NetworkSettings"]["Networks"].values() if n.get("IPAddress"))
        for c in on_bridges
    )
    assert len(view.veths) == endpoints, f"veths {view.veths} for {endpoints} endpoints"
    addresses = {
        n["IPAddress"]
        for c in on_bridges
        for n in c["NetworkSettings"]["Networks"].values()
        if n.get("IPAddress")
    }
    assert view.dnat_targets <= addresses, f"rules for {view.dnat_targets - addresses}"
    if check:
        assert_check_clean(d)
    return {c["Name"].lstrip("/"): c for c in docs}


def assert_check_clean(d: Daemon) -> None:
    """`system check` finds nothing wrong with the store, the containers or the host."""
    check = d.cli("system", "check", "-q")
    assert check.returncode == 0, f"system check: {check.stdout}{check.stderr}"


@pytest.fixture
def faulty(busybox_tar: Path) -> Iterator[FaultyDaemon]:
    """A started FaultyDaemon with busybox imported as demo/busybox:1."""
    d = FaultyDaemon(new_base())
    d.start()
    d.cli("import", str(busybox_tar), "demo/busybox:1", check=True)
    yield d
    d.cleanup()


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def interrupt(
    d: FaultyDaemon, fault: str, *args: str, down: float = 0
) -> subprocess.CompletedProcess[str] | None:
    """Run the command `args` and kill the daemon at `fault`, then start it again
    (`down` seconds after it died).

    `point:<name>`: the daemon kills itself at that crash point. `runtime:<sub>` and
    `monitor:<sub>`: the call is held, the daemon killed while it waits, and the call
    released to finish with no daemon; the restart comes once it has.
    """
    kind, _, where = fault.partition(":")
    wrapper = d.runtime if kind == "runtime" else d.monitor
    if kind == "point":
        d.crash.arm(where)
    else:
        wrapper.stall(where)
    client = Background(d, *args)
    if kind == "point":
        d.wait_dead()
        d.crash.disarm()
    else:
        held = wrapper.wait_stalled(where, d)
        d.kill9()
        wrapper.release(where)
        wait_for(f"the held {where} to finish", lambda: gone(held))
    result = client.join()
    time.sleep(down)
    d.start()
    return result
