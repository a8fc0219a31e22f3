"""`dockyard plugin ...`: managed plugins, from and to registries, and the conformance checker."""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
import tempfile
from typing import Any

import click

from dockyard.cli.client import APIError
from dockyard.cli.main import Context, fail, pass_context
from dockyard.cli.output import print_rows
from dockyard.cli.output import show as show_json
from dockyard.cli.progress import StreamError, show
from dockyard.cli.registry import auth_headers
from dockyard.errors import InvalidArgument
from dockyard.images import reference
from dockyard.plugins.check import CheckReport

_HEADERS = {"ID": "ID", "Name": "NAME", "Description": "DESCRIPTION", "Enabled": "ENABLED"}
_DEFAULT = "table {{.ID}}\t{{.Name}}\t{{.Description}}\t{{.Enabled}}"


@click.group("plugin")
def plugin() -> None:
    """Manage plugins."""


@plugin.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only display plugin IDs.")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option("-f", "--filter", "filters", multiple=True, help="enabled=, capability=")
@click.option("--format", "fmt", help="Go template or 'json'.")
@pass_context
def ls(
    ctx: Context, quiet: bool, no_trunc: bool, filters: tuple[str, ...], fmt: str | None
) -> None:
    """List plugins."""
    wanted: dict[str, dict[str, bool]] = {}
    for item in filters:
        key, _, value = item.partition("=")
        wanted.setdefault(key, {})[value] = True
    items = ctx.client.json("GET", "/plugins", params={"filters": wanted or None})
    if quiet:
        for item in items:
            click.echo(item["Id"] if no_trunc else item["Id"][:12])
        return
    if fmt == "json":
        for item in items:
            click.echo(json.dumps(item))
        return
    rows = [
        {
            "ID": item["Id"] if no_trunc else item["Id"][:12],
            "Name": item["Name"],
            "Description": item["Config"].get("Description", ""),
            "Enabled": str(item["Enabled"]).lower(),
            "PluginReference": item.get("PluginReference", ""),
        }
        for item in items
    ]
    print_rows(fmt or _DEFAULT, rows, _HEADERS)


@plugin.command("inspect")
@click.option("-f", "--format", "fmt", help="Go template.")
@click.argument("names", nargs=-1, required=True)
@pass_context
def inspect(ctx: Context, fmt: str | None, names: tuple[str, ...]) -> None:
    """Show plugins in detail."""
    results: list[Any] = []
    failed = False
    for name in names:
        status, body = ctx.client.request("GET", f"/plugins/{name}/json", check=False)
        if status != 200:
            click.echo(f"Error: No such plugin: {name}", err=True)
            failed = True
            continue
        results.append(json.loads(body))
    show_json(results, fmt)
    if failed:
        sys.exit(1)


def _tar_directory(directory: str, compress: bool) -> io.BufferedRandom:
    """DIR (config.json + rootfs/) as a tar in a temporary file, as the docker CLI sends it."""
    if not os.path.isfile(os.path.join(directory, "config.json")):
        fail(f"error: {directory}/config.json not found", 1)
    if not os.path.isdir(os.path.join(directory, "rootfs")):
        fail(f"error: {directory}/rootfs is not a directory", 1)
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - returned to the caller
    with tarfile.open(fileobj=spool, mode="w:gz" if compress else "w") as tar:
        tar.add(os.path.join(directory, "config.json"), "config.json")
        tar.add(os.path.join(directory, "rootfs"), "rootfs")
    spool.seek(0)
    return spool


@plugin.command("create")
@click.option("--compress", is_flag=True, help="Compress the context using gzip.")
@click.argument("name")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@pass_context
def create(ctx: Context, compress: bool, name: str, directory: str) -> None:
    """Create a plugin from a directory holding config.json and rootfs/."""
    with _tar_directory(directory, compress) as body:
        ctx.client.request(
            "POST",
            "/plugins/create",
            params={"name": name},
            raw=body,
            headers={"Content-Type": "application/x-tar"},
        )
    click.echo(name)


@plugin.command("enable")
@click.option("--timeout", default=30, show_default=True, help="HTTP client timeout (seconds).")
@click.argument("name")
@pass_context
def enable(ctx: Context, timeout: int, name: str) -> None:
    """Enable a plugin."""
    ctx.client.request("POST", f"/plugins/{name}/enable", params={"timeout": timeout})
    click.echo(name)


