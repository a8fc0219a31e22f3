"""The `filters` query parameter: JSON in two shapes (map of bools, or lists)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from datetime import datetime

from dockyard.errors import InvalidArgument
from dockyard.units import UnitError, parse_duration

Filters = dict[str, list[str]]


def parse(text: str | None, allowed: Iterable[str] | None = None) -> Filters:
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidArgument(f"invalid filter: {e}") from e
    if not isinstance(raw, dict):
        raise InvalidArgument("invalid filter: expected a JSON object")
    filters: Filters = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            values = [k for k, v in value.items() if v]
        elif isinstance(value, list):
            values = [str(v) for v in value]
        elif isinstance(value, str):
            values = [value]
        else:
            raise InvalidArgument(f"invalid filter '{key}'")
        filters[key] = values
    if allowed is not None:
        known = set(allowed)
        for key in filters:
            if key not in known:
                raise InvalidArgument(f"invalid filter '{key}'")
    return filters


def label_matches(labels: dict[str, str], wanted: list[str]) -> bool:
    """Every `key` or `key=value` in `wanted` holds for `labels`."""
    for item in wanted:
        key, sep, value = item.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def bool_value(values: list[str], key: str) -> bool:
    if len(values) != 1 or values[0].lower() not in ("true", "false", "1", "0"):
        raise InvalidArgument(f"invalid filter '{key}={','.join(values)}'")
    return values[0].lower() in ("true", "1")


_UNIX = re.compile(r"^-?\d+(\.\d{1,9})?$")


def timestamp(value: str, now: float | None = None) -> float:
    """Docker's GetTimestamp: a Go duration back from now (`24h`), a Unix time
    (`1700000000.5`), or an RFC 3339 date/time (local time when no zone is given)."""
    now = time.time() if now is None else now
    if value != "0":
        try:
            return now - parse_duration(value) / 1e9
        except UnitError:
            pass
    if _UNIX.match(value):
        return float(value)
    text = value.replace("Z", "+00:00").replace("z", "+00:00")
    match = re.match(r"^(.*T\d\d:\d\d:\d\d)\.(\d+)(.*)$", text)
    fraction = 0.0
    if match:  # Python takes at most microseconds; Go up to nanoseconds
        text = match.group(1) + match.group(3)
        fraction = float("0." + match.group(2))
    try:
        return datetime.fromisoformat(text).timestamp() + fraction
    except ValueError:
        raise InvalidArgument(f'failed to parse value as time or duration: "{value}"') from None


def until_value(wanted: Filters) -> float | None:
    """The one `until` of a prune, as a Unix time."""
    values = wanted.get("until") or []
    if len(values) > 1:
        raise InvalidArgument("more than one until filter specified")
    return timestamp(values[0]) if values else None


def prune_labels_match(labels: dict[str, str], wanted: Filters) -> bool:
    """Docker's prune rule: every `label` holds, and not every `label!` does."""
    if wanted.get("label") and not label_matches(labels, wanted["label"]):
        return False
    return not (wanted.get("label!") and label_matches(labels, wanted["label!"]))
