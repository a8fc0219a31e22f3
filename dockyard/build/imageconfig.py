"""How Dockerfile instructions change an image's runtime config, and the history they leave.

The runtime config is the image config's `config` object (`Env`, `Cmd`,
`Entrypoint`, `Labels`, ...). Each function here takes one and an
instruction (already expanded) and returns the new config with the comment
that Docker's classic builder writes into the image history for that step,
so `docker history` reads the same as for an image Docker built:
`/bin/sh -c #(nop)  ENV A=1`, `/bin/sh -c #(nop)  CMD ["sh"]`,
`/bin/sh -c #(nop) WORKDIR /app`, `/bin/sh -c #(nop) COPY file:<hash> in /dst `.

Everything here is pure; the builder applies it, `commit --change` and
`import --change` too.
"""

from __future__ import annotations

import copy
import json
import posixpath
import re
from typing import Any

from dockyard.build import instructions as ins
from dockyard.containers import signals
from dockyard.errors import InvalidArgument
from dockyard.units import go_duration

RunConfig = dict[str, Any]

DEFAULT_SHELL = ["/bin/sh", "-c"]
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def shell(config: RunConfig) -> list[str]:
    return list(config.get("Shell") or DEFAULT_SHELL)


def command_line(command: ins.Cmd | ins.Run, config: RunConfig) -> list[str]:
    """The argv of a RUN, CMD or ENTRYPOINT: shell form goes through the stage's SHELL."""
    if command.shell_form and command.command:
        return [*shell(config), *command.command]
    return list(command.command)


def nop(config: RunConfig, comment: str) -> str:
    """The history text of a metadata-only step (two arguments: note the double space)."""
    return " ".join([*shell(config), "#(nop) ", comment])


def nop_single(config: RunConfig, comment: str) -> str:
    """The one-argument form Docker keeps for WORKDIR, COPY and ADD."""
    return " ".join([*shell(config), "#(nop) " + comment])


def nop_command(config: RunConfig, created_by: str) -> list[str]:
    """The container command Docker's builder records for a metadata step (its
    `ContainerConfig.Cmd`), from the history text `nop` or `nop_single` made of it
    with the stage's `config` of before the step."""
    prefix = " ".join(shell(config)) + " "
    text = created_by.removeprefix(prefix)
    if text != created_by and text.startswith("#(nop)  "):
        return [*shell(config), "#(nop) ", text.removeprefix("#(nop)  ")]
    if text != created_by:
        return [*shell(config), text]
    return [*shell(config), created_by]


def begin_stage(config: RunConfig | None) -> RunConfig:
    """A stage's starting config: the base image's, with a default PATH when it has none."""
    result = copy.deepcopy(config or {})
    env = list(result.get("Env") or [])
    if not any(e.partition("=")[0] == "PATH" for e in env):
        env.append(f"PATH={DEFAULT_PATH}")
    result["Env"] = env
    return result


def env_value(config: RunConfig, name: str) -> str | None:
    for entry in config.get("Env") or []:
        key, _, value = entry.partition("=")
        if key == name:
            return str(value)
    return None


def env_map(config: RunConfig) -> dict[str, str]:
    return dict(e.partition("=")[::2] for e in config.get("Env") or [])


