"""The events outbox in a PostgreSQL state: archiver.state.outbox's questions in PostgreSQL's
SQL (the rules are outbox.py's; this is its dialect), for any number of daemons on one database.

Two things differ from SQLite, where one process holds the state:
- a sender claims its deliveries `FOR UPDATE SKIP LOCKED` under a lease, so that two daemons
  never both take one (each delivery is sent by one daemon; another takes it over only once
  the lease lapsed: its sender died);
- events are written under a transaction-level advisory lock (`insert`, `insert_at_risk`), so
  that their IDs are committed in the order they were given: the pull feed, which reads
  "after the last ID seen", never passes over an event another daemon was still committing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import psycopg

from archiver.state.outbox import (
    DELIVERY_COLUMNS,
    DROPPED,
    EVENT_COLUMNS,
    GIVEN_UP,
    PENDING,
    Delivery,
    Event,
    NewEvent,
    OutboxWrites,
    delivery_of,
    new_msg_id,
)
from archiver.state.schema import BORN
from archiver.tasks.events import AT_RISK
from archiver.tasks.taskstate import Phase

if TYPE_CHECKING:  # the store calls `insert` from its save
    from archiver.state.pgstore import PgStore

_EVENTS_LOCK = (
    0x5A7C_0002  # pg_advisory_xact_lock key: events are written one transaction at a time
)
_MAX_ID = 2**63 - 1
_NEW_EVENTS = "INSERT INTO events (msg_id, type, task_id, kind, outcome, error, created_at) "


def _add_deliveries(
    db: psycopg.Connection, event_ids: list[int], urls: Sequence[str], now: float
) -> None:
    db.execute(
        "INSERT INTO deliveries (event_id, url, status, since, next_at) "
        "SELECT e, u, %s, %s, %s FROM unnest(%s::bigint[]) AS e, unnest(%s::text[]) AS u "
        "ON CONFLICT DO NOTHING",
        (PENDING, now, now, event_ids, list(urls)),
    )


def insert(db: psycopg.Connection, event: NewEvent) -> None:
    """Write `event` and its deliveries on `db`, inside the caller's transaction."""
    db.execute("SELECT pg_advisory_xact_lock(%s)", (_EVENTS_LOCK,))
    row = db.execute(
        _NEW_EVENTS + "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (new_msg_id(), event.type, event.task_id, event.kind, event.outcome, event.error,
         event.at),
    ).fetchone()  # fmt: skip
    assert row is not None
    _add_deliveries(db, [row[0]], event.urls, event.at)


