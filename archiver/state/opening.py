"""Which store a config names, opened: the one place that chooses SQLite or PostgreSQL.

`open_state` is for the commands that write (run, backfill, reindex, index, verify --repair);
`read_state` for those that only read beside a running daemon (status, verify): on SQLite a
read-only connection without the one-process lock the daemon holds; on PostgreSQL the shared
store itself, which every daemon reads and writes at once anyway.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from archiver.config import StateConfig
from archiver.state.pgstore import PgStore
from archiver.state.protocol import Store
from archiver.state.readonly import read_only_state
from archiver.state.store import StateStore

# What a store raises when its database fails under it (a full disk, a server gone): the
# engine pauses on these, a command ends with one line.
STATE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)

StateRef = StateConfig | Path  # a Path: a SQLite state file (what the tests and `demo` name)


def open_state(state: StateRef) -> Store:
    """The state `state` names, open for writing. UsageError (one line, no password) when
    it cannot be opened."""
    if isinstance(state, Path):
        return StateStore.open(state)
    if state.url:
        return PgStore.open(state.url, state.where, password=state.password)
    return StateStore.open(state.path)


@contextmanager
def read_state(state: StateRef) -> Iterator[Store]:
    """The state `state` names, for reading beside a running daemon (see the module's
    docstring). UsageError when there is none or it cannot be read."""
    if isinstance(state, StateConfig) and state.url:
        store = open_state(state)
        try:
            yield store
        finally:
            store.close()
        return
    with read_only_state(state.path if isinstance(state, StateConfig) else state) as store:
        yield store


def state_exists(state: StateRef | None) -> bool:
    """Whether there is a state to compare with (a PostgreSQL one always is)."""
    if state is None:
        return False
    if isinstance(state, StateConfig):
        return bool(state.url) or state.path.exists()
    return state.exists()


def where(state: StateRef) -> str:
    return state.where if isinstance(state, StateConfig) else str(state)
