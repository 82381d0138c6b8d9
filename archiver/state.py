"""The SQLite state: what the archiver knows about each task, and when to look at it next.

One row per task. The engine reads the rows of its pending tasks once, keeps its own schedule,
and saves the whole row back after every step; each save is its own committed transaction, so a
`kill -9` loses at most the call in flight (WAL with synchronous=NORMAL is durable against a
process crash, though not against a power cut).

A state file belongs to one archiver process at a time: `open` takes an exclusive `flock` on
`<path>.lock`, which the OS drops when the process dies, however it dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType

from archiver.errors import UsageError
from archiver.records import Kind

SCHEMA_VERSION = 8
_CHUNK = 500  # ids per `IN (...)`: well under SQLite's bound-parameter limit

# What index.html and playlist.m3u8 show of each archived task (archiver.browse), so that the
# daemon rewrites them without reading every manifest again. `seen_at` is the task's updated_at
# when its manifest was read: a task changed since is read again. The rows are large (a task's
# lyrics): a rowid table, with `view_seen` covering the which-changed join, so that it never
# reads them (with a WITHOUT ROWID table, an incremental update took 204 ms at 50,000 tasks,
# 49 ms without).
_VIEW_SCHEMA = """
CREATE TABLE view (
    task_id   TEXT PRIMARY KEY,
    seen_at   REAL NOT NULL,
    sort_key  TEXT NOT NULL,
    data      TEXT NOT NULL,
    lyrics    TEXT NOT NULL,
    m3u       TEXT NOT NULL,
    tracks    INTEGER NOT NULL
);
CREATE INDEX view_seen ON view (task_id, seen_at);
CREATE INDEX view_order ON view (sort_key DESC, task_id DESC);
"""
# What the last write of index.html and playlist.m3u8 left, so that the next one copies the rows
# it wrote instead of rendering them again (archiver.browse.store); `view_tracks` answers the
# page's counts without reading the large rows.
_VIEW_WRITTEN = """
CREATE TABLE view_written (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    layout  TEXT NOT NULL
);
CREATE INDEX view_tracks ON view (tracks);
"""
# When the index last looked for changed tasks (less a margin), so that a restarted daemon looks
# only at the tasks updated since, not at every task. A migration that drops `view` must empty it.
_VIEW_LOOKED = """
CREATE TABLE view_looked (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    since   REAL NOT NULL
);
"""

# The tasks whose files expire soonest (`born_between`, the engine's tasks at risk) are a range
# of this index, not a scan of every task at each /metrics scrape.
BORN = "COALESCE(completed_at, created_at)"
_BORN_INDEX = f"CREATE INDEX tasks_born ON tasks ({BORN});\n"

_SCHEMA = (
    """
