"""BuildKit's built-in Dockerfile frontend (`dockerfile.v0`), run by Dockyard's builder.

A bridge Solve naming `dockerfile.v0` carries BuildKit's frontend options (what
buildx made of its command line); `build_options` turns them into the builder's
`BuildOptions`. The Dockerfile and the context come from the client's session
(`SessionContext`), as BuildKit's frontend fetches them:

* `[internal] load build definition from <name>`: the `dockerfile` directory,
  following only `<name>`, `<name>.dockerignore` (and `dockerfile` for the default
  name, which Docker also accepts);
* `[internal] load .dockerignore`: when there is no `<name>.dockerignore`, the
  context's `.dockerignore` alone;
* `[internal] load build context`: the context, with the ignore file's patterns as
  excludes (the client leaves those files out), only once a step reads the context,
  through the context mirror of the session's shared key (`filesync.ContextMirrors`).

Everything is fetched into the build's own directory and goes with it.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping
from typing import Any

from dockyard import rootpath
from dockyard.build import parser
from dockyard.build.builder import BuildOptions, parse_platform
from dockyard.build.context import DEFAULT_DOCKERFILE, SourceTree
from dockyard.build.dockerignore import IgnoreFile, read_patterns
from dockyard.buildkit import filesync, rpc
from dockyard.buildkit.pb import secrets_pb2
from dockyard.buildkit.progress import Vertex, VertexProgress
from dockyard.buildkit.session import Session
from dockyard.containers import schema
from dockyard.containers.schema import HostConfig
from dockyard.errors import InvalidArgument, NotImplementedByEngine

NAME = "dockerfile.v0"
GET_SECRET = "/moby.buildkit.secrets.v1.Secrets/GetSecret"
# `# syntax=` values that mean BuildKit's own Dockerfile frontend (`check_syntax`)
BUILTIN_SYNTAX = re.compile(
    r"(docker\.io/)?docker/dockerfile(:(latest|labs|1(\.\d+){0,2}(-labs)?))?(@sha256:[0-9a-f]{64})?"
)
DOCKERIGNORE = ".dockerignore"


def build_options(attrs: Mapping[str, str]) -> BuildOptions:
    """The builder's options from BuildKit's frontend options. Options that change
    nothing here are passed over, as BuildKit passes over those it does not know:
    `image-resolve-mode` other than `pull` (the local store is preferred anyway),
    provenance attestations (not made for the image store), VCS hints."""
    options = BuildOptions(dockerfile=attrs.get("filename", ""), target=attrs.get("target", ""))
    host_config: dict[str, Any] = {}
    for key, value in attrs.items():
        if key.startswith("build-arg:"):
            options.build_args[key.removeprefix("build-arg:")] = value
        elif key.startswith("label:"):
            options.labels[key.removeprefix("label:")] = value
        elif key.startswith("context:"):
            raise NotImplementedByEngine(
                f"named build contexts (--build-context {key.removeprefix('context:')}=...) "
                "are not supported by Dockyard yet"
            )
        elif key == "context":
            raise NotImplementedByEngine(
                "a remote or streamed build context is not supported by Dockyard yet; "
                "build from a local directory"
            )
        elif key == "no-cache":
            if value:
                options.no_cache_stages = frozenset(s.strip().lower() for s in value.split(","))
            else:
                options.no_cache = True
        elif key == "platform":
            platforms = [p for p in value.split(",") if p]
            if len(platforms) > 1:
                raise InvalidArgument(
                    "building for several platforms at once is not supported by Dockyard"
                )
            options.platform = platforms[0] if platforms else ""
            parse_platform(options.platform)
        elif key == "force-network-mode":
            if value not in ("", "sandbox", "none", "host"):
                raise InvalidArgument(f"invalid netmode {value}")
            options.network_mode = "" if value == "sandbox" else value
        elif key == "add-hosts" and value:
            hosts = []
            for field in value.split(","):
                host, sep, ip = field.lower().partition("=")
                if not sep:
                    raise InvalidArgument(
                        f"failed to parse additional hosts: invalid key-value pair {field}"
                    )
                hosts.append(f"{host}:{ip}")
            host_config["ExtraHosts"] = hosts
        elif key == "shm-size" and value:
            host_config["ShmSize"] = _number(key, value)
        elif key == "cgroup-parent" and value:
            host_config["CgroupParent"] = value
        elif key == "ulimit" and value:
            host_config["Ulimits"] = [_ulimit(field) for field in value.split(",")]
        elif key == "image-resolve-mode" and value == "pull":
            options.pull = True
        elif key == "requestid":
            raise NotImplementedByEngine(
                f"Dockyard's Dockerfile frontend does not answer {value} requests "
                "(buildx --print and --call)"
            )
    if host_config:
        options.host_config = schema.decode(HostConfig, host_config, "build options")
    return options


def _number(key: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise InvalidArgument(f"failed to parse {key}: {value!r} is not a number") from None


def _ulimit(text: str) -> dict[str, Any]:
    name, sep, limits = text.partition("=")
    soft, _, hard = limits.partition(":")
    if not sep or not name or not soft:
        raise InvalidArgument(f"failed to parse ulimit: invalid ulimit argument: {text}")
    return {
        "Name": name,
        "Soft": _number("ulimit", soft),
        "Hard": _number("ulimit", hard or soft),
    }


class SessionContext:
    """A build's Dockerfile and context, fetched from the client over its session."""

    def __init__(
        self,
        session: Session,
        mirrors: filesync.ContextMirrors,
        progress: VertexProgress,
        *,
        dockerfile_dir: str = "dockerfile",
        context_dir: str = "context",
    ) -> None:
        self.session = session
        self.mirrors = mirrors
        self.progress = progress
        self.graph = progress.graph
        self.dockerfile_dir = dockerfile_dir
        self.context_dir = context_dir
        self.excludes: list[str] = []
        self.ignore: IgnoreFile | None = None
        self._tree: SourceTree | None = None
        self._loading = asyncio.Lock()

    async def dockerfile(self, workdir: str, name: str) -> str:
        name = name or DEFAULT_DOCKERFILE
        vertex = self.graph.vertex(f"[internal] load build definition from {name}").start()
        self.progress.definition = vertex  # warnings about the Dockerfile are shown there
        try:
            text, ignore_text = await self._load_definition(workdir, name, vertex)
            check_syntax(text)
            vertex.complete()
        except BaseException as e:
            vertex.complete(error=_failure(e))
            raise
        if ignore_text is None:
            vertex = self.graph.vertex(f"[internal] load {DOCKERIGNORE}").start()
            try:
                ignore_text = await self._load_dockerignore(workdir, vertex)
                vertex.complete()
            except BaseException as e:
                vertex.complete(error=_failure(e))
                raise
        if ignore_text:
            self.excludes = read_patterns(ignore_text)
            self.ignore = IgnoreFile(self.excludes)
        return text

    async def _fetch(
        self, workdir: str, dir_name: str, target: str, vertex: Vertex, follow: list[str]
    ) -> None:
        directory = os.path.join(workdir, target)
        staging = directory + ".incoming"
        await asyncio.to_thread(_make_dirs, directory, staging)
        label = f"transferring {dir_name}:"
        receiver = await filesync.fetch(
            self.session,
            dir_name,
            directory,
            staging,
            follow=follow,
            progress=vertex.counter(label),
        )
        vertex.status(label, current=receiver.transferred, done=True)

    async def _load_definition(
        self, workdir: str, name: str, vertex: Vertex
    ) -> tuple[str, str | None]:
        follow = [name, name + DOCKERIGNORE]
        if os.path.basename(name) == DEFAULT_DOCKERFILE:
            follow.append(os.path.join(os.path.dirname(name), DEFAULT_DOCKERFILE.lower()))
        await self._fetch(workdir, self.dockerfile_dir, "dockerfile", vertex, follow)
        root = os.path.join(workdir, "dockerfile")
        text = await asyncio.to_thread(_read, root, name)
        if text is None and os.path.basename(name) == DEFAULT_DOCKERFILE:
            lower = os.path.join(os.path.dirname(name), DEFAULT_DOCKERFILE.lower())
            text = await asyncio.to_thread(_read, root, lower)
        if text is None:
            raise InvalidArgument(
                f"failed to read dockerfile: open {name}: no such file or directory"
            )
        if not text:
            raise InvalidArgument(f"the Dockerfile ({name}) cannot be empty")
        return text, await asyncio.to_thread(_read, root, name + DOCKERIGNORE)

    async def _load_dockerignore(self, workdir: str, vertex: Vertex) -> str | None:
        await self._fetch(workdir, self.context_dir, "dockerignore", vertex, [DOCKERIGNORE])
        return await asyncio.to_thread(_read, os.path.join(workdir, "dockerignore"), DOCKERIGNORE)

    async def secret(self, secret_id: str) -> bytes | None:
        """A secret the client provides (`--secret id=...`), None when it has no such one
        (BuildKit reads NOT_FOUND, and a client that serves no secrets, so)."""
        if not self.session.supports(GET_SECRET):
            return None
        try:
            reply = await self.session.client.unary(
                GET_SECRET,
                secrets_pb2.GetSecretRequest(ID=secret_id),
                secrets_pb2.GetSecretResponse,
            )
        except rpc.RpcError as e:
            if e.status in (rpc.Status.NOT_FOUND, rpc.Status.UNIMPLEMENTED):
                return None
            raise
        return reply.data

    async def sources(self, workdir: str) -> SourceTree:
        async with self._loading:
            if self._tree is None:
                self._tree = await self._load_context(workdir)
        return self._tree

    async def _load_context(self, workdir: str) -> SourceTree:
        vertex = self.graph.vertex("[internal] load build context").start()
        label = f"transferring {self.context_dir}:"
        target = os.path.join(workdir, "context")
        try:
            receiver = await self.mirrors.fetch(
                self.session,
                self.session.shared_key,
                self.context_dir,
                target,
                exclude=self.excludes,
                progress=vertex.counter(label),
            )
        except BaseException as e:
            vertex.complete(error=_failure(e))
            raise
        vertex.status(label, current=receiver.transferred, done=True)
        vertex.complete()
        return SourceTree(target, ignore=self.ignore, context=True)


