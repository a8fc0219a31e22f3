"""Finding v1 ("legacy") plugins by name, exactly as Docker's daemon does.

A plugin is a socket in a socket directory (Docker: `/run/docker/plugins`) or
a `.spec`/`.json` file in a spec directory (`/etc/docker/plugins`, then
`/usr/lib/docker/plugins`). For a name `N` the lookup order is, per socket
directory `N.sock` then `N/N.sock` (both must really be sockets), then per
spec directory `N.spec`, `N/N.spec`, `N.json`, `N/N.json` (existence is
enough). The first hit wins. A `.spec` file holds one URL; a `.json` file
holds `{"Addr": URL, "TLSConfig": {...}}` (its `Name` is ignored: the file
name names the plugin).

TLS, as Docker: an `https` `.spec` URL is not verified (the file cannot name
a CA); a `.json` file without `TLSConfig` is verified against the system's
CAs; with `TLSConfig`, `CAFile`, `CertFile`, `KeyFile` and
`InsecureSkipVerify` are honoured, and no `CAFile` means no verification.

This module only reads the directories; retries, activation and caching are
`dockyard.plugins.legacy`'s job.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import urllib.parse
from dataclasses import dataclass

from dockyard.errors import InvalidArgument, NotFound
from dockyard.wire import Message, WireError, wire

SOCKET_DIRS = ("/run/docker/plugins",)
SPEC_DIRS = ("/etc/docker/plugins", "/usr/lib/docker/plugins")


@dataclass(frozen=True)
class TLSConfig:
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class Endpoint:
    """Where a plugin listens: `unix` (address = socket path), `tcp` (plain HTTP,
    address = host:port) or `https` (TLS, address = host:port)."""

    scheme: str
    address: str
    tls: TLSConfig | None = None
    source: str = ""  # the socket or file it was found through

    def __str__(self) -> str:
        return f"{self.scheme}://{self.address}"


class _TLSFile(Message):
    insecure_skip_verify: bool = wire(default=False)
    ca_file: str = wire("CAFile", default="")
    cert_file: str = wire(default="")
    key_file: str = wire(default="")


class _JSONFile(Message):
    name: str = wire(default="")
    addr: str = wire(default="")
    tls_config: _TLSFile | None = wire("TLSConfig", default=None)


def parse_url(text: str, source: str = "", tls: TLSConfig | None = None) -> Endpoint:
    """A plugin address URL (`unix://`, `tcp://`, `http://`, `https://`); any path is dropped."""
    text = text.strip()
    parsed = urllib.parse.urlsplit(text)
    scheme = parsed.scheme.lower()
    if scheme == "unix":
        path = parsed.netloc + parsed.path if parsed.netloc else parsed.path
        if not path:
            raise InvalidArgument(f"plugin address {text!r} names no socket")
        return Endpoint("unix", path, None, source)
    if scheme in ("tcp", "http", "https"):
        if not parsed.netloc:
            raise InvalidArgument(f"plugin address {text!r} names no host")
        if scheme == "tcp" and tls is not None:
            scheme = "https"
        return Endpoint("https" if scheme == "https" else "tcp", parsed.netloc, tls, source)
    raise InvalidArgument(f"Unknown protocol in plugin address {text!r}")


def read_spec(path: str) -> Endpoint:
    with open(path) as f:
        endpoint = parse_url(f.read(), path)
    if endpoint.scheme == "https":
        # A .spec file carries no TLS settings: Docker does not verify the certificate.
        endpoint = dataclasses.replace(endpoint, tls=TLSConfig(insecure_skip_verify=True))
    return endpoint


def read_json(path: str) -> Endpoint:
    try:
        with open(path) as f:
            data = json.load(f)
        spec = _JSONFile.decode(data)
    except (json.JSONDecodeError, UnicodeDecodeError, WireError) as e:
        raise InvalidArgument(f"invalid plugin spec {path}: {e}") from e
    tls = None  # an https Addr without TLSConfig is verified against the system's CAs
    if spec.tls_config is not None:
        t = spec.tls_config
        # Docker: a TLSConfig without a CA file means no verification, whatever it says.
        tls = TLSConfig(t.ca_file, t.cert_file, t.key_file, t.insecure_skip_verify or not t.ca_file)
    return parse_url(spec.addr, path, tls)


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def valid_name(name: str) -> bool:
    return bool(name) and "/" not in name and name not in (".", "..") and "\0" not in name


class Discovery:
    """The discovery directories of one engine (Docker's by default)."""

    def __init__(
        self,
        socket_dirs: tuple[str, ...] | list[str] = SOCKET_DIRS,
        spec_dirs: tuple[str, ...] | list[str] = SPEC_DIRS,
    ) -> None:
        self.socket_dirs = tuple(socket_dirs)
        self.spec_dirs = tuple(spec_dirs)

    def candidates(self, name: str) -> list[str]:
        """Every path a lookup of `name` tries, in order."""
        paths = []
        for d in self.socket_dirs:
            paths += [os.path.join(d, name + ".sock"), os.path.join(d, name, name + ".sock")]
        for d in self.spec_dirs:
            for ext in (".spec", ".json"):
                paths += [os.path.join(d, name + ext), os.path.join(d, name, name + ext)]
        return paths

    def find(self, name: str) -> Endpoint:
        """One pass of the lookup; NotFound when nothing is there, InvalidArgument when the
        file found cannot be understood."""
        if not valid_name(name):
            raise NotFound(f"plugin {name!r} not found")
        for path in self.candidates(name):
            if path.endswith(".sock"):
                if _is_socket(path):
                    return Endpoint("unix", path, None, path)
            elif os.path.exists(path):
                return read_spec(path) if path.endswith(".spec") else read_json(path)
        raise NotFound(f"plugin {name!r} not found")

    def names(self) -> list[str]:
        """Every plugin name present in the directories (Docker's scan), in lookup order."""
        found: dict[str, None] = {}
        for d in self.socket_dirs:
            for entry in _listdir(d):
                path = os.path.join(d, entry)
                if entry.endswith(".sock") and _is_socket(path):
                    found[entry[: -len(".sock")]] = None
                elif os.path.isdir(path) and _is_socket(os.path.join(path, entry + ".sock")):
                    found[entry] = None
        for d in self.spec_dirs:
            for entry in _listdir(d):
                path = os.path.join(d, entry)
                if os.path.isdir(path):
                    for inner in _listdir(path):
                        base, ext = os.path.splitext(inner)
                        if base == entry:
                            if ext in (".spec", ".json"):
                                found[entry] = None
                            break
                else:
                    base, ext = os.path.splitext(entry)
                    if ext in (".spec", ".json"):
                        found[base] = None
        return list(found)


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []
