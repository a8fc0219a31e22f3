"""Reaching a registry: endpoints, TLS, authentication, redirects and errors.

`RegistryService` is the engine's one HTTP client for all registries (an
aiohttp session, so connections are reused across pulls). For each registry
host it decides once how to talk to it:

* HTTPS, verified against the system CAs plus the `*.crt` files of the
  host's `certs.d/HOST:PORT/` directories (Docker's layout; `*.cert`/`*.key`
  pairs there are client certificates);
* plain HTTP only for loopback registries and those in `insecure-registries`,
  and only when HTTPS fails to connect: a registry that answers TLS with a
  certificate we cannot verify is an error, not a reason to downgrade
  (unless it is listed as insecure, where verification is skipped, as Docker
  does).

`Repository` then makes the requests of one operation on one repository:
it answers 401 challenges (Basic, or Bearer with a token for the operation's
scopes, refreshed on expiry and on `insufficient_scope`), follows redirects
(aiohttp drops the Authorization header when a redirect leaves the
registry's origin, e.g. to blob storage; since 3.14.5 also for a same-host
redirect to another port or scheme, and every copy of the header), retries idempotent requests on
429/5xx with backoff, and turns the registry's `{"errors": [...]}` bodies
into `RegistryError`s worded as Docker words them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
from yarl import URL

from dockyard.errors import DockyardError, InvalidArgument, Unavailable
from dockyard.images.reference import DEFAULT_DOMAIN
from dockyard.registry.auth import (
    ANONYMOUS,
    Challenge,
    Credentials,
    Token,
    TokenCache,
    parse_challenges,
    token_from_response,
    token_key,
)

log = logging.getLogger(__name__)

DEFAULT_CERTS_DIRS = ("/etc/docker/certs.d", "/etc/dockyard/certs.d")
HUB_API_HOST = "registry-1.docker.io"
# Docker Hub's credentials live under this key in docker's config.json.
HUB_AUTH_KEY = "https://index.docker.io/v1/"

_RETRIES = 3
_MAX_RETRY_AFTER = 10.0
# What is read into memory from a registry: manifests, indexes, token replies (as Docker).
MAX_DOCUMENT_SIZE = 4 << 20
_MAX_ERROR_SIZE = 64 << 10  # of an error reply, the rest ignored


async def read_limited(
    resp: aiohttp.ClientResponse, limit: int, what: str, *, truncate: bool = False
) -> bytes:
    """A response body, whole (a read may return fewer bytes than asked for) but never
    more than `limit` bytes: refused as too large, or with `truncate`, cut there."""
    if (resp.content_length or 0) > limit and not truncate:
        raise InvalidArgument(f"{what} is larger than {limit} bytes")
    body = bytearray()
    async for chunk in resp.content.iter_chunked(64 << 10):
        body += chunk
        if len(body) > limit:
            if truncate:
                return bytes(body[:limit])
            raise InvalidArgument(f"{what} is larger than {limit} bytes")
    return bytes(body)


class RegistryError(DockyardError):
    """A registry refused a request; `code` is the first distribution error code, if any."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status if status in (400, 401, 403, 404, 409) else 500
        self.http_status = status
        self.code = code


def error_text(code: str, message: str) -> str:
    """Docker's rendering of a distribution error: `manifest unknown: manifest unknown`."""
    name = code.lower().replace("_", " ")
    return f"{name}: {message}" if message else name


def decode_error(status: int, reason: str, body: bytes) -> RegistryError:
    """A RegistryError from a registry's error reply (JSON per spec §5.6, or anything)."""
    try:
        data = json.loads(body)
        errors = data.get("errors") if isinstance(data, dict) else None
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            first = errors[0]
            code = str(first.get("code") or "UNKNOWN")
            return RegistryError(status, code, error_text(code, str(first.get("message") or "")))
        code = {401: "UNAUTHORIZED", 403: "DENIED", 404: "NOT_FOUND"}.get(status, "UNKNOWN")
        # Token servers answer in their own shapes ({"details": ...} on Docker Hub).
        for key in ("details", "error_description", "message", "error"):
            if isinstance(data, dict) and isinstance(data.get(key), str) and data[key]:
                return RegistryError(status, code, error_text(code, data[key]))
    except (json.JSONDecodeError, UnicodeDecodeError):
        pass
    text = body.decode(errors="replace").strip()[:200]
    code = {401: "UNAUTHORIZED", 403: "DENIED", 404: "NOT_FOUND"}.get(status, "UNKNOWN")
    return RegistryError(status, code, f"{status} {reason}" + (f": {text}" if text else ""))


