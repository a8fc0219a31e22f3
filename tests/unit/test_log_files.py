"""Log options, the record parser, reading backwards and the rotating file layout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard.errors import InvalidArgument
from dockyard.logs import k8sfile, options
from dockyard.logs.files import ARMED, CURRENT, LogFiles
from dockyard.logs.k8sfile import LogEntry
from dockyard.logs.reader import BLOCK, LogReader


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100k", 100_000),
        ("1m", 1_000_000),
        ("10MB", 10_000_000),
        ("2KiB", 2000),
        ("512", 512),
        ("1.5k", 1500),
        ("3 g", 3_000_000_000),
    ],
)
def test_sizes_read_as_go_units_from_human_size(text: str, expected: int) -> None:
    assert options.parse_size(text) == expected


@pytest.mark.parametrize(
    ("driver", "opts", "message"),
    [
        ("json-file", {"max-size": "abc"}, "invalid size: 'abc'"),
        ("json-file", {"max-size": "1x"}, "invalid suffix: 'x'"),
        ("json-file", {"max-size": "0"}, "max-size must be a positive number"),
        ("json-file", {"max-file": "0"}, "max-file cannot be less than 1"),
        ("json-file", {"max-file": "two"}, 'strconv.Atoi: parsing "two": invalid syntax'),
        ("json-file", {"max-size": "1m", "compress": "yes"}, "strconv.ParseBool"),
        ("json-file", {"max-size": "1m", "compress": "true"}, "compress cannot be true"),
        ("json-file", {"colour": "red"}, "unknown log opt 'colour' for json-file log driver"),
        ("local", {"colour": "red"}, "unknown log opt 'colour' for log driver local"),
        ("local", {"max-size": "abc"}, "invalid value for max-size: abc: invalid size: 'abc'"),
        ("local", {"max-file": "-1"}, "max-file must not be negative"),
        ("local", {"max-file": "1"}, "compression cannot be enabled when max file count is 1"),
        ("local", {"mode": "lazy"}, "logger: logging mode not supported: lazy"),
        ("json-file", {"max-buffer-size": "1m"}, "only supported with 'mode=non-blocking'"),
    ],
)
def test_invalid_options_get_dockers_messages(driver: str, opts: dict, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        options.validate(driver, opts)
    assert message in e.value.message


def test_bounds_of_each_driver() -> None:
    assert options.validate("json-file", {}) == options.UNBOUNDED
    assert options.validate("json-file", {"max-file": "3"}) == options.UNBOUNDED
    bounded = options.validate("json-file", {"max-size": "10k", "max-file": "3", "compress": "1"})
    assert bounded == options.Rotation(10_000, 3, True)
    assert bounded.rotates
    assert not options.validate("json-file", {"max-size": "10k"}).rotates  # truncates
    assert options.validate("local", {}) == options.Rotation(20 * 1024 * 1024, 5, True)
    assert options.validate("local", {"max-file": "1", "compress": "false"}).max_files == 1
    assert not options.validate("none", {}).keep
    assert options.validate("some-plugin", {"anything": "x"}) == options.UNBOUNDED


def test_daemon_defaults_merge_as_moby_merges_them() -> None:
    defaults = {"max-size": "1m", "max-file": "2"}
    assert options.merge_defaults("", None, "json-file", defaults) == ("json-file", defaults)
    assert options.merge_defaults("json-file", {"max-file": "5"}, "json-file", defaults) == (
        "json-file",
        {"max-file": "5", "max-size": "1m"},
    )
    assert options.merge_defaults("local", {}, "json-file", defaults) == ("local", {})


def _record(stamp: str, stream: str, tag: str, data: str) -> bytes:
    return f"{stamp} {stream} {tag} {data}\n".encode()


STAMP = "2026-01-02T03:04:05.123456789+01:00"
NS = 1767319445123456789


def test_parser_fast_and_slow_paths_agree() -> None:
    block = b"".join(
        [
            _record(STAMP, "stdout", "F", "one"),
            _record(STAMP, "stderr", "P", "par"),
            _record(STAMP, "stderr", "F", "tial"),
            _record("2026-01-02T02:04:05.5Z", "stdout", "F", "slow"),  # not conmon's width
            b"garbage\n",
        ]
    )
    records = k8sfile.Parser().records(block)
    assert records == [
        LogEntry(NS, 1, b"one\n"),
        LogEntry(NS, 2, b"par"),
        LogEntry(NS, 2, b"tial\n"),
        LogEntry(1767319445_500000000, 1, b"slow\n"),
    ]
    for line, record in zip(block.splitlines(), records, strict=False):
        assert k8sfile.parse_line(line) == record


def test_tail_counts_lines_not_partial_records() -> None:
    records = [
        LogEntry(1, 1, b"a\n"),
        LogEntry(2, 1, b"b-"),
        LogEntry(3, 1, b"b\n"),
        LogEntry(4, 1, b"c"),
    ]
    assert k8sfile.line_count(records) == 2
    assert k8sfile.line_count(records, open_end=True) == 3
    assert k8sfile.last_lines(records, 1, open_end=True) == records[3:]
    assert k8sfile.last_lines(records, 2, open_end=True) == records[1:]
    assert k8sfile.last_lines(records[:3], 1) == records[1:3]
    assert k8sfile.last_lines(records, 9) == records
    assert k8sfile.last_lines(records, 0) == []


def _write_log(path: Path, numbers: range) -> None:
    with open(path, "wb") as f:
        for n in numbers:
            f.write(_record(STAMP, "stdout", "F", str(n)))


def test_tail_reads_only_the_end_of_a_large_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_log(tmp_path / CURRENT, range(200_000))
    reader = LogReader(LogFiles(str(tmp_path)))
    read: list[int] = []
    real_pread = os.pread

    def counting_pread(fd: int, n: int, offset: int) -> bytes:
        read.append(n)
        return real_pread(fd, n, offset)

    monkeypatch.setattr(os, "pread", counting_pread)
    last = reader.tail(10, follow=False)
    reader.close()
    assert [int(e.data) for e in last] == list(range(199_990, 200_000))
    assert sum(read) <= 2 * BLOCK  # not the 9 MB file


def _conmon_rotates(directory: Path) -> None:
    """What conmon 2.1.6 does when a line would take the log past --log-size-max."""
    armed = directory / ARMED
    fd = os.open(armed, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    os.rename(armed, directory / CURRENT)


def _append(directory: Path, numbers: range) -> None:
    with open(directory / CURRENT, "ab") as f:
        for n in numbers:
            f.write(_record(STAMP, "stdout", "F", str(n)))


def _all_numbers(files: LogFiles) -> list[int]:
    reader = LogReader(files)
    reader.seek(follow=False)
    out: list[int] = []
    while batch := reader.read():
        out.extend(int(e.data) for e in batch)
    reader.close()
    return out


def test_rotation_keeps_every_file_and_prunes_to_max_file(tmp_path: Path) -> None:
    files = LogFiles(str(tmp_path))
    rotation = options.Rotation(max_size=1000, max_files=3)
    files.prepare(rotation)
    for i in range(6):
        _append(tmp_path, range(i * 10, i * 10 + 10))
        _conmon_rotates(tmp_path)
        files.rearm()
    _append(tmp_path, range(60, 65))
    assert _all_numbers(files) == list(range(65))  # nothing lost before pruning
    files.tidy(rotation)
    assert len(files.sources()) == 3
    assert _all_numbers(files) == list(range(40, 65))


def test_two_rotations_without_the_daemon_lose_nothing(tmp_path: Path) -> None:
    files = LogFiles(str(tmp_path))
    rotation = options.Rotation(max_size=1000, max_files=5, compress=True)
    files.prepare(rotation)
    _append(tmp_path, range(0, 10))
    _conmon_rotates(tmp_path)  # through the armed link
    _append(tmp_path, range(10, 20))
    _conmon_rotates(tmp_path)  # nothing armed: a plain file replaces the link
    _append(tmp_path, range(20, 30))
    files.rearm()  # the daemon is back: the plain file is adopted
    _append(tmp_path, range(30, 35))
    assert _all_numbers(files) == list(range(35))
    for seq in files.tidy(rotation):
        files.compress(seq)
    assert [s.compressed for s in files.sources()] == [True, True, False]
    assert _all_numbers(files) == list(range(35))
    reader = LogReader(files)
    assert [int(e.data) for e in reader.tail(12, follow=False)] == list(range(23, 35))
    reader.close()
