"""The state file's tables, the migrations from every older schema version, and how a `tasks`
row reads as a TaskState.

Schema versions are numbered in landing order and never renumbered once landed: the state
files users have must still open.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from archiver.errors import UsageError
from archiver.kinds.records import Kind
from archiver.tasks.events import AT_RISK
from archiver.tasks.taskstate import Phase, TaskState

SCHEMA_VERSION = 10

# What index.html and playlist.m3u8 show of each archived task (archiver.browse), so that the
# daemon rewrites them without reading every manifest again. `seen_at` is the task's updated_at
# when its manifest was read: a task changed since is read again. The rows are large (a task's
# lyrics): a rowid table, with `view_seen` covering the which-changed join, so that it never
# reads them (with a WITHOUT ROWID table, an incremental update took 204 ms at 50,000 tasks,
# 49 ms without). Schema 4 to 8 had it without `shard` and `hay`.
_OLD_VIEW_SCHEMA = """
CREATE TABLE view (
    task_id   TEXT PRIMARY KEY,
    seen_at   REAL NOT NULL,
    sort_key  TEXT NOT NULL,
    data      TEXT NOT NULL,
    lyrics    TEXT NOT NULL,
    m3u       TEXT NOT NULL,
    tracks    INTEGER NOT NULL
);
CREATE INDEX view_seen ON view (task_id, seen_at);
CREATE INDEX view_order ON view (sort_key DESC, task_id DESC);
"""
# Until schema 9: what the last write of the one big index.html left, to splice onto it.
_VIEW_WRITTEN = """
CREATE TABLE view_written (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    layout  TEXT NOT NULL
);
CREATE INDEX view_tracks ON view (tracks);
"""
# When the index last looked for changed tasks (less a margin), so that a restarted daemon looks
# only at the tasks updated since, not at every task. A migration that drops `view` must empty it.
_VIEW_LOOKED = """
CREATE TABLE view_looked (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    since   REAL NOT NULL
);
"""
# Schema 9: the page's data lives in shard files (archiver/browse/shards.py), a row's `shard`
# for good once given (archival order: a new row goes to the newest shard), `hay` its compact
# search text. `view_shards` says which shards changed since their files were written
# (`changes` is bumped by every row stored or removed in it; `written` is `changes` as of the
# last write) and what the table of shards shows of each.
_VIEW_SHARDED = """
CREATE TABLE view (
    task_id   TEXT PRIMARY KEY,
    seen_at   REAL NOT NULL,
    shard     INTEGER NOT NULL,
    sort_key  TEXT NOT NULL,
    data      TEXT NOT NULL,
    lyrics    TEXT NOT NULL,
    m3u       TEXT NOT NULL,
    hay       TEXT NOT NULL,
    tracks    INTEGER NOT NULL
);
CREATE INDEX view_seen ON view (task_id, seen_at);
CREATE INDEX view_shard ON view (shard, sort_key DESC, task_id DESC);
CREATE TABLE view_shards (
    shard     INTEGER PRIMARY KEY,
    changes   INTEGER NOT NULL,
    written   INTEGER,
    tasks     INTEGER NOT NULL DEFAULT 0,
    tracks    INTEGER NOT NULL DEFAULT 0,
    first     TEXT,
    last      TEXT
);
"""

# Task events and their deliveries, one row per URL (the transactional outbox; the queries
# are archiver.state.outbox). `events_at_risk` makes `task.at_risk` once per task; the partial
# `deliveries_due` index holds only what is still to send, however many were delivered.
_EVENTS = f"""
CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id      TEXT NOT NULL UNIQUE,
    type        TEXT NOT NULL,
    task_id     TEXT NOT NULL,
    kind        TEXT,
    outcome     TEXT NOT NULL,
    error       TEXT,
    created_at  REAL NOT NULL
);
CREATE INDEX events_created ON events (created_at);
CREATE UNIQUE INDEX events_at_risk ON events (task_id) WHERE type = '{AT_RISK}';
CREATE TABLE deliveries (
    event_id      INTEGER NOT NULL,
    url           TEXT NOT NULL,
    status        TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    since         REAL NOT NULL,
    next_at       REAL NOT NULL,
    leased_until  REAL NOT NULL DEFAULT 0,
    last_error    TEXT,
    done_at       REAL,
    PRIMARY KEY (event_id, url)
);
CREATE INDEX deliveries_due ON deliveries (next_at) WHERE status = 'pending';
"""

# The tasks whose files expire soonest (`born_between`, the engine's tasks at risk) are a range
# of this index, not a scan of every task at each /metrics scrape.
BORN = "COALESCE(completed_at, created_at)"
_BORN_INDEX = f"CREATE INDEX tasks_born ON tasks ({BORN});\n"

_SCHEMA = (
    """
