"""The SQLite state: what the archiver knows about each task, and when to look at it next.

One row per task. The engine reads the rows of its pending tasks once, keeps its own schedule,
and saves the whole row back after every step; each save is its own committed transaction, so a
`kill -9` loses at most the call in flight (WAL with synchronous=NORMAL is durable against a
process crash, though not against a power cut).

A state file belongs to one archiver process at a time: `open` takes an exclusive `flock` on
`<path>.lock`, which the OS drops when the process dies, however it dies.

The tables and their migrations are archiver.state.schema; the records, archiver.tasks.taskstate.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from archiver.errors import UsageError
from archiver.kinds.records import Kind
from archiver.state import outbox
from archiver.state.protocol import Daemon
from archiver.state.schema import BORN, COLUMNS, PHASES, row_to_state, upgrade
from archiver.tasks.taskstate import PROBLEMS, UNKNOWN_KIND, Phase, TaskState

if TYPE_CHECKING:
    from archiver.state.given import GivenTasks

_CHUNK = 500  # ids per `IN (...)`: well under SQLite's bound-parameter limit

_UPDATE_ALL = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS.split(", ")[1:])
_SAVE = (
    f"INSERT INTO tasks ({COLUMNS}) VALUES ({','.join('?' * 14)}) "
    f"ON CONFLICT (task_id) DO UPDATE SET {_UPDATE_ALL}"
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

    shared = False  # one process: the lock beside the file makes every task ours

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
            upgrade(conn, path)
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

    @property
    def where(self) -> str:
        return str(self.path)

    def given(self) -> GivenTasks:
        from archiver.state.given import GivenTasks  # given.py builds on this module

        return GivenTasks(self)

    @contextlib.contextmanager
    def _transaction(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One committed transaction (BEGIN IMMEDIATE), rolled back if the block raises.
        `durable`: committed with synchronous=FULL, so that a power cut cannot take it back
        (what the HTTP intake answers 200/202 for; NORMAL, the rest of the time, is safe
        against a crash, and cheaper)."""
        db = self._db
        if durable:
            db.execute("PRAGMA synchronous = FULL")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            if durable:
                db.execute("PRAGMA synchronous = NORMAL")

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
            for row in db.execute(f"SELECT {COLUMNS} FROM tasks WHERE task_id IN ({marks})", chunk):
                found[row[0]] = row_to_state(row)
        return found

    def save(
        self,
        state: TaskState,
        event: outbox.NewEvent | None = None,
        *,
        owner: str | None = None,
    ) -> None:
        """Write the whole row (insert or update; `via_http` is kept), and `event` with it in
        the same transaction (the outbox), committed before returning (`owner`: a claim's,
        always ours on SQLite)."""
        values = (
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
        )
        if event is None:  # one statement: its own transaction
            self._db.execute(_SAVE, values)
            return
        with self._transaction() as db:
            db.execute(_SAVE, values)
            outbox.insert(db, event)

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
            f"SELECT {COLUMNS} FROM tasks WHERE phase IN ({marks}) ORDER BY updated_at, task_id",
            values,
        )
        return [row_to_state(r) for r in rows]

    def born_between(self, low: float, high: float, phases: Collection[Phase]) -> list[TaskState]:
        """Tasks in `phases` whose `born_at` (completed, else created) is in (low, high], the
        earliest first: the ones whose files expire soonest (see archiver.expiry)."""
        values = sorted({Phase(p).value for p in phases})
        marks = ",".join("?" * len(values))
        rows = self._db.execute(
            f"SELECT {COLUMNS} FROM tasks WHERE phase IN ({marks}) "
            f"AND {BORN} > ? AND {BORN} <= ? ORDER BY {BORN}, task_id",
            [*values, low, high],
        )
        return [row_to_state(r) for r in rows]

    def phases_in(self, phases: Collection[Phase]) -> dict[str, Phase]:
        """The tasks in `phases`: their phase by ID, in key order."""
        values = sorted({Phase(p).value for p in phases})
        marks = ",".join("?" * len(values))
        rows = self._db.execute(
            f"SELECT task_id, phase FROM tasks WHERE phase IN ({marks}) ORDER BY task_id", values
        )
        return {task_id: PHASES[phase] for task_id, phase in rows}

    def adopt(
        self,
        rows: Iterable[tuple[str, Kind, Phase, str | None]],
        now: float,
        event: outbox.NewEvent | None = None,
    ) -> int:
        """Make the state say what manifests say: (task_id, kind, phase, status) rows, inserted
        or overwriting the phase of known tasks (`via_http`, which no manifest records, is
        kept), with `event` (repair's), in one transaction; return how many."""
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
            if event is not None:
                outbox.insert(db, event)
        return len(values)

    def due_now(self, task_id: str, now: float) -> None:
        """A callback said the task moved on: nothing to write here (this process holds
        the schedule)."""
        return None

    def pending_since(self, since: float) -> list[TaskState]:
        """Tasks changed after `since`; with `since` <= 0, every pending task."""
        if since <= 0:
            where, params = "phase = ?", (Phase.PENDING.value,)
        else:
            where, params = "updated_at > ?", (since,)
        rows = self._db.execute(f"SELECT {COLUMNS} FROM tasks WHERE {where}", params)
        return [row_to_state(r) for r in rows]

    # --- one process: every claim is ours (the lock beside the file), nothing to share ------

    def claim(self, task_ids: Iterable[str], owner: str, now: float, lease_s: float) -> set[str]:
        return set(task_ids)

    def confirm(self, task_id: str, owner: str, now: float, lease_s: float) -> bool:
        return True

    def renew(self, owner: str, now: float, lease_s: float) -> int:
        return 0

    def release(self, task_ids: Iterable[str], owner: str) -> None:
        return None

    def heartbeat(self, daemon: Daemon) -> float | None:
        return daemon.last_answer_at

    def daemons(self, now: float, alive_s: float) -> list[Daemon]:
        return []

    def leave(self, daemon_id: str) -> None:
        return None

    def first_to_say(self, key: str, now: float) -> bool:
        return True

    @contextlib.contextmanager
    def try_lock(self, name: str) -> Iterator[bool]:
        yield True
