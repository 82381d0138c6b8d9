"""The events outbox (SPEC "Task events"): what task events ask of the state, and every query
of it on SQLite (`SqliteOutbox`; `archiver.state.pgoutbox` has them in PostgreSQL's dialect,
`archiver.state.outboxes.outbox_of` picks the one a state needs; the tables are each store's
schema's).

An event row is written in the transaction that saves the phase it reports (`save` calls
`insert` inside its own), so a task is never archived without its event, nor an event sent for
a save that was rolled back. Each event gets one `deliveries` row per URL it is for. The sender
claims due rows under a lease (`leased_until`: on SQLite the process lock already makes every
row ours; on PostgreSQL they are taken `FOR UPDATE SKIP LOCKED`, so with several daemons each
delivery is sent by one), posts them, and marks each one delivered, due again later, or given
up. The pull feed reads `events` in `id` order; rows older than `events.keep_days` are pruned.

A webhook-id (`msg_id`) is made here, in Python, the same way for both stores, so that it never
changes when a state is copied from one to the other.

What a body says beyond the row (the manifest's files and their URLs) is read when it is sent:
`archiver.service.eventbody`.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from archiver.state.schema import BORN
from archiver.tasks.events import AT_RISK
from archiver.tasks.taskstate import Phase

if TYPE_CHECKING:  # the stores call `insert` from their save
    from archiver.state.protocol import Store
    from archiver.state.store import StateStore

PENDING, DELIVERED, GIVEN_UP = "pending", "delivered", "given_up"  # deliveries.status
EVENT_COLUMNS = "e.id, e.msg_id, e.type, e.task_id, e.kind, e.outcome, e.error, e.created_at"
DELIVERY_COLUMNS = f"{EVENT_COLUMNS}, d.url, d.status, d.attempts, d.since, d.next_at, d.last_error"
DROPPED = "the URL is no longer in [events] urls"  # last_error of a delivery drop_unlisted gave up


def new_msg_id() -> str:
    """A webhook-id: "msg_" and 32 random hex digits."""
    return "msg_" + secrets.token_hex(16)


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


def delivery_of(row: Sequence[object]) -> Delivery:
    """A row of DELIVERY_COLUMNS."""
    event = Event(*row[:8])  # type: ignore[arg-type]
    return Delivery(event, *row[8:])  # type: ignore[arg-type]


class Outbox(Protocol):
    """The outbox's questions, whatever the store (SqliteOutbox says what each one means)."""

    def insert_at_risk(self, low: float, high: float, now: float, urls: Sequence[str]) -> int: ...
    def claim(
        self, now: float, lease_s: float, limit: int, urls: Sequence[str]
    ) -> list[Delivery]: ...
    def next_due(self, urls: Sequence[str]) -> float | None: ...
    def delivered(self, delivery: Delivery, now: float) -> None: ...
    def given_up(self, delivery: Delivery, error: str, now: float) -> None: ...
    def release(self, delivery: Delivery) -> None: ...
    def retry_at(self, delivery: Delivery, error: str, next_at: float) -> None: ...
    def drop_unlisted(self, urls: Sequence[str], now: float) -> int: ...
    def listed(self, status: str) -> Iterator[Delivery]: ...
    def redeliver(self, ids: Sequence[str], now: float, urls: Sequence[str]) -> list[str]: ...
    def after(self, after_id: int, limit: int) -> list[Event]: ...
    def prune(self, before: float) -> int: ...


def insert(db: sqlite3.Connection, event: NewEvent) -> None:
    """Write `event` and its deliveries on `db`, inside the caller's transaction."""
    cur = db.execute(
        "INSERT INTO events (msg_id, type, task_id, kind, outcome, error, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (new_msg_id(), event.type, event.task_id, event.kind, event.outcome, event.error,
         event.at),
    )  # fmt: skip
    _add_deliveries(db, [int(cur.lastrowid or 0)], event.urls, event.at)


def _add_deliveries(
    db: sqlite3.Connection, event_ids: Iterable[int], urls: Sequence[str], now: float
) -> None:
    db.executemany(
        "INSERT OR IGNORE INTO deliveries (event_id, url, status, since, next_at) "
        "VALUES (?, ?, ?, ?, ?)",
        [(event_id, url, PENDING, now, now) for event_id in event_ids for url in urls],
    )


class OutboxWrites:
    """What the outbox writes the same way on both stores (a subclass sets `_mark`, its
    dialect's parameter mark, and `_state`, a store with `transaction`)."""

    _mark = "?"
    _state: Store

    def _write(self, sql: str, params: Sequence[object]) -> None:
        """One statement in a transaction of its own."""
        with self._state.transaction() as db:
            db.execute(sql.replace("?", self._mark), params)

    def delivered(self, delivery: Delivery, now: float) -> None:
        self._finish(delivery, DELIVERED, None, now)

    def given_up(self, delivery: Delivery, error: str, now: float) -> None:
        self._finish(delivery, GIVEN_UP, error, now)

    def _finish(self, delivery: Delivery, status: str, error: str | None, now: float) -> None:
        self._write(
            "UPDATE deliveries SET status = ?, attempts = attempts + 1, leased_until = 0, "
            "last_error = ?, done_at = ? WHERE event_id = ? AND url = ?",
            (status, error, now, delivery.event.id, delivery.url),
        )

    def release(self, delivery: Delivery) -> None:
        """Give a claimed delivery back unsent (its sender is stopping): due as it was."""
        self._write(
            "UPDATE deliveries SET leased_until = 0 WHERE event_id = ? AND url = ?",
            (delivery.event.id, delivery.url),
        )

    def retry_at(self, delivery: Delivery, error: str, next_at: float) -> None:
        """One more failed attempt: due again at `next_at`."""
        self._write(
            "UPDATE deliveries SET attempts = attempts + 1, leased_until = 0, "
            "last_error = ?, next_at = ? WHERE event_id = ? AND url = ?",
            (error, next_at, delivery.event.id, delivery.url),
        )

    def prune(self, before: float) -> int:
        """Forget the events written before `before`, and their deliveries; return how many."""
        with self._state.transaction() as db:
            db.execute(
                "DELETE FROM deliveries WHERE event_id IN "
                f"(SELECT id FROM events WHERE created_at < {self._mark})",
                (before,),
            )
            cur = db.execute(f"DELETE FROM events WHERE created_at < {self._mark}", (before,))
            return cur.rowcount


