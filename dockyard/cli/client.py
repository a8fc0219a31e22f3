"""A small Docker Engine API client over a unix socket or TCP (with TLS), for `dockyard`.

It speaks just the HTTP/1.1 the Engine API needs (fixed and chunked bodies
both ways, upgrade for attach and exec) directly on a socket: the stdlib's
http.client pulls in the email parser and would cost the command a sixth of
its start-up time.

TLS follows the docker CLI: `--tlsverify` (or `DOCKER_TLS_VERIFY` set) checks the
daemon's certificate against `--tlscacert`; `--tls` alone encrypts without checking;
the client certificate and key are sent when their files exist. Files default to
`$DOCKER_CERT_PATH` or `~/.docker` (`ca.pem`, `cert.pem`, `key.pem`).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    import ssl  # imported when TLS is used: it costs the command start-up time

from dockyard.config import DEFAULT_DATA_ROOT, DEFAULT_HOST

API_PREFIX = "/v1.45"


class APIError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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


class Response:
    """A reply whose headers have been read; the body is read on demand."""

    def __init__(self, sock: socket.socket, method: str) -> None:
        self.sock = sock
        self._method = method
        # A bytearray: appending to it is amortised O(1), where bytes would copy
        # the whole buffer on every receive (quadratic on big streamed bodies).
        self._buf = bytearray()
        head = self._until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            self.headers[key.strip().lower()] = value.strip()

    def _fill(self) -> bool:
        chunk = self.sock.recv(1 << 20)
        self._buf += chunk
        return bool(chunk)

    def _until(self, marker: bytes) -> bytes:
        start = 0
        while (found := self._buf.find(marker, start)) == -1:
            start = max(0, len(self._buf) - len(marker) + 1)
            if not self._fill():
                raise APIError(500, "the daemon closed the connection")
        data = bytes(self._buf[:found])
        del self._buf[: found + len(marker)]
        return data

    def _exactly(self, size: int) -> bytes:
        while len(self._buf) < size:
            if not self._fill():
                raise APIError(500, "the daemon closed the connection mid-reply")
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    def chunks(self) -> Iterator[bytes]:
        """The body as it arrives."""
        if self.status in (204, 304) or self.status < 200 or self._method == "HEAD":
            return
        if self.headers.get("transfer-encoding") == "chunked":
            while True:
                size = int(self._until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    return
                yield self._exactly(size)
                self._exactly(2)
        elif "content-length" in self.headers:
            remaining = int(self.headers["content-length"])
            if remaining:
                yield self._exactly(remaining)
        else:
            if self._buf:
                yield self._take()
            while self._fill():
                yield self._take()

    def read(self) -> bytes:
        try:
            return b"".join(self.chunks())
        finally:
            self.close()

    def _take(self) -> bytes:
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def leftover(self) -> bytes:
        """Bytes already received past the headers (for upgraded connections)."""
        return self._take()

    def close(self) -> None:
        self.sock.close()


@dataclass
class TLSOptions:
    """The docker CLI's TLS flags; None where not given on the command line."""

    tls: bool = False
    verify: bool | None = None
    cacert: str | None = None
    cert: str | None = None
    key: str | None = None

    def context(self) -> ssl.SSLContext | None:
        """The client context, or None for no TLS."""
        import ssl

        verify = self.verify
        if verify is None:
            verify = bool(os.environ.get("DOCKER_TLS_VERIFY"))
        if not (self.tls or verify):
            return None
        cert_dir = os.environ.get("DOCKER_CERT_PATH") or os.path.join(
            os.path.expanduser("~"), ".docker"
        )
        cacert = self.cacert or os.path.join(cert_dir, "ca.pem")
        cert = self.cert or os.path.join(cert_dir, "cert.pem")
        key = self.key or os.path.join(cert_dir, "key.pem")
        try:
            if verify:
                ctx = ssl.create_default_context(cafile=cacert if os.path.exists(cacert) else None)
            else:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if os.path.exists(cert) and os.path.exists(key):
                ctx.load_cert_chain(cert, key)
        except OSError as e:  # ssl.SSLError is one
            raise SystemExit(f"could not read TLS certificates: {e}") from None
        return ctx


def close_write(sock: socket.socket) -> None:
    """End our side of a hijacked stream (no more stdin). Under TLS this is a TCP
    half-close, as the docker CLI does: `ssl.SSLSocket.shutdown` would also stop TLS
    for the output still to come."""
    socket.socket.shutdown(sock, socket.SHUT_WR)


