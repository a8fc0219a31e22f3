"""Logins, TLS with a private CA, Basic (htpasswd) and Bearer (token service) registries."""

from __future__ import annotations

import base64
import io
import json
import os
import tarfile
from pathlib import Path

import docker
import pytest

from tests.harness import Daemon
from tests.registry import (
    OCILayout,
    RedirectingFront,
    Registry,
    TokenServer,
    skopeo,
    store_problems,
    tar_of,
)


def _config(daemon: Daemon) -> dict:
    path = daemon.base / "docker" / "config.json"
    return json.loads(path.read_text()) if path.exists() else {}


def test_wrong_password_is_refused_and_nothing_is_stored(
    tls_daemon: Daemon, tls_registry: Registry
) -> None:
    result = tls_daemon.cli(
        "login", tls_registry.host, "-u", "alice", "--password-stdin", input=b"wrong\n"
    )
    assert result.returncode == 1
    assert "unauthorized" in result.stderr
    assert tls_registry.host not in (_config(tls_daemon).get("auths") or {})
    status, body = tls_daemon.api(
        "POST",
        "/v1.45/auth",
        {"username": "alice", "password": "nope", "serveraddress": tls_registry.host},
    )
    assert status == 401 and "unauthorized" in body["message"]


def test_login_push_and_pull_over_tls_with_basic_auth(
    tls_daemon: Daemon, tls_registry: Registry
) -> None:
    d = tls_daemon
    login = d.cli(
        "login", tls_registry.host, "-u", "alice", "--password-stdin", input=b"wonderland"
    )
    assert login.returncode == 0, login.stderr
    assert login.stdout.strip() == "Login Succeeded"
    entry = _config(d)["auths"][tls_registry.host]
    assert base64.b64decode(entry["auth"]) == b"alice:wonderland"
    name = f"{tls_registry.host}/private/busybox:1"
    d.cli("tag", "demo/busybox:1", name, check=True)
    pushed = d.cli("push", name)
    assert pushed.returncode == 0, pushed.stderr
    digest = pushed.stdout.strip().splitlines()[-1].split("digest: ")[1].split()[0]
    found = skopeo(
        "inspect",
        "--cert-dir",
        str(d.base / "certs.d" / tls_registry.host),
        "--creds",
        "alice:wonderland",
        f"docker://{name}",
    )
    assert json.loads(found.stdout)["Digest"] == digest
    # The docker CLI shares the login (same config.json) and sends it as X-Registry-Auth.
    d.cli("rmi", name, check=True)
    pulled = d.docker("pull", name)
    assert pulled.returncode == 0, pulled.stderr
    assert d.docker("run", "--rm", name, "echo", "over tls").stdout == "over tls\n"
    # Logged out, the same pull is refused with Docker's wording, and nothing is stored.
    assert d.cli("logout", tls_registry.host).returncode == 0
    d.cli("rmi", name, check=True)
    refused = d.cli("pull", name)
    assert refused.returncode == 1
    assert "pull access denied for" in refused.stderr or "unauthorized" in refused.stderr
    assert store_problems(d.data_root) == []


def test_docker_py_auth_config_reaches_the_registry(
    tls_daemon: Daemon, tls_registry: Registry
) -> None:
    client = docker.DockerClient(base_url=tls_daemon.host, timeout=120)
    try:
        name = f"{tls_registry.host}/py/busybox"
        client.images.get("demo/busybox:1").tag(name, "1")
        auth = {"username": "alice", "password": "wonderland"}
        lines = list(client.images.push(name, tag="1", auth_config=auth, stream=True, decode=True))
        assert any("aux" in line for line in lines), lines
        client.images.remove(f"{name}:1")
        image = client.images.pull(name, tag="1", auth_config=auth)
        assert f"{name}:1" in image.tags
        with pytest.raises(docker.errors.APIError):
            client.images.pull(name, tag="1", auth_config={"username": "alice", "password": "x"})
    finally:
        client.close()


def test_untrusted_certificate_is_a_clear_error(daemon: Daemon, tls_registry: Registry) -> None:
    result = daemon.cli("pull", f"{tls_registry.host}/private/busybox:1")
    assert result.returncode == 1
    assert "failed to verify certificate" in result.stderr
    assert "certs.d" in result.stderr


def test_bearer_token_auth_with_the_token_service(
    daemon: Daemon, token_registry: Registry, token_server: TokenServer
) -> None:
    name = f"{token_registry.host}/bob/busybox:1"
    daemon.cli("tag", "demo/busybox:1", name, check=True)
    anonymous = daemon.cli("push", name)
    assert anonymous.returncode == 1
    wrong = daemon.cli("login", token_registry.host, "-u", "bob", "--password-stdin", input=b"x")
    assert wrong.returncode == 1
    assert "unauthorized" in wrong.stderr
    login = daemon.cli(
        "login", token_registry.host, "-u", "bob", "--password-stdin", input=b"builder"
    )
    assert login.returncode == 0, login.stderr
    pushed = daemon.cli("push", name)
    assert pushed.returncode == 0, pushed.stderr
    # The docker CLI logs in through POST /auth the same way.
    docker_login = daemon.docker(
        "login", token_registry.host, "-u", "bob", "--password-stdin", input=b"builder"
    )
    assert docker_login.returncode == 0, docker_login.stderr
    assert "Login Succeeded" in docker_login.stdout
    daemon.cli("rmi", name, check=True)
    issued = len(token_server.issued)
    pulled = daemon.cli("pull", name)
    assert pulled.returncode == 0, pulled.stderr
    # Tokens are cached per scope: the whole pull (manifest, config, layers) needs at most one.
    assert len(token_server.issued) - issued <= 1
    grants = [t for t in token_server.issued if t["user"] == "bob"]
    assert any("repository:bob/busybox:pull,push" in t["scopes"] for t in grants)
    # Anonymous clients get only what the token service grants them: nothing here.
    daemon.cli("logout", token_registry.host, check=True)
    daemon.cli("rmi", name, check=True)
    denied = daemon.cli("pull", name)
    assert denied.returncode == 1
    assert "pull access denied for" in denied.stderr


def test_blob_redirects_to_another_host_carry_no_authorization(
    daemon: Daemon, registry: Registry, busybox_tar: Path, tmp_path: Path
) -> None:
    layout = OCILayout(tmp_path / "redirect")
    unique = tar_of({"id": os.urandom(8).hex().encode()})
    layout.tag(layout.image([busybox_tar.read_bytes(), unique], cmd=["cat", "/id"]), "1")
    skopeo(
        "copy",
        "--dest-tls-verify=false",
        f"oci:{layout.path}:1",
        f"docker://{registry.host}/cdn/app:1",
    )
    front = RedirectingFront(registry, "carol", "s3cret")
    try:
        name = f"{front.host}/cdn/app:1"
        login = daemon.cli("login", front.host, "-u", "carol", "--password-stdin", input=b"s3cret")
        assert login.returncode == 0, login.stderr
        pulled = daemon.cli("pull", name)
        assert pulled.returncode == 0, pulled.stderr
        # The config and the new layer came through the redirect, without the password.
        assert front.storage_requests >= 2
        assert front.storage_auth == []
        assert daemon.cli("run", "--rm", name).stdout == unique_id(unique)
        daemon.cli("rmi", name, check=True)
        daemon.cli("logout", front.host, check=True)
    finally:
        front.stop()


def unique_id(layer: bytes) -> str:
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        member = tar.extractfile("id")
        assert member is not None
        return member.read().decode()
