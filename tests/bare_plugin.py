"""A plugin written without the SDK: the stdlib's HTTP server on a unix socket or TCP.

It records every request (method, path, headers, body) and answers from a
table of canned replies, so tests check the engine against the protocol and
not against Dockyard's own SDK. A reply is a JSON-able value (200), or a
`Raw(status, body, delay)` for errors, garbage, empty bodies and hangs.
`DirectoryVolumes` is such a table for a volume driver that really works.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import socketserver
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any


@dataclass
class Raw:
    status: int = 200
    body: bytes = b""
    delay: float = 0.0
    die: bool = False  # the plugin exits mid-call: no reply, its socket gone


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: int = field(default_factory=time.monotonic_ns)  # orders calls to several plugins

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body.strip() else None


Reply = Any  # JSON-able, Raw, or a callable taking the Call


class BarePlugin:
    def __init__(self, implements: list[str], replies: dict[str, Reply] | None = None) -> None:
        self.replies: dict[str, Reply] = {"/Plugin.Activate": {"Implements": implements}}
        self.replies.update(replies or {})
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        self.server: socketserver.BaseServer | None = None
        self.address = ""
        self.connections: set[socket.socket] = set()

    def paths(self) -> list[str]:
        with self.lock:
            return [c.path for c in self.calls]

    def calls_to(self, path: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.path == path]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        plugin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with plugin.lock:
                    plugin.connections.add(self.connection)

            def finish(self) -> None:
                with plugin.lock:
                    plugin.connections.discard(self.connection)
                super().finish()

            def address_string(self) -> str:
                return "plugin-client"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                call = Call("POST", self.path, dict(self.headers.items()), body)
                with plugin.lock:
                    plugin.calls.append(call)
                reply = plugin.replies.get(self.path, Raw(404, b'{"Err":"no such method"}'))
                if callable(reply):
                    reply = reply(call)
                if not isinstance(reply, Raw):
                    reply = Raw(200, json.dumps(reply).encode())
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.die:
                    plugin.stop()
                    self.close_connection = True
                    return
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/vnd.docker.plugins.v1.1+json")
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass

        return Handler

    def serve_unix(self, path: str) -> BarePlugin:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.exists(path):
            os.unlink(path)

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self.server = Server(path, self._handler())
        self.address = path
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def serve_tcp(self, tls: ssl.SSLContext | None = None) -> BarePlugin:
        class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), self._handler())
        if tls is not None:  # HTTPS: the handshake happens at accept
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        host, port = self.server.server_address[:2]
        self.address = f"{host}:{port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            with self.lock:  # like a process that exits: kept-alive connections go too
                for connection in list(self.connections):
                    try:
                        connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            if isinstance(self.server, socketserver.UnixStreamServer):
                try:
                    os.unlink(self.address)
                except FileNotFoundError:
                    pass
            self.server = None

    def __enter__(self) -> BarePlugin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def bind_dead_socket(path: str) -> None:
    """A socket file nobody listens on (connection refused)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.close()


class DirectoryVolumes:
    """A working VolumeDriver written without the SDK, as replies for `BarePlugin`.

    A volume is a directory under `root`; mounts are counted per ID. With `-o
    tmpfs=SIZE` the directory is a tmpfs, mounted at the first Mount and unmounted
    at the last Unmount (something provisioned per mount, as real plugins do).
    Unknown volumes are answered with `Err` ("no such volume"), as most plugins do.
    """

    def __init__(self, root: str, scope: str = "local") -> None:
        self.root = root
        self.scope = scope
        os.makedirs(root, exist_ok=True)
        self.volumes: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def _volume(self, name: str) -> dict[str, Any]:
        record = self.volumes[name]
        return {
            "Name": name,
            "Mountpoint": self.path(name),
            "Status": {"mounts": len(record["mounts"]), "tmpfs": record["tmpfs"]},
        }

    def create(self, call: Call) -> Any:
        name, opts = call.json["Name"], call.json.get("Opts") or {}
        if set(opts) - {"tmpfs"}:
            return {"Err": f"unknown options: {sorted(set(opts) - {'tmpfs'})}"}
        with self.lock:
            if name not in self.volumes:
                os.makedirs(self.path(name), exist_ok=True)
                self.volumes[name] = {"mounts": set(), "tmpfs": opts.get("tmpfs", "")}
        return {}

    def remove(self, call: Call) -> Any:
        name = call.json["Name"]
        with self.lock:
            record = self.volumes.get(name)
            if record is None:
                return {"Err": "no such volume"}
            if record["mounts"]:
                return {"Err": f"volume {name} is in use"}
            shutil.rmtree(self.path(name), ignore_errors=True)
            del self.volumes[name]
        return {}

    def mount(self, call: Call) -> Any:
        name, mount_id = call.json["Name"], call.json["ID"]
        with self.lock:
            record = self.volumes.get(name)
            if record is None:
                return {"Err": "no such volume"}
            if not record["mounts"] and record["tmpfs"]:
                subprocess.run(
                    ["mount", "-t", "tmpfs", "-o", f"size={record['tmpfs']}", "tmpfs",
                     self.path(name)],
                    check=True,
                )  # fmt: skip
            record["mounts"].add(mount_id)
        return {"Mountpoint": self.path(name)}

    def unmount(self, call: Call) -> Any:
        name, mount_id = call.json["Name"], call.json["ID"]
        with self.lock:
            record = self.volumes.get(name)
            if record is None or mount_id not in record["mounts"]:
                return {}
            record["mounts"].discard(mount_id)
            if not record["mounts"] and record["tmpfs"]:
                subprocess.run(["umount", self.path(name)], check=True)
        return {}

    def get(self, call: Call) -> Any:
        with self.lock:
            if call.json["Name"] not in self.volumes:
                return {"Err": "no such volume"}
            return {"Volume": self._volume(call.json["Name"])}

    def replies(self) -> dict[str, Reply]:
        def path(call: Call) -> Any:
            name = call.json["Name"]
            return {"Mountpoint": self.path(name) if name in self.volumes else ""}

        def listing(call: Call) -> Any:
            with self.lock:
                return {"Volumes": [self._volume(n) for n in sorted(self.volumes)]}

        return {
            "/VolumeDriver.Capabilities": {"Capabilities": {"Scope": self.scope}},
            "/VolumeDriver.Create": self.create,
            "/VolumeDriver.Remove": self.remove,
            "/VolumeDriver.Mount": self.mount,
            "/VolumeDriver.Unmount": self.unmount,
            "/VolumeDriver.Path": path,
            "/VolumeDriver.Get": self.get,
            "/VolumeDriver.List": listing,
        }
