"""Several `run` daemons on one PostgreSQL state and one bucket, as real subprocesses: moto's S3
server, the stand-in API, a real PostgreSQL server. One daemon is killed with SIGKILL while a
download hangs: the others take its task over once its lease lapses, and every task is archived
exactly once and verifies. PostgreSQL stopped and started under a running daemon: it pauses,
says so on /healthz, and resumes by itself."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from buckets import PREFIX, new_bucket, verify_bucket
from daemons import REPO, task_calls
from pgcluster import PgCluster
from pgdaemons import LEASE_S, TOKEN, Member, archived_ids, wait_until
from s3server import MotoServer

from archiver.sandbox import Sandbox, fake_hex_id
from archiver.sandbox.cdn import FileFaults

pytestmark = pytest.mark.usefixtures("aws_env")


def _complete_callback(task_id: str) -> dict[str, Any]:
    """kie's callback that a music task is complete (API-NOTES 3.3)."""
    track = {"id": "a1", "audio_url": "https://vendor.invalid/never-fetched.mp3", "title": "t"}
    return {
        "code": 200,
        "msg": "All generated successfully.",
        "data": {"callbackType": "complete", "task_id": task_id, "data": [track]},
    }


async def test_three_daemons_share_the_work_and_take_over_a_killed_ones_task(
    tmp_path: Path,
    sandbox: Sandbox,
    server: MotoServer,
    pg_url: str,
    request: pytest.FixtureRequest,
) -> None:
    bucket = new_bucket(server.url, request)
    ids = [f"song{i:02d}" for i in range(12)]
    for task_id in ids:
        sandbox.add_music(task_id)
    stuck = ids[0]
    sandbox.cdn.set_faults(f"{stuck}-1.mp3", FileFaults(stall_after_bytes=2_000))
    members = [Member(tmp_path / f"d{i}", sandbox, server.url, bucket, pg_url) for i in range(3)]
    for member in members:
        member.list_tasks(*ids)
    daemons = []
    try:
        for member in members:
            daemons.append(await member.start())
        with psycopg.connect(pg_url) as db:

            def holder() -> str | None:
                found = db.execute(
                    "SELECT lease_owner FROM tasks WHERE task_id = %s", (stuck,)
                ).fetchone()
                return found[0] if found else None

            await wait_until(
                lambda: sandbox.cdn.hits.get(f"{stuck}-1.mp3", 0) >= 1 and holder() is not None,
                30,
                "the stuck download started under a lease",
            )
            pid = int(str(holder()).split(":")[1])
        (victim,) = [d for d in daemons if d.proc is not None and d.proc.pid == pid]
        killed_at = time.monotonic()
        await victim.kill()
        await wait_until(lambda: archived_ids(bucket) >= set(ids), 60, "every task archived")
        took_over_s = time.monotonic() - killed_at
        assert took_over_s <= LEASE_S + 15, took_over_s
        archived = [
            e["task_id"] for d in daemons for e in d.named("task_archived") if "task_id" in e
        ]
        assert sorted(archived) == sorted(ids), archived  # each once, by one daemon
        assert stuck not in [e.get("task_id") for e in victim.named("task_archived")]
        survivors = [d for d in daemons if d is not victim]
        assert any(e.get("task_id") == stuck for d in survivors for e in d.named("task_archived"))
        config = members[0].root / "archive.toml"
        check = subprocess.run(
            [sys.executable, "-m", "archiver.cli", "verify", "--config", str(config)],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        assert check.returncode == 0, check.stdout + check.stderr
        for d in survivors:
            assert await d.stop() == 0
        for member in members:
            if member.daemon is not victim:  # the killed one's cache keeps its stalled file
                verify_bucket(bucket, member.root)
        # the browse files, from the shared rows, by whichever daemon held the index lock
        assert {f"{PREFIX}/index.html", f"{PREFIX}/browse/shards.js"} <= set(bucket.objects())
    finally:
        for d in daemons:
            await d.kill()


async def test_postgresql_stopped_and_started_under_a_daemon_pauses_and_resumes_it(
    tmp_path: Path,
    sandbox: Sandbox,
    server: MotoServer,
    pg_cluster: PgCluster,
    pg_url: str,
    request: pytest.FixtureRequest,
) -> None:
    bucket = new_bucket(server.url, request)
    sandbox.add_music("before")
    member = Member(tmp_path / "d", sandbox, server.url, bucket, pg_url, listen=True)
    member.list_tasks("before")
    daemon = await member.start()
    try:
        await wait_until(lambda: archived_ids(bucket) >= {"before"}, 30, "first task archived")
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://{member.metrics}/metrics") as answer,
        ):
            text = await answer.text()
        assert "suno_archiver_cluster_daemons 1.0" in text  # the shared state's, read from it
        assert 'suno_archiver_cluster_tasks{phase="archived"}' in text
        pg_cluster.stop()
        try:
            await daemon.wait_for("state_unreachable", timeout=20)
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://{member.metrics}/healthz") as answer,
            ):
                body = await answer.json()
                assert answer.status == 503
                assert body["archiving_paused"]["cause"] == "state_unreachable"
            sandbox.add_music("after")
            member.list_tasks("before", "after")
            await asyncio.sleep(2)
        finally:
            pg_cluster.start()
        await daemon.wait_for("state_reachable_again", timeout=30)
        await wait_until(lambda: archived_ids(bucket) >= {"after"}, 40, "archived after restart")
        # Restarted again with the list untouched: the daemon's given set (on the connection
        # PostgreSQL dropped) is given again whole by itself, so that a line appended later
        # naming a task it has counts it once.
        loaded = len(daemon.named("task_list_loaded"))
        pg_cluster.stop()
        try:
            await wait_until(lambda: len(daemon.named("state_unreachable")) >= 2, 20, "down")
        finally:
            pg_cluster.start()
        await wait_until(lambda: len(daemon.named("task_list_loaded")) > loaded, 30, "given again")
        with (member.root / "tasks.txt").open("a", encoding="utf-8") as f:
            f.write("before\n")
        appended = await daemon.wait_for("task_list_appended", timeout=20)
        assert appended["tasks"] == 2, appended
        assert "Traceback" not in "\n".join(daemon.raw)
        assert await daemon.stop() == 0
    finally:
        await daemon.kill()


async def test_two_daemons_racing_on_the_same_callback_poll_and_archive_it_once(
    tmp_path: Path,
    sandbox: Sandbox,
    server: MotoServer,
    pg_url: str,
    request: pytest.FixtureRequest,
) -> None:
    bucket = new_bucket(server.url, request)
    task_id = fake_hex_id("raced")
    sandbox.api.add_music(task_id)
    members = [
        Member(tmp_path / f"d{i}", sandbox, server.url, bucket, pg_url, listen=True)
        for i in range(2)
    ]
    daemons = []
    try:
        for member in members:
            member.list_tasks()
            daemons.append(await member.start())

        async def post(member: Member) -> int:
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"http://{member.intake}/callback/{TOKEN}", json=_complete_callback(task_id)
                ) as answer,
            ):
                return answer.status

        assert await asyncio.gather(*(post(m) for m in members)) == [200, 200]
        await wait_until(lambda: task_id in archived_ids(bucket), 30, "the task archived")
        await asyncio.sleep(LEASE_S + 2)  # the loser looks again once: it must find it done
        assert task_calls(sandbox, task_id) == 1
        archived = [e for d in daemons for e in d.named("task_archived")]
        assert [e["task_id"] for e in archived] == [task_id]
        for d in daemons:
            assert await d.stop() == 0
    finally:
        for d in daemons:
            await d.kill()
