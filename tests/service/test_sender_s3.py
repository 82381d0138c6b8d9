"""Presigned file URLs in events, against moto's S3 server: what an application gets from a
URL in an event is the archived object, without credentials; and `verify --repair` sends
`task.repaired` (here on a local archive)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import boto3
import pytest
from event_receiver import EventReceiver, new_secret
from s3server import MotoServer

from archiver.cli.backfill import backfill
from archiver.config import ApiConfig, Config, EventsConfig, StateConfig, StorageConfig
from archiver.config.whsec import secret_key
from archiver.sandbox import Sandbox
from archiver.service.eventbody import EventBodies
from archiver.service.sender import EventSender
from archiver.state.outboxes import outbox_of
from archiver.state.store import StateStore
from archiver.storage import open_storage
from archiver.storage.urls import file_urls
from archiver.tasks.events import REPAIRED
from archiver.verify.repair import verify_and_repair

SECRET = new_secret()


@pytest.fixture
async def receiver() -> AsyncIterator[EventReceiver]:
    r = await EventReceiver(SECRET).start()
    try:
        yield r
    finally:
        await r.stop()


def _config(tmp_path: Path, sandbox: Sandbox, storage: StorageConfig, url: str) -> Config:
    return Config(
        api=ApiConfig(base_url=sandbox.base_url, api_key=sandbox.api_key, requests_per_second=50),
        storage=storage,
        state=StateConfig(path=tmp_path / "state.sqlite3"),
        events=EventsConfig(urls=(url,), key=secret_key(SECRET), timeout_s=5.0),
    )


async def _deliver(config: Config, n: int, receiver: EventReceiver) -> None:
    """Run a sender over the config's outbox until `n` events were taken."""
    storage = await open_storage(config.storage)
    try:
        with StateStore.open(config.state.path) as store:
            sender = EventSender(
                store,
                EventBodies(storage, file_urls(config.storage, storage)),
                urls=config.events.urls,
                key=config.events.key,
                timeout_s=5.0,
                give_up_after_s=60.0,
            )
            task = asyncio.create_task(sender.run())
            try:
                await receiver.wait_for(n)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    finally:
        await storage.close()


@pytest.mark.usefixtures("aws_env")
async def test_presigned_urls_in_events_fetch_the_archived_objects(
    tmp_path: Path, sandbox: Sandbox, server: MotoServer, receiver: EventReceiver
) -> None:
    client = boto3.session.Session().client("s3", endpoint_url=server.url)
    client.create_bucket(Bucket="events-presigned")
    storage = StorageConfig(
        backend="s3",
        bucket="events-presigned",
        prefix="my archive",
        endpoint_url=server.url,
        region="us-east-1",
        cache_dir=tmp_path / "cache",
        presign_ttl_s=600,
    )
    config = _config(tmp_path, sandbox, storage, receiver.url)
    sandbox.add_music("song_a")
    ids = tmp_path / "ids.txt"
    ids.write_text("song_a\n", encoding="utf-8")
    assert (await backfill(config, ids, retry_base_s=0.05, poll_time_scale=0.01)).complete
    await _deliver(config, 1, receiver)
    data = receiver.taken[0]["body"]["data"]
    assert len(data["files"]) == 4 and receiver.bad_signatures == 0
    async with aiohttp.ClientSession() as http:  # no credentials: the URL is the permission
        for item in [data["manifest"], *data["files"]]:
            assert "X-Amz-Signature=" in item["url"] and "X-Amz-Expires=600" in item["url"]
            async with http.get(item["url"]) as resp:
                assert resp.status == 200
                got = await resp.read()
            key = f"my archive/{item['path']}"
            assert got == client.get_object(Bucket="events-presigned", Key=key)["Body"].read()


async def test_repair_sends_task_repaired_with_the_files_put_back(
    tmp_path: Path, sandbox: Sandbox, receiver: EventReceiver
) -> None:
    storage = StorageConfig(path=tmp_path / "archive", min_free_bytes=0)
    config = _config(tmp_path, sandbox, storage, receiver.url)
    sandbox.add_music("song_a", tracks=1)
    ids = tmp_path / "ids.txt"
    ids.write_text("song_a\n", encoding="utf-8")
    assert (await backfill(config, ids, retry_base_s=0.05, poll_time_scale=0.01)).complete
    [audio] = [p for p in (tmp_path / "archive" / "song_a").iterdir() if p.suffix == ".mp3"]
    audio.unlink()

    repaired = await verify_and_repair(replace(config))
    assert repaired.final.intact
    with StateStore.open(config.state.path) as store:
        assert [e.type for e in outbox_of(store).after(0, 10)] == ["task.archived", REPAIRED]
    await _deliver(config, 2, receiver)
    [event] = [t["body"] for t in receiver.taken if t["body"]["type"] == REPAIRED]
    assert event["data"]["outcome"] == "archived"
    assert any(f["path"] == f"song_a/{audio.name}" for f in event["data"]["files"])
