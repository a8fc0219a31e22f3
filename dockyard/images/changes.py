"""Dockerfile-style `changes` applied to an image config (import and commit)."""

from __future__ import annotations

import json
import shlex
from typing import Any

from dockyard.errors import InvalidArgument

_ALLOWED = {
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "LABEL",
    "ONBUILD",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
}


def _args(rest: str) -> list[str]:
    rest = rest.strip()
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", rest]


def _pairs(rest: str) -> list[tuple[str, str]]:
    words = shlex.split(rest)
    if len(words) == 2 and "=" not in words[0]:
        return [(words[0], words[1])]  # legacy "ENV key value"
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"invalid change: {rest!r}: expected key=value")
        pairs.append((key, value))
    return pairs


def apply_changes(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """Return `config` (the image config's `config` object) with `changes` applied."""
    config = dict(config)
    for change in changes:
        instruction, _, rest = change.strip().partition(" ")
        instruction = instruction.upper()
        if instruction not in _ALLOWED:
            raise InvalidArgument(f"{instruction} is not a valid change command")
        if instruction == "CMD":
            config["Cmd"] = _args(rest)
        elif instruction == "ENTRYPOINT":
            config["Entrypoint"] = _args(rest)
        elif instruction == "ENV":
            env = [e for e in config.get("Env") or []]
            for key, value in _pairs(rest):
                env = [e for e in env if e.partition("=")[0] != key] + [f"{key}={value}"]
            config["Env"] = env
        elif instruction == "LABEL":
            labels = dict(config.get("Labels") or {})
            labels.update(_pairs(rest))
            config["Labels"] = labels
        elif instruction == "EXPOSE":
            ports = dict(config.get("ExposedPorts") or {})
            for port in rest.split():
                ports[port if "/" in port else port + "/tcp"] = {}
            config["ExposedPorts"] = ports
        elif instruction == "VOLUME":
            volumes = dict(config.get("Volumes") or {})
            paths = _args(rest) if rest.strip().startswith("[") else rest.split()
            for path in paths:
                volumes[path] = {}
            config["Volumes"] = volumes
        elif instruction == "ONBUILD":
            config["OnBuild"] = [*(config.get("OnBuild") or []), rest.strip()]
        else:
            key = {"USER": "User", "WORKDIR": "WorkingDir", "STOPSIGNAL": "StopSignal"}[instruction]
            config[key] = rest.strip()
    return config
