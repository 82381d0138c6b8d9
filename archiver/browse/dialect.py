"""Which dialect's view store a state needs: SQLite's (store.py) or PostgreSQL's (pgstore.py,
which builds on store.py; so the choice lives here, above both)."""

from __future__ import annotations

from archiver.browse.pgstore import PgSnapshot, PgViewStore
from archiver.browse.store import SqliteSnapshot, ViewStore
from archiver.state.pgstore import PgStore
from archiver.state.protocol import Store


def view_store(state: Store) -> ViewStore | PgViewStore:
    """The view's questions in the state's dialect."""
    return PgViewStore(state) if isinstance(state, PgStore) else ViewStore(state)  # type: ignore[arg-type]


def open_snapshot(state: Store) -> SqliteSnapshot | PgSnapshot:
    """A snapshot of the view for a writer in another thread (blocking: call it there)."""
    return PgSnapshot(state) if isinstance(state, PgStore) else SqliteSnapshot(state)  # type: ignore[arg-type]