CREATE TABLE tasks (
    task_id          TEXT PRIMARY KEY,
    kind             TEXT,
    phase            TEXT NOT NULL,
    first_seen_at    REAL NOT NULL,
    next_poll_at     REAL NOT NULL,
    polls            INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_status      TEXT,
    last_error       TEXT,
    updated_at       REAL NOT NULL,
    archive_attempts INTEGER NOT NULL DEFAULT 0,
    via_http         INTEGER NOT NULL DEFAULT 0,
    created_at       REAL,
    completed_at     REAL,
    unknown_polls    INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
"""
    + _BORN_INDEX
    + _VIEW_SHARDED
    + _VIEW_LOOKED
    + _EVENTS
)

# The script that takes a state from schema version N (the key) to N + 1; `open` runs the ones
# it needs in one transaction, so an existing state keeps its rows. A new file gets _SCHEMA.
_MIGRATIONS = {
    # → 2: transient file failures are counted apart from failed API calls (archive_attempts).
    # The index served a due-tasks query the engine never makes (it keeps its own heap); the
    # `status` command's counts are 40 ms instead of 10 ms at 100,000 tasks without it, not
    # worth an index updated on every save.
    1: """
    ALTER TABLE tasks ADD COLUMN archive_attempts INTEGER NOT NULL DEFAULT 0;
    DROP INDEX IF EXISTS tasks_due;
    """,
    # → 3: tasks that came in over the HTTP intake stay when the task list does not name them.
    2: """
    ALTER TABLE tasks ADD COLUMN via_http INTEGER NOT NULL DEFAULT 0;
    """,
    3: _OLD_VIEW_SCHEMA,  # → 4: the browse view
    # → 5: the task's own times (its age for the schedule, its expiry) and the answers "no such
    # task" it got in a row (a just-created task is unknown for a while: not found is provisional).
    4: """
    ALTER TABLE tasks ADD COLUMN created_at REAL;
    ALTER TABLE tasks ADD COLUMN completed_at REAL;
    ALTER TABLE tasks ADD COLUMN unknown_polls INTEGER NOT NULL DEFAULT 0;
    """
    + _BORN_INDEX,
    # → 6: the view remade as a rowid table with a covering index; its rows are derived, so
    # they are dropped and read again from the manifests
    5: "DROP TABLE view;" + _OLD_VIEW_SCHEMA,
    6: _VIEW_WRITTEN,  # → 7: the index's files rewritten by copying the rows they hold
    7: _VIEW_LOOKED,  # → 8: a restart looks only at the tasks changed since the last look
    # → 9: the page's data in shards; the rows are derived: dropped, and read again from the
    # manifests (so the last look is forgotten too)
    8: "DROP TABLE view_written; DROP TABLE view; DELETE FROM view_looked;" + _VIEW_SHARDED,
    9: _EVENTS,  # → 10: task events, written with the phase they report
}

COLUMNS = (
    "task_id, kind, phase, first_seen_at, next_poll_at, polls, attempts, "
    "last_status, last_error, updated_at, archive_attempts, created_at, completed_at, unknown_polls"
)

_KINDS: dict[str | None, Kind | None] = {None: None, **{k.value: k for k in Kind}}
PHASES: dict[str, Phase] = {p.value: p for p in Phase}


def upgrade(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the open state at `path` to SCHEMA_VERSION in one transaction (a new file gets the
    whole schema, an older one the migrations it lacks); refuse one from a newer archiver."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise UsageError(
            f"{path}: state database has schema version {version}, written by a newer "
            f"suno-archiver (this one knows {SCHEMA_VERSION})"
        )
    if version < SCHEMA_VERSION:
        steps = (
            _SCHEMA
            if version == 0
            else "".join(_MIGRATIONS[v] for v in range(version, SCHEMA_VERSION))
        )
        conn.executescript(
            f"BEGIN IMMEDIATE; {steps} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        )


def row_to_state(row: tuple) -> TaskState:
    """The TaskState of a row selected as COLUMNS."""
    (task_id, kind, phase, first_seen, next_poll, polls, attempts, status, error, updated,
     archive_attempts, created, completed, unknown_polls) = row  # fmt: skip
    return TaskState(  # dict lookups, not Enum(...): this runs 100,000 times in get_many
        task_id=task_id,
        kind=_KINDS[kind],
        phase=PHASES[phase],
        first_seen_at=first_seen,
        next_poll_at=next_poll,
        polls=polls,
        attempts=attempts,
        last_status=status,
        last_error=error,
        updated_at=updated,
        archive_attempts=archive_attempts,
        created_at=created,
        completed_at=completed,
        unknown_polls=unknown_polls,
    )
