"""Network commands: network create/ls/inspect/rm/prune/connect/disconnect, and port."""

from __future__ import annotations

import sys
from typing import Any

import click

from dockyard.cli.client import APIError
from dockyard.cli.main import Context, fail, pass_context
from dockyard.cli.output import inspect_each, print_rows

_HEADERS = {
    "ID": "NETWORK ID",
    "Name": "NAME",
    "Driver": "DRIVER",
    "Scope": "SCOPE",
    "IPv6": "IPV6",
    "Internal": "INTERNAL",
    "Labels": "LABELS",
    "CreatedAt": "CREATED AT",
}
_DEFAULT = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"


def _pairs(values: tuple[str, ...], flag: str) -> dict[str, str]:
    result = {}
    for value in values:
        key, sep, item = value.partition("=")
        if not sep and flag != "--label":
            raise click.UsageError(f"invalid {flag} argument {value!r}: expected key=value")
        result[key] = item
    return result


network = click.Group("network", help="Manage networks.")


@network.command("create")
@click.option("-d", "--driver", default="bridge", help="Driver (bridge).")
@click.option("--subnet", multiple=True, help="Subnet in CIDR format (IPv4 or IPv6).")
@click.option("--gateway", multiple=True, help="IPv4 or IPv6 gateway of the subnet.")
@click.option("--ip-range", multiple=True, help="Allocate container addresses from a sub-range.")
@click.option("--aux-address", multiple=True, help="Reserved addresses (name=ip).")
@click.option("--ipam-driver", default="default", help="IPAM driver.")
@click.option("--ipam-opt", multiple=True, help="IPAM driver option (key=value).")
@click.option("-o", "--opt", multiple=True, help="Driver option (key=value).")
@click.option("--label", multiple=True, help="Network label (key=value).")
@click.option("--internal", is_flag=True, help="No access to or from outside the network.")
@click.option("--attachable", is_flag=True, help="Allow manual container attachment.")
@click.option("--ipv6", is_flag=True, help="Enable IPv6 (an IPv6 --subnet, or a ULA /64).")
@click.argument("name")
@pass_context
def create(
    ctx: Context,
    driver: str,
    subnet: tuple[str, ...],
    gateway: tuple[str, ...],
    ip_range: tuple[str, ...],
    aux_address: tuple[str, ...],
    ipam_driver: str,
    ipam_opt: tuple[str, ...],
    opt: tuple[str, ...],
    label: tuple[str, ...],
    internal: bool,
    attachable: bool,
    ipv6: bool,
    name: str,
) -> None:
    """Create a network."""
    if len(gateway) > len(subnet) or len(ip_range) > len(subnet):
        fail("dockyard: every --gateway and --ip-range needs a --subnet", 125)
    configs: list[dict[str, Any]] = []
    for index, cidr in enumerate(subnet):
        config: dict[str, Any] = {"Subnet": cidr}
        if index < len(gateway):
            config["Gateway"] = gateway[index]
        if index < len(ip_range):
            config["IPRange"] = ip_range[index]
        if aux_address and index == 0:
            config["AuxiliaryAddresses"] = _pairs(aux_address, "--aux-address")
        configs.append(config)
    body = {
        "Name": name,
        "CheckDuplicate": True,
        "Driver": driver,
        "Internal": internal,
        "Attachable": attachable,
        "EnableIPv6": ipv6,
        "IPAM": {
            "Driver": ipam_driver,
            "Config": configs,
            "Options": _pairs(ipam_opt, "--ipam-opt"),
        },
        "Options": _pairs(opt, "--opt"),
        "Labels": _pairs(label, "--label"),
    }
    click.echo(ctx.client.json("POST", "/networks/create", body=body)["Id"])


@network.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only display network IDs.")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter (driver=, name=, ...).")
@click.option("--no-trunc", is_flag=True, help="Do not truncate the output.")
@click.option("--format", "fmt", help="Go template or 'json'.")
@pass_context
def ls(
    ctx: Context, quiet: bool, filters: tuple[str, ...], no_trunc: bool, fmt: str | None
) -> None:
    """List networks."""
    wanted: dict[str, dict[str, bool]] = {}
    for item in filters:
        key, _, value = item.partition("=")
        wanted.setdefault(key, {})[value] = True
    items = ctx.client.json("GET", "/networks", params={"filters": wanted or None})
    items.sort(key=lambda n: n["Name"])
    if quiet:
        for item in items:
            click.echo(item["Id"] if no_trunc else item["Id"][:12])
        return
    rows = [
        {
            "ID": item["Id"] if no_trunc else item["Id"][:12],
            "Name": item["Name"],
            "Driver": item["Driver"],
            "Scope": item["Scope"],
            "IPv6": str(item["EnableIPv6"]).lower(),
            "Internal": str(item["Internal"]).lower(),
            "Labels": ",".join(f"{k}={v}" for k, v in (item.get("Labels") or {}).items()),
            "CreatedAt": item["Created"],
        }
        for item in items
    ]
    print_rows(fmt or _DEFAULT, rows, _HEADERS)


