"""The intent journal: what a container operation is about to do, written before it acts.

A container operation changes the host in steps no transaction can span: a
start mounts the root filesystem, builds the network sandbox, mounts volumes,
has the monitor and the runtime create the container, then starts it; a removal
undoes all that and deletes files and volumes. A crash between two steps must
not leave a container whose record says one thing while the host holds another.

So every such operation writes an intent before its first step — the action,
the container, and whatever a restart needs to finish or undo it that the
record does not hold — and ends the intent in the same transaction that records
its outcome (`end(..., in the caller's transaction)`). An intent found at
start-up is an operation a crash cut short; `ContainerService.restore`
reconciles each container with what really exists and then rolls each such
intent forward or back (the table is in docs/design.md, "Crash consistency").

Operations whose every step is a database write (rename, connecting a stopped
container) need no intent: one transaction makes them atomic.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from dockyard.state.db import Database

CREATE = "create"
START = "start"
STOP = "stop"
KILL = "kill"
RESTART = "restart"
REMOVE = "remove"
CONNECT = "connect"
DISCONNECT = "disconnect"
EXEC = "exec"


@dataclass
class Intent:
    id: str
    container_id: str
    action: str
    detail: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0


class Journal:
    def __init__(self, db: Database) -> None:
        self.db = db

    def begin(self, container_id: str, action: str, **detail: Any) -> Intent:
        """Record an operation about to start (joins the caller's transaction, if any)."""
        intent = Intent(secrets.token_hex(16), container_id, action, detail, time.time())
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO container_intents(id, container_id, action, detail, started) "
                "VALUES (?,?,?,?,?)",
                (intent.id, container_id, action, json.dumps(detail), intent.started),
            )
        return intent

    def update(self, intent: Intent, **detail: Any) -> None:
        """Add what a later step learnt (the volumes a create made, ...)."""
        intent.detail.update(detail)
        with self.db.transaction():
            self.db.execute(
                "UPDATE container_intents SET detail=? WHERE id=?",
                (json.dumps(intent.detail), intent.id),
            )

    def end(self, intent: Intent | None) -> None:
        """The operation is over, its outcome recorded (joins the caller's transaction).
        Ending an intent twice is harmless: an outcome may end it before its caller does."""
        if intent is None:
            return
        with self.db.transaction():
            self.db.execute("DELETE FROM container_intents WHERE id=?", (intent.id,))

    def end_actions(self, container_id: str, *actions: str) -> None:
        """End every open intent of these actions on a container (the exit that a stop or a
        kill was waiting for is recorded; joins the caller's transaction)."""
        marks = ",".join("?" * len(actions))
        with self.db.transaction():
            rows = self.db.all(
                f"SELECT id FROM container_intents WHERE container_id=? AND action IN ({marks})",
                (container_id, *actions),
            )
            for row in rows:
                self.db.execute("DELETE FROM container_intents WHERE id=?", (row["id"],))

    def pending(self) -> list[Intent]:
        """Intents a crash left open, oldest first (read at start-up)."""
        rows = self.db.all(
            "SELECT id, container_id, action, detail, started FROM container_intents "
            "ORDER BY started"
        )
        return [
            Intent(
                row["id"],
                row["container_id"],
                row["action"],
                json.loads(row["detail"]),
                row["started"],
            )
            for row in rows
        ]
