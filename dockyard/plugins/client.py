"""The v1 plugin protocol's transport: HTTP POSTs to `/<Kind>.<Method>`.

A request is `POST /<Kind>.<Method>` with `Accept:` the plugin media type, no
Content-Type, and either an empty body (argument-less methods) or one JSON
object followed by a newline, as Go's encoder writes it. Only HTTP 200 is
success; an empty or non-JSON 200 body is a failure; any other status fails
with the reply's `Err` (or its raw body). Connections are kept alive between
calls, as Go's client does (it halves the cost of a call); one that the plugin
closed in the meantime (it restarted on the same socket) is retried at once on
a new connection, so a restarted plugin is picked up by the next call.

Transport failures (refused, socket missing, connection dropped before a
reply) are retried with Docker's back-off (1 s, 2 s, 4 s, ... while the total
stays under the retry window). The engine gives its clients a short window
(`QUICK_RETRY_WINDOW`): a plugin that is not there fails the call within 2 s,
not after Docker's 30 s; only while `starting()` says the plugin is being
started (a managed plugin the engine runs) is the long `start_window` used.
HTTP errors are never retried, and neither is a timeout: a hung plugin fails
the call within its own timeout. Every failure is a `PluginError` whose text
names the plugin and the call, in the words Docker uses for authorization
plugins: `plugin NAME failed with error: Kind.Method: detail`; a connection
that could not be made says where and how often it was tried. `reached` tells
whether the request may have got to the plugin (False only when no connection
was made): a call that must happen exactly once may be repeated only if not.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from dockyard.errors import Unavailable
from dockyard.plugins.discovery import Endpoint
from dockyard.wire import MEDIA_TYPE, Message, WireError, loads, lookup

M = TypeVar("M", bound=Message)
T = TypeVar("T")

DEFAULT_RETRY_WINDOW = 30.0
# How long the engine retries a plugin that refuses connections or has no socket, unless
# it is starting it: long enough for a plugin restarting on its socket, short enough that
# a dead one fails a call well within 2 s.
QUICK_RETRY_WINDOW = 1.5
DEFAULT_TIMEOUT_CAP = 120.0
_EXCERPT = 200


class PluginError(Unavailable):
    """A plugin call failed; `call_error` is Docker's `Kind.Method: detail` text."""

    def __init__(
        self, plugin: str, method: str, detail: str, *, status: int = 0, reached: bool = True
    ) -> None:
        self.plugin = plugin
        self.method = method
        self.detail = detail
        self.http_status = status
        self.reached = reached  # False: no connection was made, the plugin saw nothing
        self.call_error = f"{method}: {detail}"
        super().__init__(f"plugin {plugin} failed with error: {self.call_error}")


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = ""


def backoff(attempt: int) -> float:
    return float(1 << attempt)


def quick_backoff(attempt: int) -> float:
    """The pauses within the quick window: 0.25 s, 0.5 s, 1 s, ..."""
    return 0.25 * (1 << attempt)


def encode_body(args: Message | dict[str, Any] | None) -> bytes:
    if args is None:
        return b""
    data = args.to_wire() if isinstance(args, Message) else args
    return json.dumps(data, separators=(",", ":")).encode() + b"\n"


def excerpt(body: bytes) -> str:
    text = body.decode(errors="replace").strip()
    return text if len(text) <= _EXCERPT else text[:_EXCERPT] + "..."


def _ssl_context(endpoint: Endpoint) -> ssl.SSLContext | None:
    if endpoint.scheme != "https":
        return None
    tls = endpoint.tls
    ctx = ssl.create_default_context(cafile=tls.ca_file or None if tls else None)
    if tls is not None:
        if tls.insecure_skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if tls.cert_file:
            ctx.load_cert_chain(tls.cert_file, tls.key_file or None)
    return ctx