def set_env(config: RunConfig, pairs: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> None:
    env = list(config.get("Env") or [])
    for key, value in pairs:
        entry = f"{key}={value}"
        for i, existing in enumerate(env):
            if existing.partition("=")[0] == key:
                env[i] = entry
                break
        else:
            env.append(entry)
    config["Env"] = env


def apply(
    config: RunConfig, step: ins.Instruction, *, cmd_set: bool = False
) -> tuple[RunConfig, str]:
    """Apply a metadata instruction; returns the new config and its history text.

    `cmd_set` says whether this stage already set CMD (ENTRYPOINT then keeps it).
    """
    before = config
    config = copy.deepcopy(config)
    if isinstance(step, ins.Label):
        labels = dict(config.get("Labels") or {})
        for key, value in step.pairs:
            labels[key] = value
        config["Labels"] = labels
        return config, nop(before, "LABEL" + "".join(f" {k}={v}" for k, v in step.pairs))
    if isinstance(step, ins.Env):
        set_env(config, step.pairs)
        return config, nop(before, "ENV " + " ".join(f"{k}={v}" for k, v in step.pairs))
    if isinstance(step, ins.Maintainer):
        return config, nop(before, "MAINTAINER " + step.maintainer)
    if isinstance(step, ins.Entrypoint):
        config["Entrypoint"] = command_line(step, config) or None
        if not cmd_set:
            config["Cmd"] = None
        return config, nop(before, "ENTRYPOINT " + go_quoted(config["Entrypoint"] or []))
    if isinstance(step, ins.Cmd):
        config["Cmd"] = command_line(step, config)
        return config, nop(before, "CMD " + go_quoted(config["Cmd"]))
    if isinstance(step, ins.Shell):
        config["Shell"] = list(step.shell)
        return config, nop(before, f"SHELL [{' '.join(step.shell)}]")
    if isinstance(step, ins.User):
        config["User"] = step.user
        return config, nop(before, "USER " + step.user)
    if isinstance(step, ins.Volume):
        volumes = dict(config.get("Volumes") or {})
        for path in step.paths:
            volumes[path] = {}
        config["Volumes"] = volumes
        return config, nop(before, f"VOLUME [{' '.join(step.paths)}]")
    if isinstance(step, ins.StopSignal):
        try:
            signals.parse(step.signal)
        except InvalidArgument:
            raise InvalidArgument(f"Invalid signal: {step.signal}") from None
        config["StopSignal"] = step.signal
        return config, nop(before, "STOPSIGNAL " + step.signal)
    if isinstance(step, ins.Healthcheck):
        health = {
            "Test": list(step.test),
            **(
                {}
                if step.test == ("NONE",)
                else {
                    "Interval": step.interval,
                    "Timeout": step.timeout,
                    "StartPeriod": step.start_period,
                    "StartInterval": step.start_interval,
                    "Retries": step.retries,
                }
            ),
        }
        config["Healthcheck"] = health
        return config, nop(before, "HEALTHCHECK " + _health_text(health))
    if isinstance(step, ins.Onbuild):
        config["OnBuild"] = [*(config.get("OnBuild") or []), step.expression]
        return config, nop(before, "ONBUILD " + step.expression)
    raise InvalidArgument(f"{step.keyword} does not change the image config")


def expose(config: RunConfig, words: list[str]) -> tuple[RunConfig, str]:
    """EXPOSE with its words already expanded (`80`, `53/udp`, `7000-7002/tcp`)."""
    config = copy.deepcopy(config)
    ports = dict(config.get("ExposedPorts") or {})
    for word in words:
        for port in parse_port(word):
            ports[port] = {}
    config["ExposedPorts"] = ports
    return config, nop(config, "EXPOSE " + " ".join(words))


def parse_port(text: str) -> list[str]:
    """`80`, `80/udp`, `7000-7002` as ExposedPorts keys (host parts of `ip:host:port` ignored)."""
    container = text.rsplit(":", 1)[-1]
    port, _, proto = container.partition("/")
    proto = (proto or "tcp").lower()
    if not port:
        raise InvalidArgument(f"no port specified: {text}<empty>")
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"invalid proto: {proto}")
    match = re.fullmatch(r"(\d+)(?:-(\d+))?", port)
    if not match:
        raise InvalidArgument(f"invalid containerPort: {port}")
    start = int(match.group(1))
    end = int(match.group(2) or start)
    if not 0 < start <= 65535 or not 0 < end <= 65535 or end < start:
        raise InvalidArgument(f"invalid containerPort: {port}")
    return [f"{p}/{proto}" for p in range(start, end + 1)]


def workdir(config: RunConfig, path: str) -> tuple[RunConfig, str]:
    """WORKDIR: relative paths go from the current one; returns the config and the history."""
    config = copy.deepcopy(config)
    current = config.get("WorkingDir") or "/"
    resolved = posixpath.normpath(posixpath.join(current, path))
    if resolved.startswith("//"):
        resolved = "/" + resolved.lstrip("/")
    config["WorkingDir"] = resolved
    return config, nop_single(config, "WORKDIR " + resolved)


def go_quoted(items: list[str]) -> str:
    """A string list as Go prints it with %q: `["/bin/sh" "-c" "echo hi"]`."""
    return "[" + " ".join(json.dumps(item, ensure_ascii=False) for item in items) + "]"


def _health_text(health: dict[str, Any]) -> str:
    test = " ".join(health["Test"])
    if health["Test"] == ["NONE"]:
        return "&{Test:[NONE] Interval:0s Timeout:0s StartPeriod:0s StartInterval:0s Retries:0}"
    return (
        f"&{{Test:[{test}] Interval:{go_duration(health['Interval'])} "
        f"Timeout:{go_duration(health['Timeout'])} "
        f"StartPeriod:{go_duration(health['StartPeriod'])} "
        f"StartInterval:{go_duration(health['StartInterval'])} Retries:{health['Retries']}}}"
    )
