"""The PostgreSQL state's tables: the SQLite state's (archiver.state.schema), plus what several
daemons need: each task's lease (who works it, until when), the daemons' heartbeats, and the
events already said (an alert sent once for the cluster, not once per daemon).

The version is a row in `meta`; `upgrade` creates the tables in one transaction, under an
advisory lock, so that two daemons starting at once on an empty database do not both try.
"""

from __future__ import annotations

import psycopg

from archiver.errors import UsageError

PG_SCHEMA_VERSION = 1
_CREATE_LOCK = 0x5A7C_0001  # pg_advisory_xact_lock key: one daemon creates the tables

# Times are epoch seconds (double precision), as in the SQLite state, so that a copied state
# keeps every value exactly.
_SCHEMA = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE tasks (
    task_id          TEXT PRIMARY KEY,
    kind             TEXT,
    phase            TEXT NOT NULL,
    first_seen_at    DOUBLE PRECISION NOT NULL,
    next_poll_at     DOUBLE PRECISION NOT NULL,
    polls            INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_status      TEXT,
    last_error       TEXT,
    updated_at       DOUBLE PRECISION NOT NULL,
    archive_attempts INTEGER NOT NULL DEFAULT 0,
    via_http         INTEGER NOT NULL DEFAULT 0,
    created_at       DOUBLE PRECISION,
    completed_at     DOUBLE PRECISION,
    unknown_polls    INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_until      DOUBLE PRECISION
);
CREATE INDEX tasks_born ON tasks (COALESCE(completed_at, created_at));
-- The pending tasks, by when they are due: what a daemon claims, and what changed lately
-- (partial: the archived million are not in it).
CREATE INDEX tasks_pending ON tasks (next_poll_at) WHERE phase = 'pending';
CREATE INDEX tasks_updated ON tasks (updated_at);
CREATE INDEX tasks_lease ON tasks (lease_owner) WHERE lease_owner IS NOT NULL;
-- The browse view as the SQLite state's schema 9 has it (archiver.state.schema), so that
-- copy-state moves its rows over; its questions are archiver/browse/pgstore.py's.
CREATE TABLE view (
    task_id   TEXT PRIMARY KEY,
    seen_at   DOUBLE PRECISION NOT NULL,
    shard     INTEGER NOT NULL,
    sort_key  TEXT NOT NULL,
    data      TEXT NOT NULL,
    lyrics    TEXT NOT NULL,
    m3u       TEXT NOT NULL,
    hay       TEXT NOT NULL,
    tracks    INTEGER NOT NULL
);
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
CREATE TABLE view_looked (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    since   DOUBLE PRECISION NOT NULL
);
CREATE TABLE daemons (
    daemon_id    TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL,
    last_answer_at DOUBLE PRECISION  -- the daemon's last API answer: silence is the cluster's
);
CREATE TABLE said (
    key      TEXT PRIMARY KEY,
    said_at  DOUBLE PRECISION NOT NULL
);
"""

# Tables a copied state fills, in an order that keeps nothing dangling.
COPIED_TABLES = ("tasks", "view", "view_shards", "view_looked")


def upgrade(conn: psycopg.Connection, where: str) -> None:
    """Create the tables in an empty database, or check the version of existing ones."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_CREATE_LOCK,))
        exists = conn.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()
        if exists and exists[0]:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version != PG_SCHEMA_VERSION:
                raise UsageError(
                    f"{where}: state database has schema version {version}, "
                    f"this suno-archiver knows {PG_SCHEMA_VERSION}"
                )
            return
        others = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchone()
        if others and others[0]:
            raise UsageError(
                f"{where}: the database has tables that are not a suno-archiver state: "
                "give the archiver a database of its own"
            )
        conn.execute(_SCHEMA)
        conn.execute("INSERT INTO meta VALUES ('schema_version', %s)", (str(PG_SCHEMA_VERSION),))
