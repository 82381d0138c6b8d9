"""A state write that fails (a full disk, a locked or read-only database) never kills a task.

The failure is real: a second SQLite connection holds the database's write lock, so the
engine's own StateStore gets SQLite's "database is locked" once its busy timeout (5 s) runs out,
the same `sqlite3.OperationalError` path a full disk takes. Nothing of ours is mocked.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from waiting import until

from archiver.config import ApiConfig, Config, StateConfig, StorageConfig
from archiver.engine.assemble import open_engine
from archiver.errors import UsageError
from archiver.sandbox import Sandbox
from archiver.state.store import StateStore
from archiver.tasks.tasklist import TaskRef
from archiver.tasks.taskstate import Phase


def _config(tmp_path: Path, sandbox: Sandbox) -> Config:
    return Config(
        api=ApiConfig(base_url=sandbox.base_url, api_key=sandbox.api_key, requests_per_second=50),
        storage=StorageConfig(path=tmp_path / "archive", min_free_bytes=0),
        state=StateConfig(path=tmp_path / "state.sqlite3"),
    )


@contextmanager
def _write_locked(path: Path) -> Iterator[None]:
    """Another connection holds the write lock: every write of the engine fails."""
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        locker.execute("ROLLBACK")
        locker.close()


async def test_the_daemon_pauses_and_does_the_task_again(tmp_path: Path, sandbox: Sandbox) -> None:
    sandbox.add_music("song_a")
    config = _config(tmp_path, sandbox)
    stop = asyncio.Event()
    with capture_logs() as logs:
        async with open_engine(config, fatal_errors=False, retry_base_s=0.5) as engine:
            engine.set_tasks([TaskRef("song_a", None)])
            with _write_locked(config.state.path):
                run = asyncio.create_task(engine.run(stop))
                await until(lambda: any(e["event"] == "state_write_failed" for e in logs))
            hits = dict(sandbox.cdn.hits)
            await until(lambda: engine.counts[Phase.ARCHIVED] == 1)
            stop.set()
            await run
    (failed,) = [e for e in logs if e["event"] == "state_write_failed"]
    assert failed["log_level"] == "error"
    assert "locked" in failed["error"]
    assert failed["retry_in_s"] == pytest.approx(1.0, abs=0.5)  # twice retry_base_s
    assert any(e["event"] == "manifest_trusted" for e in logs)  # done again from the manifest
    assert dict(sandbox.cdn.hits) == hits  # no file fetched twice
    assert (tmp_path / "archive" / "song_a" / "manifest.json").exists()
    with StateStore.open(config.state.path) as state:
        saved = state.get_many(["song_a"])["song_a"]
    assert saved.phase is Phase.ARCHIVED


async def test_backfill_ends_with_the_error(tmp_path: Path, sandbox: Sandbox) -> None:
    sandbox.add_music("song_a")
    config = _config(tmp_path, sandbox)
    with capture_logs() as logs:
        async with open_engine(config, fatal_errors=True, retry_base_s=0.5) as engine:
            engine.set_tasks([TaskRef("song_a", None)])
            with (
                _write_locked(config.state.path),
                pytest.raises(UsageError, match=r"cannot save the task state.*locked"),
            ):
                await asyncio.wait_for(engine.run(asyncio.Event(), until_done=True), 30)
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["state_write_failed"]
