"""`copy-state`: a SQLite state copied into an empty PostgreSQL database, so that an archive
moves to several daemons without polling or downloading anything again.

Every row the SQLite state keeps is copied as it is: each task with its phase, schedule,
attempts, times and intake mark, the index's view rows and what the index last wrote and
looked at, and the task events with their deliveries (delivered, pending or given up: each
keeps its feed ID and webhook-id, so nothing is sent twice nor under a new ID; the target's
ID sequence moves past every ID SQLite ever gave, pruned ones too). The SQLite side is read
in one read transaction (a snapshot: a daemon still running on it changes nothing of what is
copied; stop it first, or its later steps are not copied); the PostgreSQL side is written in
one transaction, with COPY, so that a copy cut short leaves the target empty. A target that
already has tasks is refused.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from archiver.errors import UsageError, one_line
from archiver.state.pgschema import COPIED_TABLES
from archiver.state.pgstore import PgStore
from archiver.state.readonly import read_only_state

_BATCH = 5_000  # rows read from SQLite at a time: a million tasks never in memory at once

# The columns of each copied table, in both databases (the SQLite state's, minus rowid).
_COLUMNS = {
    "tasks": (
        "task_id, kind, phase, first_seen_at, next_poll_at, polls, attempts, last_status, "
        "last_error, updated_at, archive_attempts, via_http, created_at, completed_at, "
        "unknown_polls"
    ),
    "view": "task_id, seen_at, shard, sort_key, data, lyrics, m3u, hay, tracks",
    "view_shards": "shard, changes, written, tasks, tracks, first, last",
    "view_looked": "id, since",
    "events": "id, msg_id, type, task_id, kind, outcome, error, created_at",
    "deliveries": (
        "event_id, url, status, attempts, since, next_at, leased_until, last_error, done_at"
    ),
}
assert set(_COLUMNS) == set(COPIED_TABLES)


@dataclass(frozen=True)
class Copied:
    source: Path
    target: str  # the URL without its password
    rows: dict[str, int]  # table -> rows copied


OnProgress = Callable[[str, int, int], None]  # (table, done, total)


def copy_state(
    source: Path,
    url: str,
    target: str,
    *,
    password: str = "",
    on_progress: OnProgress | None = None,
) -> Copied:
    """Copy the SQLite state at `source` into the empty PostgreSQL database at `url`
    (`target`: the URL as messages show it). UsageError (one line) when the source is missing
    or unreadable, the target unreachable or not empty."""
    store = PgStore.open(url, target, password=password)
    try:
        with read_only_state(source) as sqlite_store, store.transaction() as pg:
            db = sqlite_store.connection
            _refuse_non_empty(pg, target)
            rows: dict[str, int] = {}
            try:
                db.execute("BEGIN")  # one snapshot of every table
                for table in COPIED_TABLES:
                    rows[table] = _copy_table(db, pg, table, on_progress)
                _continue_event_ids(db, pg)
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise UsageError(f"{source}: cannot read state database: {exc}") from None
    except psycopg.Error as exc:
        raise UsageError(f"{target}: cannot copy the state: {one_line(exc)}") from None
    finally:
        store.close()
    return Copied(source, target, rows)


def _refuse_non_empty(pg: psycopg.Connection, target: str) -> None:
    for table in COPIED_TABLES:
        found = pg.execute(f"SELECT EXISTS (SELECT 1 FROM {table})").fetchone()
        if found and found[0]:
            raise UsageError(
                f"{target}: the database already holds a state (its {table} table has rows); "
                "copy-state only fills an empty one"
            )


def _continue_event_ids(db: sqlite3.Connection, pg: psycopg.Connection) -> None:
    """The next event the target writes gets an ID above any SQLite gave (AUTOINCREMENT
    remembers the highest in sqlite_sequence, even when those events were pruned)."""
    found = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    if found and found[0]:
        pg.execute("SELECT setval(pg_get_serial_sequence('events', 'id'), %s)", (found[0],))


def _copy_table(
    db: sqlite3.Connection, pg: psycopg.Connection, table: str, on_progress: OnProgress | None
) -> int:
    columns = _COLUMNS[table]
    total = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    done = 0
    cursor = db.execute(f"SELECT {columns} FROM {table}")
    with pg.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        while batch := cursor.fetchmany(_BATCH):
            for row in batch:
                copy.write_row(row)
            done += len(batch)
            if on_progress is not None:
                on_progress(table, done, total)
    return done
