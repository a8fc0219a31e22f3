"""`dockyard commit` and `dockyard diff`: a container's changes, and an image made of them."""

from __future__ import annotations

import click

from dockyard.cli.main import Context, pass_context

_KINDS = {0: "C", 1: "A", 2: "D"}


@click.command("commit")
@click.option("-a", "--author", default="", help='Author (e.g. "Jane <jane@example.com>").')
@click.option("-m", "--message", default="", help="Commit message.")
@click.option("-c", "--change", "changes", multiple=True, help="Dockerfile instruction to apply.")
@click.option("-p/--no-pause", "--pause", "pause", default=True, help="Pause while committing.")
@click.argument("container")
@click.argument("repository", required=False)
@pass_context
def commit(
    ctx: Context,
    author: str,
    message: str,
    changes: tuple[str, ...],
    pause: bool,
    container: str,
    repository: str | None,
) -> None:
    """Create a new image from a container's changes."""
    params = {
        "container": container,
        "repo": repository or None,
        "author": author or None,
        "comment": message or None,
        "changes": list(changes),
        "pause": "1" if pause else "0",
    }
    result = ctx.client.json("POST", "/commit", params=params)
    click.echo(result["Id"])


@click.command("diff")
@click.argument("container")
@pass_context
def diff(ctx: Context, container: str) -> None:
    """List the changes to files in a container's filesystem."""
    for change in ctx.client.json("GET", f"/containers/{container}/changes") or []:
        click.echo(f"{_KINDS.get(change['Kind'], '?')} {change['Path']}")
