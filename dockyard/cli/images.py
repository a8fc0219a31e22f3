"""Image commands: import, images, tag, rmi, save, load, image inspect/history/prune."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from dockyard.cli.client import APIError
from dockyard.cli.main import Context, fail, pass_context
from dockyard.cli.output import inspect_each, print_rows
from dockyard.cli.registry import pull, push
from dockyard.units import ago, human_size

_IMAGE_HEADERS = {
    "Repository": "REPOSITORY",
    "Tag": "TAG",
    "ID": "IMAGE ID",
    "CreatedSince": "CREATED",
    "CreatedAt": "CREATED AT",
    "Size": "SIZE",
    "Digest": "DIGEST",
    "Containers": "CONTAINERS",
}
_IMAGE_DEFAULT = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"


def _split(tag: str) -> tuple[str, str]:
    repo, sep, name = tag.rpartition(":")
    if not sep or "/" in name:
        return tag, "<none>"
    return repo, name


@click.command("import")
@click.option("-c", "--change", multiple=True, help="Dockerfile instruction to apply.")
@click.option("-m", "--message", default="", help="Commit message.")
@click.option("--platform", default="", help="os/arch of the image.")
@click.argument("source")
@click.argument("repository", required=False)
@pass_context
def import_(
    ctx: Context,
    change: tuple[str, ...],
    message: str,
    platform: str,
    source: str,
    repository: str | None,
) -> None:
    """Create an image from a root filesystem tarball (file path or - for stdin)."""
    stream = sys.stdin.buffer if source == "-" else open(source, "rb")  # noqa: SIM115
    params = {
        "fromSrc": "-",
        "repo": repository or "",
        "message": message,
        "changes": list(change),
        "platform": platform,
    }
    try:
        last = None
        for message_ in ctx.client.json_stream(
            "POST",
            "/images/create",
            params=params,
            raw=stream,
            headers={"Content-Type": "application/x-tar"},
        ):
            if "error" in message_:
                fail(f"Error response from daemon: {message_['error']}", 1)
            last = message_
        if last and "status" in last:
            click.echo(last["status"])
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


@click.command("images")
@click.option("-a", "--all", "show_all", is_flag=True, help="Show all images.")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs.")
@click.option(
    "-f", "--filter", "filters", multiple=True, help="Filter (dangling=, label=, reference=)."
)
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option("--digests", is_flag=True, help="Show digests.")
@click.option("--format", "fmt", help="Go template or 'json'.")
@click.argument("repository", required=False)
@pass_context
def images(
    ctx: Context,
    show_all: bool,
    quiet: bool,
    filters: tuple[str, ...],
    no_trunc: bool,
    digests: bool,
    fmt: str | None,
    repository: str | None,
) -> None:
    """List images."""
    wanted: dict[str, dict[str, bool]] = {}
    for item in filters:
        key, _, value = item.partition("=")
        wanted.setdefault(key, {})[value] = True
    if repository:
        wanted.setdefault("reference", {})[repository] = True
    params = {"filters": wanted or None, "all": "1" if show_all else None}
    items = ctx.client.json("GET", "/images/json", params=params)
    rows: list[dict[str, Any]] = []
    for item in items:
        image_id = item["Id"] if no_trunc else item["Id"].removeprefix("sha256:")[:12]
        for tag in item["RepoTags"] or ["<none>:<none>"]:
            repo, name = _split(tag)
            digest = next(
                (
                    d.partition("@")[2]
                    for d in item.get("RepoDigests") or []
                    if d.startswith(repo + "@")
                ),
                "<none>",
            )
            rows.append(
                {
                    "Repository": repo,
                    "Tag": name,
                    "ID": image_id,
                    "CreatedSince": ago(item["Created"]) if item["Created"] else "N/A",
                    "CreatedAt": str(item["Created"]),
                    "Size": human_size(item["Size"]),
                    "Digest": digest,
                    "Containers": str(item.get("Containers", "N/A")),
                }
            )
    if quiet:
        for image_id in dict.fromkeys(r["ID"] for r in rows):
            click.echo(image_id)
        return
    default = _IMAGE_DEFAULT
    if digests:
        default = default.replace("{{.Tag}}\t", "{{.Tag}}\t{{.Digest}}\t")
    print_rows(fmt or default, rows, _IMAGE_HEADERS)


@click.command("tag")
@click.argument("source")
@click.argument("target")
@pass_context
def tag(ctx: Context, source: str, target: str) -> None:
    """Create a tag TARGET that refers to SOURCE."""
    repo, sep, name = target.rpartition(":")
    if not sep or "/" in name:
        repo, name = target, ""
    ctx.client.request("POST", f"/images/{source}/tag", params={"repo": repo, "tag": name or None})


@click.command("rmi")
@click.option("-f", "--force", is_flag=True, help="Force removal.")
@click.option("--no-prune", is_flag=True, help="Do not delete untagged parents.")
@click.argument("images", nargs=-1, required=True)
@pass_context
def rmi(ctx: Context, force: bool, no_prune: bool, images: tuple[str, ...]) -> None:
    """Remove one or more images."""
    failed = False
    for name in images:
        try:
            report = ctx.client.json(
                "DELETE", f"/images/{name}", params={"force": force, "noprune": no_prune}
            )
        except APIError as e:
            click.echo(f"Error response from daemon: {e.message}", err=True)
            failed = True
            continue
        for entry in report:
            for key, value in entry.items():
                click.echo(f"{key}: {value}")
    if failed:
        sys.exit(1)


@click.command("inspect")
@click.option("-f", "--format", "fmt", help="Go template.")
@click.argument("images", nargs=-1, required=True)
@pass_context
def image_inspect(ctx: Context, fmt: str | None, images: tuple[str, ...]) -> None:
    """Display detailed information on one or more images."""
    inspect_each(ctx.client, "/images/{name}/json", images, fmt)


@click.command("history")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs.")
@click.option("--format", "fmt", help="Go template or 'json'.")
@click.argument("image")
@pass_context
def history(ctx: Context, no_trunc: bool, quiet: bool, fmt: str | None, image: str) -> None:
    """Show the history of an image."""
    entries = ctx.client.json("GET", f"/images/{image}/history")
    rows = []
    for entry in entries:
        image_id = entry["Id"]
        if image_id != "<missing>" and not no_trunc:
            image_id = image_id.removeprefix("sha256:")[:12]
        created_by = entry["CreatedBy"]
        if not no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        rows.append(
            {
                "ID": image_id,
                "CreatedSince": ago(entry["Created"]) if entry["Created"] else "N/A",
                "CreatedBy": created_by,
                "Size": human_size(entry["Size"]),
                "Comment": entry["Comment"],
            }
        )
    if quiet:
        for row in rows:
            click.echo(row["ID"])
        return
    headers = {
        "ID": "IMAGE",
        "CreatedSince": "CREATED",
        "CreatedBy": "CREATED BY",
        "Size": "SIZE",
        "Comment": "COMMENT",
    }
    print_rows(
        fmt or "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}",
        rows,
        headers,
    )


@click.command("prune")
@click.option("-a", "--all", "prune_all", is_flag=True, help="Remove all unused images.")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.option(
    "--filter",
    "filter_",
    multiple=True,
    help="Provide filter values (e.g. 'until=<timestamp>', 'label=<key>=<value>').",
)
@pass_context
def prune(ctx: Context, prune_all: bool, force: bool, filter_: tuple[str, ...]) -> None:
    """Remove unused images."""
    if not force and sys.stdin.isatty():
        click.confirm(
            "WARNING! This will remove all dangling images.\nAre you sure you want to continue?",
            abort=True,
        )
    filters: dict[str, dict[str, bool]] = {"dangling": {"false" if prune_all else "true": True}}
    for item in filter_:
        key, _, value = item.partition("=")
        filters.setdefault(key, {})[value] = True
    result = ctx.client.json("POST", "/images/prune", params={"filters": filters})
    deleted = result.get("ImagesDeleted") or []
    if deleted:
        click.echo("Deleted Images:")
        for entry in deleted:
            for key, value in entry.items():
                click.echo(f"{key.lower()}: {value}")
        click.echo()
    click.echo(f"Total reclaimed space: {human_size(result.get('SpaceReclaimed', 0))}")


@click.command("save")
@click.option("-o", "--output", help="Write to a file instead of stdout.")
@click.argument("images", nargs=-1, required=True)
@pass_context
def save(ctx: Context, output: str | None, images: tuple[str, ...]) -> None:
    """Save images to a tar archive (Docker 25's layout: manifest.json plus OCI layout)."""
    if output is None and sys.stdout.isatty():
        fail("Cowardly refusing to save to a terminal. Use the -o flag or redirect", 1)
    chunks = ctx.client.stream("GET", "/images/get", params={"names": list(images)})
    if output is None:
        for chunk in chunks:
            sys.stdout.buffer.write(chunk)
        return
    tmp = f"{output}.tmp"
    try:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@click.command("load")
@click.option("-i", "--input", "source", help="Read from a tar archive file instead of stdin.")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the load output.")
@pass_context
def load(ctx: Context, source: str | None, quiet: bool) -> None:
    """Load images from a tar archive (docker save, podman, skopeo, OCI layouts)."""
    from dockyard.cli.progress import StreamError, show

    stream = open(source, "rb") if source else sys.stdin.buffer  # noqa: SIM115
    try:
        messages = ctx.client.json_stream(
            "POST",
            "/images/load",
            params={"quiet": quiet},
            raw=stream,
            headers={"Content-Type": "application/x-tar"},
        )
        show(messages)
    except StreamError as e:
        fail(str(e), 1)
    finally:
        if source:
            stream.close()


image = click.Group("image", help="Manage images.")
for _command in (import_, tag, image_inspect, history, prune, save, load):
    image.add_command(_command)
image.add_command(images, "ls")
image.add_command(rmi, "rm")
image.add_command(pull)
image.add_command(push)
