"""Detach keys: Docker's key grammar and the stdin filter that spots the sequence.

A client attached to a container (or an exec) with a terminal leaves it
running by typing the detach sequence, ctrl-p ctrl-q unless the client names
another (`detachKeys`, `--detach-keys`, the config file's `detachKeys`). The
grammar is Docker's: comma-separated keys, each `ctrl-<letter>`, `ctrl-@`,
`ctrl-[`, `ctrl-\\`, `ctrl-]`, `ctrl-^`, `ctrl-_`, `DEL` or one character.

`EscapeFilter` sits on the stdin stream: bytes that may begin the sequence
are held back until the next bytes tell; a completed sequence is swallowed
and reported, anything else passes through unchanged. Pure and stdlib-only:
the daemon's attach and exec relays use it, and so does the CLI.
"""

from __future__ import annotations

DEFAULT = b"\x10\x11"  # ctrl-p, ctrl-q

# ctrl-@ is NUL, ctrl-a..ctrl-z are 1..26, then ctrl-[ ctrl-\ ctrl-] ctrl-^ ctrl-_ (27..31).
_CONTROL = {
    "ctrl-@": 0,
    **{f"ctrl-{chr(ord('a') + i)}": i + 1 for i in range(26)},
    "ctrl-[": 27,
    "ctrl-\\": 28,
    "ctrl-]": 29,
    "ctrl-^": 30,
    "ctrl-_": 31,
    "DEL": 127,
}


class InvalidKeys(ValueError):
    """A detach-key string outside Docker's grammar."""


def parse(keys: str) -> bytes:
    """The byte sequence `keys` names; `InvalidKeys` (Docker's wording) if it names none."""
    codes = bytearray()
    for key in keys.split(","):
        encoded = key.encode()
        if len(encoded) == 1:  # one ASCII character stands for itself
            codes += encoded
        elif key in _CONTROL:
            codes.append(_CONTROL[key])
        else:
            raise InvalidKeys(f"Unknown character: '{key}'")
    return bytes(codes)


class EscapeFilter:
    """Passes stdin through, holding back a possible start of the sequence, until it is typed."""

    def __init__(self, keys: bytes = DEFAULT) -> None:
        self.keys = keys
        self._matched = 0  # how many bytes of the sequence the held-back input matches
        self.detached = False

    def feed(self, data: bytes) -> bytes:
        """What may go on to the process; sets `detached` once the whole sequence is read.

        After the sequence, the rest of `data` is dropped: the session is over.
        """
        if self.detached:
            return b""
        if not self.keys:
            return data
        out = bytearray()
        for byte in data:
            if byte == self.keys[self._matched]:
                self._matched += 1
                if self._matched == len(self.keys):
                    self.detached = True
                    return bytes(out)
                continue
            # Not the sequence after all: what was held back is ordinary input, and this
            # byte may itself begin the sequence.
            out += self.keys[: self._matched]
            self._matched = 0
            if byte == self.keys[0]:
                self._matched = 1
                if len(self.keys) == 1:
                    self.detached = True
                    return bytes(out)
            else:
                out.append(byte)
        return bytes(out)
