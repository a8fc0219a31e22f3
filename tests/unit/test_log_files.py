"""Log options, the record parser, reading backwards and the rotating file layout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard.errors import InvalidArgument
from dockyard.logs import k8sfile, options
from dockyard.logs.files import ARMED, CURRENT, LogFiles
from dockyard.logs.k8sfile import LogEntry
from dockyard.logs.reader import BLOCK, LogReader, Position


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
    # A plugin's options are its own; the engine's copy is bounded as Docker's cache.
    cache = options.Rotation(20 * 1024 * 1024, 5, True)
    assert options.validate("some-plugin", {"anything": "x"}) == cache


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


# -- the dual-logging cache's options ------------------------------------------------


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        ({"cache-max-size": "abc"}, "invalid value for cache-max-size: abc: invalid size: 'abc'"),
        ({"cache-max-file": "x"}, 'invalid value for cache-max-file: x: strconv.Atoi: parsing "x"'),
        ({"cache-max-file": "-1"}, "cache-max-file must not be negative"),
        ({"cache-compress": "yes"}, "invalid boolean value for cache-compress: strconv.ParseBool"),
        ({"cache-max-file": "1"}, "compression cannot be enabled when max file count is 1"),
        ({"cache-disabled": "maybe"}, "invalid value for option cache-disabled: maybe"),
    ],
)
def test_cache_options_get_local_drivers_rules(opts: dict, message: str) -> None:
    for driver in ("some-plugin", "json-file", "local"):
        with pytest.raises(InvalidArgument) as e:
            options.validate(driver, opts)
        assert message in e.value.message


def test_a_plugins_copy_is_bounded_like_dockers_cache() -> None:
    # Defaults: 5 files of 20 MiB, compressed; the plugin's own options do not count.
    cache = options.Rotation(20 * 1024 * 1024, 5, True)
    assert options.validate("some-plugin", {}) == cache
    assert options.validate("some-plugin", {"max-size": "1k", "max-file": "x"}) == cache
    bounded = {"cache-max-size": "10k", "cache-max-file": "3", "cache-compress": "false"}
    assert options.validate("some-plugin", bounded) == options.Rotation(10_000, 3, False)
    assert options.validate("some-plugin", {"cache-disabled": "true"}) == cache
    assert options.cache_disabled({"cache-disabled": "1"})
    assert not options.cache_disabled({}) and not options.cache_disabled({"cache-disabled": "0"})
    # Built-in drivers accept the cache's options (the daemon's fill every container's) and
    # keep their own bounds.
    assert options.validate("json-file", {"cache-max-size": "10k"}) == options.UNBOUNDED
    assert options.validate("local", {"cache-max-file": "2"}) == cache


def test_the_daemons_cache_options_fill_every_drivers() -> None:
    defaults = {"max-size": "1m", "cache-max-size": "10k", "cache-disabled": "true"}
    assert options.merge_defaults("some-plugin", {}, "json-file", defaults) == (
        "some-plugin",
        {"cache-max-size": "10k", "cache-disabled": "true"},
    )
    assert options.merge_defaults(
        "some-plugin", {"cache-max-size": "1m"}, "json-file", defaults
    ) == ("some-plugin", {"cache-max-size": "1m", "cache-disabled": "true"})
    # The daemon's plugin and its options: all of them, as for any default driver.
    plugin_defaults = {"endpoint": "x", "cache-max-file": "2", "cache-compress": "false"}
    assert options.merge_defaults("", None, "some-plugin", plugin_defaults) == (
        "some-plugin",
        plugin_defaults,
    )
    assert options.merge_defaults("json-file", {}, "some-plugin", plugin_defaults) == (
        "json-file",
        {"cache-max-file": "2", "cache-compress": "false"},
    )


# -- positions: where a reader is, and starting from there ------------------------------


RECORD = len(_record(STAMP, "stdout", "F", "0"))  # the bytes of a record of one digit


def _read_all(reader: LogReader) -> list[int]:
    out: list[int] = []
    while batch := reader.read():
        out.extend(int(e.data) for e in batch)
    return out


def _rotating(tmp_path: Path, *, max_files: int = 10, compress: bool = False) -> LogFiles:
    files = LogFiles(str(tmp_path))
    files.prepare(options.Rotation(max_size=1000, max_files=max_files, compress=compress))
    return files


def _rotate(files: LogFiles, tmp_path: Path, numbers: range) -> None:
    """The container writes `numbers`, then conmon rotates and the keeper re-arms."""
    _append(tmp_path, numbers)
    _conmon_rotates(tmp_path)
    files.rearm()


def test_a_reader_resumes_where_another_stopped_across_rotations(tmp_path: Path) -> None:
    files = _rotating(tmp_path)
    _rotate(files, tmp_path, range(0, 10))
    _append(tmp_path, range(10, 15))
    first = LogReader(files)
    assert [int(e.data) for e in first.read(limit=RECORD + 10)] == [0]
    assert [int(e.data) for e in first.read(limit=4 * RECORD - 10)] == [1, 2, 3, 4]
    position = first.position()
    assert position is not None and position.seq is not None and position.inode is None
    first.close()
    _rotate(files, tmp_path, range(15, 20))
    _append(tmp_path, range(20, 25))
    second = LogReader(files)
    assert second.resume(position) and second.lost == 0
    assert _read_all(second) == list(range(5, 25))
    end = second.position()
    second.close()
    third = LogReader(files)
    assert third.resume(end) and _read_all(third) == []
    _append(tmp_path, range(25, 27))
    assert _read_all(third) == [25, 26]
    third.close()


def test_a_position_in_a_segment_compressed_since_is_its_uncompressed_offset(
    tmp_path: Path,
) -> None:
    files = _rotating(tmp_path, compress=True)
    _rotate(files, tmp_path, range(0, 10))
    _append(tmp_path, range(10, 12))
    reader = LogReader(files)
    assert [int(e.data) for e in reader.read(limit=4 * RECORD - 1)] == [0, 1, 2]
    position = reader.position()
    reader.close()
    assert position is not None and position.offset == 3 * RECORD
    for seq in files.tidy(options.Rotation(1000, 10, True)):
        files.compress(seq)
    assert files.sources()[0].compressed
    reader = LogReader(files)
    assert reader.resume(position)
    assert _read_all(reader) == list(range(3, 12))
    reader.close()


def test_a_pruned_position_goes_on_at_the_oldest_file_kept_and_counts_the_loss(
    tmp_path: Path,
) -> None:
    files = _rotating(tmp_path, max_files=2)
    _rotate(files, tmp_path, range(0, 10))
    reader = LogReader(files)
    reader.read(limit=100)
    position = reader.position()
    reader.close()
    assert position is not None
    for i in range(1, 4):
        _rotate(files, tmp_path, range(i * 10, i * 10 + 10))
    files.tidy(options.Rotation(1000, 2))  # 20 .. 29 went with its file
    reader = LogReader(files)
    assert not reader.resume(position)
    assert reader.lost == 1
    assert _read_all(reader) == list(range(30, 40))
    reader.close()


def test_a_reader_far_behind_counts_files_pruned_before_it_read_them(tmp_path: Path) -> None:
    files = _rotating(tmp_path, max_files=2)
    _append(tmp_path, range(0, 10))
    reader = LogReader(files)
    reader.read(limit=100)  # holds the first segment open, two records in
    # Two files newer: the one being read is pruned, but the next one is still there.
    _conmon_rotates(tmp_path)
    files.rearm()
    _rotate(files, tmp_path, range(10, 20))
    files.tidy(options.Rotation(1000, 2))
    assert _read_all(reader) == list(range(2, 20)) and reader.lost == 0
    # Now more than max-file files pass while it reads one.
    _append(tmp_path, range(20, 30))
    assert reader.read(limit=100)
    for i in range(3, 7):
        _rotate(files, tmp_path, range(i * 10, i * 10 + 10))
    files.tidy(options.Rotation(1000, 2))
    numbers = _read_all(reader)  # 40 .. 59 went with their files
    assert reader.lost == 1
    assert numbers == [*range(22, 40), *range(60, 70)]
    reader.close()


def test_a_plain_log_is_named_by_its_inode_and_its_replacement_noticed(tmp_path: Path) -> None:
    files = LogFiles(str(tmp_path))  # a log that does not rotate: container.log only
    _write_log(tmp_path / CURRENT, range(0, 10))
    reader = LogReader(files)
    reader.read(limit=100)
    position = reader.position()
    reader.close()
    assert position is not None
    assert (position.seq, position.inode) == (None, os.stat(tmp_path / CURRENT).st_ino)
    reader = LogReader(files)
    assert reader.resume(position) and _read_all(reader) == list(range(2, 10))
    reader.close()
    # conmon's truncation (max-file 1): a new file in its place; the rest of the old is gone.
    _conmon_rotates(tmp_path)
    _append(tmp_path, range(10, 13))
    reader = LogReader(files)
    assert not reader.resume(position)
    assert _read_all(reader) == [10, 11, 12]
    reader.close()


def test_an_offset_recorded_before_logs_rotated_means_the_first_segment(tmp_path: Path) -> None:
    _write_log(tmp_path / CURRENT, range(0, 10))  # the unbounded log of an older daemon
    legacy = Position(None, None, 3 * RECORD)
    files = _rotating(tmp_path)  # the container starts again: the plain log is adopted
    _rotate(files, tmp_path, range(10, 12))
    reader = LogReader(files)
    assert reader.resume(legacy)
    assert _read_all(reader) == list(range(3, 12))
    reader.close()


def test_a_position_names_an_adopted_plain_file_by_its_segment(tmp_path: Path) -> None:
    files = _rotating(tmp_path, compress=True)
    _rotate(files, tmp_path, range(0, 5))
    _conmon_rotates(tmp_path)  # through the armed link; the keeper has not re-armed...
    _conmon_rotates(tmp_path)  # ...when conmon rotates again: a plain container.log
    _append(tmp_path, range(5, 10))
    reader = LogReader(files)
    assert _read_all(reader) == list(range(10))
    plain = reader.position()
    assert plain is not None and plain.seq is None
    files.rearm()  # the daemon adopts it
    named = reader.position()
    assert named is not None and named.seq is not None and named.offset == plain.offset
    reader.close()


def test_a_position_never_splits_a_record_being_written(tmp_path: Path) -> None:
    files = _rotating(tmp_path)
    _append(tmp_path, range(0, 3))
    record = _record(STAMP, "stdout", "F", "3")
    with open(tmp_path / CURRENT, "ab") as f:
        f.write(record[:20])
    reader = LogReader(files)
    assert _read_all(reader) == [0, 1, 2]
    position = reader.position()
    reader.close()
    assert position is not None and position.offset == 3 * len(record)
    with open(tmp_path / CURRENT, "ab") as f:
        f.write(record[20:])
    reader = LogReader(files)
    assert reader.resume(position) and _read_all(reader) == [3]
    reader.close()


def test_the_delivered_position_is_recorded_and_read_back(tmp_path: Path) -> None:
    from dockyard.logs.plugin import _read_position, _write_position

    path = str(tmp_path / "log-driver.offset")
    assert _read_position(path) is None  # nothing delivered yet
    for position in (Position(7, None, 1234), Position(None, 99, 5)):
        _write_position(path, position)
        assert _read_position(path) == position
    (tmp_path / "log-driver.offset").write_text('{"offset": 4096}')  # an older daemon's
    assert _read_position(path) == Position(None, None, 4096)
    (tmp_path / "log-driver.offset").write_text("{not json")
    assert _read_position(path) is None
