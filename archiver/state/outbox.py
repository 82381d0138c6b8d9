"""The events outbox (SPEC "Task events"): every query task events need, in one place (the
tables are archiver.state.schema's).

An event row is written in the transaction that saves the phase it reports (`StateStore.save`
calls `insert` inside its own), so a task is never archived without its event, nor an event
sent for a save that was rolled back. Each event gets one `deliveries` row per URL it is for.
The sender claims due rows under a lease (`leased_until`: on SQLite the process lock already
makes every row ours; a PostgreSQL store would take them `FOR UPDATE SKIP LOCKED`), posts
them, and marks each one delivered, due again later, or given up. The pull feed reads `events`
in `id` order; rows older than `events.keep_days` are pruned.

What a body says beyond the row (the manifest's files and their URLs) is read when it is sent:
`archiver.service.eventbody`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from archiver.state.schema import BORN
from archiver.tasks.events import AT_RISK
from archiver.tasks.taskstate import Phase

if TYPE_CHECKING:  # the store calls `insert` from its save
    from archiver.state.store import StateStore

PENDING, DELIVERED, GIVEN_UP = "pending", "delivered", "given_up"  # deliveries.status
# A webhook-id made by SQLite itself, so that one INSERT … SELECT can write many events.
_MSG_ID = "'msg_' || lower(hex(randomblob(16)))"
_EVENT = "e.id, e.msg_id, e.type, e.task_id, e.kind, e.outcome, e.error, e.created_at"
_DELIVERY = f"{_EVENT}, d.url, d.status, d.attempts, d.since, d.next_at, d.last_error"


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to write with a task's save, and the URLs it is to be sent to."""

    type: str
    task_id: str
    kind: str | None
    outcome: str
    error: str | None
    at: float
    urls: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Event:
    id: int  # the feed's ID: increasing, never reused
    msg_id: str  # the webhook-id: the same on every delivery of this event
    type: str
    task_id: str
    kind: str | None
    outcome: str  # the task's phase when the event was written
    error: str | None  # the task's last error then
    created_at: float


@dataclass(frozen=True, slots=True)
class Delivery:
    event: Event
    url: str
    status: str  # PENDING, DELIVERED or GIVEN_UP
    attempts: int
    since: float  # when this run of attempts began (the event, or a redelivery): give-up clock
    next_at: float
    last_error: str | None


def _delivery(row: Sequence[object]) -> Delivery:
    event = Event(*row[:8])  # type: ignore[arg-type]
    return Delivery(event, *row[8:])  # type: ignore[arg-type]


def insert(db: sqlite3.Connection, event: NewEvent) -> None:
    """Write `event` and its deliveries on `db`, inside the caller's transaction."""
    cur = db.execute(
        "INSERT INTO events (msg_id, type, task_id, kind, outcome, error, created_at) "
        f"VALUES ({_MSG_ID}, ?, ?, ?, ?, ?, ?)",
        (event.type, event.task_id, event.kind, event.outcome, event.error, event.at),
    )
    _add_deliveries(db, [int(cur.lastrowid or 0)], event.urls, event.at)


def _add_deliveries(
    db: sqlite3.Connection, event_ids: Iterable[int], urls: Sequence[str], now: float
) -> None:
    db.executemany(
        "INSERT OR IGNORE INTO deliveries (event_id, url, status, since, next_at) "
        "VALUES (?, ?, ?, ?, ?)",
        [(event_id, url, PENDING, now, now) for event_id in event_ids for url in urls],
    )


def insert_at_risk(
    store: StateStore, low: float, high: float, now: float, urls: Sequence[str]
) -> int:
    """A `task.at_risk` event for each pending task born in (low, high] (its files expire
    within two days: `archiver.tasks.expiry`) that has not had one; return how many."""
    with store.transaction() as db:
        rows = db.execute(
            "INSERT INTO events (msg_id, type, task_id, kind, outcome, error, created_at) "
            f"SELECT {_MSG_ID}, ?, task_id, kind, phase, last_error, ? FROM tasks "
            f"WHERE phase = ? AND {BORN} > ? AND {BORN} <= ? ORDER BY {BORN}, task_id "
            "ON CONFLICT DO NOTHING RETURNING id",
            (AT_RISK, now, Phase.PENDING.value, low, high),
        ).fetchall()
        _add_deliveries(db, [r[0] for r in rows], urls, now)
    return len(rows)


def claim(
    store: StateStore, now: float, lease_s: float, limit: int, urls: Sequence[str]
) -> list[Delivery]:
    """Up to `limit` deliveries due by `now` to one of `urls`, oldest due first, leased to the
    caller for `lease_s` (another sender skips them until the lease lapses)."""
    if not urls:
        return []
    marks = ",".join("?" * len(urls))
    with store.transaction() as db:
        rows = db.execute(
            f"SELECT {_DELIVERY} FROM deliveries d JOIN events e ON e.id = d.event_id "
            f"WHERE d.status = ? AND d.next_at <= ? AND d.leased_until <= ? AND d.url IN ({marks}) "
            "ORDER BY d.next_at, d.event_id LIMIT ?",
            (PENDING, now, now, *urls, limit),
        ).fetchall()
        db.executemany(
            "UPDATE deliveries SET leased_until = ? WHERE event_id = ? AND url = ?",
            [(now + lease_s, row[0], row[8]) for row in rows],
        )
    return [_delivery(row) for row in rows]


