"""Dockerfile-style `changes` applied to an image config (import and commit).

`docker import --change` and `docker commit --change` accept the instructions
that only change the config (CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK,
LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR), parsed and applied
exactly as the builder parses and applies them.
"""

from __future__ import annotations

from typing import Any

from dockyard.build import imageconfig, instructions, parser
from dockyard.build import instructions as ins
from dockyard.build.expansion import Lexer
from dockyard.errors import InvalidArgument

_ALLOWED = (
    "cmd",
    "entrypoint",
    "env",
    "expose",
    "healthcheck",
    "label",
    "onbuild",
    "stopsignal",
    "user",
    "volume",
    "workdir",
)


def apply_changes(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """Return `config` (the image config's `config` object) with `changes` applied."""
    changes = [c for c in changes if c.strip()]
    if not changes:
        return dict(config)
    dockerfile = parser.parse("\n".join(changes))
    lexer = Lexer(dockerfile.escape)
    result = dict(config)
    for node in dockerfile.nodes:
        if node.command not in _ALLOWED:
            raise InvalidArgument(f"{node.keyword} is not a valid change command")
        step = instructions.instruction(node)
        env = imageconfig.env_map(result)
        if isinstance(step, ins.Expose):
            words = [w for port in step.ports for w in lexer.words(port, env)]
            result, _ = imageconfig.expose(result, words)
            continue
        step = step.expand(lambda word, env=env: lexer.expand(word, env))  # type: ignore[misc]
        if isinstance(step, ins.Workdir):
            result, _ = imageconfig.workdir(result, step.path)
        else:
            result, _ = imageconfig.apply(result, step, cmd_set=True)
    return result
