"""The `filters` query parameter: JSON in two shapes (map of bools, or lists)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime

from dockyard import units, wire
from dockyard.errors import InvalidArgument

Filters = dict[str, list[str]]


def parse(text: str | None, allowed: Iterable[str] | None = None) -> Filters:
    if not text:
        return {}
    try:
        raw = wire.loads(text)
    except wire.WireError as e:
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


def until(values: list[str], now_ns: int | None = None) -> int | None:
    """A prune's `until` filter as nanoseconds since the epoch, read as Docker's
    timetypes.GetTimestamp: a Go duration before now (`10m`, `1h30m`), an RFC 3339
    time or a date, or unix seconds (fractions allowed)."""
    if not values:
        return None
    if len(values) > 1:
        raise InvalidArgument("more than one until filter specified")
    value = values[0].strip()
    if value not in ("", "0"):  # "0" is the epoch, not a zero duration
        try:
            return (time.time_ns() if now_ns is None else now_ns) - units.parse_duration(value)
        except units.UnitError:
            pass
    try:
        return int(float(value) * 1_000_000_000)
    except (ValueError, OverflowError):
        pass
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1e9)
    except (ValueError, OverflowError):
        raise InvalidArgument(f'failed to parse value as time or duration: "{value}"') from None


def prune_labels_match(labels: dict[str, str], wanted: Filters) -> bool:
    """Docker's prune rule: every `label` holds, and not every `label!` does."""
    if wanted.get("label") and not label_matches(labels, wanted["label"]):
        return False
    return not (wanted.get("label!") and label_matches(labels, wanted["label!"]))
