"""Authorization plugins: subclass `AuthzPlugin` and override `authorize_request`.

The engine sends every API request (method, URI with query, headers without
credentials, JSON body) to `authorize_request` before running it, and the
response (status, headers, JSON body) to `authorize_response` after. Return
True (or None) to allow, False or `deny("why")` to refuse; the user sees
`authorization denied by plugin NAME: why`. An exception makes the engine
refuse the request too (it fails closed).

    class ReadOnly(AuthzPlugin):
        def authorize_request(self, req):
            return req.request_method in ("GET", "HEAD") or deny("this engine is read-only")
"""

from __future__ import annotations

from typing import Any, ClassVar

from dockyard.plugins.protocol import AUTHZ
from dockyard.plugins.protocol.authz import Reply
from dockyard.plugins.protocol.authz import Request as AuthzRequest
from dockyard.sdk.base import Endpoint, Plugin, call

__all__ = ["AuthzPlugin", "AuthzRequest", "allow", "deny"]


def allow(msg: str = "") -> Reply:
    return Reply(allow=True, msg=msg)


def deny(msg: str) -> Reply:
    return Reply(allow=False, msg=msg)


def _reply(result: Any) -> Reply:
    if isinstance(result, Reply):
        return result
    if result is None or result is True:
        return Reply(allow=True)
    if result is False:
        return Reply(allow=False)
    raise TypeError(f"an authorization decision must be a bool or a Reply, not {result!r}")


class AuthzPlugin(Plugin):
    kind = AUTHZ
    endpoints: ClassVar[dict[str, Endpoint]] = {
        "AuthZPlugin.AuthZReq": Endpoint("_request", AuthzRequest),
        "AuthZPlugin.AuthZRes": Endpoint("_response", AuthzRequest),
    }

    def authorize_request(self, req: AuthzRequest) -> Any:
        """Decide on a request before it runs (default: allow)."""
        return True

    def authorize_response(self, req: AuthzRequest) -> Any:
        """Decide on a response before the client gets it (default: allow).
        `req.response_status_code`, `response_headers` and `response_body` are set."""
        return True

    async def _request(self, req: AuthzRequest) -> Reply:
        return _reply(await call(self.authorize_request, req))

    async def _response(self, req: AuthzRequest) -> Reply:
        return _reply(await call(self.authorize_response, req))
