"""Named crash points between the steps of multi-step changes, for fault-injection tests.

`reached("start:mounted")` does nothing in a daemon started normally. A daemon
started with `DOCKYARD_CRASHPOINTS=<file>` in its environment reads that file at
each point, and when the file names the point, kills itself with SIGKILL right
there: exactly a `kill -9` between two steps of an operation. The crash-consistency
tests arm each point in turn and check that the next daemon finishes or undoes
whatever was in flight (see "Crash consistency" in docs/design.md).
"""

from __future__ import annotations

import os
import signal

ENVIRONMENT = "DOCKYARD_CRASHPOINTS"

_control = os.environ.get(ENVIRONMENT) or None


def reached(name: str) -> None:
    """Die here if a test armed this point."""
    if _control is None:
        return
    try:
        with open(_control) as f:
            armed = f.read().split()
    except OSError:
        return
    if name in armed:
        os.kill(os.getpid(), signal.SIGKILL)
