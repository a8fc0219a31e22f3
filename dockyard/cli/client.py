"""A small Docker Engine API client over a unix socket, for the `dockyard` command.

Stdlib only (http.client and sockets), so the command starts fast. Besides
plain JSON calls it speaks the two streaming forms the CLI needs: JSON-lines
progress and hijacked (upgraded) connections for attach and exec.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any, BinaryIO

from dockyard.config import DEFAULT_DATA_ROOT, DEFAULT_HOST

API_PREFIX = "/v1.45"


class APIError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None = None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if self.timeout is not None:
            sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def _query(params: dict[str, Any] | None) -> str:
    if not params:
        return ""
    items: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None or value is False:
            continue
        if isinstance(value, list):
            items += [(key, str(v)) for v in value]
        elif value is True:
            items.append((key, "1"))
        elif isinstance(value, dict):
            items.append((key, json.dumps(value)))
        else:
            items.append((key, str(value)))
    return "?" + urllib.parse.urlencode(items) if items else ""


def _error_message(body: bytes) -> str:
    try:
        data = json.loads(body)
        if isinstance(data, dict) and "message" in data:
            return str(data["message"])
    except (json.JSONDecodeError, UnicodeDecodeError):
        pass
    return body.decode(errors="replace").strip()


class Client:
    def __init__(self, host: str | None = None, *, autostart: bool = True) -> None:
        host = host or os.environ.get("DOCKYARD_HOST") or DEFAULT_HOST
        if not host.startswith("unix://"):
            raise SystemExit(f"unsupported host {host!r}: only unix:// sockets are supported")
        self.socket_path = host[len("unix://"):]
        # Only the default socket gets a daemon started on demand; an explicit
        # host names a daemon someone else runs.
        self.autostart = autostart and host == DEFAULT_HOST and "DOCKYARD_HOST" not in os.environ
        self._checked = False

    # -- daemon on demand ----------------------------------------------------

    def _ensure_daemon(self) -> None:
        if self._checked:
            return
        self._checked = True
        try:
            self.request("GET", "/_ping", check=False, _ensure=False)
            return
        except OSError:
            if not self.autostart:
                raise SystemExit(
                    f"Cannot connect to the Dockyard daemon at unix://{self.socket_path}. "
                    "Is the daemon running?"
                ) from None
        os.makedirs(DEFAULT_DATA_ROOT, exist_ok=True)
        log_path = os.path.join(DEFAULT_DATA_ROOT, "daemon.log")
        print(f"Starting the Dockyard daemon (log: {log_path})", file=sys.stderr)
        with open(log_path, "ab") as log:
            subprocess.Popen(
                [sys.executable, "-m", "dockyard", "daemon"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.request("GET", "/_ping", check=False, _ensure=False)
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"the Dockyard daemon did not start; see {log_path}")

    # -- plain requests ------------------------------------------------------

    def _connection(self, timeout: float | None = None) -> _UnixConnection:
        return _UnixConnection(self.socket_path, timeout)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        raw: bytes | BinaryIO | None = None,
        headers: dict[str, str] | None = None,
        check: bool = True,
        _ensure: bool = True,
    ) -> tuple[int, bytes]:
        if _ensure:
            self._ensure_daemon()
        conn = self._connection()
        hdrs = dict(headers or {})
        data: Any = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        elif raw is not None:
            data = raw
            if not isinstance(raw, bytes):
                hdrs["Transfer-Encoding"] = "chunked"
        url = (API_PREFIX if path != "/_ping" else "") + path + _query(params)
        conn.request(method, url, body=data, headers=hdrs,
                     encode_chunked=data is not None and not isinstance(data, bytes))
        resp = conn.getresponse()
        content = resp.read()
        conn.close()
        if check and resp.status >= 400:
            raise APIError(resp.status, _error_message(content))
        return resp.status, content

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        _, content = self.request(method, path, **kwargs)
        return json.loads(content) if content.strip() else None

    def stream(
        self, method: str, path: str, *, params: dict[str, Any] | None = None,
        raw: bytes | BinaryIO | None = None, headers: dict[str, str] | None = None,
    ) -> Iterator[bytes]:
        """The body of a streaming reply, chunk by chunk as it arrives."""
        self._ensure_daemon()
        conn = self._connection()
        hdrs = dict(headers or {})
        if raw is not None and not isinstance(raw, bytes):
            hdrs["Transfer-Encoding"] = "chunked"
        conn.request(method, API_PREFIX + path + _query(params), body=raw, headers=hdrs,
                     encode_chunked=raw is not None and not isinstance(raw, bytes))
        resp = conn.getresponse()
        if resp.status >= 400:
            content = resp.read()
            conn.close()
            raise APIError(resp.status, _error_message(content))
        try:
            while True:
                chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
                if not chunk:
                    return
                yield chunk
        finally:
            conn.close()

    def json_stream(self, method: str, path: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        buffer = b""
        for chunk in self.stream(method, path, **kwargs):
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    yield json.loads(line)
        if buffer.strip():
            yield json.loads(buffer)

    # -- hijacked connections ------------------------------------------------

    def hijack(self, path: str, *, params: dict[str, Any] | None = None,
               body: Any = None) -> tuple[socket.socket, bytes]:
        """POST with `Upgrade: tcp`; returns the raw socket and any bytes read past the headers."""
        self._ensure_daemon()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.socket_path)
        payload = json.dumps(body).encode() if body is not None else b""
        head = (
            f"POST {API_PREFIX}{path}{_query(params)} HTTP/1.1\r\n"
            "Host: dockyard\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        sock.sendall(head.encode() + payload)
        status, rest = _read_head(sock)
        if status != 101 and status != 200:
            body_text = rest
            sock.settimeout(5)
            try:
                while True:
                    more = sock.recv(65536)
                    if not more:
                        break
                    body_text += more
            except OSError:
                pass
            sock.close()
            raise APIError(status, _error_message(_dechunk(body_text)))
        return sock, rest

    def open_wait(self, container_id: str, condition: str) -> PendingWait:
        """Send a wait request and return once the daemon has answered with headers."""
        self._ensure_daemon()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.socket_path)
        sock.sendall(
            f"POST {API_PREFIX}/containers/{container_id}/wait?condition={condition} HTTP/1.1\r\n"
            "Host: dockyard\r\nContent-Length: 0\r\n\r\n".encode()
        )
        status, rest = _read_head(sock)
        if status >= 400:
            sock.close()
            raise APIError(status, _error_message(_dechunk(rest)))
        return PendingWait(sock, rest)


class PendingWait:
    """A wait request whose reply headers have arrived; `result()` blocks for the body."""

    def __init__(self, sock: socket.socket, received: bytes) -> None:
        self._sock = sock
        self._data = received

    def result(self) -> int:
        """The container's exit code (125 if the daemon went away)."""
        try:
            while b"}" not in _dechunk(self._data):
                chunk = self._sock.recv(65536)
                if not chunk:
                    break
                self._data += chunk
        except OSError:
            pass
        finally:
            self._sock.close()
        try:
            result = json.loads(_dechunk(self._data).strip().splitlines()[0])
        except (json.JSONDecodeError, IndexError):
            return 125
        return int(result.get("StatusCode", 125))


def _read_head(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise APIError(500, "daemon closed the connection")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    status_line = head.split(b"\r\n", 1)[0].decode()
    return int(status_line.split()[1]), rest


def _dechunk(data: bytes) -> bytes:
    """Decode a chunked body if it is one (best effort, for short replies)."""
    out = b""
    rest = data
    while rest:
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            return data
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            return data
        if size == 0:
            return out
        out += rest[:size]
        rest = rest[size + 2 :]
    return out
