"""`suno-archiver run` into a bucket: the daemon as a real subprocess, moto's S3 server as a real
HTTP endpoint (another subprocess), the stand-in API in the test process.

The daemon is the real CLI with one change: its base retry delay (30 s in production) is short,
so that waiting out a missing bucket or an S3 outage takes seconds. The AWS environment is
the dummy one of conftest.py (`aws_env`), inherited by the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import botocore.exceptions as bx
import pytest
from archive_checks import file_entries
from buckets import PREFIX, Bucket, new_bucket, verify_bucket
from daemons import Daemon
from s3daemons import Site, add_site
from s3server import Gate, MotoServer

from archiver.sandbox import Sandbox

pytestmark = pytest.mark.usefixtures("aws_env")


class ManifestWatch:
    """Lists the bucket over and over while the daemon works: a manifest must never be seen
    before every object it names (the manifest goes up last)."""

    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket
        self.rounds = 0
        self.violations: list[str] = []

    def check_once(self) -> None:
        keys = set(self.bucket.objects())
        for key in sorted(k for k in keys if k.endswith("/manifest.json")):
            doc = json.loads(self.bucket.get(key)[0])
            for entry in file_entries(doc):
                if "path" in entry and f"{PREFIX}/{entry['path']}" not in keys:
                    self.violations.append(f"{key} seen before {entry['path']}")
        self.rounds += 1

    async def run(self) -> None:
        while True:
            with contextlib.suppress(bx.BotoCoreError, bx.ClientError):  # the store is down
                await asyncio.to_thread(self.check_once)
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def watching(bucket: Bucket) -> AsyncIterator[ManifestWatch]:
    watch = ManifestWatch(bucket)
    task = asyncio.create_task(watch.run())
    try:
        yield watch
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert watch.rounds > 0
    assert watch.violations == []


def _events_of(daemon: Daemon, event: str, task_id: str) -> list[dict[str, Any]]:
    return [e for e in daemon.named(event) if e.get("task_id") == task_id]


# --- the tests --------------------------------------------------------------------------------


async def test_archives_the_list_into_a_bucket_manifest_last(
    tmp_path: Path,
    sandbox: Sandbox,
    server: MotoServer,
    request: pytest.FixtureRequest,
    sites: list[Site],
) -> None:
    bucket = new_bucket(server.url, request)
    site = add_site(sites, tmp_path, sandbox, server.url, bucket)
    sandbox.add_music("song_a")
    sandbox.add_music("song_b", tracks=1)
    sandbox.add_cover("cover_c")
    site.list_tasks("song_a", "music:song_b", "cover:cover_c")
    async with watching(bucket):
        daemon = await site.daemon()
        assert daemon.named("daemon_ready")[0]["archive"] == f"s3://{bucket.name}/{PREFIX}"
        await site.wait_archived("song_a", "song_b", "cover_c")
    assert await daemon.stop() == 0
    assert not daemon.named("storage_unavailable")
    manifests = verify_bucket(bucket, tmp_path)  # sizes, SHA-256, content types, no strays
    assert sorted(manifests) == ["cover_c", "song_a", "song_b"]
    assert all(doc["outcome"] == "archived" for doc in manifests.values())
    assert sum(len(file_entries(doc)) for doc in manifests.values()) == 4 + 2 + 2


async def test_a_missing_bucket_is_waited_for_then_archived_into(
    tmp_path: Path,
    sandbox: Sandbox,
    server: MotoServer,
    request: pytest.FixtureRequest,
    sites: list[Site],
) -> None:
    bucket = new_bucket(server.url, request, create=False)
    site = add_site(sites, tmp_path, sandbox, server.url, bucket)
    sandbox.add_music("song_a")
    site.list_tasks("song_a")
    received, stop_listening = _notify_socket(tmp_path / "notify.sock")
    try:
        daemon = await site.daemon(
            {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "1000000"},
            started="storage_unavailable",
        )
        first = daemon.named("storage_unavailable")[0]
        assert first["level"] == "error"
        assert f"'{bucket.name}'" in first["error"] and "does not exist" in first["error"]
        assert first["retry_in_s"] > 0
        # Retried, more slowly each time; nothing polled while there is nowhere to store.
        await daemon.wait_for("storage_unavailable", where=lambda e: e["attempt"] >= 3)
        await asyncio.sleep(1.5)
        assert daemon.running
        assert sandbox.api.total_calls == 0
        waits = [e["retry_in_s"] for e in daemon.named("storage_unavailable")]
        assert waits[2] > waits[0]

        bucket.client.create_bucket(Bucket=bucket.name)
        await daemon.wait_for("storage_available")
        await site.wait_archived("song_a")
        for _ in range(100):  # STATUS= is refreshed every 2 s
            if "STATUS=1 archived" in received:
                break
            await asyncio.sleep(0.05)
        assert await daemon.stop() == 0
        await asyncio.sleep(0.1)
    finally:
        stop_listening()
    verify_bucket(bucket, tmp_path)

    ready = [m for m in received if m.startswith("READY=1")]
    assert len(ready) == 1  # sent while waiting, not again once the bucket answered
    assert "STATUS=waiting for storage: " in ready[0] and bucket.name in ready[0]
    serving = next(i for i, m in enumerate(received) if m.startswith("STATUS=1 "))
    assert "WATCHDOG=1" in received[received.index(ready[0]) : serving]  # pinged while waiting
    assert "STATUS=1 archived" in received
    # the last word, but for watchdog pings while it writes index.html at shutdown
    assert [m for m in received if m != "WATCHDOG=1"][-1].startswith("STOPPING=1")


async def test_sigterm_while_waiting_for_storage_exits_0_and_sighup_retries_at_once(
    tmp_path: Path,
    sandbox: Sandbox,
    server: MotoServer,
    request: pytest.FixtureRequest,
    sites: list[Site],
) -> None:
    bucket = new_bucket(server.url, request, create=False)
    site = add_site(sites, tmp_path, sandbox, server.url, bucket)
    site.list_tasks("song_a")
    daemon = await site.daemon(retry_base_s=30.0, started="storage_unavailable")  # production
    assert daemon.named("storage_unavailable")[0]["retry_in_s"] >= 15
    await daemon.send(signal.SIGHUP)
    await daemon.wait_for("storage_unavailable", timeout=10, where=lambda e: e["attempt"] == 2)
    started = time.monotonic()
    assert await daemon.stop() == 0
    assert time.monotonic() - started < 5
    assert daemon.named("daemon_stopped")
    assert not daemon.named("daemon_ready")


async def test_the_s3_server_killed_mid_run_and_restarted(
    tmp_path: Path, sandbox: Sandbox, request: pytest.FixtureRequest, sites: list[Site]
) -> None:
    """The store dies while a big file is on its way and comes back empty (moto keeps its
    state in memory) with the bucket recreated: the daemon keeps running, retries, and
    archives what was in flight; no manifest is ever seen without its objects."""
    srv = MotoServer()
    srv.start()
    gate = Gate(srv.port)
    await gate.open()
    try:
        bucket = new_bucket(srv.url, request)
        site = add_site(sites, tmp_path, sandbox, gate.url, bucket)
        sandbox.add_music("song_a")
        site.list_tasks("song_a")
        daemon = await site.daemon()
        await site.wait_archived("song_a")

        sandbox.add_music("big_b", tracks=1, seconds=1800)  # ~29 MB
        sandbox.add_music("song_c")
        site.list_tasks("song_a", "big_b")
        for _ in range(2000):
            if site.downloading():
                break
            await asyncio.sleep(0.005)
        else:
            raise AssertionError("no download started")
        await gate.close()
        srv.kill()
        site.list_tasks("song_a", "big_b", "song_c")  # listed while the store is down
        for task_id in ("big_b", "song_c"):  # each tried and failed against the dead store
            await daemon.wait_for(
                "task_retry_later", timeout=60, where=lambda e, t=task_id: e.get("task_id") == t
            )
        assert daemon.running

        async with watching(bucket):
            srv.start()
            bucket.client.create_bucket(Bucket=bucket.name)  # before the daemon can see it
            await gate.open()
            await site.wait_archived("big_b", "song_c", timeout=90)
        assert await daemon.stop() == 0
        for task_id in ("big_b", "song_c"):
            assert "s3://" in _events_of(daemon, "task_retry_later", task_id)[0]["error"]
        assert not daemon.named("archiving_paused")  # an outage is not an access problem
        manifests = verify_bucket(bucket, tmp_path)  # what went up after the restart
        assert sorted(manifests) == ["big_b", "song_c"]
        assert all(doc["outcome"] == "archived" for doc in manifests.values())
        assert bucket.client.list_multipart_uploads(Bucket=bucket.name).get("Uploads", []) == []
    finally:
        await gate.close()
        srv.kill()


def _notify_socket(path: Path) -> tuple[list[str], Callable[[], None]]:
    """A fake systemd notify socket: the messages it receives, and how to stop listening."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    received: list[str] = []
    loop = asyncio.get_running_loop()

    def drain() -> None:
        with contextlib.suppress(BlockingIOError):
            while True:
                received.append(sock.recv(4096).decode())

    sock.setblocking(False)
    loop.add_reader(sock.fileno(), drain)

    def close() -> None:
        drain()
        loop.remove_reader(sock.fileno())
        sock.close()

    return received, close
