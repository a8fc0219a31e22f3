"""The metadata database used from the event loop and worker threads at once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from dockyard.state.db import Database


def test_a_thread_never_joins_another_threads_transaction(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "db.sqlite"))
    db.execute("CREATE TABLE t(x TEXT)")
    other_started = threading.Event()

    def other() -> None:
        other_started.set()
        with db.transaction():
            db.execute("INSERT INTO t VALUES ('other')")

    thread = threading.Thread(target=other)
    try:
        with db.transaction():
            db.execute("INSERT INTO t VALUES ('failed')")
            thread.start()
            other_started.wait()
            time.sleep(0.2)  # let the other thread reach its transaction
            raise RuntimeError("this transaction fails")
    except RuntimeError:
        pass
    thread.join()
    # The failed transaction took only its own row with it.
    assert [r["x"] for r in db.all("SELECT x FROM t")] == ["other"]
    db.close()
