"""How commands print results: docker-style tables, `--format` templates, inspect JSON."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from dockyard.cli.client import APIError, Client
from dockyard.cli.main import fail


def print_rows(fmt: str, rows: list[dict[str, Any]], headers: dict[str, str]) -> None:
    """A list of rows through a `--format` (`table ...`, a template, or `json`)."""
    from dockyard.cli.template import TemplateError, format_rows

    try:
        out = format_rows(fmt, rows, headers)
    except TemplateError as e:
        fail(f"template parsing error: {e}", 125)
        return
    if out:
        click.echo(out, nl=not out.endswith("\n"))


def show(results: list[Any], fmt: str | None) -> None:
    """Objects as indented JSON, or each through a template (`inspect -f`)."""
    from dockyard.cli.template import TemplateError, render

    if fmt:
        try:
            for item in results:
                click.echo(render(fmt.replace("\\t", "\t").replace("\\n", "\n"), item))
        except TemplateError as e:
            fail(f"template parsing error: {e}", 125)
    else:
        click.echo(json.dumps(results, indent=4))


def inspect_each(client: Client, path: str, names: tuple[str, ...], fmt: str | None) -> None:
    """`X inspect NAME...`: GET `path` (with `{name}`) for each; errors reported, exit 1."""
    results = []
    failed = False
    for name in names:
        try:
            results.append(client.json("GET", path.format(name=name)))
        except APIError as e:
            click.echo(f"Error response from daemon: {e.message}", err=True)
            failed = True
    show(results, fmt)
    if failed:
        sys.exit(1)
