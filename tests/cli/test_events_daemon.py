"""Task events from the real daemon (a subprocess) to a real application endpoint on loopback
that checks every signature with the standardwebhooks library: what arrives, the pull feed,
`kill -9` with events in the outbox, and the `events` command beside and without a daemon."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from alert_receiver import Receiver
from daemons import Site
from event_receiver import EventReceiver, free_port, new_secret

TOKEN = "events-test-token-0123456789"
FAST = {"event_retry_scale": 0.001}  # 5 s → 5 ms, 5 min → 0.3 s, 30 min → 1.8 s


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[EventReceiver]:
    secret = new_secret()
    (tmp_path / "events.secret").write_text(secret + "\n", encoding="utf-8")
    receiver = EventReceiver(secret)
    try:
        yield receiver
    finally:
        await receiver.stop()


@pytest.fixture
def site(daemon_site: Site) -> Site:
    return daemon_site


def configure(
    site: Site, app: EventReceiver, *, public: str = "", events: str = "", more: str = ""
) -> int:
    """archive.toml with [events] to `app` and the intake; returns the intake's port."""
    port = free_port()
    (site.root / "intake-token").write_text(TOKEN, encoding="utf-8")
    site.configure(
        storage=f'path = "archive"\npublic_base_url = "{public}"',
        extra=f"""
[intake]
listen = "127.0.0.1:{port}"
token_file = "intake-token"

[events]
urls = ["{app.url}"]
secret_file = "events.secret"
timeout_s = 1
{events}
{more}
""",
    )
    return port


