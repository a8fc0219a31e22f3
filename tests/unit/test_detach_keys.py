"""Detach keys: Docker's grammar and the stdin filter that spots the sequence."""

from __future__ import annotations

import pytest

from dockyard import detachkeys
from dockyard.detachkeys import EscapeFilter, InvalidKeys


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ("ctrl-p,ctrl-q", b"\x10\x11"),
        ("ctrl-a", b"\x01"),
        ("ctrl-z", b"\x1a"),
        ("ctrl-@", b"\x00"),
        ("ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_", b"\x1b\x1c\x1d\x1e\x1f"),
        ("a,b,C", b"abC"),
        ("ctrl-x,x", b"\x18x"),
        ("DEL", b"\x7f"),
    ],
)
def test_docker_key_grammar(keys: str, expected: bytes) -> None:
    assert detachkeys.parse(keys) == expected


@pytest.mark.parametrize("keys", ["ctrl-", "ctrl-pp", "ctrl-P", "ab", "ctrl-1", "é", "a,,b", "f1"])
def test_keys_outside_the_grammar_are_refused(keys: str) -> None:
    with pytest.raises(InvalidKeys, match="Unknown character"):
        detachkeys.parse(keys)


def test_the_sequence_is_swallowed_and_what_came_before_passes() -> None:
    escape = EscapeFilter(b"\x10\x11")
    assert escape.feed(b"ls\r") == b"ls\r"
    assert escape.feed(b"abc\x10\x11rest") == b"abc"
    assert escape.detached
    assert escape.feed(b"more") == b""


def test_a_sequence_split_across_reads_is_held_back_then_completed() -> None:
    escape = EscapeFilter(b"\x10\x11")
    assert escape.feed(b"x\x10") == b"x"  # held: may begin the sequence
    assert not escape.detached
    assert escape.feed(b"\x11") == b""
    assert escape.detached


def test_a_false_start_is_typed_through() -> None:
    escape = EscapeFilter(b"\x10\x11")
    assert escape.feed(b"\x10") == b""
    assert escape.feed(b"a") == b"\x10a"
    assert not escape.detached
    # A false start may itself be followed by the real sequence.
    assert escape.feed(b"\x10\x10\x11") == b"\x10"
    assert escape.detached


def test_single_key_and_three_key_sequences() -> None:
    one = EscapeFilter(b"\x18")
    assert one.feed(b"ab\x18cd") == b"ab" and one.detached
    three = EscapeFilter(b"abc")
    assert three.feed(b"aabx") == b"aabx"
    assert three.feed(b"ab") == b""
    assert three.feed(b"c") == b"" and three.detached
