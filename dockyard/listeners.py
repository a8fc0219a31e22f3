"""Where the daemon listens: unix sockets and TCP, the latter with TLS as dockerd does it.

`-H`/`hosts` name the listeners (`unix:///path`, `tcp://HOST:PORT`). TLS on TCP follows
dockerd's flags and their resolution: `--tlsverify` (given at all, true or false) turns
TLS on; `--tls` alone means `--tlsverify` too unless that is explicitly false; with
verification the client must present a certificate signed by `--tlscacert`, and one
without is refused during the handshake (no HTTP answer at all).

A TCP listener without client verification gets Docker's warnings. dockerd still starts
after sleeping; Dockyard refuses to start instead, unless TLS was explicitly turned off
(`--tls=false`) or verification explicitly off (`--tlsverify=false`), the overrides
dockerd's own warning names. Port 0 (`tcp://127.0.0.1:0`, a Dockyard extension) binds a
port the kernel picks; the addresses bound are logged and written to
`<exec-root>/api-hosts`, one per line.

Hijacked connections (attach, exec, `/grpc`, `/session`) need a TCP half-close from the
client (end of stdin) to leave the server able to write: asyncio's TLS protocol closes the
whole connection on EOF, so TLS connections use `_HalfCloseTLS`, which does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import ssl
import urllib.parse
from asyncio import sslproto
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from dockyard.errors import InvalidArgument

log = logging.getLogger("dockyard")

DEFAULT_TCP_PORT = 2375  # Docker's port for plain TCP
DEFAULT_TLS_PORT = 2376  # and for TLS
HOSTS_FILE = "api-hosts"

_INSECURE_WARNINGS = (
    "Binding to IP address without --tlsverify is insecure and gives root access on this "
    "machine to everyone who has access to your network.",
    "Binding to an IP address, even on localhost, can also give access to scripts run in "
    "a browser. Be safe out there!",
)


@dataclass(frozen=True)
class Host:
    """One `-H` value, parsed."""

    proto: str  # "unix" or "tcp"
    address: str  # socket path, or host name / IP
    port: int = 0

    def __str__(self) -> str:
        if self.proto == "unix":
            return f"unix://{self.address}"
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"tcp://{host}:{self.port}"


def parse_host(value: str, tls: bool) -> Host:
    """`unix:///path` or `tcp://HOST[:PORT]` (host defaulting to localhost and port to
    2376 with TLS, 2375 without, as dockerd does)."""
    proto, sep, rest = value.partition("://")
    if not sep:
        raise InvalidArgument(f"bad format {value}, expected PROTO://ADDR")
    if proto == "unix":
        if not rest.startswith("/"):
            raise InvalidArgument(f"invalid bind address ({value}): the path must be absolute")
        return Host("unix", rest)
    if proto != "tcp":
        raise InvalidArgument(f"invalid bind address ({value}): unix:// or tcp:// only")
    parsed = urllib.parse.urlsplit("//" + rest)
    if parsed.path not in ("", "/"):
        raise InvalidArgument(f"invalid bind address ({value}): should not contain a path element")
    try:
        port = parsed.port
    except ValueError as e:
        raise InvalidArgument(f"invalid bind address ({value}): {e}") from None
    if port is None:
        port = DEFAULT_TLS_PORT if tls else DEFAULT_TCP_PORT
    return Host("tcp", parsed.hostname or "localhost", port)


@dataclass(frozen=True)
class TLSSettings:
    """The daemon's TLS choice after dockerd's resolution of `tls` and `tlsverify`."""

    enabled: bool
    verify: bool
    explicit: bool  # `tls` or `tlsverify` was given (either way): an informed choice
    cacert: str
    cert: str
    key: str


def resolve_tls(
    tls: bool | None, tlsverify: bool | None, cacert: str | None, cert: str | None, key: str | None
) -> TLSSettings:
    """dockerd's rules: giving `tlsverify` at all turns TLS on; TLS on without an explicit
    `tlsverify` verifies clients. Files default to `$DOCKER_CERT_PATH` or `~/.docker`."""
    cert_dir = os.environ.get("DOCKER_CERT_PATH") or os.path.join(
        os.path.expanduser("~"), ".docker"
    )
    enabled = bool(tls) or tlsverify is not None
    verify = enabled and (tlsverify is None or tlsverify)
    return TLSSettings(
        enabled=enabled,
        verify=verify,
        explicit=tls is not None or tlsverify is not None,
        cacert=cacert or os.path.join(cert_dir, "ca.pem"),
        cert=cert or os.path.join(cert_dir, "cert.pem"),
        key=key or os.path.join(cert_dir, "key.pem"),
    )


def server_context(settings: TLSSettings) -> ssl.SSLContext:
    """The TLS server context: TLS 1.2 at least (Docker's floor), HTTP/1.1 only (the
    Engine API's hijacks are HTTP/1.1 upgrades), client certificates required and checked
    against the CA alone when verifying."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(settings.cert, settings.key)
    except (OSError, ssl.SSLError) as e:
        raise InvalidArgument(
            f"invalid TLS configuration: could not load X509 key pair "
            f"({settings.cert}, {settings.key}): {e}"
        ) from None
    if settings.verify:
        try:
            ctx.load_verify_locations(cafile=settings.cacert)
        except (OSError, ssl.SSLError) as e:
            raise InvalidArgument(
                f"invalid TLS configuration: could not read CA certificate {settings.cacert}: {e}"
            ) from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def check_insecure(hosts: list[Host], settings: TLSSettings) -> None:
    """Docker's warnings for every TCP listener without client verification; refuse to
    start unless TLS or verification was explicitly turned off."""
    for host in hosts:
        if host.proto != "tcp" or settings.verify:
            continue
        for line in _INSECURE_WARNINGS:
            log.warning("%s host=%s", line, host)
        if not settings.explicit:
            raise InvalidArgument(
                f"refusing to listen on {host} without --tlsverify: anyone who can reach it "
                "gets root on this machine. Give --tlsverify with --tlscacert, --tlscert and "
                "--tlskey, or --tls=false to accept the risk"
            )


def bind_tcp(host: Host, backlog: int) -> socket.socket:
    """A listening TCP socket for `host` (its name resolved to its first address)."""
    try:
        ip = ipaddress.ip_address(host.address)
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        address: Any = (host.address, host.port)
    except ValueError:
        try:
            family, _, _, _, address = socket.getaddrinfo(
                host.address, host.port, type=socket.SOCK_STREAM
            )[0]
        except OSError as e:
            raise InvalidArgument(f"error parsing tcp address {host}: {e}") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as e:
        sock.close()
        raise InvalidArgument(f"failed to load listeners: listen tcp {host}: {e}") from None
    return sock


def bound_address(sock: socket.socket) -> str:
    """`tcp://IP:PORT` as bound (the real port when 0 was asked for)."""
    ip, port = sock.getsockname()[:2]
    return str(Host("tcp", ip, port))


def write_hosts_file(exec_root: str, addresses: list[str]) -> None:
    path = os.path.join(exec_root, HOSTS_FILE)
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write("".join(a + "\n" for a in addresses))
    os.replace(path + ".tmp", path)


class _HalfCloseTLS(sslproto.SSLProtocol):
    """asyncio's TLS protocol, except that the client ending its side of the connection
    (a TLS close_notify, or a TCP half-close under TLS) is passed to the application as
    EOF, which decides whether the connection lives on: a hijacked stream keeps writing
    output after stdin ended, as the docker CLI expects. The stock protocol shuts the
    whole connection down instead. Only the application's own close ends it then. A
    refused handshake sends its alert first.

    This leans on the stdlib protocol's private state (`_state`, `_app_state`, ...),
    which is not in its type stubs: hence `me: Any`.
    """

    _kept_open = False  # the client's side ended and the application writes on

    def _on_handshake_complete(self, handshake_exc: BaseException | None) -> None:
        me: Any = self
        if isinstance(handshake_exc, ssl.SSLError):
            # Send OpenSSL's alert (e.g. "certificate required") before hanging up, so
            # the client says why; the stock protocol drops it.
            with contextlib.suppress(Exception):
                me._process_outgoing()
        me_super: Any = super()
        me_super._on_handshake_complete(handshake_exc)

    def _call_eof_received(self) -> None:
        me: Any = self
        if me._app_state != sslproto.AppProtocolState.STATE_CON_MADE:
            return
        me._app_state = sslproto.AppProtocolState.STATE_EOF
        try:
            self._kept_open = bool(me._app_protocol.eof_received())
        except Exception as e:
            me._fatal_error(e, "Error calling eof_received()")

    def _start_shutdown(self) -> None:
        me: Any = self
        transport = me._app_transport
        if self._kept_open and transport is not None and not transport._closed:
            return  # the client's close_notify: its side ended, ours goes on
        super()._start_shutdown()

    def eof_received(self) -> bool | None:  # type: ignore[override]
        me: Any = self
        if me._state == sslproto.SSLProtocolState.WRAPPED:
            me._do_read()  # what arrived before the EOF goes first
            self._call_eof_received()
            if self._kept_open:
                # No close_notify can come after the EOF: the app's close ends it at once.
                me._eof_received = True
                return True
        return super().eof_received()


class TLSSockSite(web.SockSite):
    """aiohttp's socket site with TLS done by `_HalfCloseTLS`."""

    def __init__(
        self, runner: web.BaseRunner, sock: socket.socket, context: ssl.SSLContext, backlog: int
    ) -> None:
        super().__init__(runner, sock, backlog=backlog)
        self._tls = context

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None

        def protocol() -> asyncio.BaseProtocol:
            waiter: Any = None  # a server-side connection has no one waiting on it
            return _HalfCloseTLS(loop, server(), self._tls, waiter, server_side=True)

        self._server = await loop.create_server(protocol, sock=self._sock, backlog=self._backlog)
