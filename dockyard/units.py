"""Parsing and printing of the units docker's flags and tables use (sizes, CPUs, durations).

Pure and stdlib-only: the CLI imports it on every run and the API renders with it.
"""

from __future__ import annotations

import re
import time

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kKmMgGtTpP]?)[bB]?$")
_BINARY = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


class UnitError(ValueError):
    pass


def parse_size(text: str) -> int:
    """`64m` -> 67108864 (docker's RAMInBytes: binary multiples, optional b)."""
    m = _SIZE.match(text.strip())
    if not m:
        raise UnitError(f"invalid size: '{text}'")
    return int(float(m.group(1)) * _BINARY[m.group(2).lower()])


def parse_cpus(text: str) -> int:
    """`--cpus 0.5` -> NanoCpus."""
    try:
        value = float(text)
    except ValueError:
        raise UnitError(f"failed to parse {text} as a rational number") from None
    if value < 0:
        raise UnitError(f"invalid value: {text}")
    return round(value * 1_000_000_000)


def parse_duration(text: str) -> int:
    """Go duration (`1m30s`, `500ms`) -> nanoseconds."""
    text = text.strip()
    if text in ("0", ""):
        return 0
    total = 0
    pos = 0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += int(float(m.group(1)) * _NS[m.group(2)])
        pos = m.end()
    if pos != len(text):
        raise UnitError(f'time: invalid duration "{text}"')
    return total


def go_duration(ns: int) -> str:
    """A duration as Go prints it: `30s`, `1m30s`, `1.5s`, `250ms`, `0s`."""
    if ns == 0:
        return "0s"
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return _trim_fraction(ns / size) + unit
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = _trim_fraction(rest / 1_000_000_000) + "s"
    if hours:
        return f"{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{minutes}m{seconds}"
    return seconds


def _trim_fraction(value: float) -> str:
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text or "0"


def human_size(size: float) -> str:
    """docker's HumanSizeWithPrecision(size, 3): decimal units."""
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000
        i += 1
    text = f"{size:.3g}"
    return f"{text}{units[i]}"


def human_duration(seconds: float) -> str:
    """moby's units.HumanDuration (`Up 5 seconds`, `About an hour`)."""
    if seconds < 1:
        return "Less than a second"
    if seconds < 2:
        return "1 second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = seconds / 60
    if round(minutes) == 1:
        return "About a minute"
    if minutes < 60:
        return f"{int(minutes)} minutes"
    hours = seconds / 3600
    if round(hours) == 1:
        return "About an hour"
    if hours < 48:
        return f"{int(hours)} hours"
    if hours < 24 * 14:
        return f"{int(hours / 24)} days"
    if hours < 24 * 60:
        return f"{int(hours / 24 / 7)} weeks"
    if hours < 24 * 730:
        return f"{int(hours / 24 / 30)} months"
    return f"{int(hours / 24 / 365)} years"


def ago(unix_seconds: float) -> str:
    return human_duration(time.time() - unix_seconds) + " ago"


def parse_key_values(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    result = {}
    for item in items:
        key, _, value = item.partition("=")
        result[key] = value
    return result


def read_env_file(path: str) -> list[str]:
    """docker's --env-file: KEY=VALUE lines; a bare KEY takes the caller's value."""
    import os

    entries = []
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if "=" in line:
                entries.append(line)
            elif line in os.environ:
                entries.append(f"{line}={os.environ[line]}")
    return entries
