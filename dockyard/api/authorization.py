"""The authorization middleware: every API request through the AuthZ plugin chain.

HTTP in, HTTP out; the decisions are the engine's (`plugins.authorization`).
The request phase runs before the handler; the response phase sees the
response the client would get (a handler's error rendered first, so plugins
see its real status), and can still stop a one-shot response. Streamed and
hijacked responses (logs, events, attach, exec) are already on the wire when
the handler returns, as in Docker: only their request is really checked.

Over TLS with client verification, the client certificate's subject common name
is the request's `User` and `UserAuthNMethod` is "TLS", as Docker passes them;
`RequestPeerCertificates` holds the client's certificate (DER). Python's ssl
gives the leaf only, where Go gives the chain the client sent.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from dockyard.api.app import Handler, engine, error_response
from dockyard.errors import DockyardError, NotModified
from dockyard.plugins.authorization import MAX_BODY, ApiRequest, flatten_headers, sends_body

log = logging.getLogger(__name__)


def _peer(request: web.Request) -> dict[str, Any]:
    """Who the client is, from its verified TLS certificate (nothing on a unix socket)."""
    transport = request.transport
    tls = transport.get_extra_info("ssl_object") if transport is not None else None
    if tls is None:
        return {}
    der = tls.getpeercert(binary_form=True)
    subject = (tls.getpeercert() or {}).get("subject", ())
    if not der or not subject:
        return {}  # no certificate, or one not verified (--tlsverify=false)
    names = [value for rdn in subject for key, value in rdn if key == "commonName"]
    return {"user": names[-1] if names else "", "authn_method": "TLS", "certificates": [der]}


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    chain = engine(request).authorization
    if not chain.active:
        return await handler(request)
    body = b""
    if sends_body(request.path, request.headers.get("Content-Type", "")):
        chain.check_body_size(request.content_length)
        # Read at most MAX_BODY (+ a chunk): a chunked body has no length to check first.
        request = request.clone(client_max_size=MAX_BODY)
        try:
            body = await request.read()  # aiohttp keeps it for the handler
        except web.HTTPRequestEntityTooLarge:
            chain.check_body_size(MAX_BODY + 1)
    message = await chain.authorize_request(
        ApiRequest(
            method=request.method,
            uri=request.raw_path,
            headers=flatten_headers(list(request.headers.items())),
            body=body,
            **_peer(request),
        )
    )
    failed = False
    try:
        resp = await handler(request)
    except NotModified:
        resp = web.Response(status=304)
    except DockyardError as e:
        resp, failed = error_response(e.status, e.message), True
    headers = flatten_headers(list(resp.headers.items()))
    if resp.prepared:
        try:
            await chain.authorize_response(message, resp.status, headers, b"")
        except DockyardError as e:
            log.warning(
                "%s %s: streamed response not withdrawn: %s", request.method, request.path, e
            )
        return resp
    out = b""
    if (
        isinstance(resp, web.Response)
        and isinstance(resp.body, bytes)
        and sends_body(request.path, resp.headers.get("Content-Type", ""))
    ):
        out = resp.body
    try:
        await chain.authorize_response(message, resp.status, headers, out)
    except DockyardError:
        if failed:
            return resp  # the handler's own error wins
        raise
    return resp