@network.command("inspect")
@click.option("-f", "--format", "fmt", help="Go template.")
@click.argument("networks", nargs=-1, required=True)
@pass_context
def inspect(ctx: Context, fmt: str | None, networks: tuple[str, ...]) -> None:
    """Display detailed information on one or more networks."""
    inspect_each(ctx.client, "/networks/{name}", networks, fmt)


@network.command("rm")
@click.argument("networks", nargs=-1, required=True)
@pass_context
def rm(ctx: Context, networks: tuple[str, ...]) -> None:
    """Remove one or more networks."""
    failed = False
    for name in networks:
        try:
            ctx.client.request("DELETE", f"/networks/{name}")
            click.echo(name)
        except APIError as e:
            click.echo(f"Error response from daemon: {e.message}", err=True)
            failed = True
    if failed:
        sys.exit(1)


@network.command("prune")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.option("--filter", "filters", multiple=True, help="Filter (until=, label=).")
@pass_context
def prune(ctx: Context, force: bool, filters: tuple[str, ...]) -> None:
    """Remove all unused networks."""
    if not force and not click.confirm(
        "WARNING! This will remove all custom networks not used by at least one container.\n"
        "Are you sure you want to continue?"
    ):
        return
    wanted: dict[str, dict[str, bool]] = {}
    for item in filters:
        key, _, value = item.partition("=")
        wanted.setdefault(key, {})[value] = True
    result = ctx.client.json("POST", "/networks/prune", params={"filters": wanted or None})
    deleted = result.get("NetworksDeleted") or []
    if deleted:
        click.echo("Deleted Networks:")
        for name in deleted:
            click.echo(name)


@network.command("connect")
@click.option("--alias", multiple=True, help="Network-scoped alias for the container.")
@click.option("--ip", help="IPv4 address.")
@click.option("--ip6", help="IPv6 address.")
@click.option("--link", multiple=True, help="Add a link to another container (name:alias).")
@click.option("--link-local-ip", multiple=True, help="Add a link-local address.")
@click.option("--driver-opt", multiple=True, help="Driver option for the endpoint (key=value).")
@click.argument("network_name")
@click.argument("container")
@pass_context
def connect(
    ctx: Context,
    alias: tuple[str, ...],
    ip: str | None,
    ip6: str | None,
    link: tuple[str, ...],
    link_local_ip: tuple[str, ...],
    driver_opt: tuple[str, ...],
    network_name: str,
    container: str,
) -> None:
    """Connect a container to a network."""
    from dockyard.cli.containers import endpoint_settings

    settings = endpoint_settings(alias, ip, ip6, link_local_ip, None)
    if link:
        settings["Links"] = list(link)
    if driver_opt:
        settings["DriverOpts"] = _pairs(driver_opt, "--driver-opt")
    ctx.client.request(
        "POST",
        f"/networks/{network_name}/connect",
        body={"Container": container, "EndpointConfig": settings},
    )


@network.command("disconnect")
@click.option("-f", "--force", is_flag=True, help="Force the container to disconnect.")
@click.argument("network_name")
@click.argument("container")
@pass_context
def disconnect(ctx: Context, force: bool, network_name: str, container: str) -> None:
    """Disconnect a container from a network."""
    ctx.client.request(
        "POST",
        f"/networks/{network_name}/disconnect",
        body={"Container": container, "Force": force},
    )


@click.command("port")
@click.argument("container")
@click.argument("private_port", required=False)
@pass_context
def port(ctx: Context, container: str, private_port: str | None) -> None:
    """List port mappings, or look up the public port of PRIVATE_PORT[/PROTO]."""
    info = ctx.client.json("GET", f"/containers/{container}/json")
    published = (info.get("NetworkSettings") or {}).get("Ports") or {}
    if private_port:
        key = private_port if "/" in private_port else private_port + "/tcp"
        bindings = published.get(key)
        if not bindings:
            fail(f"Error: No public port '{key}' published for {container}", 1)
        for binding in bindings or []:
            click.echo(f"{binding['HostIp']}:{binding['HostPort']}")
        return
    for key, bindings in sorted(published.items(), key=lambda kv: int(kv[0].split("/")[0])):
        for binding in bindings or []:
            click.echo(f"{key} -> {binding['HostIp']}:{binding['HostPort']}")
