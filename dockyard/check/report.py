"""What `system check` found: findings with a severity, words a user can act on, and a repair.

A finding is an `error` (something does not work, or will not once it is
needed: a corrupt blob, a container the runtime has lost), a `warning` (a
leftover that costs resources or a host setting that breaks some traffic) or
`info` (worth knowing, nothing to do). Errors and warnings are problems; the
check's exit status is 1 while any problem is left unrepaired.

A finding that `--repair` can fix without losing data carries `repair` (what
it would do, shown by a plain check) and a `fix` coroutine that does it and
returns what it did. The fix re-checks its condition first: the daemon keeps
working while the check runs, and what was stray a moment ago may belong to
an operation that has just started.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

ERROR = "error"
WARNING = "warning"
INFO = "info"
SEVERITIES = (ERROR, WARNING, INFO)

# What a fix does, once run: returns the sentence saying what it did.
Fix = Callable[[], Awaitable[str]]


@dataclass
class Finding:
    area: str  # store, containers, volumes, network, plugins, host
    severity: str
    subject: str  # what it is about: "blob sha256:...", "container web (3f2a9c1b0d4e)"
    message: str  # what is wrong and, when --repair cannot help, what the user can do
    repair: str = ""  # what --repair does about it; "" when it cannot
    fix: Fix | None = field(default=None, repr=False, compare=False)
    repaired: str = ""  # after --repair: what it did
    failed: str = ""  # after --repair: why the repair did not work

    @property
    def problem(self) -> bool:
        """Whether this finding still needs attention."""
        return self.severity in (ERROR, WARNING) and not self.repaired

    def to_json(self) -> dict[str, Any]:
        return {
            "Area": self.area,
            "Severity": self.severity,
            "Subject": self.subject,
            "Message": self.message,
            "Repair": self.repair,
            "Repaired": self.repaired,
            "RepairFailed": self.failed,
        }


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)  # what was looked at: kind -> count
    repair: bool = False
    started: float = field(default_factory=time.time)
    duration: float = 0.0

    def add(self, findings: list[Finding]) -> None:
        self.findings.extend(findings)

    def count(self, kind: str, number: int) -> None:
        self.checked[kind] = self.checked.get(kind, 0) + number

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.problem]

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> dict[str, Any]:
        """The short form kept after the check (for `info`) and sent with the report."""
        problems = self.problems
        return {
            "Time": int(self.started),
            "Ok": not problems,
            "Errors": sum(1 for f in problems if f.severity == ERROR),
            "Warnings": sum(1 for f in problems if f.severity == WARNING),
            "Repaired": sum(1 for f in self.findings if f.repaired),
            "Repairable": sum(1 for f in problems if f.fix is not None and not f.failed),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "Summary": self.summary(),
            "Repair": self.repair,
            "Checked": dict(self.checked),
            "Duration": round(self.duration, 3),
            "Findings": [f.to_json() for f in self.findings],
        }
