"""The PostgreSQL fixtures: one throwaway cluster a session (archiver/sandbox/postgres.py: initdb
and pg_ctl as a non-root user, a free loopback port, no system service), a fresh database a
test, and the store contract's subject on each store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from archiver.sandbox.postgres import PASSWORD, PgCluster, running_cluster

__all__ = ["PASSWORD", "PgCluster", "any_store", "pg_cluster", "pg_url"]


# --- fixtures (tests/conftest.py imports them) -------------------------------------------------


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """The session's PostgreSQL cluster; the tests that need one skip, saying why, when
    Debian's postgresql package is missing (.ci/run installs it)."""
    with running_cluster() as cluster:
        if cluster is None:
            pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
        yield cluster


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> str:
    """The URL of a fresh, empty database (the password in it)."""
    return pg_cluster.url(pg_cluster.database())


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """The store contract's subject: each test runs once on each store."""
    if request.param == "sqlite":
        from archiver.state.store import StateStore

        store: Any = StateStore.open(tmp_path / "state.sqlite3")
    else:
        from archiver.state.pgstore import PgStore

        url = request.getfixturevalue("pg_url")
        store = PgStore.open(url, "test")
    try:
        yield store
    finally:
        store.close()
