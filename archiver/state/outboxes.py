"""Which dialect's outbox a state needs: SQLite's (outbox.py) or PostgreSQL's (pgoutbox.py,
which builds on outbox.py; so the choice lives here, above both)."""

from __future__ import annotations

from archiver.state.outbox import Outbox, SqliteOutbox
from archiver.state.pgoutbox import PgOutbox
from archiver.state.pgstore import PgStore
from archiver.state.protocol import Store


def outbox_of(state: Store) -> Outbox:
    """The outbox's questions in the state's dialect."""
    return PgOutbox(state) if isinstance(state, PgStore) else SqliteOutbox(state)  # type: ignore[arg-type]
