"""Dockerfile instructions: the parsed nodes given their meaning, grouped into stages.

`parse_stages` checks every instruction before anything runs (arguments,
flags, stage names) and returns the ARGs before the first FROM (global
build arguments) and the stages. Variables are not expanded here: that
happens at build time, per instruction, with the values in scope then
(`Instruction.expand`).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self

from dockyard.build import parser, runmount
from dockyard.build.parser import Dockerfile, Heredoc, Node
from dockyard.errors import InvalidArgument

Expander = Callable[[str], str]

_STAGE_NAME = re.compile(r"^[a-z][a-z0-9\-_.]*$")
_DURATION = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


@dataclass(frozen=True)
class Instruction:
    node: Node = field(repr=False)

    @property
    def line(self) -> int:
        return self.node.start_line

    @property
    def text(self) -> str:
        """The instruction as written (what `Step N/M :` shows)."""
        return self.node.original.strip()

    @property
    def keyword(self) -> str:
        return self.node.command.upper()

    def expand(self, expand: Expander) -> Self:
        """A copy with build-time variables substituted (for instructions that allow it)."""
        return self


@dataclass(frozen=True)
class From(Instruction):
    base: str = ""
    name: str = ""  # the stage name after AS, lower-cased
    platform: str = ""


@dataclass(frozen=True)
class Arg(Instruction):
    pairs: tuple[tuple[str, str | None], ...] = ()

    def expand(self, expand: Expander) -> Self:
        return dataclasses.replace(
            self,
            pairs=tuple((expand(k), None if v is None else expand(v)) for k, v in self.pairs),
        )


@dataclass(frozen=True)
class Env(Instruction):
    pairs: tuple[tuple[str, str], ...] = ()

    def expand(self, expand: Expander) -> Self:
        return dataclasses.replace(self, pairs=tuple((expand(k), expand(v)) for k, v in self.pairs))


@dataclass(frozen=True)
class Label(Env):
    literal: bool = False  # from `--label`: values are taken as given, never expanded

    def expand(self, expand: Expander) -> Self:
        return self if self.literal else super().expand(expand)


@dataclass(frozen=True)
class Maintainer(Instruction):
    maintainer: str = ""

    def expand(self, expand: Expander) -> Self:
        return self  # MAINTAINER text is taken as written


@dataclass(frozen=True)
class Run(Instruction):
    command: tuple[str, ...] = ()
    shell_form: bool = True  # prepend the stage's SHELL
    heredocs: tuple[Heredoc, ...] = ()
    network: str = ""  # RUN --network=default|none|host
    mounts: tuple[str, ...] = ()  # RUN --mount values as written (`runmount.parse`)


@dataclass(frozen=True)
class Cmd(Instruction):
    command: tuple[str, ...] = ()
    shell_form: bool = True


@dataclass(frozen=True)
class Entrypoint(Cmd):
    pass


@dataclass(frozen=True)
class Shell(Instruction):
    shell: tuple[str, ...] = ()


@dataclass(frozen=True)
class Workdir(Instruction):
    path: str = ""

    def expand(self, expand: Expander) -> Self:
        return dataclasses.replace(self, path=expand(self.path))


@dataclass(frozen=True)
class User(Instruction):
    user: str = ""

    def expand(self, expand: Expander) -> Self:
        return dataclasses.replace(self, user=expand(self.user))


@dataclass(frozen=True)
class Volume(Instruction):
    paths: tuple[str, ...] = ()

    def expand(self, expand: Expander) -> Self:
        paths = tuple(expand(p) for p in self.paths)
        for path in paths:
            if not path.strip():
                raise InvalidArgument("VOLUME specified can not be an empty string")
        return dataclasses.replace(self, paths=paths)


@dataclass(frozen=True)
class Expose(Instruction):
    ports: tuple[str, ...] = ()  # words; expanded by the builder (one may become several)


@dataclass(frozen=True)
class StopSignal(Instruction):
    signal: str = ""

    def expand(self, expand: Expander) -> Self:
        return dataclasses.replace(self, signal=expand(self.signal))


@dataclass(frozen=True)
class Healthcheck(Instruction):
    test: tuple[str, ...] = ()  # ("NONE",), ("CMD", ...) or ("CMD-SHELL", "cmd")
    interval: int = 0  # nanoseconds; 0 = inherit / default
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


@dataclass(frozen=True)
class Onbuild(Instruction):
    expression: str = ""  # the trigger, stored in the image and run by child builds


@dataclass(frozen=True)
class Source:
    """Inline file content from a heredoc (`COPY <<EOF /dest`)."""

    name: str
    data: str
    expand: bool


@dataclass(frozen=True)
class Copy(Instruction):
    """COPY, and ADD (`add=True`)."""

    sources: tuple[str, ...] = ()
    contents: tuple[Source, ...] = ()
    dest: str = ""
    add: bool = False
    from_: str = ""
    chown: str = ""
    chmod: str = ""
    link: bool = False
    unpack: bool | None = None  # ADD --unpack; None: local tars are extracted
    checksum: str = ""  # ADD: the digest a downloaded file must have

    def expand(self, expand: Expander) -> Self:
        return dataclasses.replace(
            self,
            sources=tuple(expand(s) for s in self.sources),
            dest=expand(self.dest),
            chown=expand(self.chown),
            chmod=expand(self.chmod),
            from_=expand(self.from_),
            checksum=expand(self.checksum),
        )


@dataclass
class Stage:
    index: int
    start: From
    commands: list[Instruction] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.start.name


# -- flags -------------------------------------------------------------------


class _Flags:
    """An instruction's `--name=value` flags, checked against what it accepts."""

    def __init__(
        self,
        node: Node,
        *,
        strings: tuple[str, ...] = (),
        bools: tuple[str, ...] = (),
        repeated: tuple[str, ...] = (),
    ) -> None:
        self.values: dict[str, str] = {}
        self.lists: dict[str, list[str]] = {}
        for raw in node.flags:
            if raw == "--":
                break
            if not raw.startswith("--"):
                raise InvalidArgument(f"arg should start with -- : {raw}")
            name, has_value, value = raw[2:].partition("=")
            if name in repeated:
                if not has_value:
                    raise InvalidArgument(f"missing a value on flag: --{name}")
                self.lists.setdefault(name, []).append(value)
            elif name in bools:
                if name in self.values:
                    raise InvalidArgument(f"duplicate flag specified: --{name}")
                if has_value and value == "":
                    raise InvalidArgument(f"missing a value on flag: --{name}")
                if value.lower() not in ("", "true", "false"):
                    raise InvalidArgument(
                        f"expecting boolean value for flag --{name}, not: {value}"
                    )
                self.values[name] = "false" if value.lower() == "false" else "true"
            elif name in strings:
                if name in self.values:
                    raise InvalidArgument(f"duplicate flag specified: --{name}")
                if not has_value:
                    raise InvalidArgument(f"missing a value on flag: --{name}")
                self.values[name] = value
            else:
                raise InvalidArgument(f"unknown flag: --{name}")

    def get(self, name: str) -> str:
        return self.values.get(name, "")

    def flag(self, name: str) -> bool | None:
        value = self.values.get(name)
        return None if value is None else value == "true"


