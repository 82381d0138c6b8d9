"""Task events from two `run` daemons on one PostgreSQL state and one bucket (real subprocesses,
moto's S3 server, the stand-in API, a real PostgreSQL server) to one application endpoint that
checks every signature with the standardwebhooks library: every task's event arrives, each
webhook-id is acknowledged once (no delivery posted by both daemons), both daemons serve the
same pull feed, and `events` / `--redeliver` work on the shared state beside and without them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from buckets import new_bucket
from daemons import REPO
from event_receiver import EventReceiver, new_secret
from pgdaemons import TOKEN, Member, archived_ids, wait_until
from s3server import MotoServer

from archiver.sandbox import Sandbox

pytestmark = pytest.mark.usefixtures("aws_env")


def _with_events(member: Member, app: EventReceiver, secret: str) -> None:
    (member.root / "events.secret").write_text(secret + "\n", encoding="utf-8")
    with (member.root / "archive.toml").open("a", encoding="utf-8") as config:
        config.write(f'[events]\nurls = ["{app.url}"]\nsecret_file = "events.secret"\n')


async def _cli(member: Member, *args: str) -> subprocess.CompletedProcess[str]:
    """In a thread: the receiver answers on this test's loop meanwhile."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "archiver.cli", *args, "--config", "archive.toml"],
        cwd=member.root, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip


async def _feed(member: Member) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    url = f"http://{member.intake}/events?after=0&limit=1000"
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["events"]


async def test_two_daemons_send_each_event_once_and_serve_one_feed(
    tmp_path: Path,
    sandbox: Sandbox,
    server: MotoServer,
    pg_url: str,
    request: pytest.FixtureRequest,
) -> None:
    bucket = new_bucket(server.url, request)
    ids = [f"song{i:02d}" for i in range(16)]
    for task_id in ids:
        sandbox.add_music(task_id)
    secret = new_secret()
    app = await EventReceiver(secret).start()
    members = [
        Member(tmp_path / f"d{i}", sandbox, server.url, bucket, pg_url, listen=True)
        for i in range(2)
    ]
    daemons = []
    try:
        for member in members:
            _with_events(member, app, secret)
            member.list_tasks(*ids)
            daemons.append(await member.start())
        await wait_until(lambda: archived_ids(bucket) >= set(ids), 60, "every task archived")
        await app.wait_for(len(ids), timeout=30)
        await asyncio.sleep(3)  # both senders look again (every second): nothing more comes
        acknowledged = Counter(app.ids())
        assert app.bad_signatures == 0
        assert set(acknowledged.values()) == {1}, acknowledged  # each webhook-id once
        posted = Counter(webhook_id for webhook_id, _ in app.attempts)
        assert set(posted.values()) == {1}, posted  # not even posted twice
        assert not [e for d in daemons for e in d.named("events_state_unusable")]
        archived = [t["body"]["data"]["task_id"] for t in app.taken]
        assert sorted(archived) == ids
        assert {t["body"]["type"] for t in app.taken} == {"task.archived"}

        # the pull feed: the same events, in ID order, from either daemon
        one, two = await _feed(members[0]), await _feed(members[1])
        assert one == two and [e["id"] for e in one] == sorted(e["id"] for e in one)
        assert {e["webhook_id"] for e in one} == set(acknowledged)

        # `events` on the shared state: nothing left to send; --redeliver beside the daemons
        # marks one due and a daemon sends it again under the same webhook-id
        listed = await _cli(members[0], "events")
        assert listed.returncode == 0, listed.stderr
        assert "0 event deliveries still to make" in listed.stdout
        again = one[0]["webhook_id"]
        redone = await _cli(members[0], "events", "--redeliver", again)
        assert redone.returncode == 0, redone.stderr
        assert "the running daemon sends them" in redone.stdout
        await app.wait_for(len(ids) + 1, timeout=15)
        assert app.ids()[-1] == again

        for d in daemons:
            assert await d.stop() == 0
        # without a daemon alive, the command sends it itself
        sent = await _cli(members[1], "events", "--redeliver", str(one[1]["id"]))
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert "1 events sent again, 0 deliveries failed" in sent.stdout
        assert app.ids()[-1] == one[1]["webhook_id"] and app.bad_signatures == 0
    finally:
        for d in daemons:
            await d.kill()
        await app.stop()