def check_syntax(text: str) -> None:
    """Refuse a Dockerfile whose `# syntax=` names a frontend other than the built-in one.

    BuildKit would pull and run that image as the frontend; Dockyard runs only its own
    Dockerfile frontend, so it accepts the names of BuildKit's stable Dockerfile syntax
    (`docker/dockerfile`, `:1`, `:1.N`, `:1.N.M`, their `-labs` variants, with or
    without `docker.io/` and a digest) and builds those with its parser, where a feature
    it lacks is refused by name; any other image is an error naming it, never ignored.
    """
    try:
        value = parser.parse(text).directives.get("syntax", "")
    except InvalidArgument:
        return  # the builder reports the Dockerfile's own error, with its line
    if value and not BUILTIN_SYNTAX.fullmatch(value.strip()):
        raise NotImplementedByEngine(
            f'the Dockerfile names the frontend image "{value.strip()}" (# syntax=): '
            "Dockyard builds only with its built-in Dockerfile frontend "
            "(docker/dockerfile:1); remove the directive or name docker/dockerfile:1"
        )


def _failure(error: BaseException) -> str:
    """A failed load's vertex error (`context canceled` when it was cancelled, which
    clients show as CANCELED)."""
    if isinstance(error, asyncio.CancelledError):
        return "context canceled"
    return str(getattr(error, "message", error))


def _make_dirs(*paths: str) -> None:
    for path in paths:
        os.makedirs(path, mode=0o700)


def _read(root: str, name: str) -> str | None:
    """A fetched file's text, None when it is not there (or not a regular file)."""
    path = rootpath.resolve(root, name)
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        return f.read().decode("utf-8", errors="replace")
