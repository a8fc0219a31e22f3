"""Daemons whose plugin discovery looks only at private directories, and plugin processes.

Discovery never looks at the host's /run/docker/plugins or /etc/docker/plugins
in tests: each daemon gets `<base>/plugins` (sockets) and `<base>/spec`
(spec files) through its daemon.json, with a short retry window and call
timeout so failure paths take seconds, not minutes.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import tarfile
import time
from pathlib import Path
from typing import Any

from tests.harness import REPO, Daemon, new_base


class PluginDaemon(Daemon):
    def __init__(self, base: Path | None = None) -> None:
        super().__init__(base or new_base())
        self.socket_dir = self.base / "plugins"
        self.spec_dir = self.base / "spec"
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self.spec_dir.mkdir(parents=True, exist_ok=True)

    def start_with(self, *extra: str, **config: Any) -> None:
        settings = {
            "plugin-socket-dirs": [str(self.socket_dir)],
            "plugin-spec-dirs": [str(self.spec_dir)],
            "plugin-retry-timeout": 3,
            "plugin-call-timeout": 5,
            **{k.replace("_", "-"): v for k, v in config.items()},
        }
        # The harness writes self.config (the daemon's private networking) at start.
        self.config.update(settings)
        self.start(*extra)

    def sock(self, name: str) -> str:
        return str(self.socket_dir / f"{name}.sock")


class PluginProcess:
    """An SDK plugin (`FILE.py:CLASS` or `module:CLASS`) served by a real process."""

    def __init__(self, target: str, socket_path: str, env: dict[str, str] | None = None) -> None:
        self.socket = socket_path
        self.log = Path(socket_path).with_suffix(".log")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dockyard.sdk", "run", target, "--socket", socket_path],
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"plugin exited: {self.log.read_text()}")
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(socket_path)
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"plugin did not start: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> PluginProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


EXAMPLES = REPO / "plugins"


def sdk_plugin_config(target: str, socket: str, types: list[str], **changes: Any) -> dict[str, Any]:
    """A managed plugin's config.json that runs an SDK plugin (`/dockyard/FILE.py:CLASS`)
    with the host's Python: /usr, /lib, site-packages and the repository are bound
    read-only into a busybox root filesystem."""
    site = sysconfig.get_paths()["purelib"]
    ro = {"type": "bind", "options": ["rbind", "ro"]}
    config: dict[str, Any] = {
        "description": f"{target} (SDK example)",
        "entrypoint": [
            os.path.realpath(sys.executable),
            *("-m", "dockyard.sdk", "run", target),
            *("--socket", f"/run/docker/plugins/{socket}"),
        ],
        "interface": {"types": types, "socket": socket},
        "env": [
            {"name": "PYTHONPATH", "value": f"/dockyard:{site}"},
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
        ],
        "mounts": [
            {"source": "/usr", "destination": "/usr", **ro},
            {"source": "/lib", "destination": "/lib", **ro},
            {"source": "/lib64", "destination": "/lib64", **ro},
            {"source": site, "destination": site, **ro},
            *(
                [{"source": sys.base_prefix, "destination": sys.base_prefix, **ro}]
                if not sys.base_prefix.startswith("/usr")
                else []
            ),
            {"source": str(REPO), "destination": "/dockyard", **ro},
        ],
    }
    config.update(changes)
    return config


def hostile_tar(entries: list[tuple[str, bytes | None, dict[str, Any]]]) -> bytes:
    """A tar of exactly these entries (name, data or None, TarInfo fields): no check of
    names, types or links, for plugin archives that must be refused."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data, extra in entries:
            info = tarfile.TarInfo(name)
            for key, value in extra.items():
                setattr(info, key, value)
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def volume_plugin_config(**changes: Any) -> dict[str, Any]:
    """The example snapshot volume plugin as a managed plugin: volumes under /data, its
    PropagatedMount; CAP_SYS_ADMIN for the mounts of sized volumes."""
    config = sdk_plugin_config(
        "/dockyard/plugins/volume_snap.py:SnapshotVolumes", "snap.sock",
        ["docker.volumedriver/1.0"],
        propagatedMount="/data",
        linux={"capabilities": ["CAP_SYS_ADMIN"]},
    )  # fmt: skip
    config["env"].append({"name": "VOLUME_ROOT", "value": "/data", "settable": ["value"]})
    config.update(changes)
    return config


def make_plugin_dir(directory: Path, busybox_tar: Path, config: dict[str, Any]) -> Path:
    """`plugin create`'s input: DIR/config.json and DIR/rootfs (busybox)."""
    (directory / "rootfs").mkdir(parents=True)
    with tarfile.open(busybox_tar) as tar:
        tar.extractall(directory / "rootfs", filter="fully_trusted")
    (directory / "config.json").write_text(json.dumps(config))
    return directory
