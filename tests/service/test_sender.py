"""The events sender against a real application endpoint on loopback (tests/event_receiver.py,
which checks every signature with the standardwebhooks library): events of a real backfill,
a receiver that is down, failing, hanging and then healthy, and a long outbox."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from event_receiver import EventReceiver, new_secret

from archiver.cli.backfill import backfill
from archiver.config import ApiConfig, Config, EventsConfig, StateConfig, StorageConfig, TasksConfig
from archiver.config.whsec import secret_key
from archiver.sandbox import Sandbox
from archiver.service.eventbody import EventBodies
from archiver.service.sender import RETRY_S, EventSender
from archiver.state import outbox
from archiver.state.outboxes import outbox_of
from archiver.state.store import StateStore
from archiver.storage.local import LocalStorage
from archiver.storage.urls import file_urls
from archiver.tasks.events import ARCHIVED, FAILED

SECRET = new_secret()


class Site:
    def __init__(self, sandbox: Sandbox, root: Path, url: str) -> None:
        self.sb = sandbox
        self.root = root
        self.archive = root / "archive"
        self.url = url
        self.public_base_url = ""

    def config(self) -> Config:
        return Config(
            api=ApiConfig(
                base_url=self.sb.base_url, api_key=self.sb.api_key, requests_per_second=50
            ),
            tasks=TasksConfig(give_up_after_s=60.0, not_found_after_s=0.5),
            storage=StorageConfig(
                path=self.archive, min_free_bytes=0, public_base_url=self.public_base_url
            ),
            state=StateConfig(path=self.root / "state.sqlite3"),
            events=EventsConfig(urls=(self.url,), key=secret_key(SECRET), timeout_s=0.5),
        )

    async def backfill(self, *ids: str) -> None:
        ids_file = self.root / "ids.txt"
        ids_file.write_text("\n".join(ids) + "\n", encoding="utf-8")
        await backfill(self.config(), ids_file, retry_base_s=0.05, poll_time_scale=0.01)

    def sender(self, store: StateStore, **kw: Any) -> EventSender:
        storage = LocalStorage(self.archive)
        config = self.config()
        options: dict[str, Any] = {
            "urls": config.events.urls,
            "key": config.events.key,
            "timeout_s": config.events.timeout_s,
            "give_up_after_s": 3600.0,
            "retry_scale": 0.0005,  # 5 s → 2.5 ms, 5 min → 0.15 s, 30 min → 0.9 s
        }
        return EventSender(
            store, EventBodies(storage, file_urls(config.storage, storage)), **(options | kw)
        )


@contextlib.asynccontextmanager
async def running(sender: EventSender) -> AsyncIterator[None]:
    task = asyncio.create_task(sender.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def receiver() -> AsyncIterator[EventReceiver]:
    r = EventReceiver(SECRET)
    try:
        yield r
    finally:
        await r.stop()


async def _static_server(root: Path) -> tuple[web.AppRunner, str]:
    """A plain static file server over the archive folder (what nginx would be)."""
    app = web.Application()
    app.router.add_static("/archive/", root)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/archive"


async def test_a_backfill_sends_its_events_signed_with_urls_that_fetch_the_archived_bytes(
    sandbox: Sandbox, tmp_path: Path, receiver: EventReceiver
) -> None:
    await receiver.start()
    (tmp_path / "archive").mkdir()
    runner, base = await _static_server(tmp_path / "archive")
    try:
        site = Site(sandbox, tmp_path, receiver.url)
        site.public_base_url = base
        sandbox.add_music("song_a")
        sandbox.add_music(
            "bad_b", fail_status="SENSITIVE_WORD_ERROR", error_message="sensitive word"
        )
        await site.backfill("song_a", "bad_b")
        taken = receiver.taken  # backfill sent them before it returned
        assert len(taken) == 2 and receiver.bad_signatures == 0
        by_task = {t["body"]["data"]["task_id"]: t["body"] for t in taken}
        song = by_task["song_a"]
        assert set(song) == {"type", "timestamp", "data"}
        assert song["type"] == ARCHIVED and song["timestamp"].endswith("Z")
        data = song["data"]
        assert list(data) == ["task_id", "kind", "outcome", "error", "manifest", "files"]
        assert (data["kind"], data["outcome"], data["error"]) == ("music", "archived", None)
        assert data["manifest"] == {
            "path": "song_a/manifest.json",
            "url": f"{base}/song_a/manifest.json",
        }
        roles = sorted(f["role"] for f in data["files"])
        assert roles == ["audio", "audio", "image", "image"]
        async with aiohttp.ClientSession() as http:
            for f in data["files"]:
                assert set(f) >= {"path", "role", "audio_id", "bytes", "sha256", "content_type"}
                async with http.get(f["url"]) as resp:
                    assert resp.status == 200
                    got = await resp.read()
                assert got == (tmp_path / "archive" / f["path"]).read_bytes()
                assert len(got) == f["bytes"]
        failed = by_task["bad_b"]
        assert failed["type"] == FAILED
        assert failed["data"]["error"]["message"] == "sensitive word"
    finally:
        await runner.cleanup()


async def test_down_failing_hanging_then_healthy_every_event_arrives_under_one_id(
    sandbox: Sandbox, tmp_path: Path, receiver: EventReceiver
) -> None:
    site = Site(sandbox, tmp_path, receiver.url)
    for n in range(3):
        sandbox.add_music(f"song_{n}", tracks=1)
    await site.backfill("song_0", "song_1", "song_2")
    with StateStore.open(tmp_path / "state.sqlite3") as store:

        def errors() -> list[str | None]:
            return [d.last_error for d in outbox_of(store).listed(outbox.PENDING)]

        async def until(check: Any, timeout: float = 20.0) -> None:
            deadline = time.monotonic() + timeout
            while not check():
                assert time.monotonic() < deadline, (errors(), receiver.attempts)
                await asyncio.sleep(0.01)

        def seen(mode: str) -> set[str]:
            return {i for i, m in receiver.attempts if m == mode}

        async with running(site.sender(store)):
            # Down: every event's first attempt meets a refused connection.
            await until(lambda: len(errors()) == 3 and all(e and "onnect" in e for e in errors()))
            receiver.mode = "fail"
            await receiver.start()
            await until(lambda: len(seen("fail")) == 3)  # HTTP 500 to each
            receiver.mode = "hang"
            await until(lambda: len(seen("hang")) == 3)  # no answer within the 0.5 s timeout
            await until(lambda: all(e and "0.5 s" in e for e in errors()))
            receiver.mode = "ok"
            await receiver.wait_for(3)
            await until(lambda: not errors())
    ids = receiver.ids()
    assert len(ids) == len(set(ids)) == 3
    # The 500s, the hangs and the success of one event all carried its one webhook-id.
    assert seen("fail") == seen("hang") == seen("ok") == set(ids)
    assert receiver.bad_signatures == 0


def test_the_schedule_is_seconds_to_hours() -> None:
    assert RETRY_S[:6] == (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0)


async def test_a_long_outbox_is_delivered_with_flat_memory(
    sandbox: Sandbox, tmp_path: Path, receiver: EventReceiver
) -> None:
    receiver.keep_bodies = False
    await receiver.start()
    site = Site(sandbox, tmp_path, receiver.url)
    sandbox.add_music("song_a", tracks=1)
    await site.backfill("song_a")

    def fill(store: StateStore, n: int) -> None:
        event = outbox.NewEvent(
            ARCHIVED, "song_a", "music", "archived", None, time.time(), (site.url,)
        )
        with store.transaction() as db:
            for _ in range(n):
                outbox.insert(db, event)

    async def peak_delivering(store: StateStore, n: int) -> int:
        fill(store, n)
        before = receiver.count
        gc.collect()
        tracemalloc.start()
        try:
            async with running(site.sender(store)):
                while receiver.count < before + n:
                    await asyncio.sleep(0.05)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    with StateStore.open(tmp_path / "state.sqlite3") as store:
        await asyncio.wait_for(peak_delivering(store, 1), 60)  # the song's own event
        small = await asyncio.wait_for(peak_delivering(store, 1_000), 120)
        large = await asyncio.wait_for(peak_delivering(store, 10_000), 600)
    assert receiver.bad_signatures == 0
    # Ten times the events, not ten times the memory (a queue of them all would be).
    assert large < small + 1_000_000, (small, large)
