"""The browse view in a PostgreSQL state: archiver.browse.store's questions in PostgreSQL's SQL
(the rules are store.py's; this is its dialect). Several daemons share these rows; the index
is written by one of them at a time (the Indexer holds the state's advisory lock for it).

The writer's snapshot is a connection of its own (`PgStore.connect`), in one read-only
REPEATABLE READ transaction, as store.py's is a read-only SQLite connection in one read
transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator

import psycopg

from archiver.browse.store import ROW_COLUMNS, ShardInfo, row_values
from archiver.browse.view import ViewRow
from archiver.state.pgstore import PgStore
from archiver.tasks.taskstate import Phase

_IN_SHARD_ORDER = "ORDER BY sort_key DESC, task_id DESC"


class PgViewStore:
    """The view rows of a PostgreSQL state (see ViewStore for what each question means)."""

    def __init__(self, state: PgStore) -> None:
        self._state = state

    def stale(
        self, phases: Collection[Phase], *, changed_since: float | None = None
    ) -> list[tuple[str, float]]:
        since = "" if changed_since is None else "AND t.updated_at >= %s "
        values = sorted(Phase(p).value for p in phases)
        with self._state.transaction() as db:
            return db.execute(
                "SELECT t.task_id, t.updated_at FROM tasks t LEFT JOIN view v USING (task_id) "
                f"WHERE t.phase = ANY(%s) {since}"
                "AND (v.seen_at IS NULL OR v.seen_at < t.updated_at)",
                [values, *([] if changed_since is None else [changed_since])],
            ).fetchall()

    def put(
        self,
        rows: Iterable[tuple[ViewRow, float]],
        *,
        shard_tasks: int,
        drop: Iterable[str] = (),
        replace_all: bool = False,
        looked: float | None = None,
    ) -> None:
        rows = list(rows)
        with self._state.transaction() as db:
            # one writer of the view at a time, whatever daemon: the shard a new row goes to
            # is read, then written
            db.execute("LOCK TABLE view_shards IN EXCLUSIVE MODE")
            if replace_all:
                db.execute("DELETE FROM view_looked")
                db.execute("DELETE FROM view")
                db.execute("DELETE FROM view_shards")
            if looked is not None:
                db.execute(
                    "INSERT INTO view_looked (id, since) VALUES (1, %s) "
                    "ON CONFLICT (id) DO UPDATE SET since = excluded.since",
                    (looked,),
                )
            touched: set[int] = set()
            gone = list(drop)
            if gone:
                found = db.execute(
                    "DELETE FROM view WHERE task_id = ANY(%s) RETURNING shard", (gone,)
                )
                touched.update(shard for (shard,) in found)
            ids = [row.task_id for row, _ in rows]
            shards = dict(
                db.execute("SELECT task_id, shard FROM view WHERE task_id = ANY(%s)", (ids,))
            ) if ids else {}  # fmt: skip
            known = [(seen, *row_values(row)[1:], row.task_id) for row, seen in rows
                     if row.task_id in shards]  # fmt: skip
            if known:
                with db.cursor() as cur:
                    cur.executemany(
                        "UPDATE view SET seen_at = %s, sort_key = %s, data = %s, lyrics = %s, "
                        "m3u = %s, hay = %s, tracks = %s WHERE task_id = %s",
                        known,
                    )
            touched.update(shards.values())
            fresh = sorted(
                ((row, seen) for row, seen in rows if row.task_id not in shards),
                key=lambda r: (r[0].sort_key, r[0].task_id),
            )
            placed = list(self._placed(db, fresh, shard_tasks, touched))
            if placed:
                with db.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO view (shard, seen_at, task_id, sort_key, data, lyrics, m3u, "
                        "hay, tracks) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        placed,
                    )
            if touched:
                with db.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO view_shards (shard, changes) VALUES (%s, 1) "
                        "ON CONFLICT (shard) DO UPDATE SET changes = view_shards.changes + 1",
                        [(s,) for s in sorted(touched)],
                    )

    @staticmethod
    def _placed(
        db: psycopg.Connection,
        fresh: list[tuple[ViewRow, float]],
        shard_tasks: int,
        touched: set[int],
    ) -> Iterator[tuple[object, ...]]:
        found = db.execute("SELECT coalesce(max(shard), 0) FROM view_shards").fetchone()
        shard = found[0] if found else 0
        found = db.execute("SELECT count(*) FROM view WHERE shard = %s", (shard,)).fetchone()
        held = found[0] if found else 0
        for row, seen in fresh:
            if held >= shard_tasks:
                shard, held = shard + 1, 0
            held += 1
            touched.add(shard)
            yield (shard, seen, *row_values(row))

    def looked(self) -> float | None:
        with self._state.transaction() as db:
            found = db.execute("SELECT since FROM view_looked").fetchone()
        return None if found is None else found[0]

    def mark_written(self, shards: Iterable[ShardInfo]) -> None:
        values = [(s.changes, s.tasks, s.tracks, s.first, s.last, s.shard) for s in shards]
        if not values:
            return
        with self._state.transaction() as db, db.cursor() as cur:
            cur.executemany(
                "UPDATE view_shards SET written = %s, tasks = %s, tracks = %s, first = %s, "
                "last = %s WHERE shard = %s",
                values,
            )

    def forget_written(self) -> None:
        with self._state.transaction() as db:
            db.execute("UPDATE view_shards SET written = NULL")

    def shard_table(self) -> list[ShardInfo]:
        with self._state.transaction() as db:
            rows = db.execute(
                "SELECT shard, written, tasks, tracks, first, last FROM view_shards "
                "WHERE written IS NOT NULL ORDER BY shard"
            ).fetchall()
        return [ShardInfo(*row) for row in rows]


class PgSnapshot:
    """One snapshot of the view for the writer's thread (see store.SqliteSnapshot)."""

    def __init__(self, state: PgStore) -> None:
        self._db = state.connect()

    def begin(self) -> None:
        self._db.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def close(self) -> None:
        self._db.close()

    def tasks_in_order(self, batch: int) -> Iterator[list[tuple[str, float]]]:
        with self._db.transaction(), self._db.cursor(name="tasks_in_order") as cursor:
            cursor.execute(
                "SELECT task_id, updated_at FROM tasks "
                "ORDER BY COALESCE(completed_at, created_at), task_id"
            )
            while chunk := cursor.fetchmany(batch):
                yield chunk

    def changed_shards(self) -> list[tuple[int, int]]:
        return self._db.execute(
            "SELECT shard, changes FROM view_shards WHERE written IS NULL OR written < changes "
            "ORDER BY shard"
        ).fetchall()

    def shard_rows(self, shard: int) -> list[ViewRow]:
        rows = self._db.execute(
            f"SELECT {ROW_COLUMNS} FROM view WHERE shard = %s {_IN_SHARD_ORDER}", (shard,)
        )
        return [ViewRow(*row) for row in rows]

    def shards(self) -> list[int]:
        """Every shard, the newest first."""
        rows = self._db.execute("SELECT shard FROM view_shards ORDER BY shard DESC").fetchall()
        return [shard for (shard,) in rows]

    def newest_m3u(self) -> Iterator[list[str]]:
        for shard in self.shards():
            yield [
                m3u
                for (m3u,) in self._db.execute(
                    f"SELECT m3u FROM view WHERE shard = %s AND tracks > 0 {_IN_SHARD_ORDER}",
                    (shard,),
                )
            ]
