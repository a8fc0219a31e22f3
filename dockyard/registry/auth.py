"""Registry authentication: credentials, WWW-Authenticate challenges, bearer tokens.

A registry says how it wants to be authenticated by answering 401 with a
challenge (spec §5.5): `Basic realm=...` means every request carries the
user's password; `Bearer realm=...,service=...,scope=...` means a token has
to be fetched from the realm for the scopes the operation needs (one
`repository:<name>:pull,push` per repository), then sent on every request
until it expires. Tokens are cached per realm, service, scope set and
credentials (a digest of all of them: another password for the same user
must not reuse a token it did not earn), so one pull fetches one token
however many blobs it downloads.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from dataclasses import dataclass

# Refresh tokens this long before the registry would reject them.
_EXPIRY_MARGIN = 10.0
_DEFAULT_LIFETIME = 60.0  # seconds, when the token server does not say


@dataclass(frozen=True)
class Credentials:
    """What the user gave to reach a registry (Docker's AuthConfig)."""

    username: str = ""
    password: str = ""
    identity_token: str = ""  # an OAuth2 refresh token from an earlier login
    registry_token: str = ""  # a bearer token to send as is

    @property
    def anonymous(self) -> bool:
        return not (self.username or self.identity_token or self.registry_token)

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


ANONYMOUS = Credentials()


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "basic" or "bearer"
    params: dict[str, str]

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")


_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
# Unquoted values are read up to the next comma or space: registries in the
# wild send unquoted URLs, which RFC 7235 tokens would not allow.
_PARAM = re.compile(rf'\s*({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))\s*')
_SCHEME = re.compile(rf"\s*({_TOKEN})(?:\s+|$)")


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a WWW-Authenticate header (RFC 7235): schemes with key=value parameters.

    Quoted values may hold commas, spaces and escaped quotes; a header may
    carry several challenges separated by commas.
    """
    challenges: list[Challenge] = []
    pos = 0
    while pos < len(header):
        if header[pos] in ", \t":
            pos += 1
            continue
        param = _PARAM.match(header, pos)
        if param and challenges:
            quoted, plain = param.group(2), param.group(3)
            value = plain if quoted is None else re.sub(r"\\(.)", r"\1", quoted)
            challenges[-1].params[param.group(1).lower()] = value
            pos = param.end()
            continue
        scheme = _SCHEME.match(header, pos)
        if scheme is None:
            break  # garbage: keep what was understood
        challenges.append(Challenge(scheme.group(1).lower(), {}))
        pos = scheme.end()
    return challenges


def repository_scope(repository: str, actions: tuple[str, ...]) -> str:
    """`repository:team/app:pull,push` (the name is the path inside the registry)."""
    return f"repository:{repository}:{','.join(actions)}"


@dataclass
class Token:
    value: str
    expires: float  # time.monotonic() deadline

    @property
    def fresh(self) -> bool:
        return time.monotonic() < self.expires


def token_from_response(data: object) -> Token:
    """Read a token server's JSON reply (`token` or `access_token`, `expires_in`)."""
    if not isinstance(data, dict):
        raise ValueError("token server reply is not a JSON object")
    value = data.get("token") or data.get("access_token")
    if not isinstance(value, str) or not value:
        raise ValueError("token server reply carries no token")
    lifetime = data.get("expires_in")
    if not isinstance(lifetime, int | float) or lifetime <= 0:
        lifetime = _DEFAULT_LIFETIME
    return Token(value, time.monotonic() + max(1.0, float(lifetime) - _EXPIRY_MARGIN))


TokenKey = tuple[str, str, tuple[str, ...], str]  # realm, service, scopes, credentials


def token_key(challenge: Challenge, scopes: list[str], credentials: Credentials) -> TokenKey:
    """What a cached token was issued for: its realm, service, scopes and credentials."""
    secret = "\0".join((credentials.username, credentials.password, credentials.identity_token))
    return (
        challenge.realm,
        challenge.params.get("service", ""),
        tuple(scopes),
        hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest(),
    )


class TokenCache:
    """Bearer tokens by realm, service, scopes and credentials, until shortly before they expire."""

    def __init__(self) -> None:
        self._tokens: dict[TokenKey, Token] = {}

    def get(self, key: TokenKey) -> str | None:
        token = self._tokens.get(key)
        if token is None or not token.fresh:
            self._tokens.pop(key, None)
            return None
        return token.value

    def put(self, key: TokenKey, token: Token) -> None:
        self._tokens[key] = token

    def drop(self, key: TokenKey) -> None:
        self._tokens.pop(key, None)
