"""Daemon configuration: command-line flags over `daemon.json` over defaults.

`daemon.json` uses Docker's keys where they mean the same thing (`data-root`,
`exec-root`, `hosts`, `default-runtime`, `runtimes`, `cgroup-parent`,
`seccomp-profile`, `debug`, `log-driver`, `log-opts`, `tls`, `tlsverify`, ...), so an
existing Docker configuration reads the same way here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from dockyard.errors import InvalidArgument
from dockyard.listeners import Host, TLSSettings, parse_host, resolve_tls
from dockyard.logs import options as log_options

DEFAULT_CONFIG_FILE = "/etc/dockyard/daemon.json"
DEFAULT_DATA_ROOT = "/var/lib/dockyard"
DEFAULT_EXEC_ROOT = "/run/dockyard"
DEFAULT_SOCKET = "/run/dockyard/dockyard.sock"
DEFAULT_HOST = "unix://" + DEFAULT_SOCKET


@dataclass
class DaemonConfig:
    hosts: list[str] = field(default_factory=lambda: [DEFAULT_HOST])
    data_root: str = DEFAULT_DATA_ROOT
    exec_root: str = DEFAULT_EXEC_ROOT
    default_runtime: str | None = None  # None: crun if it works on this host, else runc
    runtimes: dict[str, str] = field(default_factory=dict)  # extra name -> path
    cgroup_parent: str = "dockyard"
    # None or "builtin": the built-in policy (Docker's default); "unconfined"; or a profile file
    seccomp_profile: str | None = None
    init_path: str | None = None
    conmon_path: str | None = None  # None: conmon found where distributions install it
    debug: bool = False
    pidfile: str | None = None
    insecure_registries: list[str] = field(default_factory=list)  # hosts or CIDRs
    registry_certs_dirs: list[str] = field(
        default_factory=lambda: ["/etc/docker/certs.d", "/etc/dockyard/certs.d"]
    )
    max_concurrent_downloads: int = 3
    max_concurrent_uploads: int = 5
    registry_chunk_size: int = 16 << 20  # blobs larger than this are uploaded in chunks
    # Networking: Docker's keys, then Dockyard's own (see dockyard.network.manager).
    bridge: str = "dockyard0"
    bip: str | None = None
    default_address_pools: list[dict[str, Any]] | None = None
    mtu: int = 1500
    ip_forward: bool = True
    ip_masq: bool = True
    nftables_table: str = "dockyard"
    bridge_prefix: str = "dy-"
    veth_prefix: str = "dyv"
    raw: dict[str, Any] = field(default_factory=dict)  # the whole daemon.json, for later keys
    # Plugins: authorization chain; discovery directories (Docker's by default; tests
    # point them at private directories); retry window and call-timeout bound, seconds.
    authorization_plugins: list[str] = field(default_factory=list)
    plugin_socket_dirs: list[str] = field(default_factory=lambda: ["/run/docker/plugins"])
    plugin_spec_dirs: list[str] = field(
        default_factory=lambda: ["/etc/docker/plugins", "/usr/lib/docker/plugins"]
    )
    plugin_retry_timeout: float = 30.0
    plugin_call_timeout: float = 120.0
    # Containers' logs: the driver and options a container gets when it names none.
    log_driver: str = "json-file"
    log_opts: dict[str, str] = field(default_factory=dict)
    # The API over TCP (dockyard.listeners): None means not given, as dockerd tells
    # "not given" from "false" (an explicit --tls=false allows plain TCP).
    tls: bool | None = None
    tlsverify: bool | None = None
    tlscacert: str | None = None
    tlscert: str | None = None
    tlskey: str | None = None

    def builder_version(self) -> str:
        """What `/_ping` advertises as the preferred builder (`Builder-Version`).

        "2" (BuildKit) only when daemon.json says `"features": {"buildkit": true}`
        (Docker's key): docker CLIs before 23.0 read it to build through `/session` and
        `POST /build?version=2`, which the engine does not serve yet, while today's CLI
        with buildx builds through `/grpc` whatever this says.
        """
        features = self.raw.get("features")
        enabled = isinstance(features, dict) and features.get("buildkit") is True
        return "2" if enabled else "1"

    def tls_settings(self) -> TLSSettings:
        return resolve_tls(self.tls, self.tlsverify, self.tlscacert, self.tlscert, self.tlskey)

    def listen_hosts(self) -> list[Host]:
        """The `hosts` to listen on, parsed (duplicates dropped)."""
        tls = self.tls_settings().enabled
        return list(dict.fromkeys(parse_host(h, tls) for h in self.hosts if h.strip()))


_KEYS = {
    "hosts": "hosts",
    "data-root": "data_root",
    "exec-root": "exec_root",
    "default-runtime": "default_runtime",
    "cgroup-parent": "cgroup_parent",
    "seccomp-profile": "seccomp_profile",
    "init-path": "init_path",
    "conmon-path": "conmon_path",
    "debug": "debug",
    "pidfile": "pidfile",
    "authorization-plugins": "authorization_plugins",
    "plugin-socket-dirs": "plugin_socket_dirs",
    "plugin-spec-dirs": "plugin_spec_dirs",
    "plugin-retry-timeout": "plugin_retry_timeout",
    "plugin-call-timeout": "plugin_call_timeout",
    "insecure-registries": "insecure_registries",
    "registry-certs-dirs": "registry_certs_dirs",
    "max-concurrent-downloads": "max_concurrent_downloads",
    "max-concurrent-uploads": "max_concurrent_uploads",
    "registry-chunk-size": "registry_chunk_size",
    "bridge": "bridge",
    "bip": "bip",
    "default-address-pools": "default_address_pools",
    "mtu": "mtu",
    "ip-forward": "ip_forward",
    "ip-masq": "ip_masq",
    "nftables-table": "nftables_table",
    "bridge-prefix": "bridge_prefix",
    "veth-prefix": "veth_prefix",
    "log-driver": "log_driver",
    "log-opts": "log_opts",
    "tls": "tls",
    "tlsverify": "tlsverify",
    "tlscacert": "tlscacert",
    "tlscert": "tlscert",
    "tlskey": "tlskey",
}


def load(path: str | None, overrides: dict[str, Any]) -> DaemonConfig:
    """Read `path` (if it exists), then apply non-None `overrides` (flag values)."""
    config = DaemonConfig()
    raw: dict[str, Any] = {}
    file = path or DEFAULT_CONFIG_FILE
    if os.path.exists(file):
        try:
            with open(file) as f:
                raw = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise InvalidArgument(f"unable to configure the daemon with file {file}: {e}") from e
        if not isinstance(raw, dict):
            raise InvalidArgument(f"unable to configure the daemon with file {file}: not an object")
    elif path:
        raise InvalidArgument(f"configuration file {path} does not exist")
    for key, attr in _KEYS.items():
        if key in raw:
            setattr(config, attr, raw[key])
    for name, entry in (raw.get("runtimes") or {}).items():
        config.runtimes[name] = entry.get("path", name) if isinstance(entry, dict) else str(entry)
    for attr, value in overrides.items():
        if value is not None and value != [] and value != ():
            setattr(config, attr, list(value) if isinstance(value, tuple) else value)
    config.raw = raw
    _check_log_defaults(config)
    _check_api_hosts(config)
    return config


def _check_api_hosts(config: DaemonConfig) -> None:
    if not isinstance(config.hosts, list) or not all(isinstance(h, str) for h in config.hosts):
        raise InvalidArgument("hosts must be a list of strings")
    for key in ("tls", "tlsverify"):
        if getattr(config, key) is not None and not isinstance(getattr(config, key), bool):
            raise InvalidArgument(f"{key} must be a boolean")
    if not config.listen_hosts():
        raise InvalidArgument("no hosts configured")


def _check_log_defaults(config: DaemonConfig) -> None:
    """`log-driver` and `log-opts` as dockerd checks them at start-up (a plugin driver's
    options only for what every driver takes: the plugin is not there yet)."""
    if not isinstance(config.log_driver, str) or not config.log_driver:
        raise InvalidArgument("log-driver must be a driver name")
    opts = config.log_opts
    if not isinstance(opts, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in opts.items()
    ):
        raise InvalidArgument("log-opts must be an object of strings")
    if opts:
        try:
            log_options.validate(config.log_driver, opts)
        except InvalidArgument as e:
            raise InvalidArgument(f"failed to set log opts: {e.message}") from None
