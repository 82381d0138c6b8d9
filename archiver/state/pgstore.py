"""The PostgreSQL state: the SQLite state's questions (archiver.state.store), answered by one
database that any number of daemons share, and the leases that let them share it.

Its connections, transactions and leases are pgcluster.py's. A connection that broke (the
server restarted) is dropped by the pool when it comes back, so the call after a failure
connects anew: the caller sees psycopg.OperationalError once, pauses, and tries again
(archiver.engine). A step's row is saved only if the lease is still its own
(`save(..., owner=...)`, one statement: the check and the write are one transaction), which
also lets the lease go.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from archiver.kinds.records import Kind
from archiver.state import pgoutbox
from archiver.state.outbox import NewEvent
from archiver.state.pgcluster import PgCluster
from archiver.state.protocol import LeaseLost
from archiver.state.schema import BORN, COLUMNS, PHASES, row_to_state
from archiver.tasks.taskstate import PROBLEMS, UNKNOWN_KIND, Phase, TaskState

_FIELDS = COLUMNS.split(", ")
_SET_ALL = ", ".join(f"{c} = %({c})s" for c in _FIELDS[1:])
_VALUES = ", ".join(f"%({c})s" for c in _FIELDS)
_UPDATE_ALL = ", ".join(f"{c} = excluded.{c}" for c in _FIELDS[1:])
_PENDING = Phase.PENDING.value


def _row(state: TaskState) -> dict[str, Any]:
    return {
        "task_id": state.task_id,
        "kind": state.kind.value if state.kind else None,
        "phase": Phase(state.phase).value,
        "first_seen_at": state.first_seen_at,
        "next_poll_at": state.next_poll_at,
        "polls": state.polls,
        "attempts": state.attempts,
        "last_status": state.last_status,
        "last_error": state.last_error,
        "updated_at": state.updated_at,
        "archive_attempts": state.archive_attempts,
        "created_at": state.created_at,
        "completed_at": state.completed_at,
        "unknown_polls": state.unknown_polls,
    }


def _values(phases: Collection[Phase]) -> list[str]:
    return sorted({Phase(p).value for p in phases})


class PgStore(PgCluster):
    """Task states in one PostgreSQL database. Use from one thread (the asyncio loop's)."""

    shared = True

    def given(self) -> Any:
        from archiver.state.pggiven import PgGiven

        return PgGiven(self)

    # --- tasks ------------------------------------------------------------------------------

    def add(
        self, refs: Iterable[tuple[str, Kind | None]], now: float, *, via_http: bool = False
    ) -> int:
        """Insert unknown tasks as PENDING, due now; return how many were new (see
        StateStore.add)."""
        rows = sorted({tid: (tid, kind.value if kind else None) for tid, kind in refs}.values())
        if not rows:
            return 0
        with self.transaction() as db:
            cur = db.execute(
                "WITH given AS (SELECT * FROM unnest(%s::text[], %s::text[]) AS g(task_id, kind)),"
                " ins AS (INSERT INTO tasks (task_id, kind, phase, first_seen_at, next_poll_at,"
                " updated_at, via_http) SELECT task_id, kind, %s, %s, %s, %s, %s FROM given "
                "ON CONFLICT (task_id) DO UPDATE SET "
                "kind = coalesce(tasks.kind, excluded.kind), "
                "via_http = greatest(tasks.via_http, excluded.via_http) "
                "WHERE (tasks.kind IS NULL AND excluded.kind IS NOT NULL) "
                "OR tasks.via_http < excluded.via_http RETURNING (xmax = 0) AS inserted) "
                "SELECT count(*) FILTER (WHERE inserted) FROM ins",
                (
                    [r[0] for r in rows],
                    [r[1] for r in rows],
                    _PENDING,
                    now,
                    now,
                    now,
                    int(via_http),
                ),
            )
            found = cur.fetchone()
        return int(found[0]) if found else 0

    def http_task_ids(self) -> list[str]:
        with self._connection() as db:
            rows = db.execute("SELECT task_id FROM tasks WHERE via_http = 1 ORDER BY task_id")
            return [row[0] for row in rows]

    def get_many(self, task_ids: Iterable[str]) -> dict[str, TaskState]:
        ids = list(dict.fromkeys(task_ids))
        if not ids:
            return {}
        with self._connection() as db:
            rows = db.execute(f"SELECT {COLUMNS} FROM tasks WHERE task_id = ANY(%s)", (ids,))
            return {row[0]: row_to_state(row) for row in rows}

    def save(
        self, state: TaskState, event: NewEvent | None = None, *, owner: str | None = None
    ) -> None:
        """Write the whole row (`via_http` is kept), and `event` with it in the same
        transaction (the outbox). With `owner`, only while `owner` holds the task's lease
        (LeaseLost otherwise, and neither the row nor the event is written), and the lease
        goes with the write."""
        with self.transaction() if event is not None else self._connection() as db:
            if owner is None:
                db.execute(
                    f"INSERT INTO tasks ({COLUMNS}) VALUES ({_VALUES}) "
                    f"ON CONFLICT (task_id) DO UPDATE SET {_UPDATE_ALL}",
                    _row(state),
                )
            else:
                cur = db.execute(
                    f"UPDATE tasks SET {_SET_ALL}, lease_owner = NULL, lease_until = NULL "
                    "WHERE task_id = %(task_id)s AND lease_owner = %(owner)s",
                    {**_row(state), "owner": owner},
                )
                self._confirmed.pop(state.task_id, None)
                if cur.rowcount != 1:  # raised inside the transaction: nothing is written
                    raise LeaseLost(state.task_id)
            if event is not None:
                pgoutbox.insert(db, event)

    def reopen(self, task_ids: Iterable[str], phases: Collection[Phase], now: float) -> int:
        ids = list(dict.fromkeys(task_ids))
        values = _values(phases)
        if not ids or not values:
            return 0
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE tasks SET phase = %s, attempts = 0, archive_attempts = 0, "
                "unknown_polls = 0, first_seen_at = %s, next_poll_at = %s, updated_at = %s "
                "WHERE task_id = ANY(%s) AND phase = ANY(%s)",
                (_PENDING, now, now, now, ids, values),
            )
            return cur.rowcount

    def counts(self) -> dict[Phase, int]:
        result = dict.fromkeys(Phase, 0)
        with self._connection() as db:
            for phase, n in db.execute("SELECT phase, count(*) FROM tasks GROUP BY phase"):
                result[Phase(phase)] = n
        return result

    def kind_counts(self) -> dict[str, int]:
        with self._connection() as db:
            found = dict(db.execute("SELECT kind, count(*) FROM tasks GROUP BY kind").fetchall())
        order = [*(kind.value for kind in Kind), None]
        return {kind or UNKNOWN_KIND: found[kind] for kind in order if found.get(kind)}

    def problems(self) -> list[TaskState]:
        return self._select(
            "WHERE phase = ANY(%s) ORDER BY updated_at, task_id", (_values(PROBLEMS),)
        )

    def born_between(self, low: float, high: float, phases: Collection[Phase]) -> list[TaskState]:
        return self._select(
            f"WHERE phase = ANY(%s) AND {BORN} > %s AND {BORN} <= %s ORDER BY {BORN}, task_id",
            (_values(phases), low, high),
        )

    def phases_in(self, phases: Collection[Phase]) -> dict[str, Phase]:
        with self._connection() as db:
            rows = db.execute(
                "SELECT task_id, phase FROM tasks WHERE phase = ANY(%s) ORDER BY task_id",
                (_values(phases),),
            )
            return {task_id: PHASES[phase] for task_id, phase in rows}

    def adopt(
        self,
        rows: Iterable[tuple[str, Kind, Phase, str | None]],
        now: float,
        event: NewEvent | None = None,
    ) -> int:
        values = sorted(
            (tid, kind.value, Phase(phase).value, status) for tid, kind, phase, status in rows
        )
        with self.transaction() as db:
            if values:
                db.execute(
                    "INSERT INTO tasks (task_id, kind, phase, last_status, first_seen_at, "
                    "next_poll_at, updated_at) SELECT t, k, p, s, %s, %s, %s FROM "
                    "unnest(%s::text[], %s::text[], %s::text[], %s::text[]) AS r(t, k, p, s) "
                    "ON CONFLICT (task_id) DO UPDATE SET kind = excluded.kind, "
                    "phase = excluded.phase, last_status = excluded.last_status, attempts = 0, "
                    "archive_attempts = 0, last_error = NULL, updated_at = excluded.updated_at",
                    (now, now, now, *(list(col) for col in zip(*values, strict=True))),
                )
            if event is not None:
                pgoutbox.insert(db, event)
        return len(values)

    def due_now(self, task_id: str, now: float) -> None:
        """A callback said the pending task moved on: due now for whichever daemon claims
        it first (a claim takes only a task that is due)."""
        with self._connection() as db:
            db.execute(
                "UPDATE tasks SET next_poll_at = %s WHERE task_id = %s AND phase = %s "
                "AND next_poll_at > %s",
                (now, task_id, _PENDING, now),
            )

    def pending_since(self, since: float) -> list[TaskState]:
        """Tasks changed after `since` (any phase: one another daemon ended is forgotten);
        with `since` <= 0, every pending task (a daemon's start)."""
        if since <= 0:
            return self._select("WHERE phase = %s", (_PENDING,))
        return self._select("WHERE updated_at > %s", (since,))

    def _select(self, where: str, params: tuple[Any, ...]) -> list[TaskState]:
        with self._connection() as db:
            rows = db.execute(f"SELECT {COLUMNS} FROM tasks {where}", params)
            return [row_to_state(r) for r in rows]