class PgOutbox(OutboxWrites):
    """The outbox of a PostgreSQL state (see SqliteOutbox for what each question means)."""

    _mark = "%s"

    def __init__(self, state: PgStore) -> None:
        self._state: PgStore = state

    def insert_at_risk(self, low: float, high: float, now: float, urls: Sequence[str]) -> int:
        with self._state.transaction() as db:
            found = db.execute(
                "SELECT task_id, kind, phase, last_error FROM tasks t "
                f"WHERE phase = %s AND {BORN} > %s AND {BORN} <= %s AND NOT EXISTS "
                "(SELECT 1 FROM events e WHERE e.task_id = t.task_id AND e.type = %s) "
                f"ORDER BY {BORN}, task_id",
                (Phase.PENDING.value, low, high, AT_RISK),
            ).fetchall()
            if not found:
                return 0
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_EVENTS_LOCK,))
            # another daemon's watch may have written some meanwhile: the unique index on
            # at-risk events keeps one each
            columns = [[new_msg_id() for _ in found], *(list(c) for c in zip(*found, strict=True))]
            ids = [
                r[0]
                for r in db.execute(
                    _NEW_EVENTS + "SELECT m, %s, t, k, p, e, %s FROM unnest(%s::text[], "
                    "%s::text[], %s::text[], %s::text[], %s::text[]) WITH ORDINALITY "
                    "AS r(m, t, k, p, e, n) ORDER BY n ON CONFLICT DO NOTHING RETURNING id",
                    (AT_RISK, now, *columns),
                )
            ]
            _add_deliveries(db, ids, urls, now)
        return len(ids)

    def claim(self, now: float, lease_s: float, limit: int, urls: Sequence[str]) -> list[Delivery]:
        """Rows another daemon is claiming this instant are skipped, not waited for; a row it
        claimed a moment ago has its lease and is not due."""
        if not urls:
            return []
        with self._state.transaction() as db:
            rows = db.execute(
                "WITH due AS (SELECT event_id, url FROM deliveries WHERE status = %(pending)s "
                "AND next_at <= %(now)s AND leased_until <= %(now)s AND url = ANY(%(urls)s) "
                "ORDER BY next_at, event_id LIMIT %(limit)s FOR UPDATE SKIP LOCKED), "
                "leased AS (UPDATE deliveries d SET leased_until = %(until)s FROM due "
                "WHERE d.event_id = due.event_id AND d.url = due.url RETURNING d.*) "
                f"SELECT {DELIVERY_COLUMNS} FROM leased d JOIN events e ON e.id = d.event_id "
                "ORDER BY d.next_at, d.event_id, d.url",
                {"pending": PENDING, "now": now, "urls": list(urls), "limit": limit,
                 "until": now + lease_s},
            ).fetchall()  # fmt: skip
        return [delivery_of(row) for row in rows]

    def next_due(self, urls: Sequence[str]) -> float | None:
        if not urls:
            return None
        with self._state.transaction() as db:
            row = db.execute(
                "SELECT min(greatest(next_at, leased_until)) FROM deliveries "
                "WHERE status = %s AND url = ANY(%s)",
                (PENDING, list(urls)),
            ).fetchone()
        return row[0] if row else None

    def drop_unlisted(self, urls: Sequence[str], now: float) -> int:
        with self._state.transaction() as db:
            cur = db.execute(
                "UPDATE deliveries SET status = %s, leased_until = 0, done_at = %s, "
                "last_error = %s WHERE status = %s AND url <> ALL(%s)",
                (GIVEN_UP, now, DROPPED, PENDING, list(urls)),
            )
            return cur.rowcount

    def listed(self, status: str) -> Iterator[Delivery]:
        """Read through a server-side cursor on a connection of its own, in batches (a long
        outbox is never in memory at once, and the pooled connection stays free)."""
        with self._state.connect() as conn, conn.transaction():
            cursor = conn.cursor(name="listed")
            cursor.execute(
                f"SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN events e ON e.id = d.event_id "
                "WHERE d.status = %s ORDER BY d.event_id, d.url",
                (status,),
            )
            for row in cursor:
                yield delivery_of(row)

    def redeliver(self, ids: Sequence[str], now: float, urls: Sequence[str]) -> list[str]:
        missing: list[str] = []
        with self._state.transaction() as db:
            for given in ids:
                if given.isdigit():  # a feed ID (one past bigint names no event)
                    number = int(given)
                    row = (
                        None
                        if number > _MAX_ID
                        else db.execute("SELECT id FROM events WHERE id = %s", (number,)).fetchone()
                    )
                else:
                    row = db.execute("SELECT id FROM events WHERE msg_id = %s", (given,)).fetchone()
                if row is None:
                    missing.append(given)
                    continue
                _add_deliveries(db, [row[0]], urls, now)
                db.execute(
                    "UPDATE deliveries SET status = %s, attempts = 0, since = %s, next_at = %s, "
                    "leased_until = 0, done_at = NULL WHERE event_id = %s",
                    (PENDING, now, now, row[0]),
                )
        return missing

    def after(self, after_id: int, limit: int) -> list[Event]:
        with self._state.transaction() as db:
            rows = db.execute(
                f"SELECT {EVENT_COLUMNS} FROM events e WHERE e.id > %s ORDER BY e.id LIMIT %s",
                (after_id, limit),
            ).fetchall()
        return [Event(*row) for row in rows]
