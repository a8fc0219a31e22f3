"""Authorization: the chain of AuthZ plugins every API request passes through.

Configured with `--authorization-plugin NAME` (repeatable, chain order) or
`"authorization-plugins"` in daemon.json; duplicates are dropped. At daemon
start every configured plugin is looked up (with the discovery retry) and a
missing one stops the daemon. Then, per request:

1. `AuthZReq` to each plugin in order; the first `Allow: false` ends it: 403
   `authorization denied by plugin NAME: MSG`, later plugins and the handler
   are not called;
2. the handler;
3. `AuthZRes` to each plugin in order, with the response's status, headers and
   (JSON) body; a deny replaces the response with the same 403, unless the
   handler itself failed (its error wins) or the response was streamed (it is
   already out; the verdict is logged).

A plugin that cannot be reached or answers garbage fails the request closed:
500 `plugin NAME failed with error: AuthZPlugin.AuthZReq: DETAIL`. Disabling a
v2 authz plugin takes it out of the chain (matched by ID, so `policy` and
`policy:latest` both go; Docker matches the name only). SIGHUP reloads
`authorization-plugins` from daemon.json (flags still win over the file); a
new chain naming a plugin that cannot be found is refused and logged, and the
running chain stays (Docker exits instead).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from dockyard.errors import Forbidden, InvalidArgument
from dockyard.plugins.protocol import AUTHZ
from dockyard.plugins.protocol.authz import AuthzClient, Reply, Request
from dockyard.plugins.service import PluginService

log = logging.getLogger(__name__)

# Docker's maxBodySize. Docker forwards a larger body's request without the body,
# which lets a big body slip past a policy; here such a request is refused instead.
MAX_BODY = 1 << 20
_AUTH_PATH = re.compile(r"^[^/]*/(v\d[\d.]*/)?auth")
_HIDDEN_HEADERS = {"authorization", "x-registry-auth", "x-registry-config"}


@dataclass
class ApiRequest:
    """What the chain needs to know of an API request (no HTTP objects)."""

    method: str
    uri: str  # the raw request target: version prefix and query included
    headers: dict[str, str]
    body: bytes = b""
    user: str = ""
    authn_method: str = ""
    certificates: list[bytes] = field(default_factory=list)


def canonical_header(name: str) -> str:
    """Go's canonical MIME header key: `content-type` -> `Content-Type`."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def flatten_headers(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """One value per header (the last), without credentials."""
    out: dict[str, str] = {}
    for name, value in pairs:
        if name.lower() in _HIDDEN_HEADERS:
            continue
        out[canonical_header(name)] = value
    return out


def is_json_media(content_type: str) -> bool:
    """Whether a Content-Type header names `application/json` (parameters allowed)."""
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


def sends_body(path: str, content_type: str) -> bool:
    """Docker sends bodies only for `application/json`, and never for `/auth`.

    The API parses no other JSON body (`read_json_value` refuses it), so what a
    plugin is shown is what the daemon acts on.
    """
    return not _AUTH_PATH.match(path) and is_json_media(content_type)


class Authorization:
    def __init__(self, plugins: PluginService, names: list[str]) -> None:
        self.plugins = plugins
        self.names = list(dict.fromkeys(n for n in names if n))

    @property
    def active(self) -> bool:
        return bool(self.names)

    async def start(self) -> None:
        """Check that every configured plugin exists and is an authz plugin."""
        for name in self.names:
            await self.plugins.get(name, AUTHZ)

    async def reload(self, names: list[str]) -> None:
        """Replace the chain (SIGHUP). Every plugin of the new chain must exist first;
        if one does not, the error is raised and the running chain stays as it was."""
        wanted = list(dict.fromkeys(n for n in names if n))
        for name in wanted:
            await self.plugins.get(name, AUTHZ)
        self.names = wanted

    def drop(self, managed_id: str) -> None:
        """Take a disabled v2 plugin out of the chain, whichever name the chain has
        for it (`policy`, `policy:latest`, its ID)."""
        managed = self.plugins.managed

        def other(name: str) -> bool:
            found = managed.lookup(name)
            return found is None or found.id != managed_id

        self.names = [n for n in self.names if other(n)]

    async def _clients(self) -> list[tuple[str, AuthzClient]]:
        """The chain: each plugin with the name it was configured by (Docker's messages)."""
        return [(n, AuthzClient((await self.plugins.get(n, AUTHZ)).client)) for n in self.names]

    @staticmethod
    def check_body_size(length: int | None) -> None:
        if length is not None and length > MAX_BODY:
            raise InvalidArgument(
                f"request body is too large for authorization plugins (limit {MAX_BODY} bytes)"
            )

    def message(self, request: ApiRequest) -> Request:
        return Request(
            user=request.user,
            user_authn_method=request.authn_method,
            request_method=request.method,
            request_uri=request.uri,
            request_body=request.body,
            request_headers=request.headers,
            request_peer_certificates=request.certificates,
        )

    async def authorize_request(self, request: ApiRequest) -> Request:
        """Run the request phase; returns the message for the response phase."""
        message = self.message(request)
        for name, client in await self._clients():
            _verdict(name, await client.request(message))
        return message

    async def authorize_response(
        self, message: Request, status: int, headers: dict[str, str], body: bytes
    ) -> None:
        message.response_status_code = status
        message.response_headers = headers
        message.response_body = body
        for name, client in await self._clients():
            _verdict(name, await client.response(message))


def _verdict(name: str, reply: Reply) -> None:
    if not reply.allow:
        raise Forbidden(f"authorization denied by plugin {name}: {reply.msg}")