async def get_json(url: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        return resp.status, await resp.json()


async def until(check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_the_daemon_sends_each_end_once_with_urls_and_serves_the_same_feed(
    site: Site, app: EventReceiver
) -> None:
    (site.root / "archive").mkdir()
    files = web.Application()
    files.router.add_static("/a/", site.root / "archive")
    runner = web.AppRunner(files, access_log=None)
    await runner.setup()
    static_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", static_port).start()
    try:
        await app.start()
        port = configure(site, app, public=f"http://127.0.0.1:{static_port}/a")
        sb = site.sandbox
        sb.add_music("song_a")
        sb.add_music("bad_b", fail_status="SENSITIVE_WORD_ERROR", error_message="not allowed")
        # Made 13 days ago and still generating: its files expire within 2 days.
        sb.add_music("old_c", ready_after_s=10**8, created_ago_s=13 * 86400)
        site.list_tasks("song_a", "bad_b", "old_c")
        daemon = await site.daemon()
        taken = await app.wait_for(3)
        assert app.bad_signatures == 0
        by_type = {t["body"]["type"]: t["body"]["data"] for t in taken}
        assert set(by_type) == {"task.archived", "task.failed", "task.at_risk"}
        assert by_type["task.at_risk"]["task_id"] == "old_c"
        assert by_type["task.at_risk"]["outcome"] == "pending"
        assert by_type["task.failed"]["error"]["message"] == "not allowed"
        song = by_type["task.archived"]
        async with aiohttp.ClientSession() as http:
            for f in song["files"]:
                async with http.get(f["url"]) as resp:
                    assert await resp.read() == (site.archive / f["path"]).read_bytes()

        # GET /tasks/<id> carries the same files; the feed the same events, oldest first.
        status, task = await get_json(f"http://127.0.0.1:{port}/tasks/song_a")
        assert status == 200 and task["files"] == song["files"]
        status, feed = await get_json(f"http://127.0.0.1:{port}/events?after=0&limit=2")
        assert status == 200 and len(feed["events"]) == 2
        status, rest = await get_json(f"http://127.0.0.1:{port}/events?after={feed['next_after']}")
        events = feed["events"] + rest["events"]
        assert [e["id"] for e in events] == sorted(e["id"] for e in events)
        assert {e["webhook_id"] for e in events} == set(app.ids())
        assert {e["type"]: e["data"] for e in events}["task.archived"] == song
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/events") as resp:
                assert resp.status == 401
            bad = {"Authorization": f"Bearer {TOKEN}"}
            async with http.get(f"http://127.0.0.1:{port}/events?limit=0", headers=bad) as resp:
                assert resp.status == 400 and "limit" in (await resp.json())["error"]

        # Once each: the at-risk watch looks again, a SIGHUP rereads the list.
        await daemon.send(signal.SIGHUP)
        await asyncio.sleep(1.5)
        assert len(app.taken) == 3
        assert await daemon.stop() == 0
    finally:
        await runner.cleanup()


async def test_after_kill_9_what_was_waiting_is_delivered_and_nothing_acknowledged_again(
    site: Site, app: EventReceiver
) -> None:
    alerts = await Receiver().start()
    configure(site, app, more=f'[notify]\nurls = ["{alerts.url}"]')
    for n in range(3):
        site.sandbox.add_music(f"song_{n}", tracks=1)
    site.list_tasks("song_0")
    await app.start()
    daemon = await site.daemon(tuning=FAST)
    [first] = await app.wait_for(1)
    await until(lambda: not daemon.named("event_retry_later") and len(app.attempts) == 1)
    await app.stop()  # the application goes down: what follows waits in the outbox
    site.list_tasks("song_0", "song_1", "song_2")
    await site.wait_archived("song_1", "song_2")
    await daemon.wait_for("event_retry_later")
    [alert] = await alerts.wait_for(1)  # 5 failed attempts in a row
    assert alert["event"] == "events_failing" and app.url in alert["message"]
    await alerts.stop()
    code, out, _ = await site.cli("events", "--json")
    waiting = json.loads(out)["deliveries"]
    assert code == 0 and sorted(d["task_id"] for d in waiting) == ["song_1", "song_2"]
    await daemon.kill()  # kill -9

    await app.start()
    again = await site.daemon(tuning=FAST)
    await app.wait_for(3)
    await asyncio.sleep(1.0)  # time for a wrong resend of song_0's event to show
    ids = app.ids()
    assert len(ids) == len(set(ids)) == 3 and first["id"] == ids[0]
    assert {t["body"]["data"]["task_id"] for t in app.taken} == {"song_0", "song_1", "song_2"}
    assert {d["webhook_id"] for d in waiting} <= set(ids)  # the ids the outbox kept
    code, out, _ = await site.cli("events")
    assert code == 0 and out.strip().endswith("0 event deliveries still to make")
    assert await again.stop() == 0


async def test_given_up_events_are_listed_and_redelivered_under_their_webhook_id(
    site: Site, app: EventReceiver
) -> None:
    alerts = await Receiver().start()
    configure(site, app, events="give_up_after_s = 0.5", more=f'[notify]\nurls = ["{alerts.url}"]')
    site.sandbox.add_music("song_a", tracks=1)
    site.list_tasks("song_a")
    daemon = await site.daemon(tuning=FAST)
    await daemon.wait_for("event_given_up")
    # A URL that keeps failing is a [notify] alert, as is the event given up.
    [alert] = await alerts.wait_for(1)
    assert alert["event"] == "event_given_up" and alert["task_id"] == "song_a"
    await alerts.stop()
    code, out, _ = await site.cli("events", "--failed", "--json")
    [failed] = json.loads(out)["deliveries"]
    assert code == 0 and failed["status"] == "given_up" and failed["task_id"] == "song_a"
    assert "Connect" in failed["last_error"] or "connect" in failed["last_error"]
    code, out, _ = await site.cli("events", "--failed")
    assert out.startswith(f"{failed['id']}  {failed['webhook_id']}  task.archived  song_a")

    # Beside the running daemon: marked due again, and the daemon sends it.
    await app.start()
    code, out, err = await site.cli("events", "--redeliver", str(failed["id"]))
    assert code == 0, err
    assert "the running daemon sends them" in out
    await app.wait_for(1)
    assert await daemon.stop() == 0

    # Without a daemon, the command sends it itself: the same webhook-id again.
    code, out, err = await site.cli("events", "--redeliver", failed["webhook_id"])
    assert code == 0, err
    assert "1 events sent again, 0 deliveries failed" in out
    assert app.ids() == [failed["webhook_id"], failed["webhook_id"]]
    assert app.bad_signatures == 0

    code, _, err = await site.cli("events", "--redeliver", "msg_unknown")
    assert code == 2 and "no such event: msg_unknown" in err
