"""`dockyard build` and `dockyard builder prune`.

The context is sent as a tar, like the docker CLI sends it: files the
`.dockerignore` excludes are left out (the Dockerfile and the ignore file
always go, so the daemon can read them), owners are 0:0, and a Dockerfile
outside the context travels inside the tar under a private name. `-` reads
the context tar (plain or compressed) from stdin, or a lone Dockerfile.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
import tempfile
from typing import IO, Any

import click

from dockyard.build.dockerignore import IgnoreFile, read_patterns
from dockyard.cli.main import Context, fail, pass_context
from dockyard.units import human_size


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str | None]:
    result: dict[str, str | None] = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not name:
            fail(f"dockyard: invalid {what}: {value!r}", 125)
        # `--build-arg NAME` takes the value from the environment, as docker does
        result[name] = text if sep else os.environ.get(name)
    return result


def _ignore_file(root: str, dockerfile_rel: str | None) -> IgnoreFile | None:
    candidates = []
    if dockerfile_rel:
        candidates.append(os.path.join(root, dockerfile_rel + ".dockerignore"))
    candidates.append(os.path.join(root, ".dockerignore"))
    for candidate in candidates:
        if os.path.isfile(candidate):
            with open(candidate, encoding="utf-8", errors="replace") as f:
                return IgnoreFile(read_patterns(f.read()))
    return None


def context_tar(path: str, dockerfile: str | None) -> tuple[IO[bytes], str]:
    """The context directory as a tar file, and the Dockerfile's name inside it."""
    root = os.path.abspath(path)
    if not os.path.isdir(root):
        fail(f'unable to prepare context: path "{path}" not found', 1)
    dockerfile_path = (
        os.path.abspath(dockerfile) if dockerfile else os.path.join(root, "Dockerfile")
    )
    if not dockerfile and not os.path.exists(dockerfile_path):
        lower = os.path.join(root, "dockerfile")
        if os.path.exists(lower):
            dockerfile_path = lower
    if not os.path.isfile(dockerfile_path):
        fail(f"unable to prepare context: Cannot locate specified Dockerfile: {dockerfile_path}", 1)
    rel = os.path.relpath(dockerfile_path, root)
    outside = rel.startswith("..")
    name_in_tar = ".dockerfile." + os.urandom(10).hex() if outside else rel
    ignore = _ignore_file(root, None if outside else rel)
    keep = {name_in_tar, ".dockerignore"}

    def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = int(info.mtime)
        return info

    out = tempfile.TemporaryFile()  # noqa: SIM115 - returned to the caller
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        descend_excluded = ignore is not None and ignore.has_exclusions
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            base = os.path.relpath(dirpath, root)
            kept_dirs = []
            for name in sorted(dirnames + filenames):
                item = name if base == "." else f"{base}/{name}"
                full = os.path.join(dirpath, name)
                excluded = ignore is not None and ignore.excluded(item) and item not in keep
                is_dir = name in dirnames
                if not excluded:
                    tar.add(full, arcname=item, recursive=False, filter=owned_by_root)
                if is_dir and (not excluded or descend_excluded) and not os.path.islink(full):
                    kept_dirs.append(name)
            dirnames[:] = kept_dirs
        if outside:
            with open(dockerfile_path, "rb") as f:
                data = f.read()
            info = tarfile.TarInfo(name_in_tar)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    out.seek(0)
    return out, name_in_tar


def _stdin_context(dockerfile: str | None) -> tuple[IO[bytes], str]:
    """`-`: a tar (plain or compressed) of the context, or just a Dockerfile."""
    data = sys.stdin.buffer.read()
    head = data[:512]
    compressed = head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd"))
    if compressed or (len(head) >= 262 and head[257:262] == b"ustar"):
        return io.BytesIO(data), dockerfile or ""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    out.seek(0)
    return out, "Dockerfile"