def next_due(store: StateStore, urls: Sequence[str]) -> float | None:
    """When the next delivery to one of `urls` is due and not leased, or None."""
    if not urls:
        return None
    marks = ",".join("?" * len(urls))
    row = store.connection.execute(
        "SELECT min(max(next_at, leased_until)) FROM deliveries "
        f"WHERE status = ? AND url IN ({marks})",
        (PENDING, *urls),
    ).fetchone()
    return row[0]


def delivered(store: StateStore, delivery: Delivery, now: float) -> None:
    _finish(store, delivery, DELIVERED, None, now)


def given_up(store: StateStore, delivery: Delivery, error: str, now: float) -> None:
    _finish(store, delivery, GIVEN_UP, error, now)


def _finish(
    store: StateStore, delivery: Delivery, status: str, error: str | None, now: float
) -> None:
    with store.transaction() as db:
        db.execute(
            "UPDATE deliveries SET status = ?, attempts = attempts + 1, leased_until = 0, "
            "last_error = ?, done_at = ? WHERE event_id = ? AND url = ?",
            (status, error, now, delivery.event.id, delivery.url),
        )


def release(store: StateStore, delivery: Delivery) -> None:
    """Give a claimed delivery back unsent (its sender is stopping): due as it was."""
    with store.transaction() as db:
        db.execute(
            "UPDATE deliveries SET leased_until = 0 WHERE event_id = ? AND url = ?",
            (delivery.event.id, delivery.url),
        )


def retry_at(store: StateStore, delivery: Delivery, error: str, next_at: float) -> None:
    """One more failed attempt: due again at `next_at`."""
    with store.transaction() as db:
        db.execute(
            "UPDATE deliveries SET attempts = attempts + 1, leased_until = 0, last_error = ?, "
            "next_at = ? WHERE event_id = ? AND url = ?",
            (error, next_at, delivery.event.id, delivery.url),
        )


def drop_unlisted(store: StateStore, urls: Sequence[str], now: float) -> int:
    """Give up the deliveries still due to URLs no longer configured; return how many."""
    marks = ",".join("?" * len(urls))
    with store.transaction() as db:
        cur = db.execute(
            "UPDATE deliveries SET status = ?, leased_until = 0, done_at = ?, "
            "last_error = 'the URL is no longer in [events] urls' "
            f"WHERE status = ? AND url NOT IN ({marks})",
            (GIVEN_UP, now, PENDING, *urls),
        )
    return cur.rowcount


def listed(store: StateStore, status: str) -> Iterator[Delivery]:
    """The deliveries in `status` (PENDING or GIVEN_UP), oldest event first, read as they
    are iterated (a long outbox is never in memory at once)."""
    cursor = store.connection.execute(
        f"SELECT {_DELIVERY} FROM deliveries d JOIN events e ON e.id = d.event_id "
        "WHERE d.status = ? ORDER BY d.event_id, d.url",
        (status,),
    )
    for row in cursor:
        yield _delivery(row)


def redeliver(store: StateStore, ids: Sequence[str], now: float, urls: Sequence[str]) -> list[str]:
    """Make the events named by `ids` (feed IDs or webhook-ids) due again at once to every
    URL they were for and to `urls`, as a new run of attempts; return the IDs not found."""
    missing: list[str] = []
    with store.transaction() as db:
        for given in ids:
            column = "id" if given.isdigit() else "msg_id"
            row = db.execute(f"SELECT id FROM events WHERE {column} = ?", (given,)).fetchone()
            if row is None:
                missing.append(given)
                continue
            _add_deliveries(db, [row[0]], urls, now)
            db.execute(
                "UPDATE deliveries SET status = ?, attempts = 0, since = ?, next_at = ?, "
                "leased_until = 0, done_at = NULL WHERE event_id = ?",
                (PENDING, now, now, row[0]),
            )
    return missing


def after(store: StateStore, after_id: int, limit: int) -> list[Event]:
    """The feed: up to `limit` events with an ID above `after_id`, in ID order."""
    rows = store.connection.execute(
        f"SELECT {_EVENT} FROM events e WHERE e.id > ? ORDER BY e.id LIMIT ?",
        (after_id, limit),
    ).fetchall()
    return [Event(*row) for row in rows]


def prune(store: StateStore, before: float) -> int:
    """Forget the events written before `before`, and their deliveries; return how many."""
    with store.transaction() as db:
        db.execute(
            "DELETE FROM deliveries WHERE event_id IN (SELECT id FROM events WHERE created_at < ?)",
            (before,),
        )
        cur = db.execute("DELETE FROM events WHERE created_at < ?", (before,))
    return cur.rowcount