CREATE TABLE tasks (
    task_id          TEXT PRIMARY KEY,
    kind             TEXT,
    phase            TEXT NOT NULL,
    first_seen_at    REAL NOT NULL,
    next_poll_at     REAL NOT NULL,
    polls            INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_status      TEXT,
    last_error       TEXT,
    updated_at       REAL NOT NULL,
    archive_attempts INTEGER NOT NULL DEFAULT 0,
    via_http         INTEGER NOT NULL DEFAULT 0,
    created_at       REAL,
    completed_at     REAL,
    unknown_polls    INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
"""
    + _BORN_INDEX
    + _VIEW_SCHEMA
    + _VIEW_WRITTEN
    + _VIEW_LOOKED
)

# The script that takes a state from schema version N (the key) to N + 1; `open` runs the ones
# it needs in one transaction, so an existing state keeps its rows. A new file gets _SCHEMA.
_MIGRATIONS = {
    # → 2: transient file failures are counted apart from failed API calls (archive_attempts).
    # The index served a due-tasks query the engine never makes (it keeps its own heap); the
    # `status` command's counts are 40 ms instead of 10 ms at 100,000 tasks without it, not
    # worth an index updated on every save.
    1: """
    ALTER TABLE tasks ADD COLUMN archive_attempts INTEGER NOT NULL DEFAULT 0;
    DROP INDEX IF EXISTS tasks_due;
    """,
    # → 3: tasks that came in over the HTTP intake stay when the task list does not name them.
    2: """
    ALTER TABLE tasks ADD COLUMN via_http INTEGER NOT NULL DEFAULT 0;
    """,
    3: _VIEW_SCHEMA,  # → 4: the browse view
    # → 5: the task's own times (its age for the schedule, its expiry) and the answers "no such
    # task" it got in a row (a just-created task is unknown for a while: not found is provisional).
    4: """
    ALTER TABLE tasks ADD COLUMN created_at REAL;
    ALTER TABLE tasks ADD COLUMN completed_at REAL;
    ALTER TABLE tasks ADD COLUMN unknown_polls INTEGER NOT NULL DEFAULT 0;
    """
    + _BORN_INDEX,
    # → 6: the view remade as a rowid table with a covering index; its rows are derived, so
    # they are dropped and read again from the manifests
    5: "DROP TABLE view;" + _VIEW_SCHEMA,
    6: _VIEW_WRITTEN,  # → 7: the index's files rewritten by copying the rows they hold
    7: _VIEW_LOOKED,  # → 8: a restart looks only at the tasks changed since the last look
}

_COLUMNS = (
    "task_id, kind, phase, first_seen_at, next_poll_at, polls, attempts, "
    "last_status, last_error, updated_at, archive_attempts, created_at, completed_at, unknown_polls"
)

_UPDATE_ALL = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS.split(", ")[1:])


class Phase(StrEnum):
    PENDING = "pending"  # listed, not finished: polled on schedule
    ARCHIVED = "archived"
    PARTIAL = "partial"  # manifest written, some file unobtainable
    FAILED = "failed"  # the API said the task failed (manifest written)
    NOT_FOUND = "not_found"  # no endpoint knew it through tasks.not_found_after_s
    TIMED_OUT = "timed_out"  # not finished within give_up_after_s


PROBLEMS: frozenset[Phase] = frozenset(
    {Phase.PARTIAL, Phase.FAILED, Phase.NOT_FOUND, Phase.TIMED_OUT}
)


@dataclass(frozen=True, slots=True)
class TaskState:
    task_id: str
    kind: Kind | None
    phase: Phase
    first_seen_at: float  # wall clock (time.time()), persisted
    next_poll_at: float
    polls: int  # successful API answers so far
    attempts: int  # consecutive failures of any step (the backoff grows with them)
    last_status: str | None  # the API's last status string
    last_error: str | None
    updated_at: float
    # Archive tries of the finished task that ended in a transient file failure; the engine's
    # ARCHIVE_ATTEMPTS of them make the next try final. Failed API calls do not count here.
    archive_attempts: int = 0
    created_at: float | None = None  # the API's createTime of the task (epoch seconds), once seen
    completed_at: float | None = None  # its completeTime: the files expire a retention after it
    unknown_polls: int = 0  # answers "no such task" in a row (the not-found backoff grows)

    @property
    def born_at(self) -> float | None:
        """When the task's files start their retention: completed, else created (earlier, so
        an expiry from it errs on the safe side); None while the API told neither."""
        return self.completed_at if self.completed_at is not None else self.created_at


UNKNOWN_KIND = "unknown"  # how status and metrics name the kind of a task not yet found
_KINDS: dict[str | None, Kind | None] = {None: None, **{k.value: k for k in Kind}}
_PHASES: dict[str, Phase] = {p.value: p for p in Phase}


def _row_to_state(row: tuple) -> TaskState:
    (task_id, kind, phase, first_seen, next_poll, polls, attempts, status, error, updated,
     archive_attempts, created, completed, unknown_polls) = row  # fmt: skip
    return TaskState(  # dict lookups, not Enum(...): this runs 100,000 times in get_many
        task_id=task_id,
        kind=_KINDS[kind],
        phase=_PHASES[phase],
        first_seen_at=first_seen,
        next_poll_at=next_poll,
        polls=polls,
        attempts=attempts,
        last_status=status,
        last_error=error,
        updated_at=updated,
        archive_attempts=archive_attempts,
        created_at=created,
        completed_at=completed,
        unknown_polls=unknown_polls,
    )


def _chunks(items: list[str], size: int = _CHUNK) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _lock(path: Path) -> int:
    """Take the one-process lock beside the database; return its descriptor."""
    lock_path = Path(f"{path}.lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise UsageError(f"{path}: cannot open state database: {e.strerror or e}") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        finally:
            os.close(fd)
        raise UsageError(
            f"{path}: another suno-archiver is using this state (pid {holder})"
        ) from None
    except OSError as e:
        os.close(fd)
        raise UsageError(f"{path}: cannot open state database: {e.strerror or e}") from e
    # The pid is only for the message above; the lock itself is what counts.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


class StateStore:
    """Task states in one SQLite file. Use from one thread (the asyncio loop's)."""

    def __init__(self, path: Path, conn: sqlite3.Connection, lock_fd: int) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = conn
        self._lock_fd: int | None = lock_fd

    @classmethod
    def open(cls, path: Path) -> StateStore:
        """Open (creating if needed) the state at `path`, locked to this process."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"{path}: cannot open state database: {e.strerror or e}") from e
        lock_fd = _lock(path)
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(path, isolation_level=None)  # we issue BEGIN/COMMIT
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise UsageError(
                    f"{path}: state database has schema version {version}, written by a newer "
                    f"suno-archiver (this one knows {SCHEMA_VERSION})"
                )
            if version < SCHEMA_VERSION:
                steps = (
                    _SCHEMA
                    if version == 0
                    else "".join(_MIGRATIONS[v] for v in range(version, SCHEMA_VERSION))
                )
                conn.executescript(
                    f"BEGIN IMMEDIATE; {steps} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                )
        except UsageError:
            if conn is not None:
                conn.close()
            _unlock(lock_fd)
            raise
        except sqlite3.Error as e:
            if conn is not None:
                conn.close()
            _unlock(lock_fd)
            raise UsageError(f"{path}: cannot open state database: {e}") from e
        return cls(path, conn, lock_fd)

    def close(self) -> None:
        """Close the database and release the lock. Safe to call twice."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._lock_fd is not None:
            _unlock(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> StateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def connection(self) -> sqlite3.Connection:
        """The open connection, for the state's companion queries (`archiver.given`)."""
        if self._conn is None:
            raise RuntimeError(f"{self.path}: state store is closed")
        return self._conn

    _db = connection  # the name this module's own queries use

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One committed transaction (BEGIN IMMEDIATE), rolled back if the block raises."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    transaction = _transaction  # for the state's companion queries (`archiver.given`)

    def add(
        self, refs: Iterable[tuple[str, Kind | None]], now: float, *, via_http: bool = False
    ) -> int:
        """Insert unknown tasks as PENDING, due now; return how many were new.

        Known tasks keep their row; only a NULL kind is filled in when the list now names it,
        and `via_http` marks them (for good) as tasks the HTTP intake was given.
        """
        pending = Phase.PENDING.value
        # In key order: inserting random IDs thrashes SQLite's page cache (100,000 new IDs:
        # 1.4 s unsorted, 0.6 s sorted).
        http = int(via_http)
        rows = sorted(
            ((tid, kind.value if kind else None, pending, now, http) for tid, kind in refs),
            key=lambda row: row[0],
        )
        with self._transaction() as db:
            before = db.execute("SELECT COUNT(*) FROM tasks").fetchone()[0]
            db.executemany(
                "INSERT INTO tasks "
                "(task_id, kind, phase, first_seen_at, next_poll_at, updated_at, via_http) "
                "VALUES (?1, ?2, ?3, ?4, ?4, ?4, ?5) "
                "ON CONFLICT (task_id) DO UPDATE SET "
                "kind = coalesce(tasks.kind, excluded.kind), "
                "via_http = max(tasks.via_http, excluded.via_http) "
                "WHERE (tasks.kind IS NULL AND excluded.kind IS NOT NULL) "
                "OR tasks.via_http < excluded.via_http",
                rows,
            )
            after = db.execute("SELECT COUNT(*) FROM tasks").fetchone()[0]
        return after - before

    def http_task_ids(self) -> list[str]:
        """The tasks the HTTP intake was given, in key order."""
        rows = self._db.execute("SELECT task_id FROM tasks WHERE via_http = 1 ORDER BY task_id")
        return [row[0] for row in rows]

    def get_many(self, task_ids: Iterable[str]) -> dict[str, TaskState]:
        """The known ones among `task_ids`, by id (unknown ids are simply absent)."""
        ids = list(dict.fromkeys(task_ids))
        found: dict[str, TaskState] = {}
        db = self._db
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            for row in db.execute(
                f"SELECT {_COLUMNS} FROM tasks WHERE task_id IN ({marks})", chunk
            ):
                found[row[0]] = _row_to_state(row)
        return found

    def save(self, state: TaskState) -> None:
        """Write the whole row (insert or update; `via_http` is kept), committed before
        returning."""
        self._db.execute(
            f"INSERT INTO tasks ({_COLUMNS}) VALUES ({','.join('?' * 14)}) "
            f"ON CONFLICT (task_id) DO UPDATE SET {_UPDATE_ALL}",
            (
                state.task_id,
                state.kind.value if state.kind else None,
                Phase(state.phase).value,
                state.first_seen_at,
                state.next_poll_at,
                state.polls,
                state.attempts,
                state.last_status,
                state.last_error,
                state.updated_at,
                state.archive_attempts,
                state.created_at,
                state.completed_at,
                state.unknown_polls,
            ),
        )

    def reopen(self, task_ids: Iterable[str], phases: Collection[Phase], now: float) -> int:
        """Put those of `task_ids` that are in `phases` back to PENDING, due now, with a fresh
        give-up clock (and not-found window) and no failures counted; return how many."""
        ids = list(dict.fromkeys(task_ids))
        phase_values = sorted({Phase(p).value for p in phases})
        if not ids or not phase_values:
            return 0
        phase_marks = ",".join("?" * len(phase_values))
        count = 0
        with self._transaction() as db:
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                cur = db.execute(
                    "UPDATE tasks SET phase = ?, attempts = 0, archive_attempts = 0, "
                    "unknown_polls = 0, first_seen_at = ?, next_poll_at = ?, updated_at = ? "
                    f"WHERE task_id IN ({marks}) AND phase IN ({phase_marks})",
                    [Phase.PENDING.value, now, now, now, *chunk, *phase_values],
                )
                count += cur.rowcount
        return count

    def counts(self) -> dict[Phase, int]:
        """How many tasks are in each phase (every phase present, 0 when none)."""
        result = dict.fromkeys(Phase, 0)
        for phase, n in self._db.execute("SELECT phase, COUNT(*) FROM tasks GROUP BY phase"):
            result[Phase(phase)] = n
        return result

    def kind_counts(self) -> dict[str, int]:
        """How many tasks are of each kind ("unknown": a bare ID no endpoint was asked about
        yet, or none knew), kinds present only, in the registry's order."""
        found = dict(self._db.execute("SELECT kind, COUNT(*) FROM tasks GROUP BY kind"))
        order = [*(kind.value for kind in Kind), None]
        return {kind or UNKNOWN_KIND: found[kind] for kind in order if found.get(kind)}

    def problems(self) -> list[TaskState]:
        """Tasks that ended badly (partial, failed, not found, timed out), oldest first."""
        values = sorted(p.value for p in PROBLEMS)
        marks = ",".join("?" * len(values))
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM tasks WHERE phase IN ({marks}) ORDER BY updated_at, task_id",
            values,
        )
        return [_row_to_state(r) for r in rows]

    def born_between(self, low: float, high: float, phases: Collection[Phase]) -> list[TaskState]:
        """Tasks in `phases` whose `born_at` (completed, else created) is in (low, high], the
        earliest first: the ones whose files expire soonest (see archiver.expiry)."""
        values = sorted({Phase(p).value for p in phases})
        marks = ",".join("?" * len(values))
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM tasks WHERE phase IN ({marks}) "
            f"AND {BORN} > ? AND {BORN} <= ? ORDER BY {BORN}, task_id",
            [*values, low, high],
        )
        return [_row_to_state(r) for r in rows]

    def phases_in(self, phases: Collection[Phase]) -> dict[str, Phase]:
        """The tasks in `phases`: their phase by ID, in key order."""
        values = sorted({Phase(p).value for p in phases})
        marks = ",".join("?" * len(values))
        rows = self._db.execute(
            f"SELECT task_id, phase FROM tasks WHERE phase IN ({marks}) ORDER BY task_id", values
        )
        return {task_id: _PHASES[phase] for task_id, phase in rows}

    def adopt(self, rows: Iterable[tuple[str, Kind, Phase, str | None]], now: float) -> int:
        """Make the state say what manifests say: (task_id, kind, phase, status) rows, inserted
        or overwriting the phase of known tasks (`via_http`, which no manifest records, is
        kept), in one transaction; return how many."""
        values = sorted(  # in key order, as `add` does
            (tid, kind.value, Phase(phase).value, status, now) for tid, kind, phase, status in rows
        )
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO tasks (task_id, kind, phase, last_status, first_seen_at, "
                "next_poll_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?5) "
                "ON CONFLICT (task_id) DO UPDATE SET kind = excluded.kind, "
                "phase = excluded.phase, last_status = excluded.last_status, attempts = 0, "
                "archive_attempts = 0, last_error = NULL, updated_at = excluded.updated_at",
                values,
            )
        return len(values)

    def task_times(self) -> list[tuple[str, float]]:
        """(task ID, updated_at) of every task."""
        return self._db.execute("SELECT task_id, updated_at FROM tasks").fetchall()
