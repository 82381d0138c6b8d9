"""`suno-archiver run`: the daemon as a real subprocess against the stand-in API.

The stand-in API runs in the test process (so a test can inject faults and count calls), the
daemon in a child process started as a user or systemd would: `python -m archiver.cli run`.
Every task here is finished at its first poll, so nothing waits for the real polling schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from archive_checks import LOCK_FILE, TEMP_DIR
from daemons import Site, metric, task_calls
from s3server import MotoServer

from archiver.sandbox.cdn import FileFaults


async def _status_json(daemon_site: Site) -> dict[str, Any]:
    code, out, err = await daemon_site.cli("status", "--json")
    assert code == 0, err
    return json.loads(out)


# --- the daemon end to end --------------------------------------------------------------------


async def test_archives_the_list_and_follows_its_edits_until_sigterm(daemon_site: Site) -> None:
    sb = daemon_site.sandbox
    sb.add_music("song_a")
    sb.add_music("song_b", tracks=1)
    sb.add_cover("cover_c")
    sb.add_music("song_d")
    sb.add_music("slow_e", ready_after_s=3600)
    daemon_site.list_tasks("# my songs", "song_a", "music:song_b", "cover:cover_c", "not an id!")
    daemon = await daemon_site.daemon()
    await daemon_site.wait_archived("song_a", "song_b", "cover_c")

    # IDs appended while it runs start at once; removed ones leave the list.
    daemon_site.list_tasks(
        "song_a", "music:song_b", "cover:cover_c", "not an id!", "song_d", "slow_e"
    )
    await daemon_site.wait_archived("song_d")
    await daemon.wait_for("task_list_loaded", where=lambda e: e["tasks"] == 5)
    daemon_site.list_tasks("song_a", "music:song_b", "cover:cover_c", "song_d")
    await daemon.wait_for("task_list_loaded", where=lambda e: e["tasks"] == 4)
    # A bad line is reported once per version of the file, with its line number.
    skipped = daemon.named("task_line_skipped")
    assert [e["line"] for e in skipped] == [5, 4]

    # SIGHUP rereads the list even though it did not change.
    loads = len(daemon.named("task_list_loaded"))
    await daemon.send(signal.SIGHUP)
    await daemon.wait_for("task_list_reread_requested")
    for _ in range(50):
        if len(daemon.named("task_list_loaded")) > loads:
            break
        await asyncio.sleep(0.1)
    assert len(daemon.named("task_list_loaded")) == loads + 1

    status, body = await daemon_site.get("/metrics")
    assert status == 200
    assert metric(body, 'suno_archiver_tasks{phase="archived"}') == 4
    assert metric(body, 'suno_archiver_tasks{phase="pending"}') == 0  # slow_e was removed
    assert metric(body, "suno_archiver_files_archived_total") == 4 + 2 + 2 + 4
    assert metric(body, "suno_archiver_bytes_archived_total") > 0
    assert metric(body, 'suno_archiver_api_calls_total{outcome="ok"}') >= 5
    assert metric(body, "suno_archiver_seconds_since_api_success") < 60
    status, body = await daemon_site.get("/healthz")
    assert status == 200
    assert json.loads(body)["status"] == "ok"

    assert await daemon.stop() == 0
    assert daemon.named("daemon_stopped")
    daemon_site.check_archive()
    doc = await _status_json(daemon_site)
    assert doc["counts"]["archived"] == 4
    assert doc["problems"] == []


async def test_an_appended_id_costs_only_the_appended_line(daemon_site: Site) -> None:
    sb = daemon_site.sandbox
    sb.add_music("song_a")
    sb.add_music("song_b")
    daemon_site.list_tasks("song_a")
    daemon = await daemon_site.daemon()
    await daemon_site.wait_archived("song_a")
    with daemon_site.tasks.open("a", encoding="utf-8") as f:  # as an application appends its IDs
        f.write("song_b\n")
    await daemon_site.wait_archived("song_b")
    appended = await daemon.wait_for("task_list_appended")
    assert (appended["tasks"], appended["pending"]) == (2, 1)
    assert len(daemon.named("task_list_loaded")) == 1  # the list was read whole once
    assert await daemon.stop() == 0


async def test_a_cover_task_empty_at_first_is_archived_not_dropped(daemon_site: Site) -> None:
    """The cover endpoint answers `data: {}` for the task's first second, then generating,
    then done: the daemon asks again on its not-found backoff instead of giving up."""
    daemon_site.sandbox.add_cover("fresh_cover", empty_for_s=1.0, ready_after_s=2.0)
    daemon_site.list_tasks("fresh_cover")  # a bare ID: the music endpoint never knows it
    daemon = await daemon_site.daemon(tuning={"poll_time_scale": 0.05})

    await daemon_site.wait_archived("fresh_cover")

    assert daemon.named("task_unknown_yet") and not daemon.named("task_not_found")
    assert daemon_site.manifest("fresh_cover")["outcome"] == "archived"
    assert await daemon.stop() == 0


async def test_a_removed_task_is_never_polled_again(daemon_site: Site) -> None:
    sb = daemon_site.sandbox
    sb.add_music("slow_a", ready_after_s=3600)
    sb.add_music("song_b")
    daemon_site.list_tasks("slow_a")
    # Polls 20x sooner: slow_a is asked again at 3 s, then every second.
    daemon = await daemon_site.daemon(tuning={"poll_time_scale": 0.05})
    deadline = time.monotonic() + 30
    while task_calls(sb, "slow_a") < 2:  # it is being polled on its schedule
        assert time.monotonic() < deadline, "\n".join(daemon.raw)
        await asyncio.sleep(0.05)

    daemon_site.list_tasks("song_b")
    await daemon.send(signal.SIGHUP)
    first = daemon.named("task_list_loaded")[0]
    await daemon.wait_for("task_list_loaded", where=lambda e: e is not first)
    await daemon_site.wait_archived("song_b")
    while True:  # a poll of slow_a that started before the edit has ended
        _, body = await daemon_site.get("/metrics")
        if metric(body, "suno_archiver_tasks_in_flight") == 0:
            break
        await asyncio.sleep(0.05)
    calls = task_calls(sb, "slow_a")
    await asyncio.sleep(3)  # its schedule would have polled it about three times
    assert task_calls(sb, "slow_a") == calls
    assert await daemon.stop() == 0


async def test_restart_fetches_no_file_and_polls_no_archived_task(daemon_site: Site) -> None:
    sb = daemon_site.sandbox
    sb.add_music("song_a")
    sb.add_cover("cover_b")
    sb.add_music("later_c", ready_after_s=3600)
    daemon_site.list_tasks("song_a", "cover_b", "later_c")
    first = await daemon_site.daemon()
    await daemon_site.wait_archived("song_a", "cover_b")
    await first.wait_for(
        "task_list_loaded"
    )  # later_c was polled once (PENDING) at start; its next poll is a minute away
    for _ in range(50):
        if task_calls(sb, "later_c"):
            break
        await asyncio.sleep(0.1)
    assert await first.stop() == 0
    calls, hits = dict(sb.api.calls), dict(sb.cdn.hits)

    second = await daemon_site.daemon()
    await second.wait_for("task_list_loaded")
    await asyncio.sleep(3)  # a dozen watch cycles
    assert dict(sb.api.calls) == calls  # no archived task polled, later_c kept its schedule
    assert dict(sb.cdn.hits) == hits  # no file fetched again
    assert await second.stop() == 0
    daemon_site.check_archive()


async def test_sigkill_mid_download_leaves_no_partial_file_and_a_restart_completes(
    daemon_site: Site,
) -> None:
    sb = daemon_site.sandbox
    sb.add_music("big_a", tracks=1, seconds=1800)  # ~29 MB: still downloading when killed
    daemon_site.list_tasks("big_a")
    daemon = await daemon_site.daemon()
    temp = daemon_site.archive / TEMP_DIR
    for _ in range(2000):
        if any(p.name != LOCK_FILE for p in temp.iterdir()):
            break
        await asyncio.sleep(0.005)
    else:
        raise AssertionError("no download started")
    await daemon.stop(signal.SIGKILL)
    assert daemon_site.manifest("big_a") is None
    assert not list(daemon_site.archive.glob("big_a/*.mp3"))  # nothing under a final name but whole

    again = await daemon_site.daemon()
    await daemon_site.wait_archived("big_a", timeout=60)
    assert await again.stop() == 0
    daemon_site.check_archive()


async def test_sigterm_lets_in_flight_files_finish_within_the_grace_period_then_exits_0(
    daemon_site: Site,
) -> None:
    sb = daemon_site.sandbox
    # A stalled read fails after 2 s and resumes with Range: big_a's song cannot be complete
    # before that, so it is in flight at SIGTERM and finishes within the 6 s grace period.
    daemon_site.configure(grace_s=6, download_timeout_s=2)
    sb.add_music("hung_b")
    sb.add_music("big_a", tracks=1, seconds=120)
    sb.cdn.set_faults("big_a-1.mp3", FileFaults(stall_after_bytes=600_000))
    sb.api.fail_next(1, "hang")  # hung_b's poll never answers: in flight until cancelled
    daemon_site.list_tasks("hung_b")
    daemon = await daemon_site.daemon()
    deadline = time.monotonic() + 20
    while not task_calls(sb, "hung_b"):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    daemon_site.list_tasks("hung_b", "big_a")
    await daemon.send(signal.SIGHUP)
    while not sb.cdn.hits["big_a-1.mp3"]:
        assert time.monotonic() < deadline, "\n".join(daemon.raw)
        await asyncio.sleep(0.01)
    assert daemon_site.manifest("big_a") is None

    started = time.monotonic()
    assert await daemon.stop() == 0
    elapsed = time.monotonic() - started

    assert 6 - 0.5 < elapsed < 6 + 5, elapsed  # waited out the grace period for hung_b
    assert daemon.named("daemon_stopping")[0]["grace_s"] == 6
    archived = daemon.named("task_archived")
    assert [e["task_id"] for e in archived] == ["big_a"]
    assert daemon.events.index(daemon.named("daemon_stopping")[0]) < daemon.events.index(
        archived[0]
    )  # finished after SIGTERM, within the grace period
    assert daemon_site.manifest("big_a") is not None
    assert daemon.named("abandoned_in_flight")  # hung_b could not finish in time
    assert daemon_site.manifest("hung_b") is None
    assert daemon_site.temp_leftovers() == []
    daemon_site.check_archive()


async def test_api_outage_keeps_it_running_and_it_catches_up(daemon_site: Site) -> None:
    sb = daemon_site.sandbox
    sb.add_music("song_a")
    sb.add_music("song_b")
    sb.api.fail_next(1, "http500")
    sb.api.fail_next(1, "http455")
    sb.api.fail_next(1, "http502")
    daemon_site.list_tasks("song_a", "song_b")
    daemon = await daemon_site.daemon()
    await daemon_site.wait_archived("song_a", "song_b", timeout=40)
    assert len(daemon.named("api_retry")) == 3
    _, body = await daemon_site.get("/metrics")
    assert metric(body, "suno_archiver_api_retries_total") == 3
    assert metric(body, 'suno_archiver_api_calls_total{outcome="maintenance"}') == 1
    assert metric(body, 'suno_archiver_api_calls_total{outcome="transient"}') == 2
    assert await daemon.stop() == 0
    daemon_site.check_archive()


async def test_an_api_outage_outlasting_the_clients_retries_is_retried_by_the_engine(
    daemon_site: Site,
) -> None:
    sb = daemon_site.sandbox
    sb.add_music("song_a")
    for fault in ("http500", "http455", "http502", "http455") * 2:  # 8 failed calls in a row
        sb.api.fail_next(1, fault)
    daemon_site.list_tasks("music:song_a")
    daemon = await daemon_site.daemon(tuning={"retry_base_s": 0.3})  # 30 s in production
    await daemon_site.wait_archived("song_a", timeout=60)
    # The client tries 4 times a lookup; the engine retries the task after each 4 failures.
    retries = daemon.named("task_retry_later")
    assert [e["attempt"] for e in retries] == [1, 2]
    assert all(e["task_id"] == "song_a" for e in retries)
    assert daemon.running
    _, body = await daemon_site.get("/metrics")
    assert metric(body, 'suno_archiver_api_calls_total{outcome="error"}') == 2
    assert metric(body, "suno_archiver_api_retries_total") == 6
    assert task_calls(sb, "song_a") == 9
    assert await daemon.stop() == 0
    daemon_site.check_archive()


async def test_a_wrong_key_is_said_plainly_and_retried_slowly(daemon_site: Site) -> None:
    sb = daemon_site.sandbox
    daemon_site.configure(api_key="wrong-key-0123456789")
    sb.add_music("song_a")
    daemon_site.list_tasks("song_a")
    daemon = await daemon_site.daemon()
    paused = await daemon.wait_for("archiving_paused")
    assert paused["level"] == "error" and paused["cause"] == "api_key"
    assert "key" in paused["error"].lower()
    assert paused["retry_in_s"] >= 60
    await asyncio.sleep(3)
    assert daemon.running
    assert sb.api.total_calls == 1  # no hammering with a key that cannot work
    _, body = await daemon_site.get("/metrics")
    assert metric(body, 'suno_archiver_api_calls_total{outcome="auth_rejected"}') == 1
    assert metric(body, "suno_archiver_storage_pauses_total") == 0
    assert await daemon.stop() == 0
    assert not any("wrong-key-0123456789" in line for line in daemon.raw)


@pytest.mark.usefixtures("aws_env")
async def test_storage_refusing_access_pauses_without_counting_a_rejected_key(
    daemon_site: Site, server: MotoServer
) -> None:
    sb = daemon_site.sandbox
    s3 = boto3.session.Session().client("s3", endpoint_url=server.url)
    s3.create_bucket(Bucket="pause-test")
    daemon_site.configure(
        storage=f'backend = "s3"\nbucket = "pause-test"\nendpoint_url = "{server.url}"\n'
        'region = "us-east-1"\ncache_dir = "cache"'
    )
    sb.add_music("song_a")
    sb.add_music("song_b")
    daemon_site.list_tasks("song_a")
    daemon = await daemon_site.daemon()
    await daemon.wait_for("task_archived", where=lambda e: e["task_id"] == "song_a")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket="pause-test"):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket="pause-test", Key=obj["Key"])
    s3.delete_bucket(Bucket="pause-test")  # the bucket goes away while the daemon runs

    daemon_site.list_tasks("song_a", "song_b")
    paused = await daemon.wait_for("archiving_paused")
    assert paused["cause"] == "storage" and "pause-test" in paused["error"]
    _, body = await daemon_site.get("/metrics")
    assert metric(body, "suno_archiver_storage_pauses_total") == 1
    assert 'outcome="auth_rejected"' not in body  # the key was fine all along
    assert await daemon.stop() == 0


async def test_a_missing_task_list_is_waited_for(daemon_site: Site) -> None:
    sb = daemon_site.sandbox
    sb.add_music("song_a")
    daemon = await daemon_site.daemon()
    missing = await daemon.wait_for("task_list_missing")
    assert missing["waiting"] is True
    daemon_site.list_tasks("song_a")
    await daemon_site.wait_archived("song_a")
    assert len(daemon.named("task_list_missing")) == 1  # said once, not every 2 s
    assert await daemon.stop(signal.SIGINT) == 0


@contextlib.asynccontextmanager
async def notify_socket(path: Path) -> AsyncIterator[list[str]]:
    """A systemd stand-in: every datagram sent to `path` (NOTIFY_SOCKET), in order."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    received: list[str] = []

    async def drain() -> None:
        while True:
            with contextlib.suppress(BlockingIOError):
                while True:
                    received.append(sock.recv(4096).decode())
            await asyncio.sleep(0.02)

    reader = asyncio.create_task(drain())
    try:
        yield received
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        sock.close()


