"""What the live API does to a just-created task, over loopback HTTP against the stand-in API:
unknown at first (not found is provisional), and old when first listed (its own createTime)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

from archive_checks import verify_archive
from waiting import until

from archiver.cli.backfill import backfill
from archiver.config import ApiConfig, Config, StateConfig, StorageConfig, TasksConfig
from archiver.engine.assemble import open_engine
from archiver.kinds.records import Kind
from archiver.sandbox import Sandbox, fake_hex_id
from archiver.state.store import StateStore
from archiver.tasks.lifecycle import WINDOW_S
from archiver.tasks.tasklist import TaskRef
from archiver.tasks.taskstate import Phase

SCALE = 0.01  # the polling schedule compressed 100 times: the first 10 s backoff is 0.1 s


def _config(tmp_path: Path, sandbox: Sandbox, *, not_found_after_s: float = 900.0) -> Config:
    return Config(
        api=ApiConfig(base_url=sandbox.base_url, api_key=sandbox.api_key, requests_per_second=50),
        tasks=TasksConfig(give_up_after_s=120.0, not_found_after_s=not_found_after_s),
        storage=StorageConfig(path=tmp_path / "archive"),
        state=StateConfig(path=tmp_path / "state.sqlite3"),
    )


async def _backfill(tmp_path: Path, sandbox: Sandbox, *lines: str, **tasks: float):
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = _config(tmp_path, sandbox, **tasks)
    await backfill(config, ids, retry_base_s=0.05, poll_time_scale=SCALE)
    with StateStore.open(config.state.path) as store:  # the report names only the others
        return store.get_many(line.rpartition(":")[2] for line in lines)


async def test_a_cover_task_empty_then_generating_then_done_is_archived(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """Listed with its kind and as a bare ID: `data` is {} for 0.3 s, successFlag 2 from
    0.5 s, 1 from 1 s. Recorded not found at the first poll, it would be lost."""
    named, bare = fake_hex_id("cover:named"), fake_hex_id("cover:bare")
    for task_id in (named, bare):
        sandbox.add_cover(task_id, empty_for_s=0.3, ready_after_s=1.0)

    tasks = await _backfill(tmp_path, sandbox, f"cover:{named}", bare)

    assert {t.phase for t in tasks.values()} == {Phase.ARCHIVED}
    assert tasks[bare].kind is Kind.COVER  # found by the cover endpoint, and remembered
    calls = sandbox.api.calls
    assert calls[("music", bare)] < calls[("cover", bare)]  # not asked once cover knew it
    manifests = verify_archive(tmp_path / "archive")
    assert [len(manifests[t]["images"]) for t in (named, bare)] == [2, 2]
    # the answers while generating were seen too, not only the empty ones and the last
    assert all(tasks[t].polls >= 2 for t in (named, bare))


async def test_a_bare_id_the_music_endpoint_does_not_know_at_first_is_archived(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    task = fake_hex_id("replicating")
    sandbox.add_music(task, unknown_for_s=0.4)

    tasks = await _backfill(tmp_path, sandbox, task)

    assert tasks[task].phase is Phase.ARCHIVED and tasks[task].kind is Kind.MUSIC
    assert tasks[task].unknown_polls == 0  # reset by the first answer that knew it
    assert sandbox.api.calls[("cover", task)] >= 1  # every endpoint was asked meanwhile
    assert set(verify_archive(tmp_path / "archive")) == {task}


async def test_a_task_not_found_earlier_and_listed_again_gets_the_window_again(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    task = fake_hex_id("late")
    first = await _backfill(tmp_path, sandbox, task, not_found_after_s=0.3)
    assert first[task].phase is Phase.NOT_FOUND

    sandbox.add_cover(task, empty_for_s=0.2)  # it exists now, and is new at the vendor's
    again = await _backfill(tmp_path, sandbox, task, not_found_after_s=1.0)

    assert again[task].phase is Phase.ARCHIVED


async def test_the_schedule_uses_the_task_s_own_age_from_its_create_time(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """Listed 3 minutes (scaled) after it was created and still PENDING: it is inside the
    window where any poll may find it done (every 20 s), not made to wait until 60 s after it
    was first seen. The state keeps its creation time."""
    task = fake_hex_id("created-earlier")
    sandbox.add_music(task, created_ago_s=180 * SCALE, ready_after_s=1000 * SCALE)
    listed_at = time.time()
    stop = asyncio.Event()
    async with open_engine(
        _config(tmp_path, sandbox), fatal_errors=True, poll_time_scale=SCALE
    ) as (engine):
        engine.set_tasks([TaskRef(task, Kind.MUSIC)])
        run = asyncio.create_task(engine.run(stop))
        await until(lambda: engine.pending[task].polls == 1)
        stop.set()
        await run
    state = engine.pending[task]

    assert state.last_status == "PENDING"
    assert state.created_at is not None
    assert listed_at - 180 * SCALE - 0.1 < state.created_at < listed_at - 180 * SCALE + 0.5
    assert round((state.next_poll_at - state.updated_at) / SCALE) == WINDOW_S


async def test_a_task_created_long_before_it_was_listed_still_gets_its_full_give_up_wait(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """Created 5 s (500 s scaled) before it was listed and never finishing: it is polled on
    the late schedule, and timed out tasks.give_up_after_s after it was listed, not at once."""
    task = fake_hex_id("old-and-stuck")
    sandbox.add_music(task, created_ago_s=5.0, ready_after_s=3600.0)
    ids = tmp_path / "ids.txt"
    ids.write_text(task + "\n", encoding="utf-8")
    config = _config(tmp_path, sandbox)
    config = replace(config, tasks=replace(config.tasks, give_up_after_s=0.5))

    started = time.monotonic()
    report = await backfill(config, ids, retry_base_s=0.05, poll_time_scale=SCALE)

    assert time.monotonic() - started >= 0.5
    [state] = report.not_archived
    assert state.phase is Phase.TIMED_OUT and state.polls >= 2
