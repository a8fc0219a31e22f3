"""What a build reports as it runs, and the classic builder's rendering of it.

The builder calls a `BuildProgress` at each point a user sees: a step begins, it hit
the cache, its container runs and prints, it produced a state, a stage is done. Each
front door renders that its own way: `ClassicProgress` writes the classic builder's
JSON stream for `POST /build` (`Step N/M : ...`, ` ---> Using cache`, ` ---> Running
in <id>`, output with stderr in red, `aux` messages, `Successfully built/tagged`),
line for line as Docker's classic builder does; BuildKit's door renders vertexes
(`buildkit.progress`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from dockyard.build import instructions as ins
from dockyard.build.cache import State
from dockyard.images.reference import Reference

Emit = Callable[[dict[str, Any]], Awaitable[None]]

STDERR_START = "\033[91m"
STDERR_END = "\033[0m"


@dataclass(frozen=True)
class Step:
    """A step about to run: a global ARG, a stage's FROM, or one of its instructions."""

    number: int  # over the whole build, from 1
    total: int
    instruction: ins.Instruction
    stage: ins.Stage | None = None  # None for the ARGs before the first FROM
    stages: int = 1  # how many stages the Dockerfile has
    from_stage: bool = False  # a FROM that names an earlier stage (not an image)


class BuildProgress(Protocol):
    async def warning(self, text: str) -> None:
        """Something about the Dockerfile the user should know."""

    async def syntax_directive(self, value: str) -> None:
        """The Dockerfile names a frontend (`# syntax=`); this builder is its own."""

    async def step(self, step: Step) -> None: ...

    async def triggers(self, count: int) -> None:
        """The base image's ONBUILD triggers run now (within the current step)."""

    async def cached(self) -> None:
        """The current step's result came from the build cache."""

    async def running(self, container: str) -> None:
        """The current step runs in this container (short ID)."""

    async def output(self, stream: int, data: bytes) -> None:
        """What the current step's container wrote (1 stdout, 2 stderr)."""

    async def removed(self, container: str) -> None:
        """The current step's container was removed."""

    async def step_done(self, state: State) -> None:
        """The current step produced `state`."""

    async def stage_done(self, state: State) -> None: ...

    async def unused_args(self, names: list[str]) -> None:
        """Build arguments given that no ARG declared."""


@dataclass
class ClassicProgress:
    """The classic builder's output on `POST /build`, in Docker's exact words. With
    `quiet`, everything is held back: only the image ID is written, or, when the build
    fails, what was held back (`flush()`), as Docker does."""

    emit: Emit
    quiet: bool = False
    _held: list[dict[str, Any]] = field(default_factory=list)

    async def _send(self, message: dict[str, Any]) -> None:
        if self.quiet:
            self._held.append(message)
            return
        await self.emit(message)

    async def _say(self, text: str) -> None:
        await self._send({"stream": text})

    async def warning(self, text: str) -> None:
        await self._say(f"{STDERR_START}[WARNING]: {text}\n{STDERR_END}")

    async def syntax_directive(self, value: str) -> None:
        await self.warning("the syntax directive is ignored by the classic builder")

    async def step(self, step: Step) -> None:
        await self._say(f"Step {step.number}/{step.total} : {step.instruction.text}\n")

    async def triggers(self, count: int) -> None:
        plural = "s" if count > 1 else ""
        await self._say(f"# Executing {count} build trigger{plural}\n")

    async def cached(self) -> None:
        await self._say(" ---> Using cache\n")

    async def running(self, container: str) -> None:
        await self._say(f" ---> Running in {container}\n")

    async def output(self, stream: int, data: bytes) -> None:
        text = data.decode(errors="replace")
        if stream == 2:
            text = STDERR_START + text + STDERR_END
        await self._say(text)

    async def removed(self, container: str) -> None:
        await self._say(f" ---> Removed intermediate container {container}\n")

    async def step_done(self, state: State) -> None:
        await self._say(f" ---> {state.short_id}\n")

    async def stage_done(self, state: State) -> None:
        if state.id:
            await self._send({"aux": {"ID": state.id}})

    async def unused_args(self, names: list[str]) -> None:
        await self._say(f"[Warning] One or more build-args [{' '.join(names)}] were not consumed\n")

    async def built(self, image_id: str, short_id: str) -> None:
        await self._say(f"Successfully built {short_id}\n")

    async def tagged(self, tag: Reference) -> None:
        await self._say(f"Successfully tagged {tag.familiar()}\n")

    async def finish(self, image_id: str) -> None:
        if self.quiet:
            await self.emit({"stream": image_id + "\n"})

    async def flush(self) -> None:
        """On failure with `quiet`, Docker shows what was held back."""
        held, self._held = self._held, []
        for message in held:
            await self.emit(message)