class SqliteOutbox(OutboxWrites):
    """The outbox of a SQLite state (its connection: use from the loop's thread)."""

    def __init__(self, state: StateStore) -> None:
        self._state: StateStore = state

    def insert_at_risk(self, low: float, high: float, now: float, urls: Sequence[str]) -> int:
        """A `task.at_risk` event for each pending task born in (low, high] (its files expire
        within two days: `archiver.tasks.expiry`) that has not had one; return how many."""
        with self._state.transaction() as db:
            found = db.execute(
                "SELECT task_id, kind, phase, last_error FROM tasks t "
                f"WHERE phase = ? AND {BORN} > ? AND {BORN} <= ? AND NOT EXISTS "
                "(SELECT 1 FROM events e WHERE e.task_id = t.task_id AND e.type = ?) "
                f"ORDER BY {BORN}, task_id",
                (Phase.PENDING.value, low, high, AT_RISK),
            ).fetchall()
            ids = [
                db.execute(
                    "INSERT INTO events (msg_id, type, task_id, kind, outcome, error, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (new_msg_id(), AT_RISK, *row, now),
                ).lastrowid
                for row in found
            ]
            _add_deliveries(db, [int(i or 0) for i in ids], urls, now)
        return len(ids)

    def claim(self, now: float, lease_s: float, limit: int, urls: Sequence[str]) -> list[Delivery]:
        """Up to `limit` deliveries due by `now` to one of `urls`, oldest due first, leased to
        the caller for `lease_s` (another sender skips them until the lease lapses)."""
        if not urls:
            return []
        marks = ",".join("?" * len(urls))
        with self._state.transaction() as db:
            rows = db.execute(
                f"SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN events e ON e.id = d.event_id "
                f"WHERE d.status = ? AND d.next_at <= ? AND d.leased_until <= ? "
                f"AND d.url IN ({marks}) ORDER BY d.next_at, d.event_id LIMIT ?",
                (PENDING, now, now, *urls, limit),
            ).fetchall()
            db.executemany(
                "UPDATE deliveries SET leased_until = ? WHERE event_id = ? AND url = ?",
                [(now + lease_s, row[0], row[8]) for row in rows],
            )
        return [delivery_of(row) for row in rows]

    def next_due(self, urls: Sequence[str]) -> float | None:
        """When the next delivery to one of `urls` is due and not leased, or None."""
        if not urls:
            return None
        marks = ",".join("?" * len(urls))
        row = self._state.connection.execute(
            "SELECT min(max(next_at, leased_until)) FROM deliveries "
            f"WHERE status = ? AND url IN ({marks})",
            (PENDING, *urls),
        ).fetchone()
        return row[0]

    def drop_unlisted(self, urls: Sequence[str], now: float) -> int:
        """Give up the deliveries still due to URLs no longer configured; return how many."""
        marks = ",".join("?" * len(urls))
        with self._state.transaction() as db:
            cur = db.execute(
                "UPDATE deliveries SET status = ?, leased_until = 0, done_at = ?, "
                f"last_error = ? WHERE status = ? AND url NOT IN ({marks})",
                (GIVEN_UP, now, DROPPED, PENDING, *urls),
            )
        return cur.rowcount

    def listed(self, status: str) -> Iterator[Delivery]:
        """The deliveries in `status` (PENDING or GIVEN_UP), oldest event first, read as they
        are iterated (a long outbox is never in memory at once)."""
        cursor = self._state.connection.execute(
            f"SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN events e ON e.id = d.event_id "
            "WHERE d.status = ? ORDER BY d.event_id, d.url",
            (status,),
        )
        for row in cursor:
            yield delivery_of(row)

    def redeliver(self, ids: Sequence[str], now: float, urls: Sequence[str]) -> list[str]:
        """Make the events named by `ids` (feed IDs or webhook-ids) due again at once to every
        URL they were for and to `urls`, as a new run of attempts; return the IDs not found."""
        missing: list[str] = []
        with self._state.transaction() as db:
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

    def after(self, after_id: int, limit: int) -> list[Event]:
        """The feed: up to `limit` events with an ID above `after_id`, in ID order."""
        rows = self._state.connection.execute(
            f"SELECT {EVENT_COLUMNS} FROM events e WHERE e.id > ? ORDER BY e.id LIMIT ?",
            (after_id, limit),
        ).fetchall()
        return [Event(*row) for row in rows]
