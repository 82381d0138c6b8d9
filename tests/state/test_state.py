"""The SQLite state: real files, real SQLite, real subprocesses for crash and lock behaviour."""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from archiver.browse.store import ViewStore
from archiver.errors import UsageError
from archiver.kinds.records import Kind
from archiver.state.schema import SCHEMA_VERSION
from archiver.state.store import StateStore
from archiver.tasks.taskstate import Phase, TaskState

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "state.db"


@pytest.fixture
def store(db_path: Path):
    s = StateStore.open(db_path)
    yield s
    s.close()


def _child(code: str) -> subprocess.Popen[str]:
    """A Python child running `code` with the repo importable; its stdout is a pipe."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def one(store: StateStore, task_id: str) -> TaskState:
    return store.get_many([task_id])[task_id]


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL


def test_open_creates_parent_dirs_and_uses_wal(db_path: Path) -> None:
    with StateStore.open(db_path) as s:
        assert db_path.exists()
        assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_added_task_is_pending_and_due_now(store: StateStore) -> None:
    assert store.add([("a", Kind.MUSIC), ("b", None)], now=100.0) == 2
    a = one(store, "a")
    assert a == TaskState(
        task_id="a",
        kind=Kind.MUSIC,
        phase=Phase.PENDING,
        first_seen_at=100.0,
        next_poll_at=100.0,
        polls=0,
        attempts=0,
        last_status=None,
        last_error=None,
        updated_at=100.0,
    )
    assert one(store, "b").kind is None
    assert "missing" not in store.get_many(["missing"])


def test_tasks_given_over_http_stay_marked_through_saves_and_later_adds(
    store: StateStore,
) -> None:
    store.add([("listed", Kind.MUSIC), ("both", None)], now=1.0)
    assert store.add([("both", Kind.COVER), ("posted", None)], now=2.0, via_http=True) == 1
    assert store.http_task_ids() == ["both", "posted"]
    assert one(store, "both").kind is Kind.COVER  # the NULL kind is filled in
    store.save(dataclasses.replace(one(store, "posted"), phase=Phase.ARCHIVED, polls=1))
    store.add([("posted", Kind.MUSIC), ("both", None)], now=3.0)  # the list names them later
    assert store.http_task_ids() == ["both", "posted"]
    assert one(store, "posted").phase is Phase.ARCHIVED
    assert one(store, "posted").kind is Kind.MUSIC


def test_saved_state_reads_back_identical(store: StateStore) -> None:
    store.add([("a", None)], now=1.0)
    a = one(store, "a")
    done = dataclasses.replace(
        a,
        kind=Kind.COVER,
        phase=Phase.PARTIAL,
        next_poll_at=50.5,
        polls=3,
        attempts=2,
        last_status="SUCCESS",
        last_error="image: 403 Forbidden",
        updated_at=60.25,
        archive_attempts=3,
    )
    store.save(done)
    assert one(store, "a") == done


def test_save_inserts_an_unknown_task(store: StateStore) -> None:
    st = TaskState("new", Kind.MUSIC, Phase.ARCHIVED, 1.0, 2.0, 1, 0, "SUCCESS", None, 3.0)
    store.save(st)
    assert one(store, "new") == st


def test_add_is_idempotent_and_leaves_known_rows_alone(store: StateStore) -> None:
    store.add([("a", Kind.MUSIC)], now=1.0)
    a = one(store, "a")
    store.save(dataclasses.replace(a, phase=Phase.ARCHIVED, polls=4, updated_at=9.0))
    before = one(store, "a")

    assert store.add([("a", Kind.MUSIC), ("a", Kind.MUSIC), ("b", None)], now=500.0) == 1
    assert one(store, "a") == before
    assert store.add([("a", None), ("b", None)], now=600.0) == 0
    assert one(store, "a") == before


def test_add_fills_a_null_kind_but_never_changes_a_known_one(store: StateStore) -> None:
    store.add([("a", None), ("b", Kind.MUSIC)], now=1.0)
    assert store.add([("a", Kind.COVER), ("b", Kind.COVER)], now=2.0) == 0
    a, b = one(store, "a"), one(store, "b")
    assert a.kind is Kind.COVER and a.first_seen_at == 1.0
    assert b.kind is Kind.MUSIC


def test_get_many_returns_only_known_ids(store: StateStore) -> None:
    store.add([(f"t{i}", None) for i in range(1200)], now=1.0)
    got = store.get_many(["t0", "t599", "t1199", "nope", "t0"])
    assert set(got) == {"t0", "t599", "t1199"}
    assert got["t599"].task_id == "t599"
    assert store.get_many([]) == {}


def test_counts_lists_every_phase_with_zeroes(store: StateStore) -> None:
    assert store.counts() == dict.fromkeys(Phase, 0)
    store.add([("a", None), ("b", None), ("c", None)], now=1.0)
    c = one(store, "c")
    store.save(dataclasses.replace(c, phase=Phase.FAILED))
    counts = store.counts()
    assert counts[Phase.PENDING] == 2
    assert counts[Phase.FAILED] == 1
    assert set(counts) == set(Phase)
    assert sum(counts.values()) == 3


def test_problems_are_the_bad_endings_ordered_by_update_time(store: StateStore) -> None:
    store.add([(t, None) for t in "abcdef"], now=1.0)
    plan = {
        "a": (Phase.TIMED_OUT, 40.0),
        "b": (Phase.ARCHIVED, 10.0),
        "c": (Phase.PARTIAL, 30.0),
        "d": (Phase.FAILED, 20.0),
        "e": (Phase.NOT_FOUND, 50.0),
    }  # f stays pending
    for tid, (phase, at) in plan.items():
        st = one(store, tid)
        store.save(dataclasses.replace(st, phase=phase, updated_at=at))
    assert [s.task_id for s in store.problems()] == ["d", "c", "a", "e"]


def test_100k_tasks_add_and_get_many_fast(store: StateStore) -> None:
    refs = [(f"task-{i:06d}", Kind.MUSIC if i % 2 else None) for i in range(100_000)]
    t0 = time.perf_counter()
    assert store.add(refs, now=1.0) == 100_000
    t1 = time.perf_counter()
    got = store.get_many(tid for tid, _ in refs)
    t2 = time.perf_counter()
    assert store.add(refs, now=2.0) == 0
    t3 = time.perf_counter()
    print(f"\nadd 100k: {t1 - t0:.3f}s  get_many 100k: {t2 - t1:.3f}s  re-add: {t3 - t2:.3f}s")
    assert len(got) == 100_000
    assert t1 - t0 < 5 and t2 - t1 < 5 and t3 - t2 < 5


def test_saved_row_survives_sigkill_right_after_save(db_path: Path) -> None:
    proc = _child(
        f"""
        import sys, time
        from archiver.kinds.records import Kind
        from archiver.state.store import StateStore
        from archiver.tasks.taskstate import Phase, TaskState
        s = StateStore.open({str(db_path)!r})
        s.add([("a", Kind.MUSIC)], now=1.0)
        s.save(TaskState("a", Kind.MUSIC, Phase.ARCHIVED, 1.0, 2.0, 3, 0, "SUCCESS", None, 4.0))
        print("saved", flush=True)
        time.sleep(60)
        """
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "saved"
    finally:
        _kill(proc)
    with StateStore.open(db_path) as s:
        st = one(s, "a")
    assert st == TaskState("a", Kind.MUSIC, Phase.ARCHIVED, 1.0, 2.0, 3, 0, "SUCCESS", None, 4.0)


def test_second_open_of_the_same_state_is_refused(db_path: Path) -> None:
    held = StateStore.open(db_path)
    try:
        with pytest.raises(UsageError, match=rf"another suno-archiver .*\(pid {os.getpid()}\)"):
            StateStore.open(db_path)
    finally:
        held.close()
    StateStore.open(db_path).close()  # released on close


def test_state_locked_by_another_process_is_refused_then_free_after_sigkill(
    db_path: Path,
) -> None:
    proc = _child(
        f"""
        import time
        from archiver.state.store import StateStore
        s = StateStore.open({str(db_path)!r})
        print("locked", flush=True)
        time.sleep(60)
        """
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(UsageError) as info:
            StateStore.open(db_path)
        assert str(info.value) == (
            f"{db_path}: another suno-archiver is using this state (pid {proc.pid})"
        )
    finally:
        _kill(proc)
    with StateStore.open(db_path) as s:  # the OS dropped the dead holder's lock
        assert s.counts()[Phase.PENDING] == 0


def test_unusable_path_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UsageError, match=r"cannot open state database"):
        StateStore.open(blocker / "state.db")  # parent is a file
    not_a_db = tmp_path / "junk.db"
    not_a_db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UsageError, match=rf"^{not_a_db}: cannot open state database"):
        StateStore.open(not_a_db)
    StateStore.open(tmp_path / "ok.db").close()  # the failed opens released their locks
    with StateStore.open(not_a_db.with_name("other.db")):
        pass


def test_state_from_a_newer_schema_is_refused(db_path: Path) -> None:
    with StateStore.open(db_path) as s:
        s._db.execute("PRAGMA user_version = 99")
    with pytest.raises(UsageError, match="newer"):
        StateStore.open(db_path)


# What version 1 wrote, verbatim: the schema every existing state file has.
V1_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id       TEXT PRIMARY KEY,
    kind          TEXT,
    phase         TEXT NOT NULL,
    first_seen_at REAL NOT NULL,
    next_poll_at  REAL NOT NULL,
    polls         INTEGER NOT NULL DEFAULT 0,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_status   TEXT,
    last_error    TEXT,
    updated_at    REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (phase, next_poll_at);
PRAGMA user_version = 1;
"""