class Client:
    def __init__(
        self, host: str | None = None, *, autostart: bool = True, tls: TLSOptions | None = None
    ) -> None:
        host = host or os.environ.get("DOCKYARD_HOST") or DEFAULT_HOST
        self.tcp: tuple[str, int] | None = None
        self.tls: ssl.SSLContext | None = None
        self.socket_path = ""
        if host.startswith("tcp://"):
            parsed = urllib.parse.urlsplit(host.replace("tcp://", "//", 1))
            self.tls = (tls or TLSOptions()).context()
            port = parsed.port or (2376 if self.tls is not None else 2375)
            self.tcp = (parsed.hostname or "localhost", port)
        elif host.startswith("unix://"):
            self.socket_path = host[len("unix://") :]
        else:
            raise SystemExit(f"unsupported host {host!r}: unix:// and tcp:// are supported")
        self.host = host
        # Only the default socket gets a daemon started on demand; an explicit
        # host names a daemon someone else runs.
        self.autostart = autostart and host == DEFAULT_HOST
        self._checked = False

    # -- daemon on demand ----------------------------------------------------

    def _ensure_daemon(self) -> None:
        if self._checked:
            return
        self._checked = True
        try:
            self._send("GET", "/_ping").read()
            return
        except OSError:
            if not self.autostart:
                raise SystemExit(
                    f"Cannot connect to the Dockyard daemon at {self.host}. Is the daemon running?"
                ) from None
        os.makedirs(DEFAULT_DATA_ROOT, exist_ok=True)
        log_path = os.path.join(DEFAULT_DATA_ROOT, "daemon.log")
        print(f"Starting the Dockyard daemon (log: {log_path})", file=sys.stderr)
        with open(log_path, "ab") as log:
            subprocess.Popen(
                [sys.executable, "-m", "dockyard", "daemon"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self._send("GET", "/_ping").read()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"the Dockyard daemon did not start; see {log_path}")

    # -- requests ------------------------------------------------------------

    def _connect(self) -> socket.socket:
        if self.tcp is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.socket_path)
            except BaseException:
                sock.close()
                raise
            return sock
        sock = socket.create_connection(self.tcp)
        if self.tls is None:
            return sock
        try:
            return self.tls.wrap_socket(sock, server_hostname=self.tcp[0])
        except BaseException:
            sock.close()
            raise

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: bytes | BinaryIO | None = None,
        headers: dict[str, str] | None = None,
        upgrade: bool = False,
    ) -> Response:
        sock = self._connect()
        try:
            url = (API_PREFIX if path != "/_ping" else "") + path + _query(params)
            lines = [f"{method} {url} HTTP/1.1", "Host: dockyard"]
            for key, value in (headers or {}).items():
                lines.append(f"{key}: {value}")
            # One connection per request: the daemon may close it after replying.
            lines += ["Connection: Upgrade", "Upgrade: tcp"] if upgrade else ["Connection: close"]
            if body is None or isinstance(body, bytes):
                lines.append(f"Content-Length: {len(body or b'')}")
                sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
            else:
                lines.append("Transfer-Encoding: chunked")
                sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
                while True:
                    chunk = body.read(1 << 20)
                    if not chunk:
                        break
                    sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sock.sendall(b"0\r\n\r\n")
            return Response(sock, method)
        except BaseException:
            sock.close()
            raise

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
    ) -> tuple[int, bytes]:
        self._ensure_daemon()
        hdrs = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        resp = self._send(method, path, params=params, body=data, headers=hdrs)
        content = resp.read()
        if check and resp.status >= 400:
            raise APIError(resp.status, _error_message(content))
        return resp.status, content

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        _, content = self.request(method, path, **kwargs)
        return json.loads(content) if content.strip() else None

    def stream(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        raw: bytes | BinaryIO | None = None,
        headers: dict[str, str] | None = None,
        reply_headers: dict[str, str] | None = None,
    ) -> Iterator[bytes]:
        """The body of a streaming reply, chunk by chunk as it arrives; the reply's headers
        (lower-cased names) go into `reply_headers` when given."""
        self._ensure_daemon()
        resp = self._send(method, path, params=params, body=raw, headers=headers)
        if resp.status >= 400:
            raise APIError(resp.status, _error_message(resp.read()))
        if reply_headers is not None:
            reply_headers.update(resp.headers)
        try:
            yield from resp.chunks()
        finally:
            resp.close()

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

    def hijack(
        self, path: str, *, params: dict[str, Any] | None = None, body: Any = None
    ) -> tuple[socket.socket, bytes]:
        """POST with `Upgrade: tcp`; returns the raw socket and any bytes read past the headers."""
        self._ensure_daemon()
        payload = json.dumps(body).encode() if body is not None else b""
        resp = self._send(
            "POST",
            path,
            params=params,
            body=payload,
            upgrade=True,
            headers={"Content-Type": "application/json"},
        )
        if resp.status not in (101, 200):
            raise APIError(resp.status, _error_message(resp.read()))
        return resp.sock, resp.leftover()

    def open_wait(self, container_id: str, condition: str) -> PendingWait:
        """Send a wait request and return once the daemon has answered with headers."""
        self._ensure_daemon()
        resp = self._send(
            "POST",
            f"/containers/{container_id}/wait",
            params={"condition": condition} if condition else None,
        )
        if resp.status >= 400:
            raise APIError(resp.status, _error_message(resp.read()))
        return PendingWait(resp)


class PendingWait:
    """A wait request whose reply headers have arrived; `result()` blocks for the body."""

    def __init__(self, resp: Response) -> None:
        self._resp = resp

    def result(self) -> int:
        """The container's exit code (125 if the daemon went away)."""
        try:
            result = json.loads(self._resp.read())
        except (APIError, OSError, json.JSONDecodeError):
            return 125
        return int(result.get("StatusCode", 125))
