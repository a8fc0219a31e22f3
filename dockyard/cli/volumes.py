"""Volume commands: volume create, ls, inspect, rm, prune (docker's flags and output)."""

from __future__ import annotations

import sys

import click

from dockyard.cli.client import APIError
from dockyard.cli.main import Context, pass_context
from dockyard.cli.output import inspect_each, print_rows
from dockyard.units import human_size

_HEADERS = {
    "Driver": "DRIVER",
    "Name": "VOLUME NAME",
    "Mountpoint": "MOUNTPOINT",
    "Scope": "SCOPE",
    "Labels": "LABELS",
    "CreatedAt": "CREATED",
}


def _filters(items: tuple[str, ...]) -> dict[str, dict[str, bool]]:
    wanted: dict[str, dict[str, bool]] = {}
    for item in items:
        key, _, value = item.partition("=")
        wanted.setdefault(key, {})[value] = True
    return wanted


def _pairs(items: tuple[str, ...]) -> dict[str, str]:
    return dict(item.partition("=")[::2] for item in items)


@click.command("create")
@click.option("-d", "--driver", default="local", help="Volume driver name.")
@click.option("--label", multiple=True, help="Set metadata (key=value).")
@click.option("-o", "--opt", multiple=True, help="Driver option (key=value).")
@click.argument("name", required=False)
@pass_context
def create(
    ctx: Context, driver: str, label: tuple[str, ...], opt: tuple[str, ...], name: str | None
) -> None:
    """Create a volume."""
    body = {
        "Name": name or "",
        "Driver": driver,
        "DriverOpts": _pairs(opt),
        "Labels": _pairs(label),
    }
    click.echo(ctx.client.json("POST", "/volumes/create", body=body)["Name"])


@click.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only display volume names.")
@click.option(
    "-f", "--filter", "filters", multiple=True, help="Filter (dangling=, driver=, label=, name=)."
)
@click.option("--format", "fmt", help="Go template or 'json'.")
@pass_context
def ls(ctx: Context, quiet: bool, filters: tuple[str, ...], fmt: str | None) -> None:
    """List volumes."""
    result = ctx.client.json("GET", "/volumes", params={"filters": _filters(filters) or None})
    volumes = sorted(result.get("Volumes") or [], key=lambda v: v["Name"])
    for warning in result.get("Warnings") or []:
        click.echo(warning, err=True)
    if quiet:
        for volume in volumes:
            click.echo(volume["Name"])
        return
    rows = [
        {
            "Driver": v["Driver"],
            "Name": v["Name"],
            "Mountpoint": v["Mountpoint"],
            "Scope": v["Scope"],
            "Labels": ",".join(f"{k}={val}" for k, val in (v.get("Labels") or {}).items()),
            "CreatedAt": v.get("CreatedAt", ""),
        }
        for v in volumes
    ]
    print_rows(fmt or "table {{.Driver}}\t{{.Name}}", rows, _HEADERS)


@click.command("inspect")
@click.option("-f", "--format", "fmt", help="Go template.")
@click.argument("names", nargs=-1, required=True)
@pass_context
def inspect(ctx: Context, fmt: str | None, names: tuple[str, ...]) -> None:
    """Display detailed information on one or more volumes."""
    inspect_each(ctx.client, "/volumes/{name}", names, fmt)


@click.command("rm")
@click.option("-f", "--force", is_flag=True, help="Force the removal of one or more volumes.")
@click.argument("names", nargs=-1, required=True)
@pass_context
def rm(ctx: Context, force: bool, names: tuple[str, ...]) -> None:
    """Remove one or more volumes (not while a container uses them)."""
    failed = False
    for name in names:
        try:
            ctx.client.request("DELETE", f"/volumes/{name}", params={"force": force})
            click.echo(name)
        except APIError as e:
            click.echo(f"Error response from daemon: {e.message}", err=True)
            failed = True
    if failed:
        sys.exit(1)


@click.command("prune")
@click.option("-a", "--all", "prune_all", is_flag=True, help="Remove named volumes too.")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.option("--filter", "filters", multiple=True, help="Filter (label=, label!=).")
@pass_context
def prune(ctx: Context, prune_all: bool, force: bool, filters: tuple[str, ...]) -> None:
    """Remove unused local volumes: anonymous ones, or all with -a."""
    if not force and sys.stdin.isatty():
        which = "all local volumes" if prune_all else "anonymous local volumes"
        click.confirm(
            f"WARNING! This will remove {which} not used by at least one container.\n"
            "Are you sure you want to continue?",
            abort=True,
        )
    wanted = _filters(filters)
    if prune_all:
        wanted["all"] = {"true": True}
    result = ctx.client.json("POST", "/volumes/prune", params={"filters": wanted or None})
    deleted = result.get("VolumesDeleted") or []
    if deleted:
        click.echo("Deleted Volumes:")
        for name in deleted:
            click.echo(name)
        click.echo()
    click.echo(f"Total reclaimed space: {human_size(result.get('SpaceReclaimed', 0))}")


volume = click.Group("volume", help="Manage volumes.")
for _command in (create, ls, inspect, rm, prune):
    volume.add_command(_command)
volume.add_command(ls, "list")
volume.add_command(rm, "remove")