@dataclass
class RegistrySettings:
    insecure: list[str] = field(default_factory=list)  # hosts ("h:5000") or CIDRs
    certs_dirs: tuple[str, ...] = DEFAULT_CERTS_DIRS
    max_concurrent_downloads: int = 3
    max_concurrent_uploads: int = 5
    upload_chunk_size: int = 16 << 20  # larger blobs go up in chunks of this size


@dataclass(frozen=True)
class Endpoint:
    host: str  # as named in references: "127.0.0.1:5000", "docker.io"
    base: URL  # "https://registry-1.docker.io"
    ssl: ssl.SSLContext | bool  # False: no verification (insecure registries)


def is_loopback(host: str) -> bool:
    name = _hostname(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[1 : host.index("]")]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class RegistryService:
    """The engine's client for every registry: one session, endpoints and tokens cached."""

    def __init__(self, settings: RegistrySettings) -> None:
        self.settings = settings
        self.tokens = TokenCache()
        self._session: aiohttp.ClientSession | None = None
        self._endpoints: dict[str, Endpoint] = {}
        self._challenges: dict[str, Challenge | None] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300),
                auto_decompress=False,  # blobs are compared byte for byte
                trust_env=True,  # HTTP(S)_PROXY and NO_PROXY, as Docker honours them
                connector=aiohttp.TCPConnector(limit=64),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def repository(
        self, domain: str, path: str, credentials: Credentials, actions: tuple[str, ...]
    ) -> Repository:
        return Repository(self, domain, path, credentials, actions)

    # -- endpoints -----------------------------------------------------------

    def explicitly_insecure(self, host: str) -> bool:
        name = _hostname(host)
        for entry in self.settings.insecure:
            if entry in (host, name):
                return True
            try:
                network = ipaddress.ip_network(entry, strict=False)
                if ipaddress.ip_address(name) in network:
                    return True
            except ValueError:
                continue
        return False

    def _ssl_context(self, host: str) -> ssl.SSLContext:
        context = ssl.create_default_context()
        for root in self.settings.certs_dirs:
            directory = os.path.join(root, host)
            try:
                names = sorted(os.listdir(directory))
            except OSError:
                continue
            for name in names:
                path = os.path.join(directory, name)
                if name.endswith(".crt"):
                    context.load_verify_locations(cafile=path)
                elif name.endswith(".cert"):
                    key = path[: -len(".cert")] + ".key"
                    if not os.path.exists(key):
                        raise Unavailable(f"missing key {key} for client certificate {path}")
                    context.load_cert_chain(path, key)
        return context

    async def endpoint(self, host: str) -> Endpoint:
        """How to reach `host`, decided by probing `/v2/` once (spec §5.1, §5.3)."""
        found = self._endpoints.get(host)
        if found is not None:
            return found
        lock = self._locks.setdefault(host, asyncio.Lock())
        async with lock:
            found = self._endpoints.get(host)
            if found is None:
                found = await self._probe(host)
                self._endpoints[host] = found
        return found

    async def _probe(self, host: str) -> Endpoint:
        api_host = HUB_API_HOST if host == DEFAULT_DOMAIN else host
        insecure = self.explicitly_insecure(host)
        context = await asyncio.to_thread(self._ssl_context, host)
        secure = Endpoint(host, URL(f"https://{api_host}"), context)
        try:
            await self._probe_endpoint(secure)
            return secure
        except aiohttp.ClientConnectorCertificateError as e:
            if not insecure:
                raise Unavailable(
                    f'Get "https://{api_host}/v2/": tls: failed to verify certificate: '
                    f"{e.certificate_error}. Add the registry's CA certificate to "
                    f"/etc/docker/certs.d/{host}/ca.crt, or list {host} in insecure-registries"
                ) from None
            unverified = Endpoint(host, secure.base, False)
            await self._probe_endpoint(unverified)
            return unverified
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            if not (insecure or is_loopback(host)):
                raise Unavailable(f'Get "https://{api_host}/v2/": {_describe(e)}') from None
            log.debug("https to %s failed (%s); trying http", host, e)
        plain = Endpoint(host, URL(f"http://{api_host}"), False)
        try:
            await self._probe_endpoint(plain)
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise Unavailable(f'Get "http://{api_host}/v2/": {_describe(e)}') from None
        return plain

    async def _probe_endpoint(self, endpoint: Endpoint) -> None:
        url = endpoint.base / "v2/"
        async with self.session.get(
            url, ssl=endpoint.ssl, timeout=aiohttp.ClientTimeout(total=30)
        ) as resp:
            await read_limited(resp, _MAX_ERROR_SIZE, "reply", truncate=True)
            if resp.status == 401:
                self._challenges[endpoint.host] = _challenge(resp.headers)
            elif resp.status == 200:
                self._challenges[endpoint.host] = None
            else:
                raise Unavailable(
                    f'Get "{url}": {resp.status} {resp.reason}: not an OCI distribution registry'
                )

    def challenge(self, host: str) -> Challenge | None:
        return self._challenges.get(host)

    def remember_challenge(self, host: str, challenge: Challenge | None) -> None:
        self._challenges[host] = challenge

    async def login(self, host: str, credentials: Credentials) -> None:
        """Check credentials against `host`'s `/v2/` (Docker's login); raises if refused."""
        endpoint = await self.endpoint(host)
        repo = Repository(self, host, "", credentials, ())
        async with repo.request("GET", endpoint.base / "v2/", ok=(200,)) as resp:
            await read_limited(resp, _MAX_ERROR_SIZE, "reply", truncate=True)


