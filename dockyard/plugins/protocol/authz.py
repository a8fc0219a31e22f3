"""AuthZPlugin: `/AuthZPlugin.AuthZReq` and `/AuthZPlugin.AuthZRes`.

Every API request is sent to each configured plugin before the handler runs
(`AuthZReq`) and, with the response's status, headers and (JSON) body, after
it (`AuthZRes`). Keys are spelled as the daemon sends them (`RequestUri`,
`RequestHeaders`, `ResponseHeaders`; the docs' `RequestURI`/`RequestHeader`
are wrong), all omitted when empty. Only `Allow` and `Msg` of the reply count;
its `Err` is not consulted.
"""

from __future__ import annotations

from dockyard.plugins.client import PluginClient
from dockyard.wire import Message, wire


class Request(Message):
    user: str = wire(default="", omitempty=True)
    user_authn_method: str = wire("UserAuthNMethod", default="", omitempty=True)
    request_method: str = wire(default="", omitempty=True)
    request_uri: str = wire("RequestUri", default="", omitempty=True)
    request_body: bytes = wire(default=b"", omitempty=True)
    request_headers: dict[str, str] = wire(default_factory=dict, omitempty=True)
    request_peer_certificates: list[bytes] = wire(default_factory=list, omitempty=True)
    response_body: bytes = wire(default=b"", omitempty=True)
    response_headers: dict[str, str] = wire(default_factory=dict, omitempty=True)
    response_status_code: int = wire(default=0, omitempty=True)


class Reply(Message):
    allow: bool = wire(default=False)
    msg: str = wire(default="", omitempty=True)
    err: str = wire(default="", omitempty=True)


class AuthzClient:
    """Typed calls to one authorization plugin; failures raise `PluginError`."""

    def __init__(self, client: PluginClient) -> None:
        self.client = client

    @property
    def name(self) -> str:
        return self.client.name

    async def request(self, request: Request) -> Reply:
        return await self.client.call("AuthZPlugin.AuthZReq", request, Reply, error_key=None)

    async def response(self, request: Request) -> Reply:
        return await self.client.call("AuthZPlugin.AuthZRes", request, Reply, error_key=None)
