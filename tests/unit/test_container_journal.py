"""The intent journal: intents outlive the process that wrote them, and end with the
outcome's transaction (or not at all, when that transaction does not commit)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.containers import journal
from dockyard.containers.journal import Journal
from dockyard.state.db import Database


def test_open_intents_are_found_by_the_next_process(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "d.db"))
    first = Journal(db)
    create = first.begin("a" * 64, journal.CREATE, name="web")
    first.update(create, mounts=[{"name": "v1"}])
    stop = first.begin("b" * 64, journal.STOP, deadline=12.5)
    done = first.begin("b" * 64, journal.EXEC, exec_id="e")
    first.end(done)
    db.close()  # as if the daemon died here

    again = Journal(Database(str(tmp_path / "d.db")))
    found = {(i.container_id[0], i.action): i.detail for i in again.pending()}
    assert found == {
        ("a", journal.CREATE): {"name": "web", "mounts": [{"name": "v1"}]},
        ("b", journal.STOP): {"deadline": 12.5},
    }
    assert [i.id for i in again.pending() if i.action == journal.STOP] == [stop.id]


def test_an_intent_ends_only_with_its_outcome(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "d.db"))
    j = Journal(db)
    intent = j.begin("c" * 64, journal.REMOVE, volumes=True)
    with pytest.raises(RuntimeError), db.transaction():
        j.end(intent)
        raise RuntimeError("the outcome was not recorded")
    assert [i.id for i in j.pending()] == [intent.id]
    j.end(intent)
    j.end(intent)  # twice is harmless
    assert j.pending() == []


def test_an_exit_ends_the_stop_and_kill_waiting_for_it(tmp_path: Path) -> None:
    j = Journal(Database(str(tmp_path / "d.db")))
    cid = "d" * 64
    j.begin(cid, journal.STOP)
    j.begin(cid, journal.KILL)
    kept = j.begin(cid, journal.EXEC, exec_id="e")
    other = j.begin("e" * 64, journal.STOP)
    j.end_actions(cid, journal.STOP, journal.KILL)
    assert sorted(i.id for i in j.pending()) == sorted([kept.id, other.id])
