"""What a BuildKit build's result becomes: its exporters.

buildx's docker driver asks for the `moby` exporter (the engine's image store) for a
plain `docker build`, `--load` and `--output type=docker` without a file, with the
tags in the `name` attribute; the BuildKit `image` exporter means the same here.
The result's final state becomes an image (the same image the classic builder makes
of it) and each name is tagged, under an `exporting to image` vertex whose statuses
say what was done, as moby's exporter reports them. Other exporters (`local`, `tar`,
`oci`, `docker` to a file) are refused before the build starts, with a message that
names them.
"""

from __future__ import annotations

from dockyard.build.builder import Builder, BuildResult, parse_tags
from dockyard.buildkit import rpc
from dockyard.buildkit.pb import control_pb2
from dockyard.buildkit.progress import Graph
from dockyard.errors import InvalidArgument
from dockyard.images import reference

IMAGE_STORE = ("moby", "image")


def check(exporters: list[control_pb2.Exporter]) -> None:
    """Refuse, before anything runs, what cannot be exported here."""
    if len(exporters) > 1:
        raise rpc.RpcError(
            rpc.Status.UNIMPLEMENTED, "Dockyard exports a build to one destination at a time"
        )
    for exporter in exporters:
        if exporter.Type not in IMAGE_STORE:
            raise rpc.RpcError(
                rpc.Status.UNIMPLEMENTED,
                f'exporter "{exporter.Type}" is not supported by Dockyard yet; '
                "the result can go into the image store (--load)",
            )
        if exporter.Type == "image" and exporter.Attrs.get("push", "") in ("true", "1"):
            raise rpc.RpcError(
                rpc.Status.UNIMPLEMENTED,
                "pushing from the image exporter is not supported by Dockyard yet; "
                "build with --load, then docker push",
            )
        try:
            parse_names(exporter.Attrs.get("name", ""))
        except InvalidArgument as e:
            raise rpc.RpcError(rpc.Status.INVALID_ARGUMENT, e.message) from None


def parse_names(value: str) -> list[reference.Reference]:
    """The `name` attribute: comma-separated references, `latest` where no tag is given."""
    return parse_tags(text.strip() for text in value.split(",") if text.strip())


def export(
    builder: Builder,
    graph: Graph,
    exporters: list[control_pb2.Exporter],
    result: BuildResult | None,
) -> dict[str, str]:
    """Export `result` (None: the build returned nothing) with `exporters`; what the
    exporters report (Solve's `ExporterResponse`)."""
    response: dict[str, str] = {}
    for exporter in exporters:
        if result is None:
            raise rpc.RpcError(
                rpc.Status.INVALID_ARGUMENT, "the build returned no result to export"
            )
        vertex = graph.vertex("exporting to image").start()
        try:
            vertex.status("exporting layers", done=True)
            image = builder.image(result.state)
            vertex.status(f"writing image {image.id}", done=True)
            names = parse_names(exporter.Attrs.get("name", ""))
            for name in names:
                builder.images.tag(image.id, name)
                vertex.status(f"naming to {name}", done=True)
        except Exception as e:
            vertex.complete(error=str(getattr(e, "message", e)))
            raise
        vertex.complete()
        response["containerimage.config.digest"] = image.id
        response["containerimage.digest"] = image.id
        if names:
            response["image.name"] = ",".join(str(name) for name in names)
    return response
