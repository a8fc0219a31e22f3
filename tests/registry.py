"""Real registries for tests and benchmarks: Debian's docker-registry (distribution 2.8).

Each registry runs as its own process with its own config and storage under a
temporary directory, bound to 127.0.0.1 on a free port: plain HTTP, or TLS
with a CA made for the test, with htpasswd (Basic) or token (Bearer) auth.
The token service is written here: it checks Basic credentials and signs
JWTs with a key whose self-signed certificate is the registry's trust root.
`OCILayout` writes images (and multi-platform indexes) as OCI layouts that
skopeo, the independent peer, pushes.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import secrets
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


# -- certificates -------------------------------------------------------------


def openssl(*args: str) -> bytes:
    return subprocess.run(["openssl", *args], check=True, capture_output=True).stdout


@dataclass
class CA:
    cert: Path
    key: Path


def make_ca(directory: Path, name: str = "Dockyard Test CA") -> CA:
    directory.mkdir(parents=True, exist_ok=True)
    ca = CA(directory / "ca.crt", directory / "ca.key")
    openssl(
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2"),
        *("-keyout", str(ca.key), "-out", str(ca.cert), "-subj", f"/CN={name}"),
        *("-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=keyCertSign"),
    )
    return ca


def server_cert(ca: CA, directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, signed by `ca`."""
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    openssl(
        *("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr)),
        *("-subj", "/CN=127.0.0.1"),
    )
    openssl(
        *("x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key)),
        *("-CAcreateserial", "-out", str(cert), "-days", "2", "-sha256", "-extfile", str(ext)),
    )
    return cert, key


def htpasswd_line(user: str, password: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

        return f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))}"