async def test_systemd_notify_socket_gets_ready_watchdog_status_and_stopping(
    daemon_site: Site, tmp_path: Path
) -> None:
    sb = daemon_site.sandbox
    sb.add_music("song_a")
    daemon_site.list_tasks("song_a")
    async with notify_socket(tmp_path / "notify.sock") as received:
        daemon = await daemon_site.daemon(
            {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "1000000"}
        )
        await daemon_site.wait_archived("song_a")
        await asyncio.sleep(2.5)
        assert await daemon.stop() == 0
        await asyncio.sleep(0.1)
    ready = [m for m in received if m.startswith("READY=1")]
    assert len(ready) == 1
    assert "STATUS=" in ready[0]
    assert received.count("WATCHDOG=1") >= 4  # every 0.5 s
    assert "STATUS=1 archived" in received
    assert received[-1].startswith("STOPPING=1")
    assert received.index(ready[0]) < received.index("WATCHDOG=1")


async def test_sigterm_while_starting_sends_no_ready_after_stopping(
    daemon_site: Site, tmp_path: Path
) -> None:
    daemon_site.sandbox.add_music("song_a")
    os.mkfifo(daemon_site.tasks)  # the first read of the task list blocks until the test writes it
    async with notify_socket(tmp_path / "notify.sock") as received:
        daemon = await daemon_site.daemon(
            {"NOTIFY_SOCKET": str(tmp_path / "notify.sock")}, started=None
        )
        deadline = time.monotonic() + 20
        while True:  # opens once the daemon has opened the list to read it
            try:
                fifo = os.open(daemon_site.tasks, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:
                assert time.monotonic() < deadline and daemon.running, "\n".join(daemon.raw)
                await asyncio.sleep(0.02)
        await daemon.send(signal.SIGTERM)  # mid-start: the list is being read
        await daemon.wait_for("daemon_stopping")
        os.write(fifo, b"song_a\n")
        os.close(fifo)
        assert await daemon.stop() == 0
        await asyncio.sleep(0.1)
    assert received and received[0].startswith("STOPPING=1")
    assert not [m for m in received if "READY=1" in m], received
    assert not daemon.named("daemon_ready")
    assert daemon.named("task_list_loaded")  # the read finished; then the daemon stopped