def test_a_version_1_state_is_migrated_keeping_its_rows(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    old = sqlite3.connect(db_path)
    old.executescript(V1_SCHEMA)
    old.executemany(
        "INSERT INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            ("done", "music", "archived", 1.0, 2.0, 3, 0, "SUCCESS", None, 4.0),
            ("waiting", None, "pending", 5.0, 6.0, 0, 4, None, "the API failed (500)", 7.0),
        ],
    )
    old.commit()
    old.close()

    with StateStore.open(db_path) as s:
        assert s._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        indexes = s._db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        assert "tasks_due" not in {name for (name,) in indexes}
        # the browse view starts empty: an archived task's row is made from its manifest
        assert ViewStore(s).stale([Phase.ARCHIVED]) == [("done", 4.0)]
        assert s.get_many(["done", "waiting"]) == {
            "done": TaskState(
                "done", Kind.MUSIC, Phase.ARCHIVED, 1.0, 2.0, 3, 0, "SUCCESS", None, 4.0
            ),
            "waiting": TaskState(
                "waiting", None, Phase.PENDING, 5.0, 6.0, 0, 4, None, "the API failed (500)", 7.0
            ),
        }
        s.save(
            dataclasses.replace(
                one(s, "waiting"), archive_attempts=2, created_at=8.5, completed_at=9.5
            )
        )
    with StateStore.open(db_path) as s:  # opened again: nothing left to migrate
        waiting = one(s, "waiting")
        assert (waiting.archive_attempts, waiting.created_at, waiting.completed_at) == (2, 8.5, 9.5)
        assert one(s, "done").archive_attempts == 0
        assert (one(s, "done").created_at, one(s, "done").unknown_polls) == (None, 0)


def test_use_after_close_is_an_error(db_path: Path) -> None:
    s = StateStore.open(db_path)
    s.close()
    s.close()
    with pytest.raises(RuntimeError):
        s.get_many(["a"])
