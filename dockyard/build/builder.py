"""Building images from Dockerfiles, the way Docker's classic builder does.

A build, step by step:

1. The Dockerfile comes from the build's context source (`context.ContextSource`:
   for `POST /build` the context tar, unpacked into `<data-root>/build/<id>/context`;
   for BuildKit's door the client's session) and is parsed, and every instruction
   is checked before anything runs (a syntax error is a 400 naming the line).
2. The stages the target needs are found (through `FROM <stage>` and
   `COPY --from`); the others are skipped. `--label`s become a last LABEL.
3. Each stage starts from a local image, `scratch`, or an earlier stage, runs
   the base image's ONBUILD triggers, then its instructions. Every step is
   looked up in the build cache by its key (`cache.key`: the state it starts
   from, the instruction after variable expansion, and for COPY/ADD the
   checksum of the sources); a hit reuses the stored result. A miss runs it:
   * RUN in a container created and started through the container service,
     like `run` (same runtime, network mode, resource limits), its output
     streamed; the container's upper directory becomes the layer. Through
     BuildKit's door, `RUN --mount` adds cache, tmpfs, bind and secret mounts
     to that container; their mountpoints are no change of the layer;
   * COPY, ADD and WORKDIR on an overlay mount of the stage in a private
     directory, whose upper directory becomes the layer;
   * everything else changes only the image config.
   Results go into the cache as they are made.
4. The target stage's final state is the result (`solve`). For `POST /build`
   (`build`) it becomes the image, and is tagged; BuildKit's door hands it to its
   exporters.

What the user sees goes through a `progress.BuildProgress`: for `POST /build` the
classic builder's output line by line (`Step N/M : ...`, ` ---> Using cache`,
` ---> Running in <id>`, `Successfully built <id>`), so the docker CLI, docker-py
and compose read it as they read Docker's; for BuildKit's door, vertexes.

A failing or interrupted build leaves no image, tag, container or mount: the
build's containers are recorded (`build_containers`) in the same transaction
that creates them and removed on the way out, or at the next daemon start if
the daemon was killed; the build directory goes the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import functools
import hashlib
import json
import logging
import os
import posixpath
import secrets
import shlex
import shutil
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from dockyard import mount, rootpath
from dockyard.build import copier, imageconfig, instructions, parser, runmount
from dockyard.build import instructions as ins
from dockyard.build.cache import BuildCache, CacheRecord, State, key
from dockyard.build.cachemounts import CacheMounts
from dockyard.build.context import ContextSource, Selected, SourceTree
from dockyard.build.expansion import Lexer
from dockyard.build.progress import BuildProgress, ClassicProgress, Step
from dockyard.containers import schema, users
from dockyard.containers.schema import ContainerCreate, HostConfig, StrSlice
from dockyard.containers.service import ContainerService
from dockyard.errors import DockyardError, InvalidArgument, NotFound, Unavailable
from dockyard.images import oci, reference
from dockyard.images.committer import Committer, NewLayer
from dockyard.images.reference import Reference
from dockyard.images.service import Image, ImageService
from dockyard.snapshots.layers import chain_ids
from dockyard.snapshots.rootfs import RootfsManager
from dockyard.state.db import Database

log = logging.getLogger(__name__)

# (reference, platform) -> the pulled image; provided by the registry client
Puller = Callable[[Reference, str], Awaitable[Image]]
# secret ID -> its bytes, None when the client has no such secret
SecretSource = Callable[[str], Awaitable[bytes | None]]

# Docker's classic builder's refusal of `RUN --mount`, word for word.
MOUNT_NEEDS_BUILDKIT = (
    "the --mount option requires BuildKit. Refer to https://docs.docker.com/go/buildkit/ "
    "to learn how to build images with BuildKit enabled"
)
CACHE_MOUNTS_DIR = "cache-mounts"

# Build arguments every build accepts without an ARG; left out of history and
# cache keys unless the Dockerfile declares them.
BUILTIN_ARGS = frozenset(
    "HTTP_PROXY http_proxy HTTPS_PROXY https_proxy FTP_PROXY ftp_proxy NO_PROXY no_proxy "
    "ALL_PROXY all_proxy".split()
)
# Heredoc bodies expand variables but keep their quotes (BuildKit's rule).
_HEREDOC_LEXER = Lexer(keep_quotes=True)


class StepFailed(Unavailable):
    """A build step failed; `code` is its exit code (what the docker CLI exits with),
    `command` the RUN's command line when it was a command that failed."""

    def __init__(self, message: str, code: int = 1, command: list[str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.command = command


@dataclass
class BuildResult:
    """A finished build's final state; its layers stay pinned until `release()`."""

    state: State
    build_id: str
    builder: Builder

    def release(self) -> None:
        self.builder._pins.pop(self.build_id, None)


def parse_tags(texts: Iterable[str]) -> list[Reference]:
    """The names a build is to tag its image with, `latest` where no tag is given, as
    both front doors (`/build`'s `t`, BuildKit's exporter `name`) check them."""
    tags = []
    for text in texts:
        try:
            ref = reference.parse(text)
        except InvalidArgument:
            raise InvalidArgument(f"invalid reference format: {text}") from None
        if ref.digest:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        tags.append(ref if ref.tag else ref.with_tag("latest"))
    return tags


@dataclass
class BuildOptions:
    dockerfile: str = ""
    tags: list[Reference] = field(default_factory=list)
    build_args: dict[str, str | None] = field(default_factory=dict)
    target: str = ""
    no_cache: bool = False
    # BuildKit's `--no-cache-filter`: the stages (by name) whose steps skip the cache
    no_cache_stages: frozenset[str] = frozenset()
    labels: dict[str, str] = field(default_factory=dict)
    remove: bool = True  # remove the step containers (also after a failure)
    force_remove: bool = False
    pull: bool = False
    network_mode: str = ""
    platform: str = ""
    quiet: bool = False
    # `cachefrom`: when given, cache hits come only from these images' histories
    cache_from: list[str] | None = None
    # resource settings for the RUN containers (HostConfig keys)
    host_config: HostConfig = field(default_factory=HostConfig)
    # BuildKit's door: `RUN --mount` is served (the classic builder refuses it), and
    # secrets come from the client (None: not provided)
    run_mounts: bool = False
    secrets: SecretSource | None = None


def parse_platform(text: str) -> tuple[str, str, str]:
    """`linux/amd64[/variant]`; only this host's architecture can run build steps."""
    if not text:
        return "linux", oci.host_arch(), ""
    parts = text.lower().split("/")
    if len(parts) == 1:
        parts = ["linux", parts[0]] if parts[0] != "linux" else ["linux", oci.host_arch()]
    os_name, arch = parts[0], parts[1]
    variant = parts[2] if len(parts) > 2 else ""
    if os_name != "linux" or arch != oci.host_arch():
        raise InvalidArgument(
            f'"{text}": the platform is not supported by this engine '
            f"(it builds for linux/{oci.host_arch()})"
        )
    return os_name, arch, variant


class Builder:
    """Runs builds; owns the build cache and the build working directories."""

    def __init__(
        self,
        db: Database,
        images: ImageService,
        containers: ContainerService,
        rootfs: RootfsManager,
        committer: Committer,
        work_root: str,
    ) -> None:
        self.db = db
        self.images = images
        self.containers = containers
        self.rootfs = rootfs
        self.committer = committer
        self.cache = BuildCache(db)
        self.work_root = work_root
        self.pull: Puller | None = None
        # per running build: what it uses that no cache row or image may hold
        # yet, kept from garbage collection until the build ends
        self._pins: dict[str, _Pins] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        os.makedirs(work_root, exist_ok=True)
        self.cache_mounts = CacheMounts(os.path.join(work_root, CACHE_MOUNTS_DIR))

    def roots(self) -> tuple[set[str], set[str]]:
        """Chain IDs and blobs the builder keeps alive (the cache's and running builds')."""
        chains, blobs = self.cache.refs()
        for pins in list(self._pins.values()):
            chains.update(pins.chains)
            blobs.update(pins.blobs)
        return chains, blobs

    async def build(
        self, source: ContextSource, options: BuildOptions, progress: ClassicProgress
    ) -> Image:
        """The classic builder: build, make the target's image and tag it."""
        try:
            result = await self.solve(source, options, progress)
        except DockyardError:
            if progress.quiet:
                with contextlib.suppress(OSError, RuntimeError):
                    await progress.flush()
            raise
        try:
            image = self.image(result.state)
            await progress.built(image.id, image.short_id)
            for tag in options.tags:
                self.images.tag(image.id, tag)
                await progress.tagged(tag)
            await progress.finish(image.id)
            return image
        finally:
            result.release()

    async def solve(
        self, source: ContextSource, options: BuildOptions, progress: BuildProgress
    ) -> BuildResult:
        """Run a build; its result's layers stay pinned until the result is released."""
        build_id = secrets.token_hex(8)
        directory = os.path.join(self.work_root, build_id)
        os.makedirs(directory)
        self._pins[build_id] = _Pins()
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        run = _Build(self, build_id, directory, options, source, progress)
        done = False
        try:
            state = await run.execute()
            done = True
            return BuildResult(state, build_id, self)
        finally:
            await asyncio.shield(run.cleanup())
            if not done:
                self._pins.pop(build_id, None)
            if task is not None:
                self._tasks.discard(task)

    def image(self, state: State) -> Image:
        """The image of a build's final state (made if it does not exist yet)."""
        if not state.id:
            raise InvalidArgument("No image was generated. Is your Dockerfile empty?")
        if self.images.exists(state.id):
            return self.images.resolve(state.id)
        size = sum(layer.size for layer in self.images.layers.stack(state.chain_id))
        image = self.images.add(state.config, list(state.layers), size)
        if image.id != state.id:
            log.warning("built image %s does not have the expected ID %s", image.id, state.id)
        return image

    async def recover(self) -> None:
        """After a crash: remove the step containers and mounts builds left behind."""
        for row in self.db.all("SELECT id FROM build_containers"):
            try:
                await self.containers.remove(row["id"], force=True)
            except NotFound:
                pass
            except DockyardError as e:
                log.warning("cannot remove build container %s: %s", row["id"][:12], e.message)
                continue
            with self.db.transaction():
                self.db.execute("DELETE FROM build_containers WHERE id=?", (row["id"],))
        for target in reversed(_mounts_under(self.work_root)):
            mount.unmount(target)
        for name in os.listdir(self.work_root):
            if name == CACHE_MOUNTS_DIR:
                continue  # kept between builds, and across restarts
            shutil.rmtree(os.path.join(self.work_root, name), ignore_errors=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    async def prune(
        self,
        *,
        all: bool = False,
        keep_storage: int = 0,
        keep_duration: float = 0,
        selected: Callable[[CacheRecord], bool] | None = None,
    ) -> list[CacheRecord]:
        """Drop build cache records; their layers go unless images use them."""
        dropped = self.cache.prune(
            keep_storage=0 if all else keep_storage, keep_duration=keep_duration, selected=selected
        )
        reclaimed = sum(record.size for record in dropped)
        await self.images.collect()
        self.images.events.emit("builder", "prune", "", {"reclaimed": str(reclaimed)})
        return dropped


def _mounts_under(root: str) -> list[str]:
    prefix = os.path.abspath(root) + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4].encode().decode("unicode_escape")
            if target.startswith(prefix):
                found.append(target)
    return found


@dataclass
class _Pins:
    chains: set[str] = field(default_factory=set)
    blobs: set[str] = field(default_factory=set)


@dataclass
class _StageState:
    stage: ins.Stage
    state: State
    args: dict[str, str | None] = field(default_factory=dict)  # ARGs in scope
    cmd_set: bool = False
    author: str = ""


class _Build:
    def __init__(
        self,
        builder: Builder,
        build_id: str,
        directory: str,
        options: BuildOptions,
        source: ContextSource,
        progress: BuildProgress,
    ) -> None:
        self.b = builder
        self.id = build_id
        self.dir = directory
        self.options = options
        self.source = source
        self.progress = progress
        self.lexer = Lexer()
        self.meta: dict[str, str | None] = {}  # global ARGs
        self.referenced: set[str] = set()
        self.results: dict[int, _StageState] = {}
        self.stage_names: dict[str, int] = {}
        self.containers: list[str] = []
        self.sandboxes: list[str] = []
        self.step = 0
        self.total = 0
        self.stage_count = 1
        self.platform = parse_platform(options.platform)
        # `cachefrom` images found (None: not asked for), and those this stage may still use
        self.cache_sources: list[State] | None = None
        self.cache_from: list[State] | None = None

    # -- output -------------------------------------------------------------

    async def step_line(
        self, instruction: ins.Instruction, stage: ins.Stage | None, *, from_stage: bool = False
    ) -> None:
        self.step += 1
        await self.progress.step(
            Step(
                self.step,
                self.total,
                instruction,
                stage,
                stages=self.stage_count,
                from_stage=from_stage,
            )
        )

    # -- the build ----------------------------------------------------------

    async def execute(self) -> State:
        text = await self.source.dockerfile(self.dir, self.options.dockerfile)
        dockerfile = parser.parse(text)
        self.lexer = Lexer(dockerfile.escape)
        meta_args, stages = instructions.parse_stages(dockerfile)
        target = self._target(stages)
        needed = self._needed(stages, target)
        if self.options.labels:
            node = parser.Node("LABEL", "")
            pairs = tuple(sorted(self.options.labels.items()))
            node.original = "LABEL " + " ".join(f"{k}={v}" for k, v in pairs)
            target.commands.append(ins.Label(node, pairs=pairs, literal=True))
        self.total = len(meta_args) + sum(1 + len(s.commands) for s in needed)
        self.stage_count = len(stages)
        for warning in dockerfile.warnings:
            await self.progress.warning(warning)
        if "syntax" in dockerfile.directives:
            await self.progress.syntax_directive(dockerfile.directives["syntax"])
        self._platform_args()
        if self.options.cache_from is not None:
            self.cache_sources = self._cache_sources(self.options.cache_from)
        for arg in meta_args:
            await self.step_line(arg, None)
            self._global_arg(arg)
        final: _StageState | None = None
        for stage in needed:
            final = await self._stage(stage)
            self.results[stage.index] = final
            if stage.name:
                self.stage_names[stage.name] = stage.index
            await self.progress.stage_done(final.state)
        unused = sorted(
            k
            for k in self.options.build_args
            if k not in self.referenced and k not in BUILTIN_ARGS and k not in self.meta
        )
        if unused:
            await self.progress.unused_args(unused)
        assert final is not None
        if not final.state.id:
            raise InvalidArgument("No image was generated. Is your Dockerfile empty?")
        return final.state

    def _target(self, stages: list[ins.Stage]) -> ins.Stage:
        if not self.options.target:
            return stages[-1]
        for stage in stages:
            if stage.name == self.options.target.lower():
                return stage
        raise InvalidArgument(f'target stage "{self.options.target}" could not be found')

    def _needed(self, stages: list[ins.Stage], target: ins.Stage) -> list[ins.Stage]:
        """The stages the target depends on, in order; the others are not built."""
        names = {s.name: s.index for s in stages if s.name}
        wanted = {target.index}
        pending = [target]
        while pending:
            stage = pending.pop()
            refs = [stage.start.base] + [
                c.from_ for c in stage.commands if isinstance(c, ins.Copy) and c.from_
            ]
            refs += [  # RUN --mount=...,from=STAGE (never expanded)
                m.from_
                for c in stage.commands
                if isinstance(c, ins.Run)
                for m in map(runmount.parse, c.mounts)
                if m.from_
            ]
            for ref in refs:
                deps: list[int] = []
                if "$" in ref:
                    deps = list(range(stage.index))  # unknown until expanded: keep them all
                elif ref.lower() in names and names[ref.lower()] < stage.index:
                    deps = [names[ref.lower()]]
                elif ref.isdigit() and int(ref) < stage.index:
                    deps = [int(ref)]
                for dep in deps:
                    if dep not in wanted:
                        wanted.add(dep)
                        pending.append(stages[dep])
        return [s for s in stages if s.index in wanted]

    # -- arguments ----------------------------------------------------------

    def _platform_args(self) -> None:
        os_name, arch, variant = self.platform
        platform = f"{os_name}/{arch}" + (f"/{variant}" if variant else "")
        for prefix in ("TARGET", "BUILD"):
            self.meta.setdefault(prefix + "PLATFORM", platform)
            self.meta.setdefault(prefix + "OS", os_name)
            self.meta.setdefault(prefix + "ARCH", arch)
            self.meta.setdefault(prefix + "VARIANT", variant)

    def _meta_env(self) -> dict[str, str]:
        env = {k: v for k, v in self.meta.items() if v is not None}
        for name, value in self.options.build_args.items():
            if value is not None and (name in self.meta or name in BUILTIN_ARGS):
                env[name] = value
        return env

    def _global_arg(self, arg: ins.Arg) -> None:
        env = self._meta_env()
        expanded = arg.expand(lambda word: self.lexer.expand(word, env))
        for name, default in expanded.pairs:
            override = self.options.build_args.get(name)
            self.meta[name] = override if override is not None else default

    def _arg_value(self, name: str, default: str | None) -> str | None:
        override = self.options.build_args.get(name)
        if override is not None:
            return override
        if default is not None:
            return default
        return self.meta.get(name) if name in self.meta else None

    def _allowed(self, ctx: _StageState) -> dict[str, str]:
        """Build arguments usable in this stage now: declared ARGs, and given proxy args."""
        values = {k: v for k, v in ctx.args.items() if v is not None}
        for name in BUILTIN_ARGS:
            value = self.options.build_args.get(name)
            if value is not None and name not in values:
                values[name] = value
        return values

    def _env(self, ctx: _StageState) -> dict[str, str]:
        """What variables expand to: the config's Env, then ARGs it does not override."""
        env = imageconfig.env_map(ctx.state.run_config)
        for name, value in self._allowed(ctx).items():
            env.setdefault(name, value)
        return env

    # -- stages -------------------------------------------------------------

    async def _stage(self, stage: ins.Stage) -> _StageState:
        from_stage = stage.start.base.lower() in self.stage_names
        await self.step_line(stage.start, stage, from_stage=from_stage)
        self.cache_from = None if self.cache_sources is None else list(self.cache_sources)
        ctx = await self._from(stage)
        await self.progress.step_done(ctx.state)
        for command in stage.commands:
            await self.step_line(command, stage)
            try:
                ctx.state = await self._dispatch(ctx, command)
            except ConnectionError:
                raise  # the client went away
            except OSError as e:
                # a file that cannot be copied or written: the step fails, not the daemon
                raise Unavailable(f"{command.keyword} failed: {e}") from e
            await self.progress.step_done(ctx.state)
        return ctx

    async def _from(self, stage: ins.Stage) -> _StageState:
        start = stage.start
        meta_env = self._meta_env()
        base = self.lexer.expand(start.base, meta_env)
        if not base:
            raise InvalidArgument(f"base name ({start.base}) should not be blank")
        platform = self.lexer.expand(start.platform, meta_env) if start.platform else ""
        if platform:
            parse_platform(platform)
        parent_index = self.stage_names.get(base.lower())
        args: dict[str, str | None] = {}
        if parent_index is not None:
            parent = self.results[parent_index]
            config = copy.deepcopy(parent.state.config)
            state = State(parent.state.id, config, parent.state.layers)
            args = dict(parent.args)
            author = parent.author
        elif base.lower() == "scratch":
            os_name, arch, variant = self.platform
            config = {
                "architecture": arch,
                "os": os_name,
                **({"variant": variant} if variant else {}),
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": []},
                "history": [],
            }
            state = State("", config, ())
            author = ""
        else:
            image = await self._base_image(base, platform or self.options.platform)
            config = copy.deepcopy(image.config)
            manifest = json.loads(self.b.images.content.read(image.manifest_digest))
            state = State(image.id, config, tuple(manifest.get("layers") or ()))
            author = ""
        run_config = imageconfig.begin_stage(state.config.get("config"))
        triggers = list(run_config.get("OnBuild") or [])
        run_config.pop("OnBuild", None)
        state.config["config"] = run_config
        self._pin_state(state)
        ctx = _StageState(stage, state, args, author=author)
        if triggers:
            await self.progress.triggers(len(triggers))
            for text in triggers:
                trigger = instructions.trigger(text, self.lexer.escape)
                ctx.state = await self._dispatch(ctx, trigger)
        return ctx

    async def _base_image(self, name: str, platform: str) -> Image:
        try:
            ref = reference.parse(name)
        except InvalidArgument:
            raise InvalidArgument(f"invalid reference format: {name}") from None
        image: Image | None = None
        if not self.options.pull or self.b.pull is None:
            try:
                image = self.b.images.resolve(name)
            except NotFound:
                image = None
        if image is None and self.b.pull is not None:
            image = await self.b.pull(ref, platform)
        if image is None:
            raise NotFound(
                f"pull access denied for {ref.familiar_repository}, repository does not exist "
                "or may require 'docker login'"
            )
        arch = image.config.get("architecture") or ""
        if platform and arch and arch != parse_platform(platform)[1]:
            raise NotFound(
                f"image with reference {name} was found but does not match the specified "
                f"platform: wanted {platform}, actual: linux/{arch}"
            )
        return image

    def _cache_sources(self, names: list[str]) -> list[State]:
        """The `cachefrom` images that exist here; unknown names are skipped (as by Docker)."""
        sources = []
        for name in names:
            try:
                image = self.b.images.resolve(name)
            except (NotFound, InvalidArgument) as e:
                log.warning("cache from %s: %s; skipping it", name, e.message)
                continue
            manifest = self.b.images.manifest(image)
            state = State(image.id, image.config, tuple(manifest.get("layers") or ()))
            self._pin_state(state)
            sources.append(state)
        return sources

    def _pin_state(self, state: State) -> None:
        pins = self.b._pins.get(self.id)
        if pins is not None:
            with self.b.images.gc_lock:  # see ImageService on pins
                pins.chains.update(chain_ids(state.diff_ids))
                pins.blobs.update(layer["digest"] for layer in state.layers)

    def _pin_layer(self, chain: str, blob: str) -> None:
        # called from the committing thread, before the layer is published
        pins = self.b._pins.get(self.id)
        if pins is not None:
            with self.b.images.gc_lock:
                pins.chains.add(chain)
                pins.blobs.add(blob)

    # -- steps --------------------------------------------------------------

    async def _dispatch(self, ctx: _StageState, step: ins.Instruction) -> State:
        env = self._env(ctx)
        if isinstance(step, ins.Expose):
            words: list[str] = []
            for port in step.ports:
                words += self.lexer.words(port, env)
            run_config, comment = imageconfig.expose(ctx.state.run_config, words)
            return await self._metadata(ctx, step, run_config, comment)
        try:
            step = step.expand(lambda word: self.lexer.expand(word, env))
        except InvalidArgument as e:
            raise InvalidArgument(f"dockerfile error on line {step.line}: {e.message}") from None
        if isinstance(step, ins.Arg):
            return await self._arg(ctx, step)
        if isinstance(step, ins.Run):
            return await self._run(ctx, step)
        if isinstance(step, ins.Copy):
            return await self._copy(ctx, step)
        if isinstance(step, ins.Workdir):
            return await self._workdir(ctx, step)
        if isinstance(step, ins.Maintainer):
            ctx.author = step.maintainer
        run_config, comment = imageconfig.apply(ctx.state.run_config, step, cmd_set=ctx.cmd_set)
        if isinstance(step, ins.Cmd) and not isinstance(step, ins.Entrypoint) and step.command:
            ctx.cmd_set = True
        return await self._metadata(ctx, step, run_config, comment)

    async def _arg(self, ctx: _StageState, step: ins.Arg) -> State:
        parts = []
        for name, default in step.pairs:
            ctx.args[name] = self._arg_value(name, default)
            self.referenced.add(name)
            parts.append(name if default is None else f"{name}={default}")
        comment = imageconfig.nop(ctx.state.run_config, "ARG " + " ".join(parts))
        return await self._metadata(ctx, step, ctx.state.run_config, comment)

    def _cached(
        self, cache_key: str, ctx: _StageState, created_by: str, run_config: dict[str, Any]
    ) -> State | None:
        """The step's cached result, if it may be used.

        Without `cachefrom`, any result in the build cache. With it, Docker's rule:
        only results in the history of the images named there, either found in the
        build cache (when that image's history and layers begin with the result's)
        or rebuilt from such an image's history (the step's history entry is the
        next one of an image whose history and layers begin with the current
        state's); nothing else hits, so an unknown name means no cache at all.
        """
        if self.options.no_cache or ctx.stage.name in self.options.no_cache_stages:
            return None
        state = self.b.cache.get(cache_key)
        if state is not None and not self._usable(state):
            state = None
        if self.cache_from is not None:
            if state is not None and not any(_extends(source, state) for source in self.cache_from):
                state = None
            if state is None:
                state = self._from_history(ctx, created_by, run_config)
                if state is not None:
                    self.b.cache.put(cache_key, state, 0)
        if state is not None:
            self._pin_state(state)
        return state

    def _usable(self, state: State) -> bool:
        """Whether a cached state's layers are all still there."""
        chain = state.chain_id
        if chain is not None and not self.b.images.layers.has(chain):
            return False  # its layers are gone: build it again
        return all(self.b.images.content.exists(layer["digest"]) for layer in state.layers)

    def _from_history(
        self, ctx: _StageState, created_by: str, run_config: dict[str, Any]
    ) -> State | None:
        """A step's result rebuilt from a `cachefrom` image whose history continues the
        current state's with this very step (moby's ImageCache)."""
        parent = ctx.state
        history = list(parent.config.get("history") or [])
        for source in self.cache_from or []:
            if not _extends(source, parent, strict=True):
                continue
            entry = (source.config.get("history") or [])[len(history)]
            if entry.get("created_by", "") != created_by:
                continue
            if len(source.config.get("history") or []) == len(history) + 1:
                state = State(source.id, copy.deepcopy(source.config), tuple(source.layers))
            else:
                config = copy.deepcopy(parent.config)
                for key in ("container", "container_config"):
                    config.pop(key, None)
                config["created"] = entry.get("created", config.get("created"))
                config["config"] = copy.deepcopy(run_config)
                config["history"] = [*history, copy.deepcopy(entry)]
                layers = parent.layers
                if not entry.get("empty_layer"):
                    index = len(parent.diff_ids)
                    rootfs = config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
                    rootfs["diff_ids"] = [*(rootfs.get("diff_ids") or []), source.diff_ids[index]]
                    layers = (*layers, source.layers[index])
                state = State.of(config, layers)
                self.cache_from = [source]  # Docker's rule: stay on the image that matched
            if not self._usable(state):
                continue
            return state
        return None

    def _next_state(
        self,
        ctx: _StageState,
        run_config: dict[str, Any],
        created_by: str,
        layer: NewLayer | None,
        *,
        step: dict[str, Any] | None = None,
        container: str = "",
    ) -> State:
        """The state after a step. Like Docker's classic builder, the image config keeps
        the configuration of the container that made the step (`container_config`:
        the run config with the step's command, `#(nop)` for metadata steps), which
        image inspect shows as `ContainerConfig` and compose v1 reads."""
        config = copy.deepcopy(ctx.state.config)
        now = oci.now_rfc3339()
        config["created"] = now
        config["config"] = run_config
        if step is None:
            step = {**run_config, "Cmd": imageconfig.nop_command(ctx.state.run_config, created_by)}
        config["container_config"] = {**step, "Image": ctx.state.id}
        if container:
            config["container"] = container
        else:
            config.pop("container", None)
        entry: dict[str, Any] = {"created": now, "created_by": created_by}
        if ctx.author:
            config["author"] = ctx.author
            entry["author"] = ctx.author
        layers = ctx.state.layers
        if layer is None:
            entry["empty_layer"] = True
        else:
            rootfs = config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
            rootfs["diff_ids"] = [*(rootfs.get("diff_ids") or []), layer.diff_id]
            layers = (*layers, layer.descriptor)
        config["history"] = [*(config.get("history") or []), entry]
        state = State.of(config, layers)
        self._pin_state(state)
        return state

    async def _metadata(
        self, ctx: _StageState, step: ins.Instruction, run_config: dict[str, Any], comment: str
    ) -> State:
        cache_key = key(
            ctx.state, "meta", comment, json.dumps(run_config, sort_keys=True), ctx.author
        )
        cached = self._cached(cache_key, ctx, comment, run_config)
        if cached is not None:
            await self.progress.cached()
            return cached
        state = self._next_state(ctx, run_config, comment, None)
        self.b.cache.put(cache_key, state, 0)
        return state

    # RUN

    def _run_command(self, ctx: _StageState, step: ins.Run) -> list[str]:
        run_config = ctx.state.run_config
        if not step.heredocs:
            return imageconfig.command_line(step, run_config)
        heredoc = parser.parse_heredoc(step.command[0])
        if heredoc is None:
            # Several heredocs or more than one word: the shell reads them itself.
            script = step.command[0]
            for doc in step.heredocs:
                script += "\n" + doc.content + doc.name
            return [*imageconfig.shell(run_config), script]
        body = step.heredocs[0].content
        if step.heredocs[0].chomp:
            body = parser.chomp(body)
        if body.startswith("#!"):
            # A script with its own interpreter (`#!/usr/bin/env python3`): the
            # interpreter reads it from stdin, so nothing lands in the image.
            interpreter = body[2:].split("\n", 1)[0].strip().split(None, 1)
            launcher = 'printf "%s" "$1" | exec ' + shlex.join(interpreter) + " /dev/stdin"
            return ["/bin/sh", "-c", launcher, "heredoc", body]
        return [*imageconfig.shell(run_config), body]

    async def _run(self, ctx: _StageState, step: ins.Run) -> State:
        command = self._run_command(ctx, step)
        run_config = ctx.state.run_config
        env_names = {e.partition("=")[0] for e in run_config.get("Env") or []}
        args = {k: v for k, v in self._allowed(ctx).items() if k not in env_names}
        saved = command
        if args:
            shown = sorted(
                f"{k}={v}" for k, v in args.items() if k not in BUILTIN_ARGS or k in ctx.args
            )
            saved = [f"|{len(shown)}", *shown, *command]
        network = self.options.network_mode
        if step.network not in ("", "default"):
            network = step.network
        if network == "default":
            network = ""
        mounts = self._run_mounts(ctx, step)
        key_parts = [json.dumps(saved), network]
        if mounts:
            # What is mounted is part of what the step does (a secret's value never is).
            key_parts.append(await self._mounts_key(ctx, mounts))
        cache_key = key(ctx.state, "run", *key_parts)
        cached = self._cached(cache_key, ctx, " ".join(saved), run_config)
        if cached is not None:
            await self.progress.cached()
            return cached
        env = [*(run_config.get("Env") or []), *(f"{k}={v}" for k, v in sorted(args.items()))]
        async with contextlib.AsyncExitStack() as stack:
            extra, stubs = await self._prepare_mounts(ctx, mounts, " ".join(command), env, stack)
            layer, container_id = await self._run_container(
                ctx, command, env, network, extra, stubs
            )
        # The step's container config, as Docker records it: the command saved with
        # its build arguments, and no entrypoint.
        step_config = {**run_config, "Cmd": saved, "Entrypoint": None}
        state = self._next_state(
            ctx, run_config, " ".join(saved), layer, step=step_config, container=container_id
        )
        self.b.cache.put(cache_key, state, layer.size if layer else 0)
        return state

    # RUN --mount

    def _run_mounts(self, ctx: _StageState, step: ins.Run) -> list[runmount.RunMount]:
        if not step.mounts:
            return []
        if not self.options.run_mounts:
            raise InvalidArgument(MOUNT_NEEDS_BUILDKIT)
        env = self._env(ctx)
        workdir = ctx.state.run_config.get("WorkingDir") or "/"
        mounts = []
        for spec in step.mounts:
            try:
                m = runmount.parse(spec, lambda word: self.lexer.expand(word, env))
            except InvalidArgument as e:
                raise InvalidArgument(
                    f"dockerfile error on line {step.line}: {e.message}"
                ) from None
            if m.target or m.type != runmount.SECRET:
                target = posixpath.normpath(posixpath.join("/", workdir, m.target))
                if target == "/":
                    raise InvalidArgument(f'invalid mount target "{target}"')
                m = dataclasses.replace(m, target=target)
            mounts.append(m)
        return mounts

    async def _mounts_key(self, ctx: _StageState, mounts: list[runmount.RunMount]) -> str:
        parts = []
        for m in mounts:
            part = m.describe()
            if m.type == runmount.BIND and not m.from_:
                tree = await self.source.sources(self.dir)
                selected = await asyncio.to_thread(tree.select, m.source or ".")
                part += "|" + await asyncio.to_thread(tree.checksum, selected, owners=False)
            elif m.type in (runmount.BIND, runmount.CACHE) and m.from_:
                part += "|" + (await self._mount_state(ctx, m.from_)).id
            parts.append(part)
        return "\n".join(parts)

    async def _mount_state(self, ctx: _StageState, name: str) -> State:
        """The state a mount's `from` names: an earlier stage, else an image."""
        index = self.stage_names.get(name.lower())
        if index is None and name.isdigit() and int(name) in self.results:
            index = int(name)
        if index is not None and index < ctx.stage.index:
            return self.results[index].state
        image = await self._base_image(name, self.options.platform)
        state = State(image.id, image.config, ())
        self._pin_state(state)
        return state

    async def _mount_root(self, ctx: _StageState, name: str) -> str:
        """A private, writable view of a stage's or image's filesystem for this step."""
        state = await self._mount_state(ctx, name)
        sandbox = self._sandbox()
        return await asyncio.to_thread(self.b.rootfs.mount, sandbox, state.chain_id)

    async def _prepare_mounts(
        self,
        ctx: _StageState,
        mounts: list[runmount.RunMount],
        command: str,
        env: list[str],
        stack: contextlib.AsyncExitStack,
    ) -> tuple[list[schema.Mount], list[str]]:
        """The step container's mounts, and their targets (what the runtime makes for
        them is not part of the layer). Everything made here goes with `stack`."""
        made: list[schema.Mount] = []
        for m in mounts:
            if m.type == runmount.CACHE:
                seed = None
                if m.from_:
                    root = await self._mount_root(ctx, m.from_)
                    seed = functools.partial(_seed_cache, root, m.source or "/")
                path = await stack.enter_async_context(
                    self.b.cache_mounts.use(
                        m.cache_id,
                        m.sharing or "shared",
                        f'cached mount {m.target} from exec {command} with id "{m.cache_id}"',
                        seed=seed,
                        mode=m.mode,
                        uid=m.uid,
                        gid=m.gid,
                    )
                )
                if m.source and not m.from_:
                    path = rootpath.resolve(path, m.source)
                    await asyncio.to_thread(os.makedirs, path, 0o755, True)
                made.append(
                    schema.Mount(type="bind", source=path, target=m.target, read_only=m.read_only)
                )
            elif m.type == runmount.TMPFS:
                options = schema.TmpfsOptions(size_bytes=m.size) if m.size else None
                made.append(schema.Mount(type="tmpfs", target=m.target, tmpfs_options=options))
            elif m.type == runmount.BIND:
                made.append(await self._bind_mount(ctx, m, stack))
            elif m.type == runmount.SECRET:
                secret = await self._secret_mount(m, env, stack)
                if secret is not None:
                    made.append(secret)
        return made, [m.target.lstrip("/") for m in made]

    async def _bind_mount(
        self, ctx: _StageState, m: runmount.RunMount, stack: contextlib.AsyncExitStack
    ) -> schema.Mount:
        if m.from_:
            root = await self._mount_root(ctx, m.from_)  # writes land in its own upper
            path = rootpath.resolve(root, m.source or "/")
            shown = m.source
        else:
            tree = await self.source.sources(self.dir)
            selected = await asyncio.to_thread(tree.select, m.source or ".")
            path = selected[0].full if m.source else tree.root
            shown = m.source
            if not m.read_only:
                # Writes through a read-write bind of the context are discarded: they
                # go to an overlay's upper directory that goes with the step.
                path = await self._scratch_view(path, stack)
        if not os.path.lexists(path):
            raise NotFound(f'failed to calculate checksum: "/{shown.lstrip("/")}": not found')
        return schema.Mount(type="bind", source=path, target=m.target, read_only=m.read_only)

    async def _scratch_view(self, path: str, stack: contextlib.AsyncExitStack) -> str:
        scratch = os.path.join(self.dir, f"bind{secrets.token_hex(4)}")
        if not os.path.isdir(path):
            os.makedirs(scratch)
            copy_path = os.path.join(scratch, os.path.basename(path))
            await asyncio.to_thread(shutil.copy2, path, copy_path)
            return copy_path
        for sub in ("upper", "work", "merged"):
            os.makedirs(os.path.join(scratch, sub))
        merged = os.path.join(scratch, "merged")
        options = f"lowerdir={path},upperdir={scratch}/upper,workdir={scratch}/work"
        await asyncio.to_thread(mount.mount_with_options, "overlay", merged, "overlay", options)
        stack.push_async_callback(asyncio.to_thread, mount.unmount, merged)
        return merged

    async def _secret_mount(
        self, m: runmount.RunMount, env: list[str], stack: contextlib.AsyncExitStack
    ) -> schema.Mount | None:
        """A secret from the client, on a tmpfs of its own (never on disk), bound read-only
        at its target; None when an optional secret is not provided."""
        secret_id = m.secret_id
        data = await self.options.secrets(secret_id) if self.options.secrets else None
        if data is None:
            if m.required:
                raise InvalidArgument(f"secret {secret_id}: not found")
            return None
        if m.env:
            env.append(f"{m.env}={data.decode('utf-8', 'surrogateescape')}")
        target = m.secret_target()
        if not target:
            return None
        holder = os.path.join(self.dir, f"secret{secrets.token_hex(4)}")
        os.makedirs(holder, 0o700)
        await asyncio.to_thread(
            mount.mount, "tmpfs", holder, "tmpfs", 0, f"size={max(len(data), 1) + 4096},mode=700"
        )
        stack.push_async_callback(asyncio.to_thread, mount.unmount, holder)
        path = os.path.join(holder, "secret")
        await asyncio.to_thread(_write_secret, path, data, m)
        return schema.Mount(type="bind", source=path, target=target, read_only=True)

    async def _run_container(
        self,
        ctx: _StageState,
        command: list[str],
        env: list[str],
        network: str,
        mounts: list[schema.Mount] | None = None,
        stubs: list[str] | None = None,
    ) -> tuple[NewLayer | None, str]:
        state = ctx.state
        run_config = state.run_config
        # The container sees the stage's filesystem and environment, but none of
        # what the image would do at run time (entrypoint, healthcheck, volumes).
        image = Image(
            id=state.id or "scratch",
            manifest_digest="",
            config={
                **state.config,
                "config": {
                    k: v
                    for k, v in run_config.items()
                    if k in ("Env", "WorkingDir", "User", "Shell")
                },
            },
            created="",
            size=0,
            added=0,
        )
        host_config = schema.copy(self.options.host_config)
        host_config.network_mode = network
        if mounts:
            host_config.mounts = [*(host_config.mounts or []), *mounts]
        request = ContainerCreate(
            image=state.id or "scratch",
            cmd=StrSlice(command),
            entrypoint=StrSlice(),
            env=env,
            user=run_config.get("User") or "",
            working_dir=run_config.get("WorkingDir") or "",
            attach_stdout=True,
            attach_stderr=True,
            host_config=host_config,
        )

        def mark(container_id: str) -> None:  # commits with the container's record
            self.b.db.execute(
                "INSERT INTO build_containers(id, created) VALUES (?,?)",
                (container_id, time.time()),
            )

        container = await self.b.containers.create(None, request, image=image, record_also=mark)
        self.containers.append(container.id)
        await self.progress.running(container.short_id)
        waiter = self.b.containers.waiter(container.id, "next-exit")
        try:
            await self.b.containers.start(container.id)
        except DockyardError as e:
            waiter.cancel()
            raise StepFailed(e.message, container.state.exit_code or 1) from None
        async for entry in self.b.containers.logs(container.id, follow=True):
            await self.progress.output(entry.stream, entry.data)
        code = await waiter
        if code != 0:
            raise StepFailed(
                f"The command '{' '.join(command)}' returned a non-zero code: {code}",
                code,
                command,
            )
        upper = self.b.rootfs.upper(os.path.join(self.b.containers.dir(container), "rootfs"))
        layer = await asyncio.to_thread(
            self.b.committer.commit,
            upper,
            state.chain_id,
            take=True,
            pin=self._pin_layer,
            mountpoints=stubs or (),
        )
        if self.options.remove or self.options.force_remove:
            await self._remove_container(container.id)
            await self.progress.removed(container.short_id)
        else:
            self._keep_container(container.id)  # `rm=0`: kept, as Docker keeps it
        return layer, container.id

    async def _remove_container(self, container_id: str) -> None:
        try:
            await self.b.containers.remove(container_id, force=True)
        except NotFound:
            pass
        with self.b.db.transaction():
            self.b.db.execute("DELETE FROM build_containers WHERE id=?", (container_id,))
        if container_id in self.containers:
            self.containers.remove(container_id)

    # COPY / ADD / WORKDIR

    def _sandbox(self) -> str:
        directory = os.path.join(self.dir, f"fs{len(self.sandboxes)}")
        self.b.rootfs.create(directory)
        self.sandboxes.append(directory)
        return directory

    async def _release_sandbox(self, directory: str) -> None:
        await asyncio.to_thread(self.b.rootfs.remove, directory)
        if directory in self.sandboxes:
            self.sandboxes.remove(directory)

    async def _source_tree(self, ctx: _StageState, step: ins.Copy) -> tuple[SourceTree, str | None]:
        """Where a COPY reads from; for --from, a sandbox directory to release afterwards."""
        if not step.from_:
            return await self.source.sources(self.dir), None
        name = step.from_
        index = self.stage_names.get(name.lower())
        if index is None and name.isdigit():
            index = int(name)
            if index >= ctx.stage.index:
                raise InvalidArgument(
                    f"invalid from flag value {name}: refers to current build stage"
                )
            if index not in self.results:
                raise InvalidArgument(f"invalid from flag value {name}: index out of bounds")
        if index is not None:
            state = self.results[index].state
        else:
            image = await self._base_image(name, self.options.platform)
            state = State(image.id, image.config, ())
            self._pin_state(state)  # its layers stay while they are mounted
        sandbox = self._sandbox()
        merged = await asyncio.to_thread(self.b.rootfs.mount, sandbox, state.chain_id)
        return SourceTree(merged, context=False), sandbox

    async def _copy(self, ctx: _StageState, step: ins.Copy) -> State:
        downloads: list[copier.Download] = []
        tree, source_sandbox = await self._source_tree(ctx, step)
        try:
            if step.checksum and not all(copier.is_url(s) for s in step.sources):
                raise InvalidArgument("checksum can't be specified for non-HTTP(S) sources")
            if step.add and any(copier.is_url(s) for s in step.sources):
                folder = os.path.join(self.dir, "downloads", secrets.token_hex(4))
                os.makedirs(folder)
                for source in step.sources:
                    if copier.is_url(source):
                        downloads.append(
                            await asyncio.to_thread(copier.download, source, folder, step.checksum)
                        )
            elif any(copier.is_url(s) for s in step.sources):
                raise InvalidArgument("source can't be a URL for COPY")
            local = [s for s in step.sources if not copier.is_url(s)]
            selected, checksum = await asyncio.to_thread(self._select, tree, local, downloads, step)
            contents = [
                (c.name, _HEREDOC_LEXER.expand(c.data, self._env(ctx)) if c.expand else c.data)
                for c in step.contents
            ]
            count = len(selected) + len(downloads) + len(contents)
            if count == 0:
                raise InvalidArgument(f"{step.keyword} failed: no source files were specified")
            if count > 1 and not step.dest.endswith("/"):
                raise InvalidArgument(
                    f"When using {step.keyword} with more than one source file, the destination "
                    "must be a directory and end with a /"
                )
            hash_text = self._hash_text(checksum, contents, selected, downloads)
            chown = f"--chown={step.chown} " if step.chown else ""
            comment = f"{step.keyword} {chown}{hash_text} in {step.dest} "
            created_by = imageconfig.nop_single(ctx.state.run_config, comment)
            cache_key = key(
                ctx.state,
                step.keyword,
                comment,
                step.chmod,
                step.from_,
                json.dumps([s for s in step.sources]),
                str(step.unpack),
            )
            cached = self._cached(cache_key, ctx, created_by, ctx.state.run_config)
            if cached is not None:
                await self.progress.cached()
                return cached
            dest = self._dest(ctx, step.dest)
            sandbox = self._sandbox()
            try:
                merged = await asyncio.to_thread(self.b.rootfs.mount, sandbox, ctx.state.chain_id)
                await asyncio.to_thread(
                    self._write, merged, step, tree, selected, downloads, contents, dest
                )
                layer = await self._commit_sandbox(sandbox, ctx.state.chain_id)
            finally:
                await self._release_sandbox(sandbox)
        finally:
            if source_sandbox is not None:
                await self._release_sandbox(source_sandbox)
            for item in downloads:
                with contextlib.suppress(OSError):
                    os.unlink(item.path)
        state = self._next_state(ctx, ctx.state.run_config, created_by, layer)
        self.b.cache.put(cache_key, state, layer.size if layer else 0)
        return state

    def _select(
        self,
        tree: SourceTree,
        sources: list[str],
        downloads: list[copier.Download],
        step: ins.Copy,
    ) -> tuple[list[Selected], str]:
        selected: list[Selected] = []
        for source in sources:
            try:
                selected += tree.select(source)
            except NotFound as e:
                raise NotFound(f"{step.keyword} failed: {e.message}") from None
            except InvalidArgument as e:
                raise InvalidArgument(f"{step.keyword} failed: {e.message}") from None
        checksum = tree.checksum(selected, owners=bool(step.from_) and not step.chown)
        if downloads:
            extra = SourceTree(os.path.dirname(downloads[0].path), context=False)
            picked = [extra.select(os.path.basename(d.path))[0] for d in downloads]
            checksum += extra.checksum(picked, owners=False)
        return selected, checksum

    @staticmethod
    def _hash_text(
        checksum: str,
        contents: list[tuple[str, str]],
        selected: list[Selected],
        downloads: list[copier.Download],
    ) -> str:
        digest = hashlib.sha256(checksum.encode())
        for name, data in contents:
            digest.update(f"\0{name}\0{data}".encode("utf-8", "surrogateescape"))
        if len(selected) + len(contents) + len(downloads) > 1:
            prefix = "multi"
        elif selected and selected[0].is_dir:
            prefix = "dir"
        else:
            prefix = "file"
        return f"{prefix}:{digest.hexdigest()}"

    def _dest(self, ctx: _StageState, dest: str) -> str:
        if dest.startswith("/"):
            return dest
        workdir = ctx.state.run_config.get("WorkingDir") or "/"
        joined = os.path.normpath(os.path.join("/", workdir, dest))
        return joined + "/" if dest.endswith("/") or dest in (".", "./") else joined

    def _write(
        self,
        root: str,
        step: ins.Copy,
        tree: SourceTree,
        selected: list[Selected],
        downloads: list[copier.Download],
        contents: list[tuple[str, str]],
        dest: str,
    ) -> None:
        owner = copier.resolve_owner(root, step.chown) if step.chown else None
        if owner is None and not step.from_:
            owner = copier.Owner(0, 0)
        target = copier.Target(root, owner, copier.parse_chmod(step.chmod))
        unpack = step.add and step.unpack is not False
        for item in selected:
            if item.is_dir:
                target.put_dir(dest, item, tree)
            elif unpack and copier.is_archive(item.full):
                target.unpack(dest, item.full)
            else:
                target.put_file(dest, item, tree)
        for download in downloads:
            extra = SourceTree(os.path.dirname(download.path), context=False)
            item = extra.select(os.path.basename(download.path))[0]
            if not download.name and dest.endswith("/"):
                raise InvalidArgument(f"cannot determine filename for source {download.path}")
            if step.unpack and copier.is_archive(item.full):
                target.unpack(dest, item.full)
            else:
                target.put_file(dest, item, extra)
        for name, data in contents:
            target.put_content(dest, name, data.encode("utf-8", "surrogateescape"))

    async def _commit_sandbox(self, sandbox: str, parent: str | None) -> NewLayer | None:
        await asyncio.to_thread(self.b.rootfs.unmount, sandbox)
        return await asyncio.to_thread(
            self.b.committer.commit,
            self.b.rootfs.upper(sandbox),
            parent,
            take=True,
            pin=self._pin_layer,
        )

    async def _workdir(self, ctx: _StageState, step: ins.Workdir) -> State:
        run_config, created_by = imageconfig.workdir(ctx.state.run_config, step.path)
        path = run_config["WorkingDir"]
        user = run_config.get("User") or ""
        cache_key = key(ctx.state, "WORKDIR", path, user)
        cached = self._cached(cache_key, ctx, created_by, run_config)
        if cached is not None:
            await self.progress.cached()
            return cached
        sandbox = self._sandbox()
        try:
            merged = await asyncio.to_thread(self.b.rootfs.mount, sandbox, ctx.state.chain_id)
            await asyncio.to_thread(_make_workdir, merged, path, user)
            layer = await self._commit_sandbox(sandbox, ctx.state.chain_id)
        finally:
            await self._release_sandbox(sandbox)
        state = self._next_state(ctx, run_config, created_by, layer)
        self.b.cache.put(cache_key, state, layer.size if layer else 0)
        return state

    # -- the result and the cleanup -----------------------------------------

    def _keep_container(self, container_id: str) -> None:
        with self.b.db.transaction():
            self.b.db.execute("DELETE FROM build_containers WHERE id=?", (container_id,))
        self.containers.remove(container_id)

    async def cleanup(self) -> None:
        # What is left is the container of a step that failed or was interrupted.
        # Unlike Docker, which keeps a failed step's container unless told
        # `--force-rm`, it always goes: a failed build leaves nothing behind.
        for container_id in list(self.containers):
            try:
                await self._remove_container(container_id)
            except DockyardError as e:
                log.warning("cannot remove build container %s: %s", container_id[:12], e.message)
        for sandbox in list(self.sandboxes):
            with contextlib.suppress(OSError):
                await self._release_sandbox(sandbox)
        await asyncio.to_thread(shutil.rmtree, self.dir, True)


def _extends(image: State, state: State, *, strict: bool = False) -> bool:
    """Whether `image`'s history and layers begin with `state`'s (with `strict`: and go
    on beyond them). A state with neither (FROM scratch) begins every image."""
    history = list(image.config.get("history") or [])
    mine = list(state.config.get("history") or [])
    if not history:
        return False
    if not mine and not state.diff_ids:
        return True
    if len(mine) > len(history) or (strict and len(mine) == len(history)):
        return False
    diff_ids = list(image.diff_ids)
    return history[: len(mine)] == mine and diff_ids[: len(state.diff_ids)] == list(state.diff_ids)


def _seed_cache(root: str, source: str, staging: str) -> None:
    """A new cache mount's first content: `source` of the stage or image it names."""
    path = rootpath.resolve(root, source)
    if os.path.isdir(path):
        shutil.copytree(path, staging, symlinks=True)
    else:
        os.mkdir(staging)


def _write_secret(path: str, data: bytes, m: runmount.RunMount) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o400 if m.mode is None else m.mode)
    os.chown(path, m.uid or 0, m.gid or 0)


def _make_workdir(root: str, path: str, user: str) -> None:
    """`mkdir -p` the working directory, new directories owned by the stage's USER."""
    owner = copier.Owner(0, 0)
    if user:
        try:
            resolved = users.resolve(root, user)
            owner = copier.Owner(resolved.uid, resolved.gid)
        except InvalidArgument:
            pass
    copier.Target(root, owner, None).makedirs(path)
