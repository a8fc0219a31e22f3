"""Registry routes: login (`/auth`), distribution inspect, and the X-Registry-Auth header."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from aiohttp import web

from dockyard import wire
from dockyard.api.app import Routes, engine, json_response, read_json
from dockyard.errors import InvalidArgument, Unauthorized
from dockyard.images import reference
from dockyard.registry.auth import ANONYMOUS, Credentials
from dockyard.registry.client import HUB_AUTH_KEY, RegistryError

routes = Routes()


def _b64decode(text: str) -> bytes:
    text = text.strip()
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.urlsafe_b64decode(padded)
    except (binascii.Error, ValueError):
        return base64.b64decode(padded)


def credentials_from(auth: dict[str, Any]) -> Credentials:
    """Docker's AuthConfig object (`username`, `password`, `auth`, `identitytoken`, ...)."""
    username = str(auth.get("username") or auth.get("Username") or "")
    password = str(auth.get("password") or auth.get("Password") or "")
    encoded = auth.get("auth") or auth.get("Auth")
    if encoded and not username:
        try:
            username, _, password = _b64decode(str(encoded)).decode().partition(":")
        except (binascii.Error, ValueError):
            raise InvalidArgument("invalid auth configuration: bad 'auth' field") from None
    return Credentials(
        username=username,
        password=password,
        identity_token=str(auth.get("identitytoken") or auth.get("IdentityToken") or ""),
        registry_token=str(auth.get("registrytoken") or auth.get("RegistryToken") or ""),
    )


def registry_credentials(request: web.Request) -> Credentials:
    """The X-Registry-Auth header (URL-safe base64 of an AuthConfig); anonymous if absent."""
    header = request.headers.get("X-Registry-Auth", "")
    if not header.strip():
        return ANONYMOUS
    try:
        data = wire.loads(_b64decode(header))
    except (binascii.Error, ValueError):
        raise InvalidArgument("invalid X-Registry-Auth header") from None
    return credentials_from(data) if isinstance(data, dict) else ANONYMOUS


def registry_host(server: str) -> str:
    """A login server address (`https://index.docker.io/v1/`, `host:port`) as a registry host."""
    if not server or server.rstrip("/") == HUB_AUTH_KEY.rstrip("/"):
        return reference.DEFAULT_DOMAIN
    host = server.removeprefix("https://").removeprefix("http://").split("/")[0]
    return reference.DEFAULT_DOMAIN if host in ("index.docker.io", "registry-1.docker.io") else host


@routes.post("/auth")
async def auth(request: web.Request) -> web.StreamResponse:
    body = await read_json(request, required=True)
    credentials = credentials_from(body)
    host = registry_host(str(body.get("serveraddress") or ""))
    try:
        await engine(request).registry.login(host, credentials)
    except RegistryError as e:
        if e.http_status in (401, 403):
            raise Unauthorized(e.message) from None
        raise
    return json_response({"Status": "Login Succeeded", "IdentityToken": ""})


@routes.get("/distribution/{name:.+}/json")
async def distribution_inspect(request: web.Request) -> web.StreamResponse:
    ref = reference.parse(request.match_info["name"])
    document, platforms = await engine(request).puller.resolve(ref, registry_credentials(request))
    return json_response(
        {
            "Descriptor": {
                "mediaType": document.media_type,
                "digest": document.digest,
                "size": len(document.body),
            },
            "Platforms": [
                {
                    "architecture": p.architecture,
                    "os": p.os,
                    **({"variant": p.variant} if p.variant else {}),
                }
                for p in platforms
            ],
        }
    )
