"""Prunes' `until` filter, read as Docker reads it (timetypes.GetTimestamp)."""

from __future__ import annotations

import pytest

from dockyard.api import filters
from dockyard.errors import InvalidArgument

NOW = 1_700_000_000 * 10**9


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("24h", NOW - 24 * 3600 * 10**9),
        ("10m", NOW - 600 * 10**9),
        ("1h30m", NOW - 5400 * 10**9),
        ("1.5s", NOW - 1_500_000_000),
        ("1600000000", 1_600_000_000 * 10**9),
        ("1600000000.5", 1_600_000_000_500_000_000),
        ("0", 0),
        ("2023-11-14T22:13:20Z", NOW),
        ("2023-11-14T23:13:20+01:00", NOW),
    ],
)
def test_until_takes_durations_timestamps_and_rfc3339(value: str, expected: int) -> None:
    assert filters.until([value], now_ns=NOW) == expected


@pytest.mark.parametrize("values", [["yesterday"], ["10x"], [""], ["inf"], ["1h", "2h"]])
def test_a_bad_until_is_invalid_argument(values: list[str]) -> None:
    with pytest.raises(InvalidArgument):
        filters.until(values, now_ns=NOW)


def test_no_until_is_no_limit() -> None:
    assert filters.until([], now_ns=NOW) is None
