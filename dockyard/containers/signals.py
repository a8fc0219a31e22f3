"""Signal names and numbers as docker accepts them (`TERM`, `SIGTERM`, `15`, `SIGRTMIN+3`)."""

from __future__ import annotations

import signal

from dockyard.errors import InvalidArgument

_BY_NAME = {
    s.name: int(s)
    for s in signal.Signals
    if s.name.startswith("SIG") and not s.name.startswith("SIG_")
}
_BY_NAME.setdefault("SIGIOT", 6)
_BY_NAME.setdefault("SIGPOLL", 29)


def parse(text: str | int) -> int:
    """A signal number from a name or number; InvalidArgument if it is not one."""
    if isinstance(text, int) or (isinstance(text, str) and text.isdigit()):
        number = int(text)
        if 1 <= number <= signal.SIGRTMAX:
            return number
        raise InvalidArgument(f"Invalid signal: {text}")
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name in _BY_NAME:
        return _BY_NAME[name]
    for base, anchor in (("SIGRTMIN", signal.SIGRTMIN), ("SIGRTMAX", signal.SIGRTMAX)):
        if name.startswith(base):
            offset_text = name[len(base) :]
            try:
                offset = int(offset_text) if offset_text else 0
            except ValueError:
                break
            number = anchor + offset
            if signal.SIGRTMIN <= number <= signal.SIGRTMAX:
                return number
    raise InvalidArgument(f"Invalid signal: {text}")


def name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