@click.command("build")
@click.option("-t", "--tag", "tags", multiple=True, help="Name and tag (name:tag).")
@click.option(
    "-f", "--file", "dockerfile", help="Name of the Dockerfile (default PATH/Dockerfile)."
)
@click.option("--target", default="", help="Build this stage.")
@click.option("--no-cache", is_flag=True, help="Do not use the cache.")
@click.option(
    "--cache-from", "cache_from", multiple=True, help="Take cache hits only from these images."
)
@click.option("--build-arg", "build_args", multiple=True, help="Build-time variable (NAME=value).")
@click.option("--label", "labels", multiple=True, help="Set metadata on the image (key=value).")
@click.option("--network", default="", help="Network mode for RUN (default, host, none).")
@click.option("--pull", is_flag=True, help="Always look for a newer base image.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the image ID.")
@click.option("--rm/--no-rm", "remove", default=True, help="Remove intermediate containers.")
@click.option("--force-rm", is_flag=True, help="Always remove intermediate containers.")
@click.option("--platform", default="", help="Target platform (linux/amd64).")
@click.option("--iidfile", help="Write the image ID to this file.")
@click.argument("path")
@pass_context
def build(
    ctx: Context,
    tags: tuple[str, ...],
    dockerfile: str | None,
    target: str,
    no_cache: bool,
    cache_from: tuple[str, ...],
    build_args: tuple[str, ...],
    labels: tuple[str, ...],
    network: str,
    pull: bool,
    quiet: bool,
    remove: bool,
    force_rm: bool,
    platform: str,
    iidfile: str | None,
    path: str,
) -> None:
    """Build an image from a Dockerfile (PATH is the context directory, or - for stdin)."""
    if path == "-":
        body, name = _stdin_context(dockerfile)
    else:
        body, name = context_tar(path, dockerfile)
    params: dict[str, Any] = {
        "t": list(tags),
        "dockerfile": name or None,
        "target": target or None,
        "nocache": no_cache,
        "cachefrom": json.dumps(list(cache_from)) if cache_from else None,
        "buildargs": _pairs(build_args, "build argument") or None,
        "labels": {k: v or "" for k, v in _pairs(labels, "label").items()} or None,
        "networkmode": network or None,
        "pull": pull,
        "q": quiet,
        "rm": "1" if remove else "0",
        "forcerm": force_rm,
        "platform": platform or None,
        "version": "1",
    }
    image_id = ""
    try:
        for message in ctx.client.json_stream(
            "POST",
            "/build",
            params=params,
            raw=body,
            headers={"Content-Type": "application/x-tar"},
        ):
            if "error" in message or "errorDetail" in message:
                detail = message.get("errorDetail") or {}
                text = detail.get("message") or message.get("error") or "build failed"
                fail(text, int(detail.get("code") or 1))
            aux = message.get("aux")
            if isinstance(aux, dict) and aux.get("ID"):
                image_id = aux["ID"]
            stream = message.get("stream")
            if quiet and stream and stream.startswith("sha256:"):
                image_id = stream.strip()  # with -q the ID is the only output
            if stream:
                sys.stdout.write(stream)
                sys.stdout.flush()
    finally:
        body.close()
    if iidfile and image_id:
        with open(iidfile, "w") as f:
            f.write(image_id)


@click.group("builder", help="Manage builds.")
def builder() -> None:
    pass


@builder.command("prune")
@click.option("-a", "--all", "prune_all", is_flag=True, help="Remove all build cache.")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.option("--keep-storage", default="", help="Amount of cache to keep (e.g. 1g).")
@pass_context
def builder_prune(ctx: Context, prune_all: bool, force: bool, keep_storage: str) -> None:
    """Remove build cache."""
    if not force and sys.stdin.isatty():
        click.confirm(
            "WARNING! This will remove all dangling build cache.\n"
            "Are you sure you want to continue?",
            abort=True,
        )
    from dockyard.units import parse_size

    params = {"all": prune_all, "keep-storage": parse_size(keep_storage) if keep_storage else None}
    result = ctx.client.json("POST", "/build/prune", params=params)
    deleted = result.get("CachesDeleted") or []
    if deleted:
        click.echo("Deleted build cache objects:")
        for item in deleted:
            click.echo(item)
        click.echo()
    click.echo(f"Total reclaimed space: {human_size(result.get('SpaceReclaimed', 0))}")
