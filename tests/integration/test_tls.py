"""The API over TCP with mutual TLS, as dockerd serves it.

Real certificates made here with openssl: a CA, a server certificate for 127.0.0.1,
a client certificate, and a second CA with a client certificate of its own. The daemon
listens on tcp://127.0.0.1:0 (the kernel picks the port; the daemon writes what it
bound to `<exec-root>/api-hosts`) besides its unix socket, and the real clients drive
it: the docker CLI (flags and DOCKER_TLS_VERIFY/DOCKER_CERT_PATH), buildx, docker-py's
TLSConfig and our own CLI.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from tests import ecosystem
from tests.bare_plugin import BarePlugin, Call
from tests.harness import REPO, Daemon, new_base
from tests.plugin_env import PluginDaemon
from tests.registry import CA, make_ca, openssl, server_cert


@dataclass
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client: Path  # a DOCKER_CERT_PATH: ca.pem, cert.pem, key.pem (CN "alice")
    stranger: Path  # the same, with a client certificate from another CA (CN "mallory")


def client_cert(ca: CA, directory: Path, cn: str, trust: Path) -> Path:
    """A DOCKER_CERT_PATH directory: `ca.pem` (`trust`), and `cert.pem`/`key.pem`, a client
    certificate for `cn` signed by `ca`."""
    directory.mkdir(parents=True, exist_ok=True)
    key, csr, cert = directory / "key.pem", directory / "client.csr", directory / "cert.pem"
    ext = directory / "client.ext"
    ext.write_text("extendedKeyUsage=clientAuth\n")
    openssl(
        *("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr)),
        *("-subj", f"/O=Dockyard Tests/CN={cn}"),
    )
    openssl(
        *("x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key)),
        *("-CAcreateserial", "-out", str(cert), "-days", "2", "-sha256", "-extfile", str(ext)),
    )
    shutil.copy(trust, directory / "ca.pem")
    return directory


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    base = tmp_path_factory.mktemp("tls")
    ca = make_ca(base / "ca", "Dockyard API CA")
    cert, key = server_cert(ca, base / "ca")
    other = make_ca(base / "other", "Somebody Else's CA")
    return Certs(
        ca=ca.cert,
        server_cert=cert,
        server_key=key,
        client=client_cert(ca, base / "alice", "alice", ca.cert),
        stranger=client_cert(other, base / "mallory", "mallory", ca.cert),
    )


def tls_flags(certs: Certs) -> list[str]:
    return [
        *("--tlsverify", "--tlscacert", str(certs.ca)),
        *("--tlscert", str(certs.server_cert), "--tlskey", str(certs.server_key)),
    ]


def tcp_address(daemon: Daemon) -> tuple[str, int]:
    """The TCP address the daemon bound for `tcp://127.0.0.1:0`."""
    lines = (daemon.exec_root / "api-hosts").read_text().split()
    tcp = [line for line in lines if line.startswith("tcp://")]
    assert len(tcp) == 1, lines
    host, port = tcp[0][len("tcp://") :].rsplit(":", 1)
    return host, int(port)


@pytest.fixture(scope="module")
def tls_api(busybox_tar: Path, certs: Certs) -> Iterator[Daemon]:
    """A daemon on its unix socket and on TCP with --tlsverify, the TLS settings given in
    daemon.json (Docker's keys)."""
    d = Daemon(new_base())
    d.config.update(
        {
            "tlsverify": True,
            "tlscacert": str(certs.ca),
            "tlscert": str(certs.server_cert),
            "tlskey": str(certs.server_key),
        }
    )
    d.start("-H", "tcp://127.0.0.1:0")
    try:
        d.cli("import", str(busybox_tar), "demo/busybox:1", check=True)
        yield d
    finally:
        d.cleanup()


def docker_tls(
    daemon: Daemon, cert_path: Path, *args: str, input: bytes | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The docker CLI over TCP with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH."""
    host, port = tcp_address(daemon)
    env = ecosystem.client_env(daemon)
    env.update(
        DOCKER_HOST=f"tcp://{host}:{port}", DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=str(cert_path)
    )
    result = subprocess.run(["docker", *args], env=env, input=input, capture_output=True, cwd=cwd)
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


def raw_request(address: tuple[str, int], context: ssl.SSLContext) -> bytes:
    """Send a ping over TLS; whatever the server answers (b"" when it hangs up), or the
    TLS error the handshake or first read ends with, as bytes."""
    with socket.create_connection(address) as plain:
        try:
            with context.wrap_socket(plain, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
                return tls.recv(1000)
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
            return f"TLS error: {e}".encode()


def client_context(certs: Certs, cert_path: Path | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    if cert_path is not None:
        ctx.load_cert_chain(str(cert_path / "cert.pem"), str(cert_path / "key.pem"))
    return ctx


# -- clients that have a certificate from the CA ----------------------------------


def test_docker_cli_with_flags_and_with_the_environment(tls_api: Daemon, certs: Certs) -> None:
    host, port = tcp_address(tls_api)
    assert host == "127.0.0.1" and port != 0
    flags = [
        *("-H", f"tcp://{host}:{port}", "--tlsverify", "--tlscacert", str(certs.ca)),
        *("--tlscert", str(certs.client / "cert.pem"), "--tlskey", str(certs.client / "key.pem")),
    ]
    ps = subprocess.run(["docker", *flags, "ps", "-a"], capture_output=True, text=True)
    assert ps.returncode == 0, ps.stderr
    assert ps.stdout.startswith("CONTAINER ID")

    run = docker_tls(tls_api, certs.client, "run", "--rm", "demo/busybox:1", "echo", "over tls")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "over tls\n"


def test_exec_and_attach_streams_survive_the_end_of_stdin(
    tls_api: Daemon, certs: Certs, name: str
) -> None:
    started = docker_tls(
        tls_api, certs.client, "run", "-d", "--name", name, "demo/busybox:1", "sleep", "300"
    )
    assert started.returncode == 0, started.stderr
    try:
        out = docker_tls(tls_api, certs.client, "exec", name, "sh", "-c", "echo out; echo err >&2")
        assert (out.returncode, out.stdout, out.stderr) == (0, "out\n", "err\n")
        # stdin ends (the CLI half-closes TCP under TLS) before the output is written
        piped = docker_tls(
            tls_api,
            certs.client,
            "exec",
            "-i",
            name,
            "sh",
            "-c",
            "cat; sleep 0.2; echo done",
            input=b"from stdin\n",
        )
        assert (piped.returncode, piped.stdout) == (0, "from stdin\ndone\n"), piped.stderr
        attached = docker_tls(
            tls_api,
            certs.client,
            "run",
            "--rm",
            "-i",
            "demo/busybox:1",
            "sh",
            "-c",
            "cat; exit 3",
            input=b"attached\n",
        )
        assert (attached.returncode, attached.stdout) == (3, "attached\n"), attached.stderr
    finally:
        docker_tls(tls_api, certs.client, "rm", "-f", name)


def test_buildx_builds_through_the_tls_endpoint(
    tls_api: Daemon, certs: Certs, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM demo/busybox:1\nCOPY note.txt /note.txt\nRUN echo built over tls >> /note.txt\n"
        'CMD ["cat", "/note.txt"]\n'
    )
    (tmp_path / "note.txt").write_text("from the context\n")
    built = docker_tls(
        tls_api,
        certs.client,
        "buildx",
        "build",
        "--progress=plain",
        "-t",
        "tls/built:1",
        str(tmp_path),
    )
    assert built.returncode == 0, built.stderr
    run = docker_tls(tls_api, certs.client, "run", "--rm", "tls/built:1")
    assert run.stdout == "from the context\nbuilt over tls\n", run.stderr


def test_docker_py_tls_config(
    tls_api: Daemon, certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests lets these override the CA TLSConfig gives it (whatever the daemon)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    host, port = tcp_address(tls_api)
    tls = docker.tls.TLSConfig(
        client_cert=(str(certs.client / "cert.pem"), str(certs.client / "key.pem")),
        ca_cert=str(certs.ca),
        verify=True,
    )
    client = docker.DockerClient(base_url=f"https://{host}:{port}", tls=tls)
    try:
        assert client.ping()
        out = client.containers.run("demo/busybox:1", ["echo", "docker-py"], remove=True)
        assert out == b"docker-py\n"
        container = client.containers.run("demo/busybox:1", ["sleep", "300"], detach=True)
        try:
            result = container.exec_run(["sh", "-c", "echo exec over tls"])
            assert (result.exit_code, result.output) == (0, b"exec over tls\n")
        finally:
            container.remove(force=True)
    finally:
        client.close()


def test_our_cli_with_flags_and_with_the_environment(tls_api: Daemon, certs: Certs) -> None:
    host, port = tcp_address(tls_api)
    flags = [
        *("-H", f"tcp://{host}:{port}", "--tlsverify", "--tlscacert", str(certs.ca)),
        *("--tlscert", str(certs.client / "cert.pem"), "--tlskey", str(certs.client / "key.pem")),
    ]
    env_of = {"DOCKYARD_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"}
    base_env = {k: v for k, v in os.environ.items() if k not in env_of}
    ps = subprocess.run(
        [sys.executable, "-m", "dockyard", *flags, "ps"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=base_env,
    )
    assert ps.returncode == 0, ps.stderr
    assert ps.stdout.startswith("CONTAINER ID")

    env = {
        **base_env,
        "DOCKYARD_HOST": f"tcp://{host}:{port}",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(certs.client),
    }
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "dockyard",
            "run",
            "--rm",
            "-i",
            "demo/busybox:1",
            "sh",
            "-c",
            "cat; echo bye",
        ],
        input="piped\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
    )
    assert (run.returncode, run.stdout) == (0, "piped\nbye\n"), run.stderr

    # no certificate: the daemon is not reached
    bare = subprocess.run(
        [
            sys.executable,
            "-m",
            "dockyard",
            "-H",
            f"tcp://{host}:{port}",
            "--tlsverify",
            "--tlscacert",
            str(certs.ca),
            "ps",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**base_env, "DOCKER_CERT_PATH": "/nonexistent"},
    )
    assert bare.returncode != 0 and "CONTAINER ID" not in bare.stdout


# -- clients the daemon refuses ---------------------------------------------------


def test_a_client_without_a_certificate_is_refused_in_the_handshake(
    tls_api: Daemon, certs: Certs
) -> None:
    address = tcp_address(tls_api)
    assert raw_request(address, client_context(certs, certs.client)).startswith(b"HTTP/1.1 200")
    answer = raw_request(address, client_context(certs, None))
    assert not answer.startswith(b"HTTP"), answer
    # plain HTTP on the TLS port gets no HTTP answer either
    with socket.create_connection(address) as plain:
        plain.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
        assert not plain.recv(1000).startswith(b"HTTP")

    bare = certs.client.parent / "ca-only"  # trusts the CA, has no certificate of its own
    bare.mkdir(exist_ok=True)
    shutil.copy(certs.ca, bare / "ca.pem")
    result = docker_tls(tls_api, bare, "ps")
    assert result.returncode != 0 and "CONTAINER ID" not in result.stdout
    assert "remote error: tls: certificate required" in result.stderr, result.stderr


def test_a_certificate_from_another_ca_is_refused(tls_api: Daemon, certs: Certs) -> None:
    answer = raw_request(tcp_address(tls_api), client_context(certs, certs.stranger))
    assert not answer.startswith(b"HTTP"), answer
    result = docker_tls(tls_api, certs.stranger, "ps")
    assert result.returncode != 0 and "CONTAINER ID" not in result.stdout, result.stdout
    assert "remote error: tls: unknown certificate authority" in result.stderr, result.stderr


# -- starting without client verification -------------------------------------------


def test_plain_tcp_is_refused_unless_tls_is_explicitly_off() -> None:
    d = Daemon(new_base())
    try:
        with pytest.raises(RuntimeError) as exited:
            d.start("-H", "tcp://127.0.0.1:0")
        log = str(exited.value)
        assert "Binding to IP address without --tlsverify is insecure and gives root access" in log
        assert "refusing to listen on tcp://127.0.0.1:0 without --tlsverify" in log
        assert not (d.exec_root / "api-hosts").exists()

        d.start("-H", "tcp://127.0.0.1:0", "--tls=false")
        with socket.create_connection(tcp_address(d)) as plain:
            plain.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
            assert plain.recv(1000).startswith(b"HTTP/1.1 200")
        assert "Binding to IP address without --tlsverify" in d.log_path.read_text()
    finally:
        d.cleanup()


def test_tls_without_verification_serves_any_client(certs: Certs) -> None:
    """`--tlsverify=false`: TLS, and a client without a certificate gets through."""
    d = Daemon(new_base())
    try:
        d.start(
            "-H",
            "tcp://127.0.0.1:0",
            "--tlsverify=false",
            "--tlscert",
            str(certs.server_cert),
            "--tlskey",
            str(certs.server_key),
        )
        answer = raw_request(tcp_address(d), client_context(certs, None))
        assert answer.startswith(b"HTTP/1.1 200"), answer
    finally:
        d.cleanup()


# -- authorization plugins see who the client is ---------------------------------------


def test_authz_plugins_see_the_client_certificates_common_name(certs: Certs) -> None:
    daemon = PluginDaemon()
    seen: list[dict[str, object]] = []

    def request(call: Call) -> dict[str, object]:
        seen.append(call.json)
        return {"Allow": call.json.get("User") != "mallory"}

    plugin = BarePlugin(
        ["authz"],
        {"/AuthZPlugin.AuthZReq": request, "/AuthZPlugin.AuthZRes": lambda call: {"Allow": True}},
    ).serve_unix(daemon.sock("who"))
    try:
        daemon.start_with(
            "--authorization-plugin", "who", "-H", "tcp://127.0.0.1:0", *tls_flags(certs)
        )
        answer = raw_request(tcp_address(daemon), client_context(certs, certs.client))
        assert answer.startswith(b"HTTP/1.1 200"), answer
        over_tls = [m for m in seen if m.get("User")]
        assert over_tls and over_tls[-1]["User"] == "alice"
        assert over_tls[-1]["UserAuthNMethod"] == "TLS"
        der = openssl("x509", "-in", str(certs.client / "cert.pem"), "-outform", "DER")
        assert [base64.b64decode(c) for c in over_tls[-1]["RequestPeerCertificates"]] == [der]  # type: ignore[union-attr]

        seen.clear()
        status, _ = daemon.api("GET", "/_ping")  # the unix socket: no user
        assert status == 200
        assert seen and "User" not in seen[-1] and "UserAuthNMethod" not in seen[-1], json.dumps(
            seen[-1]
        )
    finally:
        daemon.cleanup()
        plugin.stop()
