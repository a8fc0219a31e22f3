"""System commands: info, version, events, df, and Dockyard's `system check`."""

from __future__ import annotations

import json
import time

import click

from dockyard import __version__
from dockyard.cli.main import Context, pass_context
from dockyard.cli.output import show


@click.command("info")
@click.option("-f", "--format", "fmt", help="Go template.")
@pass_context
def info(ctx: Context, fmt: str | None) -> None:
    """Display system-wide information."""
    data = ctx.client.json("GET", "/info")
    if fmt:
        show([data], fmt)
        return
    runtimes = ", ".join(data.get("Runtimes") or {})
    lines = [
        "Server:",
        f" Containers: {data['Containers']}",
        f"  Running: {data['ContainersRunning']}",
        f"  Paused: {data['ContainersPaused']}",
        f"  Stopped: {data['ContainersStopped']}",
        f" Images: {data['Images']}",
        f" Server Version: {data['ServerVersion']} (Dockyard)",
        f" Storage Driver: {data['Driver']}",
        " Plugins:",
        *(
            f"  {kind}: {' '.join(data['Plugins'].get(kind) or []) or '(none)'}"
            for kind in ("Volume", "Network", "IPAM", "Log", "Authorization")
        ),
        f" Logging Driver: {data['LoggingDriver']}",
        f" Cgroup Driver: {data['CgroupDriver']}",
        f" Cgroup Version: {data['CgroupVersion']} ({data.get('CgroupMode', '')})",
        f" Runtimes: {runtimes}",
        f" Default Runtime: {data['DefaultRuntime']}",
        f" Init Binary: {data.get('InitBinary') or '(none)'}",
        f" Security Options: {', '.join(data.get('SecurityOptions') or []) or '(none)'}",
        f" Kernel Version: {data['KernelVersion']}",
        f" Operating System: {data['OperatingSystem']}",
        f" Architecture: {data['Architecture']}",
        f" CPUs: {data['NCPU']}",
        f" Total Memory: {data['MemTotal'] / (1 << 30):.2f}GiB",
        f" Name: {data['Name']}",
        f" ID: {data['ID']}",
        f" Docker Root Dir: {data['DockerRootDir']}",
        f" Debug Mode: {str(data['Debug']).lower()}",
        f" Live Restore Enabled: {str(data.get('LiveRestoreEnabled', False)).lower()}",
    ]
    for warning in data.get("Warnings") or []:
        lines.append(warning)
    click.echo("\n".join(lines))


@click.command("version")
@click.option("-f", "--format", "fmt", help="Go template.")
@pass_context
def version(ctx: Context, fmt: str | None) -> None:
    """Show the client and daemon versions."""
    data = ctx.client.json("GET", "/version")
    if fmt:
        show([{"Client": {"Version": __version__}, "Server": data}], fmt)
        return
    click.echo(f"Client:\n Version: {__version__}\n API version: 1.45\n")
    click.echo(
        f"Server: {data['Platform']['Name']}\n Engine:\n  Version: {data['Version']}\n"
        f"  API version: {data['ApiVersion']} (minimum version {data['MinAPIVersion']})\n"
        f"  Kernel: {data['KernelVersion']}"
    )


@click.command("events")
@click.option("--since", help="Show events since (Unix time, RFC 3339 or a duration).")
@click.option("--until", help="Stream events until (Unix time, RFC 3339 or a duration).")
@click.option(
    "-f",
    "--filter",
    "filters",
    multiple=True,
    help="Filter (type=, event=, container=, image=, volume=, network=, label=, ...).",
)
@click.option("--format", "fmt", help="Go template or 'json'.")
@pass_context
def events(
    ctx: Context, since: str | None, until: str | None, filters: tuple[str, ...], fmt: str | None
) -> None:
    """Stream events from the daemon."""
    wanted: dict[str, dict[str, bool]] = {}
    for item in filters:
        key, _, value = item.partition("=")
        wanted.setdefault(key, {})[value] = True
    params = {"since": since, "until": until, "filters": wanted or None}
    for event in ctx.client.json_stream("GET", "/events", params=params):
        if fmt == "json":
            click.echo(json.dumps(event))
        elif fmt:
            show([event], fmt)
        else:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(event["time"]))
            attrs = ", ".join(f"{k}={v}" for k, v in sorted(event["Actor"]["Attributes"].items()))
            click.echo(
                f"{stamp}.{event['timeNano'] % 1_000_000_000:09d} {event['Type']} "
                f"{event['Action']} {event['Actor']['ID']} ({attrs})"
            )


