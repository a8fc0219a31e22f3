"""Registry commands: pull, push, login, logout."""

from __future__ import annotations

import sys

import click

from dockyard.cli import dockerconfig
from dockyard.cli.client import APIError
from dockyard.cli.main import Context, fail, pass_context
from dockyard.cli.progress import StreamError, show
from dockyard.errors import InvalidArgument
from dockyard.images import reference


def _host(name: str) -> str:
    try:
        return reference.parse(name).domain
    except InvalidArgument:  # the daemon reports bad references, in Docker's words
        return reference.DEFAULT_DOMAIN


def auth_headers(name: str) -> dict[str, str]:
    """X-Registry-Auth for the registry of the image or plugin reference `name`."""
    return {"X-Registry-Auth": dockerconfig.registry_auth_header(_host(name))}


@click.command("pull")
@click.option("--platform", default="", help="Platform (os/arch[/variant]) to pull.")
@click.option("-q", "--quiet", is_flag=True, help="Only print the image reference.")
@click.argument("name")
@pass_context
def pull(ctx: Context, platform: str, quiet: bool, name: str) -> None:
    """Download an image from a registry."""
    messages = ctx.client.json_stream(
        "POST",
        "/images/create",
        params={"fromImage": name, "platform": platform or None},
        headers=auth_headers(name),
    )
    try:
        show(messages, quiet=quiet)
    except StreamError as e:
        fail(str(e), 1)
    click.echo(str(reference.parse(name)))


@click.command("push")
@click.option("-a", "--all-tags", is_flag=True, help="Push every tag of the repository.")
@click.option("-q", "--quiet", is_flag=True, help="Suppress progress output.")
@click.argument("name")
@pass_context
def push(ctx: Context, all_tags: bool, quiet: bool, name: str) -> None:
    """Upload an image to a registry."""
    repo, tag = reference.split_repo_tag(name, None)
    if all_tags and tag:
        fail("tag can't be used with --all-tags/-a", 125)
    if not all_tags and not tag and "@" not in repo:
        tag = "latest"
    messages = ctx.client.json_stream(
        "POST",
        f"/images/{repo}/push",
        params={"tag": tag},
        headers=auth_headers(name),
    )
    try:
        results = show(messages, quiet=quiet)
    except StreamError as e:
        fail(str(e), 1)
    if quiet:
        for result in results:
            click.echo(f"{repo}:{result.get('Tag')}@{result.get('Digest')}")


@click.command("login")
@click.option("-u", "--username", help="Username.")
@click.option("-p", "--password", help="Password (prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.argument("server", required=False)
@pass_context
def login(
    ctx: Context,
    username: str | None,
    password: str | None,
    password_stdin: bool,
    server: str | None,
) -> None:
    """Log in to a registry (credentials shared with docker's config.json)."""
    host = dockerconfig.server_key(server or "")
    if password_stdin:
        if password:
            fail("--password and --password-stdin are mutually exclusive", 125)
        if not username:
            fail("Must provide --username with --password-stdin", 125)
        password = sys.stdin.read().rstrip("\n")
    if not username:
        username = click.prompt("Username")
    if password is None:
        password = click.prompt("Password", hide_input=True)
    try:
        result = ctx.client.json(
            "POST",
            "/auth",
            body={"username": username, "password": password, "serveraddress": host},
        )
    except APIError as e:
        fail(f"Error response from daemon: {e.message}", 1)
    dockerconfig.store(
        server or reference.DEFAULT_DOMAIN,
        username,
        password,
        (result or {}).get("IdentityToken", ""),
    )
    click.echo((result or {}).get("Status", "Login Succeeded"))


@click.command("logout")
@click.argument("server", required=False)
def logout(server: str | None) -> None:
    """Log out from a registry."""
    key = dockerconfig.server_key(server or "")
    if dockerconfig.erase(server or ""):
        click.echo(f"Removing login credentials for {key}")
    else:
        click.echo(f"Not logged in to {key}")
