"""The browse view in the state: every SQL statement of archiver.browse on SQLite, in one place
(pgstore.py has them in PostgreSQL's dialect; dialect.py picks the one a state needs).

A view row is what the page and the playlists show of one task (archiver.browse.view), kept so
that the daemon rewrites them without reading every manifest again. Each row belongs to a
shard for good: a new row goes to the newest shard until it holds `shard_tasks` rows, then
to a new one (archival order), and a row stored again keeps its shard. `view_shards` counts
the changes to each shard, so that a write renders only the shards changed since their files
were last written.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass

from archiver.browse.view import ViewRow
from archiver.state.store import StateStore
from archiver.tasks.taskstate import Phase

ROW_COLUMNS = "task_id, sort_key, data, lyrics, m3u, hay, tracks"
_IN_SHARD_ORDER = "ORDER BY sort_key DESC, task_id DESC"  # newest first, as the page lists them
_LOOKUP = 500  # task IDs looked up in one statement (SQLite allows 32,766 parameters)


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """What the table of shards says of one shard (and when its files were made)."""

    shard: int
    changes: int  # bumped by every row stored or removed in it: the files' version
    tasks: int
    tracks: int
    first: str | None  # its oldest and newest row's date (ISO 8601)
    last: str | None


class ViewStore:
    """The view rows of one state (its connection: use from the loop's thread)."""

    def __init__(self, state: StateStore) -> None:
        self._state = state

    def stale(
        self, phases: Collection[Phase], *, changed_since: float | None = None
    ) -> list[tuple[str, float]]:
        """(task ID, updated_at) of the tasks in `phases` whose view row is missing, or older
        than the task's last change; with `changed_since`, only among the tasks updated since
        (a scan of the small task rows, not a join with every view row: 10 ms, not 50 ms, at
        50,000 tasks)."""
        values = sorted(Phase(p).value for p in phases)
        marks = ",".join("?" * len(values))
        since = "" if changed_since is None else "AND t.updated_at >= ? "
        return self._state.connection.execute(
            "SELECT t.task_id, t.updated_at FROM tasks t LEFT JOIN view v USING (task_id) "
            f"WHERE t.phase IN ({marks}) {since}"
            "AND (v.seen_at IS NULL OR v.seen_at < t.updated_at)",
            [*values, *([] if changed_since is None else [changed_since])],
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
        """Store view rows (each with the updated_at of the task it was read at) and remove
        those of `drop`, in one transaction; `replace_all` removes every other row (and shard)
        first. A row already stored keeps its shard; new ones fill the newest shard up to
        `shard_tasks` rows, oldest first, then open the next. `looked`: the time from which
        the next look for changed tasks may start; `replace_all` without it forgets the last
        look (the next one looks at every task)."""
        with self._state.transaction() as db:
            if replace_all:
                db.execute("DELETE FROM view_looked")
                db.execute("DELETE FROM view")
                db.execute("DELETE FROM view_shards")
            if looked is not None:
                db.execute(
                    "INSERT OR REPLACE INTO view_looked (id, since) VALUES (1, ?)", (looked,)
                )
            touched: set[int] = set()
            for task_id in drop:
                found = db.execute(
                    "DELETE FROM view WHERE task_id = ? RETURNING shard", (task_id,)
                ).fetchone()
                if found is not None:
                    touched.add(found[0])
            rows = list(rows)
            shards = _shards_of(db, [row.task_id for row, _ in rows])
            fresh = [(row, seen) for row, seen in rows if row.task_id not in shards]
            db.executemany(
                "UPDATE view SET seen_at = ?, sort_key = ?, data = ?, lyrics = ?, m3u = ?, "
                "hay = ?, tracks = ? WHERE task_id = ?",
                (
                    (seen, *row_values(row)[1:], row.task_id)
                    for row, seen in rows
                    if row.task_id in shards
                ),
            )
            touched.update(shards.values())
            fresh.sort(key=lambda r: (r[0].sort_key, r[0].task_id))
            db.executemany(
                "INSERT INTO view (shard, seen_at, task_id, sort_key, data, lyrics, m3u, hay, "
                "tracks) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                self._placed(db, fresh, shard_tasks, touched),
            )
            db.executemany(
                "INSERT INTO view_shards (shard, changes) VALUES (?, 1) "
                "ON CONFLICT (shard) DO UPDATE SET changes = changes + 1",
                ((s,) for s in sorted(touched)),
            )

    @staticmethod
    def _placed(
        db: sqlite3.Connection,
        fresh: list[tuple[ViewRow, float]],
        shard_tasks: int,
        touched: set[int],
    ) -> Iterator[tuple[object, ...]]:
        """The insert values of new rows, each given its shard (added to `touched`)."""
        shard = db.execute("SELECT coalesce(max(shard), 0) FROM view_shards").fetchone()[0]
        held = db.execute("SELECT count(*) FROM view WHERE shard = ?", (shard,)).fetchone()[0]
        for row, seen in fresh:
            if held >= shard_tasks:
                shard, held = shard + 1, 0
            held += 1
            touched.add(shard)
            yield (shard, seen, *row_values(row))

    def looked(self) -> float | None:
        """What the last `put` gave as `looked` (None: never, look at every task)."""
        found = self._state.connection.execute("SELECT since FROM view_looked").fetchone()
        return None if found is None else found[0]

    def mark_written(self, shards: Iterable[ShardInfo]) -> None:
        """Record what was written of each shard: its counts, and `changes` as of the
        snapshot it was written from (a row stored since leaves it changed)."""
        with self._state.transaction() as db:
            db.executemany(
                "UPDATE view_shards SET written = ?, tasks = ?, tracks = ?, first = ?, last = ? "
                "WHERE shard = ?",
                ((s.changes, s.tasks, s.tracks, s.first, s.last, s.shard) for s in shards),
            )

    def forget_written(self) -> None:
        """Make every shard's files due again (they are missing, or the page is new)."""
        with self._state.transaction() as db:
            db.execute("UPDATE view_shards SET written = NULL")

    def shard_table(self) -> list[ShardInfo]:
        """`shard_table` on the main connection: it names only shards whose files are stored."""
        return shard_table(self._state.connection)


class SqliteSnapshot:
    """One snapshot of the view for the writer's thread: `read_snapshot`'s connection, read
    in one transaction from `begin` to `close` (pgstore.PgSnapshot: the same on PostgreSQL)."""

    def __init__(self, state: StateStore) -> None:
        self._db = read_snapshot(state)

    def begin(self) -> None:
        self._db.execute("BEGIN")

    def close(self) -> None:
        self._db.close()

    def tasks_in_order(self, batch: int) -> Iterator[list[tuple[str, float]]]:
        return tasks_in_order(self._db, batch)

    def changed_shards(self) -> list[tuple[int, int]]:
        return changed_shards(self._db)

    def shard_rows(self, shard: int) -> list[ViewRow]:
        return shard_rows(self._db, shard)

    def newest_m3u(self) -> Iterator[list[str]]:
        return newest_m3u(self._db)

    def shards(self) -> list[int]:
        return every_shard(self._db)


def _shards_of(db: sqlite3.Connection, task_ids: list[str]) -> dict[str, int]:
    """The shard of each of `task_ids` that has a row (a few hundred looked up at once)."""
    found: dict[str, int] = {}
    for start in range(0, len(task_ids), _LOOKUP):
        chunk = task_ids[start : start + _LOOKUP]
        marks = ",".join("?" * len(chunk))
        found.update(
            db.execute(f"SELECT task_id, shard FROM view WHERE task_id IN ({marks})", chunk)
        )
    return found


def row_values(row: ViewRow) -> tuple[object, ...]:
    return (row.task_id, row.sort_key, row.data, row.lyrics, row.m3u, row.hay, row.tracks)


def read_snapshot(state: StateStore) -> sqlite3.Connection:
    """A read-only connection to the state's file for a writer in another thread: inside a
    transaction it reads one snapshot (WAL) while the daemon goes on writing."""
    uri = state.path.resolve().as_uri() + "?mode=ro"
    db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA busy_timeout = 5000")
    return db


def tasks_in_order(db: sqlite3.Connection, batch: int) -> Iterator[list[tuple[str, float]]]:
    """(task ID, updated_at) of every task, `batch` at a time, in the order they were archived
    (as near as the state knows: finished, else created), for a rebuild: from a snapshot of
    its own, so that a million never sit in memory while the rows are stored."""
    cursor = db.execute(
        "SELECT task_id, updated_at FROM tasks ORDER BY COALESCE(completed_at, created_at), task_id"
    )
    while chunk := cursor.fetchmany(batch):
        yield chunk


def changed_shards(db: sqlite3.Connection) -> list[tuple[int, int]]:
    """(shard, changes) of every shard changed since its files were last written."""
    return db.execute(
        "SELECT shard, changes FROM view_shards WHERE written IS NULL OR written < changes "
        "ORDER BY shard"
    ).fetchall()


def shard_rows(db: sqlite3.Connection, shard: int) -> list[ViewRow]:
    """The rows of one shard, newest first (a few hundred: one shard's files at a time)."""
    cursor = db.execute(
        f"SELECT {ROW_COLUMNS} FROM view WHERE shard = ? {_IN_SHARD_ORDER}", (shard,)
    )
    return [ViewRow(*row) for row in cursor]


def shard_table(db: sqlite3.Connection) -> list[ShardInfo]:
    """Every shard whose files were written, as they were, oldest first (a small row each;
    `changes`: the version written)."""
    cursor = db.execute(
        "SELECT shard, written, tasks, tracks, first, last FROM view_shards "
        "WHERE written IS NOT NULL ORDER BY shard"
    )
    return [ShardInfo(*row) for row in cursor]


def every_shard(db: sqlite3.Connection) -> list[int]:
    """Every shard, the newest first."""
    return [shard for (shard,) in db.execute("SELECT shard FROM view_shards ORDER BY shard DESC")]


def newest_m3u(db: sqlite3.Connection) -> Iterator[list[str]]:
    """The rows' playlist lines, newest first: a shard at a time, from the newest (the
    caller stops when it has enough)."""
    for shard in every_shard(db):
        yield [
            m3u
            for (m3u,) in db.execute(
                f"SELECT m3u FROM view WHERE shard = ? AND tracks > 0 {_IN_SHARD_ORDER}", (shard,)
            )
        ]
