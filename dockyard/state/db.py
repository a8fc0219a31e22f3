"""The daemon's metadata database.

One SQLite file in WAL mode under the data root holds every record (images,
tags, layers, containers, ...). Schema changes are numbered migrations applied
in order at open; `PRAGMA user_version` records how far a database has come.

The daemon is single-process. Statements are short, so they run inline on
the event loop, but worker threads (pulls, builds, garbage collection) use the
same connection too. One re-entrant lock serialises them: a statement waits for
another thread's transaction to finish rather than slipping into it, and a
transaction belongs to the thread that opened it (nested calls in that thread
join it). Multi-statement changes go through `transaction()` so that a crash
leaves either the old or the new state.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from dockyard.state import private
from dockyard.state.migrations import MIGRATIONS


class Database:
    def __init__(self, path: str) -> None:
        self.path = path
        # Records hold containers' environments: the file is made private before SQLite
        # opens it (its journal and shared-memory files take the database file's mode).
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, private.FILE))
        for own in (path, path + "-wal", path + "-shm"):
            private.narrow(own)
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self._lock = threading.RLock()
        self._depth = 0  # of the transaction the lock's holder has open
        self._migrate()

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            # One script per migration, its version bump inside the same transaction.
            self.conn.executescript(
                f"BEGIN IMMEDIATE;\n{script};\nPRAGMA user_version={number};\nCOMMIT;"
            )

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run the block atomically; nested calls in the same thread join the outer one."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self.conn
                finally:
                    self._depth -= 1
                return
            self.conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self.conn
            except BaseException:
                self._depth = 0
                self.conn.execute("ROLLBACK")
                raise
            self._depth = 0
            self.conn.execute("COMMIT")

    def execute(self, sql: str, params: tuple | dict = ()) -> sqlite3.Cursor:
        with self._lock:
            return self.conn.execute(sql, params)

    def one(self, sql: str, params: tuple | dict = ()) -> sqlite3.Row | None:
        with self._lock:
            row: sqlite3.Row | None = self.conn.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self.conn.execute(sql, params).fetchall()

    def close(self) -> None:
        self.conn.close()
