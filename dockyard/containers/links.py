"""Legacy links (`--link db:alias`, `HostConfig.Links`): their stored form and environment.

On the default bridge a link makes a container (the parent) see another one
(the child) under an alias: an `/etc/hosts` line and, as Docker 28 still does,
environment variables describing the child's address and exposed ports. A
link is kept in Docker's own form, the one inspect shows:
`/<child name>:/<parent name>/<alias>`, rewritten when either container is
renamed and dropped when the child is removed. On user-defined networks links
are `EndpointSettings.Links` instead, answered by the network's DNS server.
"""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.network.requests import parse_link


@dataclass(frozen=True)
class Link:
    child: str  # the linked container's name, without the leading slash
    parent: str  # the linking container's name
    alias: str

    @property
    def name(self) -> str:
        """The link's own name, `/parent/alias` (Docker's link name, e.g. `<ALIAS>_NAME`)."""
        return f"/{self.parent}/{self.alias}"

    def stored(self) -> str:
        return f"/{self.child}:{self.name}"


def parse(text: str, parent: str) -> Link:
    """A link as given by a client ("db", "db:alias") or as stored ("/db:/web/alias")."""
    child, alias = parse_link(text)
    return Link(child, parent, alias)


def stored(links: list[str] | None, parent: str) -> list[Link]:
    """A container's recorded links."""
    return [parse(text, parent) for text in links or []]


def env_vars(
    parent_ip: str,
    child_ip: str,
    name: str,
    child_env: list[str] | None,
    exposed_ports: dict[str, object] | None,
) -> list[str]:
    """The environment variables Docker sets for link `name` (`/parent/alias`) to a child
    at `child_ip`: `ALIAS_PORT`, `ALIAS_PORT_<n>_<PROTO>` with `_ADDR`, `_PORT`, `_PROTO`,
    `_START`/`_END` for runs of consecutive ports, `ALIAS_NAME`, and `ALIAS_ENV_<var>` for
    the child's environment (but HOME and PATH)."""
    del parent_ip  # part of Docker's link, never in its variables
    alias = name.rsplit("/", 1)[-1].upper().replace("-", "_")
    ports = sorted(_ports(exposed_ports), key=_tcp_first)
    env: list[str] = []
    start = end = ports[0] if ports else (0, "")
    for index, (number, proto) in enumerate(ports):
        if index == 0:
            env.append(f"{alias}_PORT={proto}://{child_ip}:{number}")
        prefix = f"{alias}_PORT_{number}_{proto.upper()}"
        env += [
            f"{prefix}={proto}://{child_ip}:{number}",
            f"{prefix}_ADDR={child_ip}",
            f"{prefix}_PORT={number}",
            f"{prefix}_PROTO={proto}",
        ]
        if number == end[0] + 1 and proto == end[1]:  # the run of consecutive ports goes on
            end = (number, proto)
            if index < len(ports) - 1:
                continue
        if end != start:
            prefix = f"{alias}_PORT_{start[0]}_{start[1].upper()}"
            env += [
                f"{prefix}_START={start[1]}://{child_ip}:{start[0]}",
                f"{prefix}_PORT_START={start[0]}",
                f"{prefix}_END={end[1]}://{child_ip}:{end[0]}",
                f"{prefix}_PORT_END={end[0]}",
            ]
        start = end = (number, proto)
    env.append(f"{alias}_NAME={name}")
    for entry in child_env or []:
        key, sep, value = entry.partition("=")
        if not sep or key in ("HOME", "PATH"):
            continue
        env.append(f"{alias}_ENV_{key}={value}")
    return env


def _ports(exposed: dict[str, object] | None) -> list[tuple[int, str]]:
    ports = []
    for key in exposed or {}:
        number, _, proto = key.partition("/")
        if number.isdigit():
            ports.append((int(number), (proto or "tcp").lower()))
    return ports


def _tcp_first(port: tuple[int, str]) -> tuple[int, str, int]:
    """Docker's order: TCP ports first, then by protocol name, then by number."""
    number, proto = port
    return (0 if proto == "tcp" else 1, proto, number)
