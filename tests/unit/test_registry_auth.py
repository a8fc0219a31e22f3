"""Challenge parsing, token replies, X-Registry-Auth decoding, registry error wording."""

from __future__ import annotations

import base64
import json
import time

import pytest
from yarl import URL

from dockyard.api.distribution import credentials_from, registry_host
from dockyard.registry.auth import (
    Credentials,
    TokenCache,
    parse_challenges,
    token_from_response,
    token_key,
)
from dockyard.registry.client import decode_error, is_loopback, resolve_location, with_query


def test_bearer_challenge_with_quoted_commas_and_spaces() -> None:
    header = (
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:team/app:pull,push repository:other/base:pull",'
        'error="insufficient_scope"'
    )
    (challenge,) = parse_challenges(header)
    assert challenge.scheme == "bearer"
    assert challenge.realm == "https://auth.example.com/token"
    assert challenge.params["service"] == "registry.example.com"
    assert challenge.params["scope"].split(" ") == [
        "repository:team/app:pull,push",
        "repository:other/base:pull",
    ]
    assert challenge.params["error"] == "insufficient_scope"


def test_basic_challenge_escaped_quotes_and_several_challenges() -> None:
    challenges = parse_challenges('Basic realm="say \\"hi\\", friend", Bearer realm=https://t/x')
    assert [c.scheme for c in challenges] == ["basic", "bearer"]
    assert challenges[0].realm == 'say "hi", friend'
    assert challenges[1].realm == "https://t/x"


def test_token_reply_accepts_access_token_and_defaults_to_60_seconds() -> None:
    token = token_from_response({"access_token": "abc"})
    assert token.value == "abc"
    assert 40 < token.expires - time.monotonic() <= 60
    assert token_from_response({"token": "t", "access_token": "a", "expires_in": 300}).value == "t"
    with pytest.raises(ValueError):
        token_from_response({"expires_in": 10})


def test_token_cache_forgets_expired_tokens() -> None:
    cache = TokenCache()
    key = ("realm", "svc", ("repository:a:pull",), "")
    cache.put(key, token_from_response({"token": "fresh", "expires_in": 300}))
    assert cache.get(key) == "fresh"
    stale = token_from_response({"token": "old", "expires_in": 300})
    stale.expires = time.monotonic() - 1
    cache.put(key, stale)
    assert cache.get(key) is None


def test_a_cached_token_serves_only_what_it_was_issued_for() -> None:
    (challenge,) = parse_challenges('Bearer realm="https://auth/token",service="reg"')
    (other_service,) = parse_challenges('Bearer realm="https://auth/token",service="other"')
    (other_realm,) = parse_challenges('Bearer realm="https://elsewhere/token",service="reg"')
    scopes = ["repository:a:pull"]
    alice = Credentials("alice", "right")
    key = token_key(challenge, scopes, alice)
    assert key == token_key(challenge, list(scopes), Credentials("alice", "right"))
    others = [
        token_key(challenge, scopes, Credentials("alice", "wrong")),
        token_key(challenge, scopes, Credentials("alice", identity_token="refresh")),
        token_key(challenge, scopes, Credentials()),
        token_key(challenge, ["repository:b:pull"], alice),
        token_key(other_service, scopes, alice),
        token_key(other_realm, scopes, alice),
    ]
    assert key not in others and len(set(others)) == len(others)
    assert "right" not in repr(key)


def test_registry_errors_read_as_docker_prints_them() -> None:
    body = json.dumps(
        {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": {}}]}
    )
    error = decode_error(404, "Not Found", body.encode())
    assert (
        error.code == "MANIFEST_UNKNOWN" and error.message == "manifest unknown: manifest unknown"
    )
    assert error.status == 404
    plain = decode_error(502, "Bad Gateway", b"<html>oops</html>")
    assert plain.message == "502 Bad Gateway: <html>oops</html>" and plain.status == 500
    hub = decode_error(401, "Unauthorized", b'{"details":"incorrect username or password"}')
    assert hub.message == "unauthorized: incorrect username or password"


def test_upload_locations_relative_absolute_and_with_query() -> None:
    request = URL("http://127.0.0.1:5000/v2/team/app/blobs/uploads/")
    relative = resolve_location(request, "/v2/team/app/blobs/uploads/abc?_state=xyz")
    assert str(relative) == "http://127.0.0.1:5000/v2/team/app/blobs/uploads/abc?_state=xyz"
    absolute = resolve_location(request, "https://storage.example.com/up/1")
    assert absolute.host == "storage.example.com"
    finished = with_query(relative, digest="sha256:" + "a" * 64)
    assert finished.query["_state"] == "xyz" and finished.query["digest"] == "sha256:" + "a" * 64


def test_x_registry_auth_and_server_addresses() -> None:
    encoded = base64.b64encode(b"alice:secret").decode()
    assert credentials_from({"auth": encoded}) == Credentials("alice", "secret")
    assert credentials_from({"username": "bob", "password": "pw", "identitytoken": "t"}) == (
        Credentials("bob", "pw", identity_token="t")
    )
    assert registry_host("https://index.docker.io/v1/") == "docker.io"
    assert registry_host("127.0.0.1:5000") == "127.0.0.1:5000"
    assert registry_host("https://ghcr.io") == "ghcr.io"


def test_loopback_registries() -> None:
    assert (
        is_loopback("localhost:5000") and is_loopback("127.0.0.5:443") and is_loopback("[::1]:5000")
    )
    assert not is_loopback("registry.example.com") and not is_loopback("10.0.0.1:5000")
