"""The browse view's rows in the state, and the layout of the files last written from them.

A view row is what index.html and playlist.m3u8 show of one task (archiver.browse.view), kept
so that the daemon rewrites both files without reading every manifest again. The layout says
where the last write put the rows in each file; `put` forgets it whenever a row already
written is replaced or removed, so that while it stands, the rows added since that write are
exactly those with a larger rowid (SQLite gives a new row max(rowid) + 1, and nothing was
deleted since the maximum was taken).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Collection, Iterable, Iterator
from dataclasses import asdict, dataclass

from archiver.browse.view import ViewRow
from archiver.state.store import StateStore
from archiver.tasks.taskstate import Phase

ROW_COLUMNS = "task_id, sort_key, data, lyrics, m3u, tracks"
NEWEST_FIRST = "ORDER BY sort_key DESC, task_id DESC"
OLDEST_FIRST = "ORDER BY sort_key, task_id"
_BATCH = 1000  # rows fetched, and written, at once: about 1 MB of page


@dataclass(frozen=True, slots=True)
class FileMark:
    """A written file as the OS shows it: another writer changes one of these."""

    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileMark:
        return cls(st.st_size, st.st_mtime_ns, st.st_ino)


@dataclass(frozen=True)
class Layout:
    """Where the last write put the rows: byte ranges [start, end) of the page's task rows and
    lyrics (between the JSON brackets), the playlist's rows from `m3u_at` to its end."""

    page: FileMark
    playlist: FileMark
    tasks_at: tuple[int, int]
    lyrics_at: tuple[int, int]
    m3u_at: int
    rows: int  # view rows written
    tracks: int  # their tracks with an archived MP3
    max_rowid: int  # the largest rowid among them (0: none)
    newest: tuple[str, str] | None  # (sort_key, task_id) of the first row written

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Layout:
        raw = json.loads(text)
        return cls(
            page=FileMark(*raw["page"].values()),
            playlist=FileMark(*raw["playlist"].values()),
            tasks_at=tuple(raw["tasks_at"]),  # type: ignore[arg-type]
            lyrics_at=tuple(raw["lyrics_at"]),  # type: ignore[arg-type]
            m3u_at=raw["m3u_at"],
            rows=raw["rows"],
            tracks=raw["tracks"],
            max_rowid=raw["max_rowid"],
            newest=tuple(raw["newest"]) if raw["newest"] else None,  # type: ignore[arg-type]
        )


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
        drop: Iterable[str] = (),
        replace_all: bool = False,
        looked: float | None = None,
    ) -> None:
        """Store view rows (each with the updated_at of the task it was read at) and remove
        those of `drop`, in one transaction; `replace_all` removes every other row first.
        A row replaced or removed makes the next write a full one (see the module's doc).
        `looked`: the time from which the next look for changed tasks may start; `replace_all`
        without it forgets the last look (the next one looks at every task)."""
        with self._state.transaction() as db:
            if replace_all:
                db.execute("DELETE FROM view_looked")
            if looked is not None:
                db.execute(
                    "INSERT OR REPLACE INTO view_looked (id, since) VALUES (1, ?)", (looked,)
                )
            removed = db.execute("DELETE FROM view").rowcount if replace_all else 0
            removed += db.executemany(
                "DELETE FROM view WHERE task_id = ?", ((t,) for t in drop)
            ).rowcount
            values = [
                (r.task_id, seen, r.sort_key, r.data, r.lyrics, r.m3u, r.tracks) for r, seen in rows
            ]
            removed += db.executemany(
                "DELETE FROM view WHERE task_id = ?", ((v[0],) for v in values)
            ).rowcount
            db.executemany(
                "INSERT INTO view (task_id, seen_at, sort_key, data, lyrics, m3u, tracks) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                values,
            )
            if removed:
                db.execute("DELETE FROM view_written")

    def looked(self) -> float | None:
        """What the last `put` gave as `looked` (None: never, look at every task)."""
        found = self._state.connection.execute("SELECT since FROM view_looked").fetchone()
        return None if found is None else found[0]

    def layout(self) -> Layout | None:
        """What the last write left, if no written row changed since."""
        found = self._state.connection.execute("SELECT layout FROM view_written").fetchone()
        if found is None:
            return None
        try:
            return Layout.from_json(found[0])
        except (ValueError, KeyError, TypeError):
            return None  # unreadable: a full write records a new one

    def set_layout(self, layout: Layout | None) -> None:
        with self._state.transaction() as db:
            db.execute("DELETE FROM view_written")
            if layout is not None:
                db.execute(
                    "INSERT INTO view_written (id, layout) VALUES (1, ?)", (layout.to_json(),)
                )


def read_snapshot(state: StateStore) -> sqlite3.Connection:
    """A read-only connection to the state's file for a writer in another thread: inside a
    transaction it reads one snapshot (WAL) while the daemon goes on writing."""
    uri = state.path.resolve().as_uri() + "?mode=ro"
    db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA busy_timeout = 5000")
    return db


def newest_first(
    db: sqlite3.Connection, *, after_rowid: int | None = None
) -> Iterator[list[ViewRow]]:
    """The view rows, newest first, in batches (a million rows never sit in memory at once);
    with `after_rowid`, only those added after it (a range of rowids, sorted by SQLite, not a
    walk of the whole order index)."""
    if after_rowid is None:
        cursor = db.execute(f"SELECT {ROW_COLUMNS} FROM view {NEWEST_FIRST}")
    else:
        cursor = db.execute(
            f"SELECT {ROW_COLUMNS} FROM view NOT INDEXED WHERE rowid > ? {NEWEST_FIRST}",
            (after_rowid,),
        )
    while batch := cursor.fetchmany(_BATCH):
        yield [ViewRow(*row) for row in batch]


def totals(db: sqlite3.Connection) -> tuple[int, int, int]:
    """(rows, tracks, max rowid) of the view (its `view_tracks` index: no large row read)."""
    rows, tracks = db.execute("SELECT count(*), total(tracks) FROM view").fetchone()
    max_rowid = db.execute("SELECT coalesce(max(rowid), 0) FROM view").fetchone()[0]
    return rows, int(tracks), max_rowid
