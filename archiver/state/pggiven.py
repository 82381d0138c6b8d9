"""The tasks given to an engine, on the PostgreSQL state: archiver.state.given's temporary tables
and set operations, in PostgreSQL's dialect (the rules are given.py's; this is its SQL).

The temporary tables live on the store's one pooled connection; should that connection be
replaced (the server restarted), they are made again, empty: `lost` says so, and the daemon gives
its list and intake tasks again whole at once (the tasks themselves are in the shared `tasks`
table, never lost).
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import psycopg

from archiver.kinds.records import Kind
from archiver.state.given import Conflict, Merged
from archiver.state.schema import BORN, COLUMNS, row_to_state
from archiver.tasks.tasklist import TaskRef, bare_ids_json
from archiver.tasks.taskstate import UNKNOWN_KIND, Phase, TaskState

if TYPE_CHECKING:
    from archiver.state.pgstore import PgStore

_STAGE_BATCH = 20_000

_TABLES = (  # one statement each: a pipeline takes no multi-statement string
    "CREATE TEMP TABLE IF NOT EXISTS given "
    "(task_id TEXT PRIMARY KEY, pos BIGINT NOT NULL, kind TEXT)",
    "CREATE TEMP TABLE IF NOT EXISTS incoming "
    "(pos BIGINT PRIMARY KEY, line BIGINT NOT NULL, task_id TEXT NOT NULL, kind TEXT)",
    "CREATE TEMP TABLE IF NOT EXISTS fresh (task_id TEXT PRIMARY KEY)",
)
_ALL = "SELECT task_id FROM given"
_BATCH = "SELECT task_id FROM incoming"


class PgGiven:
    """The given set of one engine on a PostgreSQL state (see archiver.state.given)."""

    def __init__(self, state: PgStore) -> None:
        self._state = state
        self._last_pos = 0
        self._made_on: int | None = None  # id() of the connection the tables were made on
        self._staged = False  # `incoming` may hold rows (a batch staged, not merged yet)
        # the store's connection (`connections_made`) `incoming`'s batch was begun on, and the
        # one `given` was last filled whole on (None: never filled)
        self._batch_on: int | None = None
        self._filled_on: int | None = None

    @property
    def lost(self) -> bool:
        return self._filled_on is not None and self._filled_on != self._state.connections_made

    @contextmanager
    def _transaction(self, *, pipelined: bool = False) -> Iterator[psycopg.Connection]:
        """The store's transaction, with the temporary tables made on its connection (again
        after a reconnection; and again if this transaction, which may have made them, fails).
        """
        with self._state.transaction(pipelined=pipelined) as db:
            try:
                if self._made_on != id(db.pgconn):
                    for table in _TABLES:
                        db.execute(table)
                    self._made_on = id(db.pgconn)
                yield db
            except BaseException:
                self._made_on = None
                raise

    def _take(self, n: int) -> int:
        first = self._last_pos + 1
        self._last_pos += n
        return first

    def stage(self, refs: Iterable[TaskRef], *, first: bool = False) -> None:
        refs = iter(refs)
        batch = list(itertools.islice(refs, _STAGE_BATCH))
        if first or not self._staged:
            self._batch_on = None
        if not batch and not (first and self._staged):
            return  # nothing to send nor to drop: not even a round trip
        with self._transaction() as db:
            if first and self._staged:
                db.execute("DELETE FROM incoming")
            self._staged = bool(batch)
            self._begin_batch()
            while batch:
                first_pos = self._take(len(batch))
                with db.cursor().copy(
                    "COPY incoming (pos, line, task_id, kind) FROM STDIN"
                ) as copy:
                    for pos, ref in enumerate(batch, first_pos):
                        copy.write_row(
                            (pos, ref.line, ref.task_id, ref.kind.value if ref.kind else None)
                        )
                batch = list(itertools.islice(refs, _STAGE_BATCH))

    def stage_bare(self, data: bytes, first_line: int) -> bool:
        ids = bare_ids_json(data)
        if ids is None:
            return False
        count = data.count(b"\n")
        if not self._staged:
            self._batch_on = None
        self._staged = True
        with self._transaction(pipelined=True) as db:
            self._begin_batch()
            db.execute(
                "INSERT INTO incoming SELECT %s + ord - 1, %s + ord - 1, value, NULL "
                "FROM json_array_elements_text(%s::json) WITH ORDINALITY AS t(value, ord)",
                (self._take(count), first_line, ids),
            )
        return True

    def merge(
        self, *, whole: bool, now: float, retry: Collection[Phase] = (), http: bool = False
    ) -> Merged:
        """See GivenTasks.merge. Every statement goes in one pipeline: one round trip for the
        whole transaction, whatever the number of statements; the answers are read after."""
        scope = _ALL if whole else _BATCH
        with self._transaction(pipelined=True) as db:
            new_cur = None
            if whole:
                db.execute("DELETE FROM given")
            else:
                new_cur = db.execute(
                    "SELECT count(DISTINCT task_id) FROM incoming AS i "
                    "WHERE NOT EXISTS (SELECT 1 FROM tasks AS t WHERE t.task_id = i.task_id)"
                )
                db.execute("DELETE FROM fresh")
                db.execute(
                    "INSERT INTO fresh SELECT DISTINCT task_id FROM incoming AS i "
                    "WHERE NOT EXISTS (SELECT 1 FROM given AS g WHERE g.task_id = i.task_id)"
                )
            # in key order: a million IDs into the primary key's B-tree in order, not at random
            db.execute(  # (a whole list: `given` was just emptied, nothing to conflict with)
                "INSERT INTO given (task_id, pos) SELECT task_id, min(pos) FROM incoming "
                "GROUP BY task_id ORDER BY task_id"
                + ("" if whole else " ON CONFLICT (task_id) DO NOTHING")
            )
            if whole and http:
                db.execute(
                    "INSERT INTO given (task_id, pos) SELECT task_id, %s FROM tasks "
                    "WHERE via_http = 1 ON CONFLICT (task_id) DO NOTHING",
                    (self._take(1),),
                )
            db.execute(
                "UPDATE given SET kind = first.kind FROM ("
                "  SELECT DISTINCT ON (task_id) task_id, kind FROM incoming "
                "  WHERE kind IS NOT NULL ORDER BY task_id, pos"
                ") AS first WHERE given.task_id = first.task_id AND given.kind IS NULL"
            )
            conflicts_cur = db.execute(
                "SELECT i.line, i.task_id, i.kind, g.kind FROM incoming AS i "
                "JOIN given AS g ON g.task_id = i.task_id "
                "WHERE i.kind IS NOT NULL AND i.kind != g.kind ORDER BY i.pos"
            )
            if whole:  # temporary tables are never analyzed on their own: plan the joins below
                db.execute("ANALYZE given")
            in_scope = "true" if whole else f"g.task_id IN ({scope})"
            # What given.py's one upsert does, as an anti-join and two updates: at a million
            # known IDs, ON CONFLICT's probe per row took 5.8 s, the hash anti-join a fraction.
            # (DO NOTHING: another daemon may insert the same ID meanwhile.)
            db.execute(
                "INSERT INTO tasks "
                "(task_id, kind, phase, first_seen_at, next_poll_at, updated_at, via_http) "
                f"SELECT task_id, kind, %(p)s, %(now)s, %(now)s, %(now)s, %(http)s FROM given g "
                f"WHERE {in_scope} AND NOT EXISTS "
                "(SELECT 1 FROM tasks t WHERE t.task_id = g.task_id) ORDER BY task_id "
                "ON CONFLICT (task_id) DO NOTHING",
                {"p": Phase.PENDING.value, "now": now, "http": int(http and not whole)},
            )
            db.execute(
                "UPDATE tasks t SET kind = g.kind FROM given g WHERE t.task_id = g.task_id "
                f"AND t.kind IS NULL AND g.kind IS NOT NULL AND {in_scope}"
            )
            if http and not whole:
                db.execute(
                    f"UPDATE tasks SET via_http = 1 WHERE via_http = 0 AND task_id IN ({scope})"
                )
            if retry:
                values = sorted({Phase(p).value for p in retry})
                db.execute(
                    "UPDATE tasks SET phase = %(p)s, attempts = 0, archive_attempts = 0, "
                    "unknown_polls = 0, first_seen_at = %(now)s, next_poll_at = %(now)s, "
                    f"updated_at = %(now)s WHERE phase = ANY(%(v)s) AND task_id IN ({scope})",
                    {"p": Phase.PENDING.value, "now": now, "v": values},
                )
            counted = f"task_id IN ({scope})" if whole else "task_id IN (SELECT task_id FROM fresh)"
            counts_cur = db.execute(
                f"SELECT kind, phase, count(*) FROM tasks WHERE {counted} GROUP BY kind, phase"
            )
            pending_cur = self._select(
                db, f"WHERE tasks.phase = %s AND tasks.task_id IN ({scope})", Phase.PENDING
            )
            db.execute("DELETE FROM incoming")
        found = new_cur.fetchone() if new_cur is not None else None
        conflicts = [
            Conflict(line, task_id, Kind(kind), Kind(given_as))
            for line, task_id, kind, given_as in conflicts_cur.fetchall()
        ]
        counts = {
            (kind or UNKNOWN_KIND, Phase(phase)): n for kind, phase, n in counts_cur.fetchall()
        }
        pending = [row_to_state(row) for row in pending_cur.fetchall()]
        self._staged = False
        if whole or self._filled_on is None:
            # filled on the connection its batch began on: rows staged on one replaced since
            # are gone, and `lost` stays true
            self._filled_on = self._batch_on or self._state.connections_made
        self._batch_on = None
        return Merged(pending, counts, whole, conflicts, found[0] if found else 0)

    def _begin_batch(self) -> None:
        if self._batch_on is None:
            self._batch_on = self._state.connections_made

    def count_born(self, low: float, high: float, phases: Collection[Phase]) -> int:
        values = sorted({Phase(p).value for p in phases})
        with self._transaction() as db:
            found = db.execute(
                f"SELECT count(*) FROM tasks JOIN given USING (task_id) "
                f"WHERE {BORN} > %s AND {BORN} <= %s AND phase = ANY(%s)",
                (low, high, values),
            ).fetchone()
        return found[0] if found else 0

    def not_archived(self) -> list[TaskState]:
        with self._transaction() as db:
            rows = self._select(db, "WHERE tasks.phase != %s", Phase.ARCHIVED)
            return [row_to_state(row) for row in rows]

    def _select(self, db: psycopg.Connection, where: str, phase: Phase) -> psycopg.Cursor:
        """Tasks of the given set, in the order given (rows as COLUMNS, read by the caller)."""
        columns = ", ".join(f"tasks.{c.strip()}" for c in COLUMNS.split(","))
        return db.execute(
            f"SELECT {columns} FROM tasks JOIN given USING (task_id) {where} ORDER BY given.pos",
            (phase.value,),
        )