# -- the token service ----------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """Docker's token protocol (GET <realm>?service=&scope=) with Basic-checked users.

    Authenticated users get every action they ask for; anonymous clients
    get `pull` on repositories under `public/`. Issued tokens are counted.
    """

    issuer = "dockyard-test-issuer"
    service = "dockyard-test-registry"

    def __init__(self, base: Path, users: dict[str, str], lifetime: int = 300) -> None:
        self.base = base
        self.users = users
        self.lifetime = lifetime
        base.mkdir(parents=True, exist_ok=True)
        self.key = base / "token.key"
        self.cert = base / "token.crt"
        openssl(
            *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(self.key), "-out", str(self.cert), "-subj", "/CN=token-signer"),
        )
        der = openssl("x509", "-in", str(self.cert), "-outform", "DER")
        self._x5c = base64.b64encode(der).decode()
        self.issued: list[dict[str, Any]] = []
        self.refused = 0
        self.port = free_port()
        self.realm = f"http://127.0.0.1:{self.port}/token"
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        query = parse_qs(urlparse(request.path).query)
        user = ""
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            name, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if self.users.get(name) != password:
                self.refused += 1
                body = b'{"details":"incorrect username or password"}'
                request.send_response(401)
                request.send_header("Content-Type", "application/json")
                request.send_header("Content-Length", str(len(body)))
                request.end_headers()
                request.wfile.write(body)
                return
            user = name
        access = []
        for scope in query.get("scope", []):
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = actions.split(",")
            granted = wanted if user else [a for a in wanted if a == "pull"]
            if not user and not name.startswith("public/"):
                granted = []
            access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": user,
            "aud": query.get("service", [""])[0],
            "exp": now + self.lifetime,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        header_json = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        signing_input = (
            f"{_b64url(json.dumps(header_json).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(),
            check=True,
            capture_output=True,
        ).stdout
        token = f"{signing_input}.{_b64url(signature)}"
        self.issued.append({"user": user, "scopes": query.get("scope", []), "access": access})
        body = json.dumps({"token": token, "expires_in": self.lifetime}).encode()
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()


# -- the registry ---------------------------------------------------------------


class Registry:
    """A docker-registry process on 127.0.0.1 with its own storage."""

    def __init__(
        self,
        base: Path,
        *,
        ca: CA | None = None,
        users: dict[str, str] | None = None,
        token: TokenServer | None = None,
    ) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.ca = ca
        self.proc: subprocess.Popen[bytes] | None = None
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {base / 'data'}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            f"  secret: {secrets.token_hex(16)}",
        ]
        if ca is not None:
            cert, key = server_cert(ca, base)
            lines += ["  tls:", f"    certificate: {cert}", f"    key: {key}"]
        if users is not None:
            htpasswd = base / "htpasswd"
            htpasswd.write_text("".join(htpasswd_line(u, p) + "\n" for u, p in users.items()))
            lines += ["auth:", "  htpasswd:", "    realm: dockyard-test", f"    path: {htpasswd}"]
        elif token is not None:
            lines += [
                "auth:",
                "  token:",
                f"    realm: {token.realm}",
                f"    service: {token.service}",
                f"    issuer: {token.issuer}",
                f"    rootcertbundle: {token.cert}",
            ]
        self.config = base / "config.yml"
        self.config.write_text("\n".join(lines) + "\n")

    @property
    def scheme(self) -> str:
        return "https" if self.ca else "http"

    def start(self) -> Registry:
        log = open(self.base / "registry.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", str(self.config)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def blob_path(self, repository: str, digest: str) -> Path:
        hex_ = digest.removeprefix("sha256:")
        return self.base / "data/docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)} failed: {result.stderr}")
    return result


# -- OCI layouts written by hand --------------------------------------------------


def tar_of(files: dict[str, bytes]) -> bytes:
    """A layer tar holding `files` (paths -> contents), directories implied."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        seen: set[str] = set()
        for path, data in sorted(files.items()):
            parts = path.split("/")
            for i in range(1, len(parts)):
                directory = "/".join(parts[:i])
                if directory not in seen:
                    seen.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class OCILayout:
    """Writes blobs, manifests and indexes into an OCI layout directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        self.entries: list[dict[str, Any]] = []

    def blob(self, data: bytes) -> dict[str, Any]:
        digest = digest_of(data)
        (self.path / "blobs" / "sha256" / digest.removeprefix("sha256:")).write_bytes(data)
        return {"digest": digest, "size": len(data)}

    def image(
        self,
        layers: list[bytes],
        *,
        arch: str = "amd64",
        cmd: list[str] | None = None,
        compress: bool = True,
    ) -> dict[str, Any]:
        """An image manifest descriptor; layers are uncompressed tars."""
        layer_descs = []
        for tar in layers:
            data = gzip.compress(tar, mtime=0) if compress else tar
            media = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if compress else "")
            layer_descs.append({"mediaType": media, **self.blob(data)})
        config = {
            "architecture": arch,
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "config": {"Cmd": cmd or ["sh"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [digest_of(t) for t in layers]},
            "history": [{"created_by": f"layer {i}"} for i in range(len(layers))],
        }
        config_desc = {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **self.blob(json.dumps(config).encode()),
        }
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_desc,
            "layers": layer_descs,
        }
        return {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            **self.blob(json.dumps(manifest).encode()),
            "platform": {"architecture": arch, "os": "linux"},
        }

    def index(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": entries,
        }
        return {
            "mediaType": "application/vnd.oci.image.index.v1+json",
            **self.blob(json.dumps(index).encode()),
        }

    def tag(self, descriptor: dict[str, Any], name: str) -> None:
        entry = {k: v for k, v in descriptor.items() if k != "platform"}
        entry["annotations"] = {"org.opencontainers.image.ref.name": name}
        self.entries.append(entry)
        index = {"schemaVersion": 2, "manifests": self.entries}
        (self.path / "index.json").write_text(json.dumps(index))


# -- the daemon's store ---------------------------------------------------------------


def store_problems(data_root: Path) -> list[str]:
    """What is wrong with a daemon's image store (empty when it is consistent).

    Every blob hashes to its name, nothing is left in the ingest area or half
    unpacked, and every image's config, manifest and unpacked layers are
    there. (A manifest's layer blob may be absent when the pull found that
    layer already unpacked and skipped downloading it, as Docker does.)
    """
    import sqlite3

    problems = []
    blobs = data_root / "content" / "blobs" / "sha256"
    for blob in blobs.iterdir():
        digest = hashlib.sha256()
        with blob.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != blob.name:
            problems.append(f"blob {blob.name} does not match its content")
    problems += [f"ingest leftover {p.name}" for p in (data_root / "content" / "ingest").iterdir()]
    problems += [f"half-unpacked layer {p.name}" for p in (data_root / "layers").glob("tmp-*")]
    db = sqlite3.connect(f"file:{data_root / 'dockyard.db'}?mode=ro", uri=True)
    try:
        layers = {row[0] for row in db.execute("SELECT chain_id FROM layers")}
        for image_id, manifest_digest in db.execute("SELECT id, manifest_digest FROM images"):
            for digest in (image_id, manifest_digest):
                if not (blobs / digest.removeprefix("sha256:")).exists():
                    problems.append(f"image {image_id}: blob {digest} missing")
            config = json.loads((blobs / image_id.removeprefix("sha256:")).read_bytes())
            chain = ""
            for diff_id in config["rootfs"]["diff_ids"]:
                chain = diff_id if not chain else digest_of(f"{chain} {diff_id}".encode())
                if chain not in layers:
                    problems.append(f"image {image_id}: layer {chain} not unpacked")
    finally:
        db.close()
    return problems


def blob_names(data_root: Path) -> set[str]:
    return {p.name for p in (data_root / "content" / "blobs" / "sha256").iterdir()}


# -- a front that sends blob downloads elsewhere -------------------------------------


class RedirectingFront:
    """A registry front (Basic auth) that redirects blob GETs to a storage host.

    Everything else is forwarded to the real registry behind it; blob
    downloads get a 307 to a second server on another port (another origin,
    as a CDN would be), which records any Authorization header it receives.
    """

    def __init__(self, upstream: Registry, user: str, password: str) -> None:
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.storage_port = free_port()
        self.storage_auth: list[str] = []
        self.storage_requests = 0
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        front = self

        def forward(handler: BaseHTTPRequestHandler, path: str, head: bool) -> None:
            request = urllib.request.Request(
                f"http://{upstream.host}{path}",
                headers={"Accept": handler.headers.get("Accept", "*/*")},
                method="HEAD" if head else "GET",
            )
            try:
                with urllib.request.urlopen(request) as resp:
                    status, headers, body = resp.status, resp.headers, resp.read()
            except urllib.error.HTTPError as e:
                status, headers, body = e.code, e.headers, e.read()
            handler.send_response(status)
            for key in ("Content-Type", "Docker-Content-Digest", "Content-Length"):
                if headers.get(key):
                    handler.send_header(key, headers[key])
            handler.end_headers()
            if not head:
                handler.wfile.write(body)

        class Front(BaseHTTPRequestHandler):
            def handle_one(self, head: bool) -> None:
                if self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="front"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if "/blobs/sha256:" in self.path and not head:
                    self.send_response(307)
                    location = f"http://127.0.0.1:{front.storage_port}{self.path}"
                    self.send_header("Location", location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                forward(self, self.path, head)

            def do_GET(self) -> None:
                self.handle_one(False)

            def do_HEAD(self) -> None:
                self.handle_one(True)

            def log_message(self, *args: Any) -> None:
                pass

        class Storage(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                front.storage_requests += 1
                if self.headers.get("Authorization"):
                    front.storage_auth.append(self.headers["Authorization"])
                forward(self, self.path, False)

            def log_message(self, *args: Any) -> None:
                pass

        self._servers = [
            ThreadingHTTPServer(("127.0.0.1", self.port), Front),
            ThreadingHTTPServer(("127.0.0.1", self.storage_port), Storage),
        ]
        for server in self._servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
