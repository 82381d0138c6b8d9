"""The PostgreSQL database the daemons share: its connections and transactions (psycopg's
pool, autocommit: a question is one statement and one round trip; `transaction` makes several
one), and what the daemons coordinate with: task leases, heartbeats, once-per-cluster marks and
advisory locks. pgstore.py asks the task questions on top of it.

Leases: a daemon claims a due pending task before its step (`claim`: the row, locked with
FOR UPDATE SKIP LOCKED so that two daemons never both win it, gets the daemon's name and an
expiry), renews its leases while the step lasts (`renew`), and the store saves the step's row
only if the lease is still its own.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, Self

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool

from archiver.errors import UsageError, one_line
from archiver.state.pgschema import upgrade
from archiver.state.protocol import Daemon
from archiver.tasks.taskstate import Phase

CONNECT_TIMEOUT_S = 5  # a database that does not answer within this is "away"

_PENDING = Phase.PENDING.value


class _Connections:
    """The pool's `configure`: counts the connections it made (a new one has none of the
    given set's temporary tables: `PgGiven.lost`)."""

    def __init__(self) -> None:
        self.made = 0

    def __call__(self, conn: psycopg.Connection) -> None:
        # room in memory for the given set's temporary tables (a million IDs; the default
        # 8 MB spills them to disk: 8.4 s instead of 1 s to fill)
        conn.execute("SET temp_buffers = '128MB'")
        self.made += 1