def parse_duration(text: str, flag: str) -> int:
    """A Go duration (`30s`, `1m30s`, `1.5h`, `250ms`) in nanoseconds; "" is 0."""
    if text in ("", "0"):
        return 0
    pos = 0
    total = 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise InvalidArgument(f'time: invalid duration "{text}"')
    value = int(total)
    if 0 < value < 1_000_000:
        raise InvalidArgument(f'Interval "{flag}" cannot be less than 1ms')
    return value


# -- nodes to instructions -----------------------------------------------------

_NAMES = (
    "add arg cmd copy entrypoint env expose from healthcheck label maintainer onbuild run "
    "shell stopsignal user volume workdir"
).split()


def instruction(node: Node) -> Instruction | From:
    """The typed instruction of a node (raises InvalidArgument without the line)."""
    command = node.command
    builder = _BUILDERS.get(command)
    if builder is None:
        message = f"unknown instruction: {node.keyword}"
        close = difflib.get_close_matches(command, _NAMES, n=1, cutoff=0.75)
        if close:
            message += f" (did you mean {close[0]}?)"
        raise InvalidArgument(message)
    return builder(node)


def _exactly_one(node: Node) -> str:
    if len(node.args) != 1:
        raise InvalidArgument(f"{node.keyword.upper()} requires exactly one argument")
    return node.args[0]


def _at_least_one(node: Node) -> None:
    if not node.args:
        raise InvalidArgument(f"{node.keyword.upper()} requires at least one argument")


def _no_flags(node: Node) -> None:
    _Flags(node)


def _from(node: Node) -> From:
    flags = _Flags(node, strings=("platform",))
    args = node.args
    name = ""
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not _STAGE_NAME.match(name):
            raise InvalidArgument(
                f'invalid name for build stage: "{args[2]}", name can\'t start with a number '
                "or contain symbols"
            )
    elif len(args) != 1:
        raise InvalidArgument("FROM requires either one or three arguments")
    return From(node, base=args[0], name=name, platform=flags.get("platform"))


def _arg(node: Node) -> Arg:
    _no_flags(node)
    _at_least_one(node)
    pairs: list[tuple[str, str | None]] = []
    for word in node.args:
        key, sep, value = word.partition("=")
        if sep and not key:
            raise InvalidArgument("ARG names can not be blank")
        pairs.append((key, value if sep else None))
    return Arg(node, pairs=tuple(pairs))


