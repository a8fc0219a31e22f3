"""Registry fixtures: real docker-registry processes, images pushed into them by skopeo."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Daemon, new_base
from tests.registry import CA, OCILayout, Registry, TokenServer, make_ca, skopeo, tar_of


@pytest.fixture(scope="session")
def registry_base() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="dy-reg-", dir="/tmp"))
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def registry(registry_base: Path) -> Iterator[Registry]:
    """A plain-HTTP registry on 127.0.0.1 (loopback: no TLS needed, as with Docker)."""
    reg = Registry(registry_base / "plain").start()
    yield reg
    reg.cleanup()


@pytest.fixture(scope="session")
def test_ca(registry_base: Path) -> CA:
    return make_ca(registry_base / "ca")


@pytest.fixture(scope="session")
def tls_registry(registry_base: Path, test_ca: CA) -> Iterator[Registry]:
    """TLS (certificate from the test CA) with htpasswd users alice/wonderland."""
    reg = Registry(registry_base / "tls", ca=test_ca, users={"alice": "wonderland"}).start()
    yield reg
    reg.cleanup()


@pytest.fixture(scope="session")
def token_server(registry_base: Path) -> Iterator[TokenServer]:
    server = TokenServer(registry_base / "token", {"bob": "builder"})
    yield server
    server.stop()


@pytest.fixture(scope="session")
def token_registry(registry_base: Path, token_server: TokenServer) -> Iterator[Registry]:
    """Plain HTTP with Bearer token auth from the test token service."""
    reg = Registry(registry_base / "token-reg", token=token_server).start()
    yield reg
    reg.cleanup()


def certs_dir_for(base: Path, registry: Registry, ca: CA) -> Path:
    """A certs.d tree trusting `ca` for `registry`, as /etc/docker/certs.d/HOST:PORT/ca.crt."""
    certs = base / "certs.d"
    (certs / registry.host).mkdir(parents=True, exist_ok=True)
    shutil.copy(ca.cert, certs / registry.host / "ca.crt")
    return certs


@pytest.fixture(scope="module")
def tls_daemon(busybox_tar: Path, tls_registry: Registry, test_ca: CA) -> Iterator[Daemon]:
    """A daemon that trusts the test CA for the TLS registry (through its certs.d dir)."""
    d = Daemon(new_base())
    certs = certs_dir_for(d.base, tls_registry, test_ca)
    d.config["registry-certs-dirs"] = [str(certs)]
    d.start()
    d.cli("import", str(busybox_tar), "demo/busybox:1", check=True)
    yield d
    d.cleanup()


@pytest.fixture(scope="session")
def app_image(registry: Registry, busybox_tar: Path, registry_base: Path) -> str:
    """`team/app:1` pushed by skopeo: busybox plus a layer with /hello.txt, CMD cat it."""
    layout = OCILayout(registry_base / "app-layout")
    descriptor = layout.image(
        [busybox_tar.read_bytes(), tar_of({"hello.txt": b"hello from the registry\n"})],
        cmd=["cat", "/hello.txt"],
    )
    layout.tag(descriptor, "1")
    name = f"{registry.host}/team/app:1"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout.path}:1", f"docker://{name}")
    return name


@pytest.fixture
def repo(registry: Registry) -> str:
    """A fresh repository name on the plain registry."""
    return f"{registry.host}/t{secrets.token_hex(3)}/img"
