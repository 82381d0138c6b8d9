"""What several daemons on one PostgreSQL state do once, not once each: a pause and silence
alerted once (real alert receiver on loopback), rolling verify slices divided (real server)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alert_receiver import Receiver
from prometheus_client import CollectorRegistry

from archiver.browse.indexer import Indexer
from archiver.config import StateConfig, StorageConfig
from archiver.service.notify import Alerter, DaemonAlerts
from archiver.state.pgstore import PgStore
from archiver.storage.local import LocalStorage
from archiver.verify.rolling import SLICES, RollingVerify


async def test_a_pause_and_silence_seen_by_two_daemons_are_alerted_once(pg_url: str) -> None:
    receiver = await Receiver().start()
    stores = [PgStore.open(pg_url, "a"), PgStore.open(pg_url, "b")]
    try:
        async with (
            Alerter([receiver.url], window_s=0.05) as one,
            Alerter([receiver.url], window_s=0.05) as two,
        ):
            daemons = [DaemonAlerts(a, silence_after_s=100) for a in (one, two)]
            for alerts, store in zip(daemons, stores, strict=True):
                alerts.share(store.first_to_say)
            for alerts in daemons:
                alerts.log_processor(
                    None, "error", {"event": "archiving_paused", "cause": "api_key"}
                )
                alerts.tick(last_answer_at=None, quiet_s=150, pending=lambda: 3)
            await receiver.wait_for(2)
            await asyncio.sleep(0.2)
        assert sorted(receiver.events()) == ["archiving_paused", "silence"]
    finally:
        for store in stores:
            store.close()
        await receiver.stop()


def test_rolling_verify_slices_are_divided_between_daemons(pg_url: str, tmp_path: Path) -> None:
    state = StateConfig(url=pg_url, shared_local=True)
    storage = StorageConfig(path=tmp_path)
    daemons = [
        RollingVerify(storage, state, every_s=3600, registry=CollectorRegistry(), clock=lambda: 7.0)
        for _ in range(3)
    ]
    taken = [[d._ours(i) for d in daemons].count(True) for i in range(SLICES)]
    assert taken == [1] * SLICES


async def test_the_browse_files_are_written_by_one_daemon_at_a_time(
    pg_url: str, tmp_path: Path
) -> None:
    a, b = PgStore.open(pg_url, "a"), PgStore.open(pg_url, "b")
    storage = LocalStorage(tmp_path / "archive")
    try:
        with a.try_lock("index") as got:
            assert got
            assert await Indexer(b, storage).refresh() is None  # a writes them: b skips
            assert not (tmp_path / "archive" / "index.html").exists()
        assert await Indexer(b, storage).refresh() is not None
        assert (tmp_path / "archive" / "index.html").exists()
    finally:
        a.close()
        b.close()
        await storage.close()
