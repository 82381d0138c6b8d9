"""The tasks given to an engine (the task list's, and any added since), as temporary tables on
the state's connection: at a million IDs, which are new, which are pending, how many are in
each phase are set operations inside SQLite (one join), never per-ID work or memory in Python.

`given` holds each ID once, at its first mention, with its kind settled the way SPEC's task
list says: the first mention with a prefix names the kind, a later different prefix is
reported. `incoming` stages the mentions of one batch (a whole list, an appended chunk, an
intake call) before they are merged.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from archiver.kinds.records import Kind
from archiver.state.schema import BORN, COLUMNS, row_to_state
from archiver.state.store import StateStore
from archiver.tasks.tasklist import BadLine, TaskRef, bare_ids_json
from archiver.tasks.taskstate import UNKNOWN_KIND, Phase, TaskState

_STAGE_BATCH = 20_000  # mentions per executemany: bounded memory whatever the list's length

_TABLES = """
CREATE TEMP TABLE IF NOT EXISTS given (
    task_id TEXT PRIMARY KEY,
    pos     INTEGER NOT NULL,
    kind    TEXT
) WITHOUT ROWID;
CREATE TEMP TABLE IF NOT EXISTS incoming (
    pos     INTEGER PRIMARY KEY,
    line    INTEGER NOT NULL,
    task_id TEXT NOT NULL,
    kind    TEXT
);
CREATE TEMP TABLE IF NOT EXISTS fresh (task_id TEXT PRIMARY KEY) WITHOUT ROWID;
"""

# The IDs a batch touches: every given ID after a whole list, else the batch's own.
_ALL = "SELECT task_id FROM given"
_BATCH = "SELECT task_id FROM incoming"


@dataclass(frozen=True, slots=True)
class Conflict:
    """A mention whose prefix contradicts the kind its task was given first."""

    line: int
    task_id: str
    kind: Kind
    given_as: Kind

    def as_bad_line(self) -> BadLine:
        return BadLine(
            self.line,
            f"{self.kind.value}:{self.task_id}",
            f"already listed as {self.given_as.value}",
        )


@dataclass(frozen=True)
class Added:
    """What `Engine.add_tasks` did: how many tasks the state did not know, and the mentions
    whose kind conflicts."""

    new: int
    conflicts: list[Conflict]


@dataclass(frozen=True)
class Merged:
    """What one batch did: the pending tasks it concerns (to schedule), the counts by kind and
    phase to add (`whole`: they replace the counts; else they count the newly given IDs only),
    and the mentions whose kind conflicts."""

    pending: list[TaskState]
    counts: dict[tuple[str, Phase], int]
    whole: bool
    conflicts: list[Conflict]
    new: int  # tasks the state did not know (counted for a batch, not for a whole list)


class GivenTasks:
    """The given set of one engine. Use from the thread that uses the state."""

    lost = False  # its tables live in the state file's own connection, never replaced

    def __init__(self, state: StateStore) -> None:
        self._state = state
        self._db = state.connection
        self._db.executescript(_TABLES)
        self._last_pos = 0  # mentions keep their order across batches

    def _take(self, n: int) -> int:
        """The first of `n` new positions."""
        first = self._last_pos + 1
        self._last_pos += n
        return first

    def stage(self, refs: Iterable[TaskRef], *, first: bool = False) -> None:
        """Hold `refs` for the next `merge` (`first`: drop what an unfinished batch left).
        A long list is staged in pieces, so that it can be read between awaits."""
        db = self._db
        if first:
            db.execute("DELETE FROM incoming")
        refs = iter(refs)
        while batch := list(itertools.islice(refs, _STAGE_BATCH)):
            first_pos = self._take(len(batch))
            db.executemany(
                "INSERT INTO incoming VALUES (?, ?, ?, ?)",
                [
                    (pos, ref.line, ref.task_id, ref.kind.value if ref.kind else None)
                    for pos, ref in enumerate(batch, first_pos)
                ],
            )

    def stage_bare(self, data: bytes, first_line: int) -> bool:
        """Hold the lines of `data` for the next `merge` when each is a bare ID ending in LF
        (a list as an application writes it), numbered from `first_line`: one statement,
        no Python object an ID. False (nothing held) for anything else: `stage` parses it."""
        ids = bare_ids_json(data)
        if ids is None:
            return False
        count = data.count(b"\n")
        self._db.execute(
            "INSERT INTO incoming SELECT ?1 + key, ?2 + key, value, NULL FROM json_each(?3)",
            (self._take(count), first_line, ids),
        )
        return True

    def merge(
        self, *, whole: bool, now: float, retry: Collection[Phase] = (), http: bool = False
    ) -> Merged:
        """Give the staged refs (`whole`: they are now the whole set, anything not among
        them leaves it, except with `http` the tasks the HTTP intake was given; else `http`
        marks the refs as the intake's): unknown IDs enter the state as PENDING, due now;
        those in a `retry` phase are reopened. One transaction."""
        db = self._db
        scope = _ALL if whole else _BATCH
        # the intake answers 200/202 once this returns: durable then, not only crash-safe
        with self._state.transaction(durable=http and not whole):
            new = 0
            if whole:
                db.execute("DELETE FROM given")
            else:
                new = db.execute(
                    "SELECT COUNT(DISTINCT task_id) FROM incoming AS i "
                    "WHERE NOT EXISTS (SELECT 1 FROM tasks AS t WHERE t.task_id = i.task_id)"
                ).fetchone()[0]
                db.execute("DELETE FROM fresh")
                db.execute(
                    "INSERT INTO fresh SELECT DISTINCT task_id FROM incoming AS i "
                    "WHERE NOT EXISTS (SELECT 1 FROM given AS g WHERE g.task_id = i.task_id)"
                )
            db.execute(
                "INSERT INTO given (task_id, pos) SELECT task_id, MIN(pos) FROM incoming "
                "WHERE true GROUP BY task_id ON CONFLICT (task_id) DO NOTHING"
            )
            if whole and http:  # after the list's own, in key order
                db.execute(
                    "INSERT INTO given (task_id, pos) SELECT task_id, ? FROM tasks "
                    "WHERE via_http = 1 ON CONFLICT (task_id) DO NOTHING",
                    (self._take(1),),
                )
            # A bare ID takes the kind of its first prefixed mention (bare MIN: SQLite gives
            # the other columns of the row holding the minimum).
            db.execute(
                "UPDATE given SET kind = first.kind FROM ("
                "  SELECT task_id, kind, MIN(pos) FROM incoming "
                "  WHERE kind IS NOT NULL GROUP BY task_id"
                ") AS first WHERE given.task_id = first.task_id AND given.kind IS NULL"
            )
            conflicts = [
                Conflict(line, task_id, Kind(kind), Kind(given_as))
                for line, task_id, kind, given_as in db.execute(
                    "SELECT i.line, i.task_id, i.kind, g.kind FROM incoming AS i "
                    "JOIN given AS g ON g.task_id = i.task_id "
                    "WHERE i.kind IS NOT NULL AND i.kind != g.kind ORDER BY i.pos"
                )
            ]
            in_scope = "true" if whole else f"task_id IN ({scope})"
            # Into the state in key order (given is keyed by task_id): random-order inserts
            # thrash SQLite's page cache.
            db.execute(
                "INSERT INTO tasks "
                "(task_id, kind, phase, first_seen_at, next_poll_at, updated_at, via_http) "
                f"SELECT task_id, kind, ?1, ?2, ?2, ?2, ?3 FROM given WHERE {in_scope} "
                "ON CONFLICT (task_id) DO UPDATE SET "
                "kind = coalesce(tasks.kind, excluded.kind), "
                "via_http = max(tasks.via_http, excluded.via_http) "
                "WHERE (tasks.kind IS NULL AND excluded.kind IS NOT NULL) "
                "OR tasks.via_http < excluded.via_http",
                (Phase.PENDING.value, now, int(http and not whole)),
            )
            # Every task of the state given (the given ones are all in it now, so equal counts
            # mean equal sets): the state's tasks need no join with `given`.
            everything = whole and self._count("given") == self._count("tasks")
            in_scope = "true" if everything else f"task_id IN ({scope})"
            if retry:
                self._reopen(in_scope, retry, now)
            counted = in_scope if whole else "task_id IN (SELECT task_id FROM fresh)"
            counts = {
                (kind or UNKNOWN_KIND, Phase(phase)): n
                for kind, phase, n in db.execute(
                    f"SELECT kind, phase, COUNT(*) FROM tasks WHERE {counted} GROUP BY kind, phase"
                )
            }
            if everything:  # the few pending among the state's tasks, each looked up in `given`
                pending = self._select("WHERE phase = ?", Phase.PENDING, join="CROSS JOIN")
            else:
                pending = self._select(f"WHERE phase = ? AND task_id IN ({scope})", Phase.PENDING)
            db.execute("DELETE FROM incoming")
        return Merged(pending, counts, whole, conflicts, new)

    def _count(self, table: str) -> int:
        return self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    def _reopen(self, in_scope: str, phases: Collection[Phase], now: float) -> None:
        values = sorted({Phase(p).value for p in phases})
        self._db.execute(
            "UPDATE tasks SET phase = ?, attempts = 0, archive_attempts = 0, unknown_polls = 0, "
            "first_seen_at = ?2, next_poll_at = ?2, updated_at = ?2 "
            f"WHERE phase IN ({','.join('?' * len(values))}) AND {in_scope}",
            [Phase.PENDING.value, now, *values],
        )

    def count_born(self, low: float, high: float, phases: Collection[Phase]) -> int:
        """How many given tasks in `phases` have their `born_at` in (low, high]: a range of
        the state's born index, each looked up in `given`."""
        values = sorted({Phase(p).value for p in phases})
        return self._db.execute(
            f"SELECT COUNT(*) FROM tasks JOIN given USING (task_id) "
            f"WHERE {BORN} > ? AND {BORN} <= ? AND phase IN ({','.join('?' * len(values))})",
            [low, high, *values],
        ).fetchone()[0]

    def not_archived(self) -> list[TaskState]:
        """The given tasks that are not archived, in the order they were given."""
        return self._select("WHERE phase != ?", Phase.ARCHIVED)

    def _select(self, where: str, phase: Phase, *, join: str = "JOIN") -> list[TaskState]:
        """Tasks of the given set, in the order given (`join`: "CROSS JOIN" makes SQLite scan
        the state's tasks, not the given ones, when the state's side filters out most)."""
        columns = ", ".join(f"tasks.{c.strip()}" for c in COLUMNS.split(","))
        rows = self._db.execute(
            f"SELECT {columns} FROM tasks {join} given USING (task_id) {where} ORDER BY given.pos",
            (phase.value,),
        )
        return [row_to_state(row) for row in rows]