def _kv(node: Node) -> tuple[tuple[str, str], ...]:
    _no_flags(node)
    _at_least_one(node)
    args = node.args
    pairs = []
    for i in range(0, len(args), 3):
        if not args[i]:
            raise InvalidArgument(f"{node.keyword.upper()} names can not be blank")
        pairs.append((args[i], args[i + 1]))
    return tuple(pairs)


def _env(node: Node) -> Env:
    return Env(node, pairs=_kv(node))


def _label(node: Node) -> Label:
    return Label(node, pairs=_kv(node))


def _maintainer(node: Node) -> Maintainer:
    _no_flags(node)
    return Maintainer(node, maintainer=_exactly_one(node))


def _run(node: Node) -> Run:
    flags = _Flags(node, strings=("network", "security", "device"), repeated=("mount",))
    for unsupported in ("security", "device"):
        if flags.get(unsupported):
            raise InvalidArgument(f"the --{unsupported} option of RUN is not supported by Dockyard")
    mounts = tuple(flags.lists.get("mount", ()))
    for spec in mounts:
        runmount.parse(spec)  # checked now; expanded when the step runs
    network = flags.get("network")
    if network not in ("", "default", "none", "host"):
        raise InvalidArgument(f"unsupported network mode: {network}")
    heredocs = tuple(node.heredocs)
    if heredocs and (len(node.args) != 1 or node.json):
        raise InvalidArgument(f"parsing produced an invalid run command: {node.args}")
    return Run(
        node,
        command=tuple(node.args),
        shell_form=not node.json,
        heredocs=heredocs,
        network=network,
        mounts=mounts,
    )


def _cmd(node: Node) -> Cmd:
    _no_flags(node)
    return Cmd(node, command=tuple(node.args), shell_form=not node.json)


def _entrypoint(node: Node) -> Entrypoint:
    _no_flags(node)
    return Entrypoint(node, command=tuple(node.args), shell_form=not node.json)


def _shell(node: Node) -> Shell:
    _no_flags(node)
    if not node.args:
        raise InvalidArgument("SHELL requires at least one argument")
    if not node.json:
        raise InvalidArgument(
            f"SHELL requires the arguments to be in JSON form: {node.original.strip()}"
        )
    return Shell(node, shell=tuple(node.args))


def _workdir(node: Node) -> Workdir:
    _no_flags(node)
    return Workdir(node, path=_exactly_one(node))


def _user(node: Node) -> User:
    _no_flags(node)
    return User(node, user=_exactly_one(node))


def _volume(node: Node) -> Volume:
    _no_flags(node)
    _at_least_one(node)
    paths = tuple(p.strip() for p in node.args)
    if any(not p for p in paths):
        raise InvalidArgument("VOLUME specified can not be an empty string")
    return Volume(node, paths=paths)


def _expose(node: Node) -> Expose:
    _no_flags(node)
    _at_least_one(node)
    return Expose(node, ports=tuple(sorted(node.args)))


def _stopsignal(node: Node) -> StopSignal:
    _no_flags(node)
    return StopSignal(node, signal=_exactly_one(node))


def _healthcheck(node: Node) -> Healthcheck:
    _at_least_one(node)
    kind = node.args[0].upper()
    args = node.args[1:]
    if kind == "NONE":
        if args:
            raise InvalidArgument("HEALTHCHECK NONE takes no arguments")
        _no_flags(node)
        return Healthcheck(node, test=("NONE",))
    flags = _Flags(
        node, strings=("interval", "timeout", "start-period", "start-interval", "retries")
    )
    if kind != "CMD":
        raise InvalidArgument(f'Unknown type "{kind}" in HEALTHCHECK (try CMD)')
    if not args:
        raise InvalidArgument("Missing command after HEALTHCHECK CMD")
    test = ("CMD", *args) if node.json else ("CMD-SHELL", *args)
    retries = 0
    if flags.get("retries"):
        try:
            retries = int(flags.get("retries"))
        except ValueError:
            raise InvalidArgument(
                f'strconv.ParseInt: parsing "{flags.get("retries")}": invalid syntax'
            ) from None
        if retries < 0:
            raise InvalidArgument(f"--retries cannot be negative ({retries})")
    return Healthcheck(
        node,
        test=test,
        interval=parse_duration(flags.get("interval"), "interval"),
        timeout=parse_duration(flags.get("timeout"), "timeout"),
        start_period=parse_duration(flags.get("start-period"), "start-period"),
        start_interval=parse_duration(flags.get("start-interval"), "start-interval"),
        retries=retries,
    )