@plugin.command("disable")
@click.option("-f", "--force", is_flag=True, help="Disable even if the plugin is in use.")
@click.argument("name")
@pass_context
def disable(ctx: Context, force: bool, name: str) -> None:
    """Disable a plugin."""
    ctx.client.request("POST", f"/plugins/{name}/disable", params={"force": force or None})
    click.echo(name)


@plugin.command("rm")
@click.option("-f", "--force", is_flag=True, help="Remove even if enabled or in use.")
@click.argument("names", nargs=-1, required=True)
@pass_context
def rm(ctx: Context, force: bool, names: tuple[str, ...]) -> None:
    """Remove plugins."""
    failed = False
    for name in names:
        status, body = ctx.client.request(
            "DELETE", f"/plugins/{name}", params={"force": force or None}, check=False
        )
        if status >= 400:
            from dockyard.cli.client import _error_message

            click.echo(f"Error response from daemon: {_error_message(body)}", err=True)
            failed = True
        else:
            click.echo(name)
    if failed:
        sys.exit(1)


@plugin.command("set")
@click.argument("name")
@click.argument("settings", nargs=-1, required=True)
@pass_context
def set_(ctx: Context, name: str, settings: tuple[str, ...]) -> None:
    """Change settings of a disabled plugin: KEY=VALUE (env, mount.source, device.path, args)."""
    ctx.client.request("POST", f"/plugins/{name}/set", body=list(settings))


# -- registries: install, upgrade, push -------------------------------------------


def _accept(remote: str, privileges: list[dict[str, Any]], granted: bool) -> bool:
    """The docker CLI's question before a plugin gets what it asks for."""
    if granted or not privileges:
        return True
    click.echo(f'Plugin "{remote}" is requesting the following privileges:')
    for privilege in privileges:
        values = " ".join(str(v) for v in privilege.get("Value") or [])
        click.echo(f" - {privilege['Name']}: [{values}]")
    try:
        answer = click.prompt(
            "Do you grant the above permissions? [y/N]", default="", show_default=False
        )
    except click.Abort:
        return False
    return str(answer).strip().lower() in ("y", "yes")


def _transfer(
    ctx: Context,
    path: str,
    remote: str,
    privileges: list[dict[str, Any]],
    params: dict[str, Any],
) -> str:
    """POST a pull or upgrade with the accepted privileges; shows its progress and returns
    the plugin's name (`Docker-Plugin-Name`)."""
    reply_headers: dict[str, str] = {}
    raw = json.dumps(privileges).encode()
    messages = ctx.client.json_stream(
        "POST",
        path,
        params={"remote": remote, **params},
        raw=raw,
        headers={"Content-Type": "application/json", **auth_headers(remote)},
        reply_headers=reply_headers,
    )
    try:
        show(messages)
    except StreamError as e:
        fail(f"Error response from daemon: {e}", 1)
    return reply_headers.get("docker-plugin-name", "")


def _privileges(ctx: Context, remote: str) -> list[dict[str, Any]]:
    found = ctx.client.json(
        "GET",
        "/plugins/privileges",
        params={"remote": remote},
        headers=auth_headers(remote),
    )
    return list(found or [])


@plugin.command("install")
@click.option("--alias", default="", help="Local name for the plugin.")
@click.option("--disable", is_flag=True, help="Do not enable the plugin on install.")
@click.option(
    "--grant-all-permissions", is_flag=True, help="Grant all permissions the plugin needs."
)
@click.argument("remote")
@click.argument("settings", nargs=-1)
@pass_context
def install(
    ctx: Context,
    alias: str,
    disable: bool,
    grant_all_permissions: bool,
    remote: str,
    settings: tuple[str, ...],
) -> None:
    """Install a plugin from a registry: REMOTE [KEY=VALUE...] (settings applied before it
    is enabled)."""
    privileges = _privileges(ctx, remote)
    if not _accept(remote, privileges, grant_all_permissions):
        fail(f"Error: permission denied while installing plugin {remote}", 1)
    name = _transfer(ctx, "/plugins/pull", remote, privileges, {"name": alias or None})
    try:
        if settings:
            ctx.client.request("POST", f"/plugins/{name}/set", body=list(settings))
        if not disable:
            ctx.client.request("POST", f"/plugins/{name}/enable", params={"timeout": 0})
    except APIError:
        # As the docker CLI does: a plugin that cannot be set up is not left behind.
        ctx.client.request("DELETE", f"/plugins/{name}", params={"force": True}, check=False)
        raise
    click.echo(f"Installed plugin {remote}")


