"""An intake answer (200/202) follows a durable write: on SQLite, the intake's transaction is
committed with synchronous=FULL (NORMAL is safe against a crash, not a power cut), and only it;
the statements SQLite runs are traced on the real connection."""

from __future__ import annotations

from pathlib import Path

from archiver.state.store import StateStore
from archiver.tasks.tasklist import TaskRef


def test_the_intakes_writes_are_committed_with_synchronous_full(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "s.sqlite3") as store:
        given = store.given()
        ran: list[str] = []
        store.connection.set_trace_callback(ran.append)
        given.stage([TaskRef("listed", None, 1)])
        given.merge(whole=True, now=1.0, http=True)  # a task list: crash-safe is enough
        assert not any("synchronous" in s for s in ran)
        given.stage([TaskRef("posted", None)])
        given.merge(whole=False, now=2.0, http=True)  # the intake
        sync = [s for s in ran if "synchronous" in s or s in ("BEGIN IMMEDIATE", "COMMIT")]
        assert sync[-4:] == [
            "PRAGMA synchronous = FULL",
            "BEGIN IMMEDIATE",
            "COMMIT",
            "PRAGMA synchronous = NORMAL",
        ]
        assert store.connection.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