def _onbuild(node: Node) -> Onbuild:
    _no_flags(node)
    if node.child is None:
        raise InvalidArgument("ONBUILD requires at least one argument")
    trigger = node.child.command.upper()
    if trigger == "ONBUILD":
        raise InvalidArgument("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("MAINTAINER", "FROM"):
        raise InvalidArgument(f"{trigger} isn't allowed as an ONBUILD trigger")
    instruction(node.child)  # the trigger must be valid now, not only in the child build
    expression = re.sub(r"(?i)^\s*ONBUILD\s*", "", node.original)
    for heredoc in node.heredocs:
        expression += "\n" + heredoc.content + heredoc.name
    return Onbuild(node, expression=expression)


def _copy(node: Node) -> Copy:
    add = node.command == "add"
    if add:
        flags = _Flags(
            node,
            strings=("chown", "chmod", "checksum"),
            bools=("link", "keep-git-dir", "unpack"),
            repeated=("exclude",),
        )
    else:
        flags = _Flags(
            node,
            strings=("chown", "chmod", "from"),
            bools=("link", "parents"),
            repeated=("exclude",),
        )
    if len(node.args) < 2:
        raise InvalidArgument(
            f"{node.keyword.upper()} requires at least two arguments, but only one was "
            "provided. Destination could not be determined"
        )
    *sources, dest = node.args
    if parser.parse_heredoc(dest) is not None:
        raise InvalidArgument(f"{node.keyword.upper()} cannot accept a heredoc as a destination")
    docs = {h.name: h for h in node.heredocs}
    paths: list[str] = []
    contents: list[Source] = []
    for source in sources:
        heredoc = parser.parse_heredoc(source)
        if heredoc is None:
            paths.append(source)
            continue
        found = docs.get(heredoc.name)
        data = found.content if found else ""
        if heredoc.chomp:
            data = parser.chomp(data)
        contents.append(Source(heredoc.name, data, heredoc.expand))
    # BuildKit's flags that change what is copied: refused, never silently ignored.
    unsupported = ["exclude"] if flags.lists.get("exclude") else []
    unsupported += ["parents"] if flags.flag("parents") else []
    for flag in unsupported:
        raise InvalidArgument(
            f"{node.keyword.upper()} --{flag} is not supported by Dockyard's Dockerfile "
            "builder yet (classic or BuildKit)"
        )
    chmod = flags.get("chmod")
    if chmod and not re.fullmatch(r"[0-7]{3,4}|([ugoa]*[-+=][rwxXst]*,?)+", chmod):
        raise InvalidArgument(f"invalid chmod parameter: '{chmod}'")
    return Copy(
        node,
        sources=tuple(paths),
        contents=tuple(contents),
        dest=dest,
        add=add,
        from_=flags.get("from"),
        chown=flags.get("chown"),
        chmod=chmod,
        link=bool(flags.flag("link")),
        unpack=flags.flag("unpack") if add else None,
        checksum=flags.get("checksum"),
    )


_BUILDERS: dict[str, Callable[[Node], Instruction]] = {
    "add": _copy,
    "arg": _arg,
    "cmd": _cmd,
    "copy": _copy,
    "entrypoint": _entrypoint,
    "env": _env,
    "expose": _expose,
    "from": _from,
    "healthcheck": _healthcheck,
    "label": _label,
    "maintainer": _maintainer,
    "onbuild": _onbuild,
    "run": _run,
    "shell": _shell,
    "stopsignal": _stopsignal,
    "user": _user,
    "volume": _volume,
    "workdir": _workdir,
}


def parse_stages(dockerfile: Dockerfile) -> tuple[list[Arg], list[Stage]]:
    """Global ARGs and stages; every instruction checked, errors naming their line."""
    meta: list[Arg] = []
    stages: list[Stage] = []
    for node in dockerfile.nodes:
        try:
            parsed = instruction(node)
        except InvalidArgument as e:
            raise parser.error(node.start_line, e.message) from None
        if isinstance(parsed, From):
            stages.append(Stage(len(stages), parsed))
        elif not stages:
            if not isinstance(parsed, Arg):
                raise parser.error(node.start_line, "no build stage in current context")
            meta.append(parsed)
        else:
            stages[-1].commands.append(parsed)
    if not stages:
        raise InvalidArgument("dockerfile parse error: no build stage in the Dockerfile (FROM)")
    return meta, stages


def trigger(expression: str, escape: str = parser.DEFAULT_ESCAPE) -> Instruction:
    """An ONBUILD trigger stored in a base image, parsed for the child build."""
    text = expression if escape == parser.DEFAULT_ESCAPE else f"# escape={escape}\n{expression}"
    parsed = parser.parse(text)
    if len(parsed.nodes) != 1:
        raise InvalidArgument("onbuild trigger should be a single expression")
    return instruction(parsed.nodes[0])