@click.command("df")
@click.option("-v", "--verbose", is_flag=True, help="Show detailed information.")
@click.option("--format", "fmt", help="Go template or 'json'.")
@pass_context
def df(ctx: Context, verbose: bool, fmt: str | None) -> None:
    """Show disk usage of images, containers and volumes."""
    from dockyard.cli.output import print_rows
    from dockyard.units import human_size

    data = ctx.client.json("GET", "/system/df")
    images = data.get("Images") or []
    containers = data.get("Containers") or []
    volumes = data.get("Volumes") or []
    used_images = [i for i in images if i.get("Containers", 0) > 0]
    image_size = data.get("LayersSize", 0)
    unused = sum(
        i["Size"] - max(i.get("SharedSize", 0), 0) for i in images if not i.get("Containers")
    )
    running = [c for c in containers if c.get("State") == "running"]
    container_size = sum(c.get("SizeRw", 0) for c in containers)
    idle = sum(c.get("SizeRw", 0) for c in containers if c.get("State") != "running")
    volume_size = sum(max((v.get("UsageData") or {}).get("Size", 0), 0) for v in volumes)
    cache = data.get("BuildCache") or []
    cache_size = sum(record.get("Size", 0) for record in cache)

    def reclaimable(part: int, whole: int) -> str:
        percent = f" ({100 * part // whole}%)" if whole else ""
        return human_size(part) + percent

    rows = [
        {
            "Type": "Images",
            "TotalCount": str(len(images)),
            "Active": str(len(used_images)),
            "Size": human_size(image_size),
            "Reclaimable": reclaimable(min(unused, image_size), image_size),
        },
        {
            "Type": "Containers",
            "TotalCount": str(len(containers)),
            "Active": str(len(running)),
            "Size": human_size(container_size),
            "Reclaimable": reclaimable(idle, container_size),
        },
        {
            "Type": "Local Volumes",
            "TotalCount": str(len(volumes)),
            "Active": str(sum(1 for v in volumes if (v.get("UsageData") or {}).get("RefCount"))),
            "Size": human_size(volume_size),
            "Reclaimable": reclaimable(0, volume_size),
        },
        {
            "Type": "Build Cache",
            "TotalCount": str(len(cache)),
            "Active": str(sum(1 for record in cache if record.get("InUse"))),
            "Size": human_size(cache_size),
            "Reclaimable": human_size(
                sum(r.get("Size", 0) for r in cache if not r.get("InUse") and not r.get("Shared"))
            ),
        },
    ]
    if fmt == "json":
        for row in rows:
            click.echo(json.dumps(row))
        return
    headers = {
        "Type": "TYPE",
        "TotalCount": "TOTAL",
        "Active": "ACTIVE",
        "Size": "SIZE",
        "Reclaimable": "RECLAIMABLE",
    }
    default = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"
    print_rows(fmt or default, rows, headers)
    if verbose:
        click.echo("\nImages space usage:\n")
        print_rows(
            "table {{.Repository}}\t{{.ID}}\t{{.Size}}\t{{.Shared}}\t{{.Containers}}",
            [
                {
                    "Repository": ", ".join(i.get("RepoTags") or ["<none>"]),
                    "ID": i["Id"].removeprefix("sha256:")[:12],
                    "Size": human_size(i["Size"]),
                    "Shared": human_size(max(i.get("SharedSize", 0), 0)),
                    "Containers": str(i.get("Containers", 0)),
                }
                for i in images
            ],
            {
                "Repository": "REPOSITORY",
                "ID": "IMAGE ID",
                "Size": "SIZE",
                "Shared": "SHARED SIZE",
                "Containers": "CONTAINERS",
            },
        )
        click.echo("\nContainers space usage:\n")
        print_rows(
            "table {{.ID}}\t{{.Image}}\t{{.Size}}\t{{.Names}}",
            [
                {
                    "ID": c["Id"][:12],
                    "Image": c["Image"],
                    "Size": human_size(c.get("SizeRw", 0)),
                    "Names": c["Names"][0].lstrip("/"),
                }
                for c in containers
            ],
            {"ID": "CONTAINER ID", "Image": "IMAGE", "Size": "SIZE", "Names": "NAMES"},
        )


_LABELS = {"error": "ERROR", "warning": "WARNING", "info": "INFO"}


@click.command("check")
@click.option("--repair", is_flag=True, help="Fix what can be fixed without losing data.")
@click.option("--format", "fmt", type=click.Choice(["json"]), help="Print the report as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="Show problems only (no notes).")
@pass_context
def check(ctx: Context, repair: bool, fmt: str | None, quiet: bool) -> None:
    """Check the image store, containers, volumes, networks, plugins and host; exit status 1
    while problems remain."""
    if repair:
        report = ctx.client.json("POST", "/system/check", params={"repair": "1"})
    else:
        report = ctx.client.json("GET", "/system/check")
    summary = report["Summary"]
    if fmt == "json":
        click.echo(json.dumps(report, indent=2))
        raise SystemExit(0 if summary["Ok"] else 1)
    parts = [
        "the host" if kind == "host" else f"{count} {kind if count != 1 else kind[:-1]}"
        for kind, count in report["Checked"].items()
    ]
    click.echo(f"Checked {', '.join(parts)} in {report['Duration']:.1f}s.")
    for finding in report["Findings"]:
        problem = finding["Severity"] != "info" and not finding["Repaired"]
        if quiet and not problem and not finding["Repaired"]:
            continue
        click.echo("")
        label = _LABELS.get(finding["Severity"], finding["Severity"].upper())
        click.echo(f"{label:<8} {finding['Area']:<10} {finding['Subject']}")
        click.echo(f"{'':19}{finding['Message']}")
        if finding["Repaired"]:
            click.echo(f"{'':19}repaired: {finding['Repaired']}")
        elif finding["RepairFailed"]:
            click.echo(f"{'':19}repair failed: {finding['RepairFailed']}")
        elif finding["Repair"]:
            click.echo(f"{'':19}repair: {finding['Repair']}")
    click.echo("")
    if summary["Repaired"]:
        click.echo(f"Repaired {summary['Repaired']}.")
    if summary["Ok"]:
        click.echo("No problems found." if not summary["Repaired"] else "No problems left.")
        return
    counts = f"{summary['Errors']} error(s), {summary['Warnings']} warning(s)"
    hint = ""
    if summary["Repairable"] and not repair:
        hint = f"; `dockyard system check --repair` can fix {summary['Repairable']} of them"
    click.echo(f"Problems: {counts}{hint}.")
    raise SystemExit(1)


system = click.Group("system", help="Manage Dockyard.")
system.add_command(info)
system.add_command(events)
system.add_command(df)
system.add_command(check)