class PgCluster:
    """One shared database's connections and the daemons' coordination in it."""

    def __init__(
        self,
        pool: ConnectionPool,
        where: str,
        url: str = "",
        kwargs: dict[str, Any] | None = None,
        connections: _Connections | None = None,
    ) -> None:
        self._pool = pool
        self._connections = connections or _Connections()
        self._where = where
        self._url = url  # for the connections of their own (`connect`, the advisory locks)
        self._kwargs = kwargs or {}
        self._lock_conn: psycopg.Connection | None = None
        self._held: psycopg.Connection | None = None  # the connection of the open transaction
        # when each lease this process holds was last set or renewed in the database (`confirm`)
        self._confirmed: dict[str, float] = {}

    @classmethod
    def open(cls, url: str, where: str, *, password: str = "") -> Self:
        """Connect to the state at `url` (`where`: the URL as messages show it), creating
        its tables in an empty database. UsageError (naming `where`) when that fails."""
        kwargs: dict[str, Any] = {"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S}
        if password:
            kwargs["password"] = password
        # The pool's own retries log each failure at WARNING; what matters reaches the
        # archiver's log once, as its own event (state_unreachable).
        logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
        try:  # first alone: libpq's own reason, at once (the pool would retry it for seconds)
            psycopg.connect(url, **kwargs).close()
        except psycopg.Error as exc:
            raise UsageError(f"{where}: cannot open state database: {one_line(exc)}") from None
        connections = _Connections()
        pool = ConnectionPool(
            url,
            kwargs=kwargs,
            configure=connections,
            min_size=1,
            max_size=1,
            open=False,
            name="state",
            # a call waits this long for a connection while the server is away, then fails
            # (the engine pauses): never the event loop held for long
            timeout=CONNECT_TIMEOUT_S,
        )
        try:
            pool.open(wait=True, timeout=CONNECT_TIMEOUT_S * 2)
        except Exception as exc:  # PoolTimeout: the server went away a moment ago
            pool.close()
            raise UsageError(f"{where}: cannot open state database: {one_line(exc)}") from None
        store = cls(pool, where, url, kwargs, connections)
        try:
            with store._connection() as conn:
                upgrade(conn, where)
        except psycopg.Error as exc:
            store.close()
            raise UsageError(f"{where}: cannot open state database: {one_line(exc)}") from None
        except UsageError:
            store.close()
            raise
        return store

    @property
    def where(self) -> str:
        return self._where

    @property
    def connections_made(self) -> int:
        """How many connections the pool made so far: the newest is the one in use."""
        return self._connections.made

    def close(self) -> None:
        if self._lock_conn is not None:
            self._lock_conn.close()
            self._lock_conn = None
        self._pool.close()

    def connect(self) -> psycopg.Connection:
        """A connection of its own (autocommit), for work in another thread: a writer's
        snapshot. The caller closes it."""
        return psycopg.connect(self._url, **self._kwargs)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        if self._held is not None:
            yield self._held
            return
        with self._pool.connection() as conn:
            self._held = conn
            try:
                yield conn
            finally:
                self._held = None

    @contextmanager
    def transaction(
        self, *, durable: bool = True, pipelined: bool = False
    ) -> Iterator[psycopg.Connection]:
        """One committed transaction, rolled back if the block raises (nested: the outer).
        Always durable once committed (the server's synchronous_commit, on by default).
        `pipelined`: its statements are sent without waiting for each answer, and the whole
        transaction costs one round trip; their cursors are read after the block (no COPY).
        """
        if self._held is not None:
            yield self._held
            return
        with self._connection() as conn:
            if not pipelined:
                with conn.transaction():
                    yield conn
                return
            # BEGIN and COMMIT as plain statements: psycopg's transaction() syncs the pipeline
            # at its start and end (4 round trips instead of 1)
            try:
                with conn.pipeline():
                    conn.execute("BEGIN")
                    yield conn
                    conn.execute("COMMIT")
            except BaseException:
                if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                    with suppress(psycopg.Error):
                        conn.execute("ROLLBACK")
                raise

    def claim(self, task_ids: Iterable[str], owner: str, now: float, lease_s: float) -> set[str]:
        """Lease those of `task_ids` that are pending, due by `now` and not leased by another
        daemon (or whose lease lapsed) to `owner` until now + lease_s; return the ones won.
        Rows another daemon is claiming this instant are skipped, not waited for."""
        ids = sorted(set(task_ids))
        if not ids:
            return set()
        with self._connection() as db:
            rows = db.execute(
                "UPDATE tasks SET lease_owner = %(owner)s, lease_until = %(until)s "
                "WHERE task_id IN (SELECT task_id FROM tasks WHERE task_id = ANY(%(ids)s) "
                "AND phase = %(pending)s AND next_poll_at <= %(now)s AND (lease_owner IS NULL "
                "OR lease_owner = %(owner)s OR lease_until < %(now)s) "
                "FOR UPDATE SKIP LOCKED) RETURNING task_id",
                {"owner": owner, "until": now + lease_s, "ids": ids, "pending": _PENDING,
                 "now": now},
            )  # fmt: skip
            won = {row[0] for row in rows}
        self._confirmed.update(dict.fromkeys(won, now))
        return won

    def confirm(self, task_id: str, owner: str, now: float, lease_s: float) -> bool:
        """Whether `owner` still holds the task's lease (before a manifest is written).
        Without a round trip while the lease was set or renewed less than lease_s / 2 ago:
        no other daemon can have taken it then (clocks apart by less than that); else it is
        claimed again, False when another daemon took it."""
        if now - self._confirmed.get(task_id, -math.inf) < lease_s / 2:
            return True
        return bool(self.claim([task_id], owner, now, lease_s))

    def renew(self, owner: str, now: float, lease_s: float) -> int:
        """Extend every lease `owner` holds to now + lease_s; return how many it holds."""
        with self._connection() as db:
            rows = db.execute(
                "UPDATE tasks SET lease_until = %s WHERE lease_owner = %s RETURNING task_id",
                (now + lease_s, owner),
            ).fetchall()
        held = {row[0] for row in rows}
        # only the leases still ours: one another daemon took meanwhile is not confirmed
        self._confirmed = {task_id: now for task_id in held}
        return len(held)

    def release(self, task_ids: Iterable[str], owner: str) -> None:
        ids = sorted(set(task_ids))
        if not ids:
            return
        for task_id in ids:
            self._confirmed.pop(task_id, None)
        with self._connection() as db:
            db.execute(
                "UPDATE tasks SET lease_owner = NULL, lease_until = NULL "
                "WHERE task_id = ANY(%s) AND lease_owner = %s",
                (ids, owner),
            )

    def heartbeat(self, daemon: Daemon) -> float | None:
        """Say `daemon` is alive (and when it last had an API answer); return the latest
        API answer any daemon had, for the cluster's silence alert. One round trip."""
        with self._connection() as db:
            found = db.execute(
                "WITH beat AS (INSERT INTO daemons VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (daemon_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, "
                "last_answer_at = excluded.last_answer_at RETURNING 1) "
                "SELECT max(last_answer_at) FROM daemons",
                (daemon.daemon_id, daemon.host, daemon.pid, daemon.started_at,
                 daemon.heartbeat_at, daemon.last_answer_at),
            ).fetchone()  # fmt: skip
        latest = [t for t in (found[0] if found else None, daemon.last_answer_at) if t]
        return max(latest) if latest else None

    def daemons(self, now: float, alive_s: float) -> list[Daemon]:
        """The daemons whose last heartbeat is at most `alive_s` old, with their leases."""
        with self._connection() as db:
            rows = db.execute(
                "SELECT d.daemon_id, d.host, d.pid, d.started_at, d.heartbeat_at, "
                "(SELECT count(*) FROM tasks t WHERE t.lease_owner = d.daemon_id "
                " AND t.lease_until >= %s), d.last_answer_at FROM daemons d "
                "WHERE d.heartbeat_at >= %s ORDER BY d.host, d.pid",
                (now, now - alive_s),
            )
            return [Daemon(*row) for row in rows]

    def leave(self, daemon_id: str) -> None:
        """A daemon stopping cleanly: its leases go at once, its heartbeat row too."""
        self._confirmed.clear()
        with self.transaction() as db:
            db.execute(
                "UPDATE tasks SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = %s",
                (daemon_id,),
            )
            db.execute("DELETE FROM daemons WHERE daemon_id = %s", (daemon_id,))

    def first_to_say(self, key: str, now: float) -> bool:
        """True for the one daemon that says `key` first (an alert sent once, not once per
        daemon); the others get False."""
        with self._connection() as db:
            cur = db.execute(
                "INSERT INTO said VALUES (%s, %s) ON CONFLICT (key) DO NOTHING", (key, now)
            )
            return cur.rowcount == 1

    @contextmanager
    def try_lock(self, name: str) -> Iterator[bool]:
        """An advisory lock for the cluster (the browse files are written by one daemon at a
        time): yields whether this daemon got it; held until the block ends, or the daemon's
        death ends its session. On a connection of its own: the block may await, and the
        pooled one goes on serving the engine meanwhile."""
        if self._lock_conn is None or self._lock_conn.closed or self._lock_conn.broken:
            self._lock_conn = self.connect()
        db = self._lock_conn
        got = db.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (name,)).fetchone()
        won = bool(got and got[0])
        try:
            yield won
        finally:
            if won and not db.closed:
                with suppress(psycopg.Error):
                    db.execute("SELECT pg_advisory_unlock(hashtext(%s))", (name,))