def _describe(error: BaseException) -> str:
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"dial tcp {error.host}:{error.port}: {error.os_error.strerror or error.os_error}"
    return str(error) or type(error).__name__


def _challenge(headers: Mapping[str, str]) -> Challenge | None:
    header = headers.get("WWW-Authenticate", "")
    for challenge in parse_challenges(header):
        if challenge.scheme in ("bearer", "basic"):
            return challenge
    return None


Body = bytes | Callable[[], Any] | None


class Repository:
    """Requests of one operation on one repository of one registry."""

    def __init__(
        self,
        service: RegistryService,
        host: str,
        path: str,
        credentials: Credentials,
        actions: tuple[str, ...],
    ) -> None:
        self.service = service
        self.host = host
        self.path = path
        self.credentials = credentials or ANONYMOUS
        self.scopes: list[str] = [f"repository:{path}:{','.join(actions)}"] if actions else []

    def add_scope(self, scope: str) -> None:
        if scope not in self.scopes:
            self.scopes.append(scope)

    async def url(self, suffix: str) -> URL:
        """`/v2/<name>/<suffix>` on this registry."""
        endpoint = await self.service.endpoint(self.host)
        return URL(f"{endpoint.base}/v2/{self.path}/{suffix}", encoded=True)

    # -- authorisation -------------------------------------------------------

    async def _authorization(self, refresh: bool = False) -> str | None:
        if self.credentials.registry_token:
            return "Bearer " + self.credentials.registry_token
        challenge = self.service.challenge(self.host)
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            return None if self.credentials.anonymous else self.credentials.basic()
        key = token_key(challenge, self.scopes, self.credentials)
        if refresh:
            self.service.tokens.drop(key)
        token = self.service.tokens.get(key)
        if token is None:
            token_obj = await self._fetch_token(challenge)
            self.service.tokens.put(key, token_obj)
            token = token_obj.value
        return "Bearer " + token

    async def _fetch_token(self, challenge: Challenge) -> Token:
        realm = challenge.realm
        if not realm.startswith(("https://", "http://")):
            raise Unavailable(f"registry {self.host} sent a bearer challenge without a realm URL")
        service = challenge.params.get("service", "")
        creds = self.credentials
        if creds.identity_token:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": creds.identity_token,
                "service": service,
                "client_id": "dockyard",
                "scope": " ".join(self.scopes),
            }
            async with self.service.session.post(
                realm, data=form, ssl=await self._realm_ssl(realm)
            ) as resp:
                body = await read_limited(resp, MAX_DOCUMENT_SIZE, "token reply")
                if resp.status not in (404, 405):
                    return self._token_reply(resp.status, resp.reason or "", body)
        params: list[tuple[str, str]] = [("service", service)] if service else []
        params += [("scope", scope) for scope in self.scopes]
        headers = {}
        if not creds.anonymous and creds.username:
            params += [("client_id", "dockyard"), ("offline_token", "true")]
            headers["Authorization"] = creds.basic()
        url = realm + ("&" if "?" in realm else "?") + urlencode(params)
        async with self.service.session.get(
            URL(url, encoded=True), headers=headers, ssl=await self._realm_ssl(realm)
        ) as resp:
            body = await read_limited(resp, MAX_DOCUMENT_SIZE, "token reply")
            return self._token_reply(resp.status, resp.reason or "", body)

    async def _realm_ssl(self, realm: str) -> ssl.SSLContext | bool:
        host = URL(realm).host or ""
        port = URL(realm).port
        named = f"{host}:{port}" if port not in (None, 443, 80) else host
        return await asyncio.to_thread(self.service._ssl_context, named)

    def _token_reply(self, status: int, reason: str, body: bytes) -> Token:
        if status != 200:
            error = decode_error(status, reason, body)
            if status == 401:
                raise RegistryError(401, "UNAUTHORIZED", error.message)
            raise error
        try:
            return token_from_response(json.loads(body))
        except (ValueError, UnicodeDecodeError) as e:
            raise Unavailable(f"token server for {self.host}: {e}") from None

    # -- requests ------------------------------------------------------------

    def request(
        self,
        method: str,
        url: URL,
        *,
        headers: dict[str, str] | None = None,
        body: Body = None,
        ok: tuple[int, ...] = (200,),
    ) -> _Request:
        """An authorised request (use `async with`); a status outside `ok` raises."""
        return _Request(self, method, url, headers or {}, body, ok)

    async def _send(
        self, method: str, url: URL, headers: dict[str, str], body: Body, ok: tuple[int, ...]
    ) -> aiohttp.ClientResponse:
        endpoint = await self.service.endpoint(self.host)
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            sent = dict(headers)
            authorization = await self._authorization(refresh=refreshed)
            if authorization:
                sent["Authorization"] = authorization
            data = body() if callable(body) else body
            try:
                resp = await self.service.session.request(
                    method, url, headers=sent, data=data, ssl=endpoint.ssl
                )
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                if method in ("GET", "HEAD") and attempt < _RETRIES:
                    await asyncio.sleep(0.5 * attempt)
                    continue
                raise Unavailable(f'{method} "{url}": {_describe(e)}') from None
            if resp.status in ok:
                return resp
            try:
                payload = await read_limited(resp, _MAX_ERROR_SIZE, "reply", truncate=True)
            except (aiohttp.ClientError, OSError, TimeoutError):
                payload = b""
            resp.release()
            if resp.status == 401 and not refreshed:
                challenge = _challenge(resp.headers)
                if challenge is not None:
                    self.service.remember_challenge(self.host, challenge)
                    scope = challenge.params.get("scope")
                    if challenge.params.get("error") == "insufficient_scope" and scope:
                        for item in scope.split(" "):
                            self.add_scope(item)
                    refreshed = True
                    continue
            if (
                (resp.status == 429 or resp.status >= 500)
                and attempt < _RETRIES
                and (method in ("GET", "HEAD"))
            ):
                await asyncio.sleep(_retry_after(resp.headers, attempt))
                continue
            raise decode_error(resp.status, resp.reason or "", payload)


class _Request:
    """`async with repo.request(...) as resp`: the response is released on exit."""

    def __init__(
        self,
        repo: Repository,
        method: str,
        url: URL,
        headers: dict[str, str],
        body: Body,
        ok: tuple[int, ...],
    ) -> None:
        self._args = (method, url, headers, body, ok)
        self._repo = repo
        self._resp: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> aiohttp.ClientResponse:
        self._resp = await self._repo._send(*self._args)
        return self._resp

    async def __aexit__(self, *exc: object) -> None:
        if self._resp is not None:
            self._resp.release()


def _retry_after(headers: Mapping[str, str], attempt: int) -> float:
    value = headers.get("Retry-After", "")
    try:
        return min(_MAX_RETRY_AFTER, max(0.0, float(value)))
    except ValueError:
        return 0.5 * 2**attempt


def resolve_location(request_url: URL, location: str) -> URL:
    """An upload Location: relative to the request, or absolute (maybe another host)."""
    if not location:
        raise InvalidArgument("registry gave no upload location")
    target = URL(location, encoded=True)
    return target if target.is_absolute() else request_url.join(target)


def with_query(url: URL, **params: str) -> URL:
    """Append query parameters to a Location that may already carry some."""
    return url.update_query(params)
