"""The engine over real parts (the stand-in API over loopback, a real archive folder, real
SQLite): a manifest it cannot read, a rejected key, an archive cancelled mid-download."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from archive_checks import LOCK_FILE, TEMP_DIR
from structlog.testing import capture_logs
from waiting import until

from archiver.config import ApiConfig, Config, StateConfig, StorageConfig
from archiver.engine.assemble import open_engine
from archiver.sandbox import Sandbox
from archiver.sandbox.cdn import FileFaults
from archiver.tasks.tasklist import TaskRef
from archiver.tasks.taskstate import Phase


def _config(tmp_path: Path, sandbox: Sandbox, *, api_key: str | None = None) -> Config:
    return Config(
        api=ApiConfig(
            base_url=sandbox.base_url,
            api_key=api_key or sandbox.api_key,
            requests_per_second=50,
        ),
        storage=StorageConfig(path=tmp_path / "archive", min_free_bytes=0),
        state=StateConfig(path=tmp_path / "state.sqlite3"),
    )


async def _archive(config: Config, *task_ids: str) -> None:
    async with open_engine(config, fatal_errors=True, retry_base_s=0.05) as engine:
        engine.set_tasks(TaskRef(task_id, None) for task_id in task_ids)
        await engine.run(asyncio.Event(), until_done=True)


async def test_an_unreadable_manifest_is_read_again_never_archived_over(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    sandbox.add_music("song_a")
    config = _config(tmp_path, sandbox)
    await _archive(config, "song_a")
    manifest = tmp_path / "archive" / "song_a" / "manifest.json"
    complete = manifest.read_bytes()
    for path in tmp_path.glob("state.sqlite3*"):  # the state is lost
        path.unlink()
    calls, hits = sandbox.api.total_calls, dict(sandbox.cdn.hits)
    saved = manifest.rename(manifest.with_name("saved.json"))
    manifest.mkdir()  # reading the manifest fails for a while (EISDIR, a real OSError)

    stop = asyncio.Event()
    with capture_logs() as logs:
        async with open_engine(config, fatal_errors=False, retry_base_s=0.2) as engine:
            engine.set_tasks([TaskRef("song_a", None)])
            run = asyncio.create_task(engine.run(stop))
            await until(lambda: engine.pending["song_a"].attempts > 0)
            manifest.rmdir()
            saved.rename(manifest)
            await until(lambda: "song_a" not in engine.pending)  # ended
            stop.set()
            await run

    assert engine.counts[Phase.ARCHIVED] == 1 and not engine.pending
    assert any(e["event"] == "manifest_trusted" for e in logs)
    assert (sandbox.api.total_calls, dict(sandbox.cdn.hits)) == (calls, hits)
    assert manifest.read_bytes() == complete


async def test_a_rejected_key_pauses_after_one_call_with_one_error_and_a_stamp(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """20 tasks due at once: the first 401 holds back every other call (the client's limiter
    pauses), the task it rejected is stamped, and the pause is said once."""
    task_ids = [f"song_{n}" for n in range(20)]
    for task_id in task_ids:
        sandbox.add_music(task_id)
    config = _config(tmp_path, sandbox, api_key="wrong-key")
    stop = asyncio.Event()
    with capture_logs() as logs:
        async with open_engine(config, fatal_errors=False) as engine:
            engine.set_tasks(TaskRef(task_id, None) for task_id in task_ids)
            listed_at = time.time()
            await asyncio.sleep(0.01)  # so that a stamp of the pause is later than the listing
            run = asyncio.create_task(engine.run(stop))
            await until(lambda: any(e["event"] == "archiving_paused" for e in logs))
            await asyncio.sleep(0.5)  # time for any other call to go out (none may)
            stop.set()
            await run

    rejected = [s for s in engine.pending.values() if s.last_error]
    assert len(rejected) == sandbox.api.total_calls == 1
    assert rejected[0].updated_at > listed_at
    paused = [e for e in logs if e["event"] == "archiving_paused"]
    assert [(e["log_level"], e["cause"]) for e in paused] == [("error", "api_key")]


async def test_an_archive_cancelled_mid_download_leaves_no_temp_file(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """The MP3 is half written, its new tag in front and its image fetched, when the task is
    cancelled: every temp file goes, none shows under a final name."""
    sandbox.add_music("big", tracks=1, seconds=30)  # about 500 kB
    sandbox.cdn.set_faults("big-1.mp3", FileFaults(stall_after_bytes=200_000))
    config = _config(tmp_path, sandbox)
    temp = tmp_path / "archive" / TEMP_DIR
    stop = asyncio.Event()
    async with open_engine(config, fatal_errors=False) as engine:
        engine.set_tasks([TaskRef("big", None)])
        run = asyncio.create_task(engine.run(stop, grace_s=0))
        await until(lambda: any(p.stat().st_size > 150_000 for p in temp.glob("fetch-*.part")))
        stop.set()  # SIGTERM with no grace period: the task is cancelled mid-download
        await run
        left = [p.name for p in temp.iterdir() if p.name != LOCK_FILE]

    assert left == []
    assert not (tmp_path / "archive" / "big" / "manifest.json").exists()


async def test_the_engine_holds_pending_tasks_only(tmp_path: Path, sandbox: Sandbox) -> None:
    """Archived tasks live in the state alone: giving them costs no memory in the engine,
    and a task that ends leaves the engine's structures."""
    archived = [f"song_{n}" for n in range(3)]
    for task_id in [*archived, "song_new"]:
        sandbox.add_music(task_id)
    sandbox.add_music("slow", ready_after_s=3600)
    config = _config(tmp_path, sandbox)
    await _archive(config, *archived)
    stop = asyncio.Event()
    async with open_engine(config, fatal_errors=False) as engine:
        engine.set_tasks(TaskRef(task_id, None) for task_id in [*archived, "slow"])
        assert set(engine.pending) == {"slow"}
        assert [task_id for _, task_id in engine._pending._due] == ["slow"]
        assert (engine.counts[Phase.ARCHIVED], engine.counts[Phase.PENDING]) == (3, 1)

        run = asyncio.create_task(engine.run(stop))
        await until(lambda: engine.pending["slow"].polls > 0)
        engine.add_tasks([TaskRef("song_0", None), TaskRef("song_new", None)])  # one known
        assert set(engine.pending) == {"slow", "song_new"}
        await until(lambda: engine.counts[Phase.ARCHIVED] == 4)
        stop.set()
        await run

    assert set(engine.pending) == {"slow"}
    assert {task_id for _, task_id in engine._pending._due} <= {"slow"}
    assert set(engine._pending._rank) == {"slow"}  # an ended task's list position is forgotten too
    assert sum(engine.counts.values()) == 5
    assert engine.kind_counts[("music", Phase.ARCHIVED)] == 4  # found by polling
    assert sum(engine.kind_counts.values()) == 5