class PluginClient:
    """Calls one plugin. Safe for concurrent use from the event loop it runs on."""

    def __init__(
        self,
        name: str,
        endpoint: Endpoint,
        *,
        retry_window: float = DEFAULT_RETRY_WINDOW,
        timeout_cap: float = DEFAULT_TIMEOUT_CAP,
        starting: Callable[[], bool] | None = None,
        start_window: float = DEFAULT_RETRY_WINDOW,
    ) -> None:
        self.name = name
        self.endpoint = endpoint
        self.retry_window = retry_window
        self.timeout_cap = timeout_cap
        # Whether the plugin is being started (its socket will come): then transport
        # failures are retried for `start_window` instead of `retry_window`.
        self.starting = starting
        self.start_window = start_window
        self._session: aiohttp.ClientSession | None = None
        self._ssl = _ssl_context(endpoint)

    def __repr__(self) -> str:
        return f"PluginClient({self.name!r}, {self.endpoint})"

    def timeout(self, default: float | None) -> float:
        """A call's timeout: Docker's own (None: unbounded) capped at the engine's bound."""
        if default is None or default <= 0:
            return self.timeout_cap
        return min(default, self.timeout_cap)

    def _url(self, method: str) -> str:
        host = "plugin.moby.localhost" if self.endpoint.scheme == "unix" else self.endpoint.address
        scheme = "https" if self.endpoint.scheme == "https" else "http"
        return f"{scheme}://{host}/{method}"

    def _session_for_loop(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if self.endpoint.scheme == "unix":
                connector: aiohttp.BaseConnector = aiohttp.UnixConnector(
                    self.endpoint.address, keepalive_timeout=10
                )
            else:
                connector = aiohttp.TCPConnector(keepalive_timeout=10, ssl=self._ssl or False)
            self._session = aiohttp.ClientSession(
                connector=connector,
                skip_auto_headers=("Content-Type", "User-Agent"),
                auto_decompress=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self, method: str, body: bytes, *, timeout: float | None = None, retry: bool = True
    ) -> Reply:
        """POST `body` to `/<method>`; the raw reply, whatever its status."""
        limit = self.timeout(timeout)

        async def attempt() -> Reply:
            async with self._post(method, body) as resp:
                try:
                    data = await resp.read()
                except (aiohttp.ClientError, OSError) as e:
                    raise PluginError(self.name, method, f"reply cut short: {_reason(e)}") from e
                return Reply(resp.status, data, resp.headers.get("Content-Type", ""))

        return await self._retrying(method, attempt, limit, retry)

    def _post(self, method: str, body: bytes) -> Any:
        return self._session_for_loop().post(
            self._url(method),
            data=body,
            headers={"Accept": MEDIA_TYPE},
            ssl=self._ssl if self._ssl is not None else False,
            timeout=aiohttp.ClientTimeout(total=None),
        )

    async def _retrying(
        self, method: str, attempt: Callable[[], Awaitable[T]], limit: float, retry: bool
    ) -> T:
        start = time.monotonic()
        tries = 0
        fresh = False
        while True:
            try:
                return await asyncio.wait_for(attempt(), limit)
            except TimeoutError:
                raise PluginError(self.name, method, f"timed out after {limit:g}s") from None
            except (aiohttp.ClientConnectionError, OSError) as e:
                connecting = isinstance(e, aiohttp.ClientConnectorError)
                dropped = isinstance(e, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError)
                if dropped and not connecting and not fresh:
                    # Most likely a kept-alive connection the plugin closed (it restarted):
                    # once more at once, on a new connection.
                    fresh = True
                    continue
                tries += 1
                window = self.retry_window
                if self.starting is not None and self.starting():
                    window = max(window, self.start_window)
                quick = window <= QUICK_RETRY_WINDOW
                pause = quick_backoff(tries - 1) if quick else backoff(tries - 1)
                elapsed = time.monotonic() - start
                if not retry or elapsed + pause >= window:
                    reason = self._reason(e)
                    if connecting:
                        reason += f" ({_attempts(tries)} in {elapsed:.1f}s)"
                    raise PluginError(self.name, method, reason, reached=not connecting) from e
                await asyncio.sleep(pause)

    def _reason(self, e: BaseException) -> str:
        if isinstance(e, aiohttp.ClientConnectorError):
            return f"connecting to {self.endpoint}: {e.os_error.strerror or e.os_error}"
        return _reason(e)

    async def call(
        self,
        method: str,
        args: Message | dict[str, Any] | None,
        result: type[M],
        *,
        timeout: float | None = None,
        error_key: str | None = "Err",
        retry: bool = True,
    ) -> M:
        """Call a method and decode its reply into `result`; a non-empty `error_key`
        field in a 200 reply is a failure too. `retry=False`: one attempt only."""
        reply = await self.request(method, encode_body(args), timeout=timeout, retry=retry)
        data = self.check(method, reply)
        if error_key:
            err = lookup(data, error_key)
            if isinstance(err, str) and err:
                raise PluginError(self.name, method, err, status=200)
        try:
            return result.decode(data)
        except WireError as e:
            raise PluginError(self.name, method, f"invalid reply: {e}", status=200) from e

    def check(self, method: str, reply: Reply) -> dict[str, Any]:
        """The JSON object of a successful reply, or the PluginError Docker would report."""
        if reply.status != 200:
            raise PluginError(self.name, method, _error_text(reply), status=reply.status)
        if not reply.body.strip():
            raise PluginError(self.name, method, "empty reply (EOF)", status=200)
        try:
            data = loads(reply.body)
        except WireError:
            raise PluginError(
                self.name, method, f"invalid JSON reply: {excerpt(reply.body)}", status=200
            ) from None
        if not isinstance(data, dict):
            raise PluginError(
                self.name, method, f"reply is not a JSON object: {excerpt(reply.body)}", status=200
            )
        return data

    async def stream(
        self, method: str, args: Message | dict[str, Any] | None, *, timeout: float | None = None
    ) -> AsyncIterator[bytes]:
        """Call a method whose 200 reply is a stream (LogDriver.ReadLogs); yields chunks.
        `timeout` bounds the wait for the reply's headers only."""
        body = encode_body(args)

        async def attempt() -> aiohttp.ClientResponse:
            resp: aiohttp.ClientResponse = await self._post(method, body)
            return resp

        resp = await self._retrying(method, attempt, self.timeout(timeout), True)
        try:
            if resp.status != 200:
                data = await resp.read()
                reply = Reply(resp.status, data)
                raise PluginError(self.name, method, _error_text(reply), status=resp.status)
            try:
                async for chunk in resp.content.iter_any():
                    yield chunk
            except (aiohttp.ClientError, OSError) as e:
                raise PluginError(self.name, method, f"stream cut short: {_reason(e)}") from e
        finally:
            resp.release()


def _attempts(count: int) -> str:
    return f"{count} attempt" if count == 1 else f"{count} attempts"


def _reason(e: BaseException) -> str:
    if isinstance(e, aiohttp.ServerDisconnectedError):
        return "the plugin closed the connection without replying"
    return str(e) or type(e).__name__


def _error_text(reply: Reply) -> str:
    try:
        data = loads(reply.body)
    except WireError:
        data = None
    if isinstance(data, dict):
        err = lookup(data, "Err")
        if isinstance(err, str) and err:
            return err
    text = excerpt(reply.body)
    return text or f"HTTP {reply.status} with an empty body"