@plugin.command("upgrade")
@click.option(
    "--grant-all-permissions", is_flag=True, help="Grant all permissions the plugin needs."
)
@click.option(
    "--skip-remote-check",
    is_flag=True,
    help="Do not check that REMOTE is where the plugin was installed from.",
)
@click.argument("name")
@click.argument("remote", required=False)
@pass_context
def upgrade(
    ctx: Context,
    grant_all_permissions: bool,
    skip_remote_check: bool,
    name: str,
    remote: str | None,
) -> None:
    """Upgrade a disabled plugin from a registry (its own reference unless REMOTE)."""
    current = ctx.client.json("GET", f"/plugins/{name}/json")
    if current["Enabled"]:
        fail("Error: the plugin must be disabled before upgrading", 1)
    remote = remote or current.get("PluginReference") or current["Name"]
    if not skip_remote_check and not _same_reference(remote, current.get("PluginReference", "")):
        click.echo(
            f"Remote reference {remote} does not match the plugin's reference "
            f"{current.get('PluginReference') or '(none)'}; upgrading may break the plugin."
        )
        try:
            confirmed = click.confirm("Do you really want to upgrade?", default=False)
        except click.Abort:
            confirmed = False
        if not confirmed:
            fail("Error: upgrade cancelled", 1)
    privileges = _privileges(ctx, remote)
    if not _accept(remote, privileges, grant_all_permissions):
        fail(f"Error: permission denied while upgrading plugin {name}", 1)
    _transfer(ctx, f"/plugins/{current['Name']}/upgrade", remote, privileges, {})
    click.echo(f"Upgraded plugin {current['Name']} to {remote}")


def _same_reference(a: str, b: str) -> bool:
    try:
        return str(reference.parse(a)) == str(reference.parse(b))
    except InvalidArgument:
        return False


@plugin.command("push")
@click.argument("name")
@pass_context
def push(ctx: Context, name: str) -> None:
    """Upload a plugin to the registry its name says (REGISTRY/REPO:TAG)."""
    try:
        name = reference.parse(name).familiar()
    except InvalidArgument as e:
        fail(f"Error: {e.message}", 1)
    messages = ctx.client.json_stream("POST", f"/plugins/{name}/push", headers=auth_headers(name))
    try:
        show(messages)
    except StreamError as e:
        fail(f"Error response from daemon: {e}", 1)


async def check_local(
    address: str, timeout: float = 30.0, options: dict[str, str] | None = None
) -> CheckReport:
    """Check a plugin this process reaches directly: a socket path, a URL, or a spec file."""
    from dockyard.plugins import check
    from dockyard.plugins.client import PluginClient
    from dockyard.plugins.discovery import Endpoint, parse_url, read_json, read_spec

    if address.endswith(".spec"):
        endpoint = read_spec(address)
    elif address.endswith(".json"):
        endpoint = read_json(address)
    elif "://" in address:
        endpoint = parse_url(address)
    else:
        endpoint = Endpoint("unix", os.path.abspath(address))
    name = os.path.splitext(os.path.basename(endpoint.source or endpoint.address))[0]
    client = PluginClient(name or address, endpoint, retry_window=0)
    try:
        return await check.run(client, timeout=timeout, options=options)
    finally:
        await client.close()


def _is_local(target: str) -> bool:
    return "://" in target or os.path.exists(target) or target.endswith((".sock", ".spec", ".json"))


@plugin.command("check")
@click.option("--timeout", default=30.0, show_default=True, help="Per-call timeout (seconds).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--opt",
    "-o",
    "opts",
    multiple=True,
    metavar="KEY=VALUE",
    help="Driver option for the volumes the check creates (repeatable).",
)
@click.argument("target")
@pass_context
def check(ctx: Context, timeout: float, as_json: bool, opts: tuple[str, ...], target: str) -> None:
    """Run the conformance checker against a plugin.

    TARGET is a socket path, a unix:// or tcp:// address or a .spec/.json file
    (checked from here), or the name of a plugin the daemon knows (checked by
    the daemon, as it would use it).
    """
    import asyncio

    from dockyard.errors import DockyardError

    options: dict[str, str] = {}
    for item in opts:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"Error: invalid option {item!r}: expected KEY=VALUE", 1)
        options[key] = value
    if _is_local(target):
        try:
            report = asyncio.run(check_local(target, timeout, options))
        except DockyardError as e:
            fail(f"Error: {e.message}", 1)
            return
    else:
        report = CheckReport.from_json(
            ctx.client.json("POST", f"/plugins/{target}/check", params={"opt": list(opts)})
        )
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(report.render())
    sys.exit(0 if report.ok else 1)
