"""Two writers of one manifest on moto's S3 server: a write conditional on what was read
(If-None-Match: * for a first manifest, If-Match on the ETag for a rewrite) is refused by S3
itself once another writer stored the key meanwhile, so a daemon whose lease lapsed while it was
frozen after its lease check never writes over the manifest another daemon finished."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from s3server import MotoServer
from s3stores import raw_client, s3_config, stored
from structlog.testing import capture_logs

from archiver.config import TaggingConfig
from archiver.errors import WriteRefused
from archiver.fetch.archiving import Archivist
from archiver.fetch.download import Fetcher
from archiver.fetch.taskfiles import TaskFetcher
from archiver.kinds.records import CoverRecord
from archiver.state.protocol import LeaseLost
from archiver.storage.s3 import S3Storage

pytestmark = pytest.mark.usefixtures("aws_env")

KEY = "t1/manifest.json"
JSON = "application/json"


async def test_of_two_writers_that_read_the_same_manifest_only_the_first_write_stands(
    tmp_path: Path, server: MotoServer, bucket: str
) -> None:
    one = await S3Storage.open(s3_config(tmp_path / "one", server.url, bucket))
    two = await S3Storage.open(s3_config(tmp_path / "two", server.url, bucket))
    try:
        # a first manifest: both read none
        _, seen_by_one = await one.read_tagged(KEY)
        _, seen_by_two = await two.read_tagged(KEY)
        await two.put_bytes(KEY, b'{"by": "two"}', content_type=JSON, unchanged=seen_by_two)
        with pytest.raises(WriteRefused, match="another writer stored it"):
            await one.put_bytes(KEY, b'{"by": "one"}', content_type=JSON, unchanged=seen_by_one)
        assert await one.read(KEY) == b'{"by": "two"}'

        # a rewrite: both read the same object (its ETag)
        data, seen_by_one = await one.read_tagged(KEY)
        _, seen_by_two = await two.read_tagged(KEY)
        assert data == b'{"by": "two"}' and seen_by_one.tag is not None
        await two.put_bytes(KEY, b'{"by": "two again"}', content_type=JSON, unchanged=seen_by_two)
        with pytest.raises(WriteRefused):
            await one.put_bytes(KEY, b'{"by": "one"}', content_type=JSON, unchanged=seen_by_one)
        assert await two.read(KEY) == b'{"by": "two again"}'

        # unconditional, and conditional on what the key still holds: written
        _, now = await one.read_tagged(KEY)
        await one.put_bytes(KEY, b'{"by": "one"}', content_type=JSON, unchanged=now)
        await two.put_bytes(KEY, b'{"by": "two, plain"}', content_type=JSON)
        assert await one.read(KEY) == b'{"by": "two, plain"}'
    finally:
        await one.close()
        await two.close()


async def test_a_stale_lease_holders_manifest_is_refused_logged_and_left_to_the_holder(
    tmp_path: Path, server: MotoServer, bucket: str
) -> None:
    """Two archives of one task: the holder's finishes while the stale daemon, its lease check
    passed, is frozen before its upload (the fence: the holder writes right then)."""
    stale = await S3Storage.open(s3_config(tmp_path, server.url, bucket))
    full_key = f"suno/archive/{KEY}"
    holders = b'{"written by": "the holder"}'
    checked: list[str] = []

    def lease_checked_then_frozen(task_id: str) -> None:
        checked.append(task_id)
        body = holders + b" " * len(checked)  # each write another object (another ETag)
        raw_client(server.url).put_object(Bucket=bucket, Key=full_key, Body=body)

    record = CoverRecord(
        task_id="t1",
        parent_task_id="m1",
        status="GENERATE_FAILED",
        images=(),
        error_code=400,
        error_message="failed",
        raw={"taskId": "t1", "successFlag": 3},
    )
    try:
        async with aiohttp.ClientSession() as http:
            archivist = archivist_on(http, stale, lease_checked_then_frozen)
            with capture_logs() as logs, pytest.raises(LeaseLost):  # the engine: lease_lost
                await archivist.archive(record, (), task_failed=True, final=True)
            assert checked == ["t1"]  # S3 itself refused the write, not the lease check
            assert "manifest_write_refused" in [e["event"] for e in logs]
            assert stored(server.url, bucket, full_key)[0] == holders + b" "  # theirs stands

            # a rewrite (the manifest exists, read with its ETag): the same
            with capture_logs() as logs, pytest.raises(LeaseLost):
                await archivist.archive(record, (), task_failed=True, final=True)
            assert "manifest_write_refused" in [e["event"] for e in logs]
            assert stored(server.url, bucket, full_key)[0] == holders + b"  "

            # without another writer in between, the archive writes its manifest
            archivist = archivist_on(http, stale, checked.append)
            result = await archivist.archive(record, (), task_failed=True, final=True)
            assert result.outcome == "failed"
            assert json.loads(stored(server.url, bucket, full_key)[0])["task_id"] == "t1"
    finally:
        await stale.close()


def archivist_on(
    http: aiohttp.ClientSession, storage: S3Storage, fence: Callable[[str], None]
) -> Archivist:
    """A daemon's archivist on `storage`, its lease checked by `fence` before each manifest."""
    return Archivist(
        files=TaskFetcher(
            fetcher=Fetcher(http, temp_dir=storage.temp_dir, max_bytes=1 << 20),
            storage=storage,
            tagging=TaggingConfig(),
            download_slots=asyncio.Semaphore(1),
        ),
        storage=storage,
        tagging=TaggingConfig(),
        version="test",
        clock=lambda: 1.7e9,
        fence=fence,
    )
