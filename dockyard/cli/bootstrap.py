"""`dockyard bootstrap NAME:SUITE`: a base image from the distribution's package archive."""

from __future__ import annotations

import sys

import click

from dockyard.cli.main import Context, fail, pass_context


@click.command("bootstrap")
@click.option("--mirror", default="", help="Package archive URL (default: the one this host uses).")
@click.option("--variant", default="", help="mmdebstrap variant (default minbase).")
@click.option("--include", "include", multiple=True, help="Extra packages (comma-separated).")
@click.option("--arch", default="", help="Architecture (default: this host's).")
@click.option("--no-cache", is_flag=True, help="Bootstrap again even if these inputs were before.")
@click.argument("name")
@pass_context
def bootstrap(
    ctx: Context,
    mirror: str,
    variant: str,
    include: tuple[str, ...],
    arch: str,
    no_cache: bool,
    name: str,
) -> None:
    """Make a base image NAME:SUITE (e.g. debian:bookworm) from the distribution's archive."""
    params = {
        "name": name,
        "mirror": mirror or None,
        "variant": variant or None,
        "include": list(include),
        "arch": arch or None,
        "nocache": no_cache,
    }
    for message in ctx.client.json_stream("POST", "/dockyard/bootstrap", params=params):
        if "error" in message or "errorDetail" in message:
            detail = message.get("errorDetail") or {}
            fail(detail.get("message") or message.get("error") or "bootstrap failed", 1)
        if message.get("stream"):
            sys.stdout.write(message["stream"])
            sys.stdout.flush()
