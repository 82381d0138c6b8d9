"""The state's queries over a read-only SQLite connection, for `status` and `verify`: a
read-only WAL reader never blocks the running daemon (which holds the one-process lock) and
sees the last committed step of every task. And, for the events outbox alone, a read-write
connection beside the daemon."""

from __future__ import annotations

import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from archiver.errors import UsageError
from archiver.state.schema import SCHEMA_VERSION
from archiver.state.store import StateStore


@contextmanager
def read_only_state(state_path: Path) -> Iterator[StateStore]:
    """StateStore's queries over a read-only connection, without its one-process lock (which
    the running daemon holds). UsageError when there is no state, or it cannot be read."""
    with _unlocked(state_path, "ro") as store:
        yield store


@contextmanager
def shared_state(state_path: Path) -> Iterator[StateStore]:
    """A read-write connection without the lock, beside the daemon that holds it: only for
    rows the daemon re-reads on its own, never caches (the events outbox: `events
    --redeliver`). SQLite itself serializes the writes."""
    with _unlocked(state_path, "rw") as store:
        yield store


@contextmanager
def _unlocked(state_path: Path, access: str) -> Iterator[StateStore]:
    try:
        mode = state_path.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:  # Path.is_file() would raise this one (PermissionError) too
        raise UsageError(
            f"{state_path}: cannot read state database: {exc.strerror or exc}"
        ) from None
    if mode is None or not stat.S_ISREG(mode):
        raise UsageError(f"{state_path}: no state database (nothing has run with this config yet)")
    uri = f"file:{quote(str(state_path.resolve()))}?mode={access}"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)  # we issue BEGIN/COMMIT
    except sqlite3.Error as exc:
        raise UsageError(f"{state_path}: cannot open state database: {exc}") from None
    try:
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise UsageError(f"{state_path}: cannot read state database: {exc}") from None
        if version != SCHEMA_VERSION:
            raise UsageError(
                f"{state_path}: state database has schema version {version}, "
                f"this suno-archiver reads {SCHEMA_VERSION}"
            )
        yield StateStore(state_path, conn, None)  # type: ignore[arg-type]  # no lock to hold
    finally:
        conn.close()
