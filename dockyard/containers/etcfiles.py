"""The `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` a container sees.

They are files in the container's directory, bind-mounted over the image's, as
Docker does: the image stays untouched and `--dns`, `--add-host` and
`--hostname` need no change to the container's filesystem.
"""

from __future__ import annotations

import os
import re

from dockyard.containers.schema import HostConfig

HOST_RESOLV = "/etc/resolv.conf"
HOST_HOSTS = "/etc/hosts"
FALLBACK_DNS = ["8.8.8.8", "8.8.4.4"]
EMBEDDED_DNS = "127.0.0.11"


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def resolv_conf(
    host_config: HostConfig, host_text: str | None = None, *, embedded_dns: bool = False
) -> str:
    """resolv.conf for a container: the host's minus loopback resolvers, or --dns/--dns-search.

    With `embedded_dns` (user-defined networks) the only nameserver is the daemon's
    DNS server at 127.0.0.11, which forwards what it does not know to the others.
    """
    text = _read(HOST_RESOLV) if host_text is None else host_text
    if host_config.network_mode == "host" and not (
        host_config.dns or host_config.dns_search or host_config.dns_options
    ):
        return text
    nameservers, search, options = [], [], []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith(("#", ";")):
            continue
        if words[0] == "nameserver" and len(words) > 1:
            # A resolver on the host's loopback is unreachable from the container's namespace.
            if not re.match(r"^(127\.|::1$)", words[1]):
                nameservers.append(words[1])
        elif words[0] in ("search", "domain"):
            search = words[1:]
        elif words[0] == "options":
            options += words[1:]
    nameservers = list(host_config.dns or []) or nameservers or FALLBACK_DNS
    search = list(host_config.dns_search or []) or search
    options = list(host_config.dns_options or []) or options
    if embedded_dns:
        nameservers = [EMBEDDED_DNS]
        options = [o for o in options if not o.startswith("ndots:")] + ["ndots:0"]
    lines = [f"nameserver {ns}" for ns in nameservers]
    if search and search != ["."]:
        lines.append("search " + " ".join(search))
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def hosts(
    host_config: HostConfig,
    hostname: str,
    addresses: list[str] | None = None,
    host_gateway: str = "",
    linked: list[tuple[str, str]] | None = None,
) -> str:
    """`--add-host NAME:host-gateway` maps NAME to `host_gateway` (the default bridge's address);
    `linked`: (address, names) of the containers legacy links name, last, as Docker adds them."""
    if host_config.network_mode == "host":
        base = _read(HOST_HOSTS)
    else:
        base = (
            "127.0.0.1\tlocalhost\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\n"
            "fe00::0\tip6-localnet\n"
            "ff00::0\tip6-mcastprefix\n"
            "ff02::1\tip6-allnodes\n"
            "ff02::2\tip6-allrouters\n"
        )
    lines = [base.rstrip("\n")]
    for entry in host_config.extra_hosts or []:
        name, _, address = entry.partition(":")
        if address == "host-gateway":
            if not host_gateway:
                continue
            address = host_gateway
        lines.append(f"{address}\t{name}")
    for address in addresses or []:
        lines.append(f"{address}\t{hostname}")
    for address, names in linked or []:
        lines.append(f"{address}\t{names}")
    return "\n".join(lines) + "\n"


def write(
    dir: str,
    host_config: HostConfig,
    hostname: str,
    *,
    addresses: list[str] | None = None,
    embedded_dns: bool = False,
    in_place: bool = False,
    host_gateway: str = "",
    linked: list[tuple[str, str]] | None = None,
) -> dict[str, str]:
    """Write the three files; returns container path -> host path for the bind mounts.

    `addresses` are the container's own (one `hosts` line each, with its host
    name); `embedded_dns` points resolv.conf at the daemon's DNS server.
    `in_place` rewrites the files of a running container (its bind mounts pin
    the inodes, so the files are truncated and written, not replaced).
    """
    files = {
        "/etc/hostname": (hostname + "\n"),
        "/etc/hosts": hosts(host_config, hostname, addresses, host_gateway, linked),
        "/etc/resolv.conf": resolv_conf(host_config, embedded_dns=embedded_dns),
    }
    mounts = {}
    for target, content in files.items():
        path = os.path.join(dir, os.path.basename(target))
        mounts[target] = path
        if in_place:
            with open(path, "w") as f:
                f.write(content)
            continue
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(content)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    return mounts
