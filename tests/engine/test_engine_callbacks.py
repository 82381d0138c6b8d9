"""The engine's side of callbacks (`poll_now`), over real parts: the stand-in API over
loopback, a real archive folder, real SQLite."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from waiting import until

from archiver.config import ApiConfig, Config, StateConfig, StorageConfig
from archiver.engine.assemble import open_engine
from archiver.engine.step import CALLBACK_NET_S
from archiver.kinds.records import Kind
from archiver.sandbox import Sandbox
from archiver.tasks.tasklist import TaskRef
from archiver.tasks.taskstate import Phase


async def test_callbacks_during_a_poll_cost_one_poll_after_it_and_repeats_nothing(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    sandbox.add_music("song", ready_after_s=600.0)  # pending throughout
    sandbox.api.fail_next(1, "hang", delay_s=0.5)  # the first poll is in flight for 0.5 s
    config = Config(
        api=ApiConfig(base_url=sandbox.base_url, api_key=sandbox.api_key, requests_per_second=50),
        storage=StorageConfig(path=tmp_path / "archive"),
        state=StateConfig(path=tmp_path / "state.sqlite3"),
    )
    stop = asyncio.Event()
    async with open_engine(config, fatal_errors=False) as engine:
        run = asyncio.create_task(engine.run(stop))
        engine.add_tasks([TaskRef("song", Kind.MUSIC)], via_http=True)
        await until(lambda: sandbox.api.total_calls == 1)
        assert engine.poll_now("song") and engine.poll_now("song")  # while it is in flight
        await until(lambda: sandbox.api.total_calls == 2)
        await until(lambda: engine.in_flight == 0)
        await asyncio.sleep(0.3)
        assert sandbox.api.total_calls == 2
        # Polled on callbacks: its own schedule waits CALLBACK_NET_S for the next one.
        state = engine.task("song")
        assert state is not None and state.phase is Phase.PENDING
        assert state.next_poll_at - time.time() > CALLBACK_NET_S - 5
        for _ in range(3):  # a burst while the poll is due: one poll
            assert engine.poll_now("song")
        await until(lambda: sandbox.api.total_calls == 3)
        await asyncio.sleep(0.3)
        assert sandbox.api.total_calls == 3
        assert not engine.poll_now("unknown")
        stop.set()
        await run
