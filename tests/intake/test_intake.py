"""The HTTP intake inside `suno-archiver run`: real HTTP against the daemon as a subprocess,
the stand-in API in the test process counting every record-info call.

Every daemon here polls on the production schedule (a task pending at its first poll is not
polled again for most of a minute), so a poll within seconds of a callback was the callback's.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from daemons import metric, task_calls
from intakes import AUTH, KIE_KEY, TOKEN, IntakeSite

from archiver.intake.signing import signature
from archiver.sandbox import Sandbox, fake_hex_id


def music_callback(task_id: str, stage: str = "complete", **extra: Any) -> dict[str, Any]:
    track = {"id": "a1", "audio_url": "https://vendor.invalid/never-fetched.mp3", "title": "t"}
    return {
        "code": 200,
        "msg": "All generated successfully.",
        "data": {"callbackType": stage, "task_id": task_id, "data": [track], **extra},
    }


def finished(sandbox: Sandbox, task_id: str, after_s: float) -> Callable[[], bool]:
    """The stand-in API says SUCCESS for the task (its clock starts at the first poll)."""
    task = sandbox.api.music[task_id]
    return lambda: task.started is not None and sandbox.api.clock() - task.started >= after_s


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("not within the time")
        await asyncio.sleep(0.05)


# --- callbacks ------------------------------------------------------------------------------


async def test_a_complete_callback_archives_the_task_at_once(
    site: IntakeSite, sandbox: Sandbox
) -> None:
    listed = fake_hex_id("listed")
    sandbox.api.add_music(listed, ready_after_s=1.0)
    site.list_tasks(listed)
    daemon = await site.daemon()
    await until(lambda: task_calls(sandbox, listed) == 1)  # pending: its next poll is ~a minute off
    await asyncio.sleep(1.0)
    assert await site.callback(music_callback(listed)) == (200, {"ok": True, "task_id": listed})
    await site.wait_archived(listed, timeout=10)
    assert task_calls(sandbox, listed) == 2
    # A task nobody listed: added by its callback, then archived.
    new = fake_hex_id("unlisted")
    sandbox.api.add_music(new)
    assert (await site.callback(music_callback(new)))[0] == 200
    await site.wait_archived(new, timeout=10)
    status, info = await site.task(new)
    assert status == 200
    assert info["phase"] == "archived" and info["kind"] == "music"
    assert info["manifest"] == f"{site.archive}/{new}/manifest.json"
    # Once archived, more callbacks cost nothing.
    for stage in ("complete", "first"):
        assert (await site.callback(music_callback(new, stage)))[0] == 200
    _, metrics = await site.get("/metrics")
    assert metric(metrics, 'suno_archiver_intake_callbacks_total{outcome="accepted"}') == 2
    assert metric(metrics, 'suno_archiver_intake_callbacks_total{outcome="duplicate"}') == 2
    assert metric(metrics, "suno_archiver_intake_tasks_added_total") == 1
    assert task_calls(sandbox, new) == 1
    assert await daemon.stop() == 0
    site.check_archive()


async def test_text_and_first_callbacks_poll_at_once_but_archive_only_a_finished_task(
    site: IntakeSite, sandbox: Sandbox
) -> None:
    task_id = fake_hex_id("staged")
    sandbox.api.add_music(task_id, ready_after_s=4.0)  # its clock starts at the first poll
    await site.daemon()
    assert (await site.callback(music_callback(task_id, "text")))[0] == 200
    await until(lambda: task_calls(sandbox, task_id) == 1)
    assert (await site.callback(music_callback(task_id, "first")))[0] == 200
    await until(lambda: task_calls(sandbox, task_id) == 2)
    await asyncio.sleep(0.5)
    assert site.manifest(task_id) is None
    assert (await site.task(task_id))[1]["phase"] == "pending"
    await until(finished(sandbox, task_id, 4.0))
    assert (await site.callback(music_callback(task_id, "complete")))[0] == 200
    await site.wait_archived(task_id, timeout=10)
    assert task_calls(sandbox, task_id) == 3
    manifest = site.manifest(task_id)
    assert manifest is not None and manifest["outcome"] == "archived"
    # The callback's URLs are never fetched: the manifest has the API's, not the callback's.
    assert "vendor.invalid" not in json.dumps(manifest)


async def test_each_kinds_callback_archives_its_task(site: IntakeSite, sandbox: Sandbox) -> None:
    ids = {
        kind: fake_hex_id(f"kind-{kind}")
        for kind in ("cover", "wav", "stems", "mp4", "midi", "lyrics")
    }
    sandbox.add_cover(ids["cover"])
    for kind in ("wav", "stems", "mp4", "midi", "lyrics"):
        sandbox.add_output(kind, ids[kind])  # type: ignore[arg-type]
    await site.daemon()
    bodies = {  # the shapes of API-NOTES.md 3.3 (the URLs in them are never fetched)
        "cover": {"code": 200, "data": {"images": ["https://x/1.png"], "taskId": ids["cover"]}},
        "wav": {"code": 200, "data": {"audioWavUrl": "https://x/a.wav", "task_id": ids["wav"]}},
        "stems": {
            "code": 200,
            "data": {"task_id": ids["stems"], "vocal_removal_info": {"vocal_url": "https://x/v"}},
        },
        "mp4": {"code": 200, "data": {"task_id": ids["mp4"], "video_url": "https://x/v.mp4"}},
        "midi": {
            "task_id": ids["midi"],
            "code": 200,
            "data": {"state": "complete", "instruments": []},
        },
        "lyrics": {
            "code": 200,
            "data": {"callbackType": "complete", "taskId": ids["lyrics"], "data": [{"text": "la"}]},
        },
    }
    for body in bodies.values():
        assert (await site.callback(body))[0] == 200
    await site.wait_archived(*ids.values(), timeout=20)
    for kind, task_id in ids.items():
        assert site.manifest(task_id)["kind"] == kind  # type: ignore[index]
        assert task_calls(sandbox, task_id) == 1  # the shape named the endpoint: no probing
    # A complete callback without any task ID: logged, answered, nothing else.
    no_id = {"code": 200, "data": {"callbackType": "complete", "data": []}}
    assert await site.callback(no_id) == (200, {"ok": True, "task_id": None})
    await site.daemons[-1].wait_for("callback_without_task_id")


async def test_refused_callbacks_change_nothing(site: IntakeSite, sandbox: Sandbox) -> None:
    task_id = fake_hex_id("refused")
    sandbox.api.add_music(task_id)
    await site.daemon()
    wrong = await site.call("POST", "/callback/not-the-token", body=music_callback(task_id))
    assert wrong[0] == 404
    too_big = music_callback(task_id, padding="x" * (1024 * 1024))
    assert (await site.callback(too_big))[0] == 413
    status, body = await site.callback(b'{"code": 200, "data": {', headers={})
    assert status == 400 and body["error"].startswith("malformed JSON")
    status, body = await site.callback({"data": {"task_id": "no/such id"}})
    assert status == 400 and "not a task ID" in body["error"]
    status, body = await site.callback(b"[" * 500_000)
    assert status == 400 and body["error"] == "malformed JSON: nested too deeply"
    # Only the documented methods and paths answer.
    assert (await site.call("GET", f"/callback/{TOKEN}"))[0] == 405
    assert (await site.call("PUT", "/tasks", headers=AUTH))[0] == 405
    assert (await site.call("HEAD", f"/tasks/{task_id}", headers=AUTH))[0] == 405
    assert (await site.call("GET", "/", headers=AUTH))[0] == 404
    assert (await site.call("GET", "/metrics"))[0] == 404
    await asyncio.sleep(0.5)
    assert task_calls(sandbox, task_id) == 0
    assert (await site.task(task_id))[0] == 404
    _, metrics = await site.get("/metrics")
    assert metric(metrics, 'suno_archiver_intake_callbacks_total{outcome="bad_token"}') == 1
    assert metric(metrics, 'suno_archiver_intake_callbacks_total{outcome="malformed"}') == 4


async def test_with_a_kie_key_only_signed_callbacks_are_taken(
    site: IntakeSite, sandbox: Sandbox
) -> None:
    site.configure_intake(signed=True)
    task_id = fake_hex_id("signed")
    sandbox.api.add_music(task_id)
    await site.daemon()
    now = str(int(time.time()))
    stale = str(int(time.time()) - 301)

    def signed(ts: str, sig_task: str = task_id) -> dict[str, str]:
        sig = signature(KIE_KEY.encode(), sig_task, ts)
        return {"X-Webhook-Timestamp": ts, "X-Webhook-Signature": sig}

    for headers in (
        {},
        signed(stale),
        signed(now, "another-task"),
        {**signed(now), "X-Webhook-Signature": "AAAA"},
    ):
        status, body = await site.callback(music_callback(task_id), headers=headers)
        assert status == 401, body
    await asyncio.sleep(0.3)
    assert task_calls(sandbox, task_id) == 0
    assert (await site.callback(music_callback(task_id), headers=signed(now)))[0] == 200
    await site.wait_archived(task_id, timeout=10)
    _, metrics = await site.get("/metrics")
    assert metric(metrics, 'suno_archiver_intake_callbacks_total{outcome="bad_signature"}') == 4


async def test_a_flood_of_duplicate_callbacks_costs_one_poll_per_task(
    site: IntakeSite, sandbox: Sandbox
) -> None:
    ids = [fake_hex_id(f"flood-{i}") for i in range(4)]
    for task_id in ids:
        sandbox.api.add_music(task_id, ready_after_s=600.0)  # pending throughout
    await site.daemon()
    slots = asyncio.Semaphore(50)

    async def send(session: aiohttp.ClientSession, task_id: str) -> int:
        async with (
            slots,
            session.post(
                f"{site.url}/callback/{TOKEN}", json=music_callback(task_id, "first")
            ) as resp,
        ):
            return resp.status

    async with aiohttp.ClientSession() as session:
        statuses = await asyncio.gather(*(send(session, ids[i % 4]) for i in range(1000)))
        assert set(statuses) == {200}
        # Still responsive while the flood is digested.
        assert (await site.task(ids[0]))[1]["phase"] == "pending"
    await asyncio.sleep(1.0)
    assert [task_calls(sandbox, task_id) for task_id in ids] == [1, 1, 1, 1]
    _, metrics = await site.get("/metrics")
    assert metric(metrics, 'suno_archiver_intake_callbacks_total{outcome="duplicate"}') == 996


# --- POST /tasks and GET /tasks/<id> ------------------------------------------------------


async def test_posted_tasks_are_added_polled_and_reported(
    site: IntakeSite, sandbox: Sandbox
) -> None:
    a, b, c = (fake_hex_id(f"posted-{n}") for n in "abc")
    for task_id in (a, b):
        sandbox.api.add_music(task_id)
    sandbox.api.add_cover(c)
    site.list_tasks(a)
    await site.daemon()
    await site.wait_archived(a)
    text = f"# from a script\n{a}\nmusic:{b}\nbogus:{c}\nnot an id\n"
    status, body = await site.call(
        "POST", "/tasks", body=text, headers={**AUTH, "Content-Type": "text/plain"}
    )
    assert status == 202
    assert body["added"] == 1 and body["known"] == 1
    assert [r["line"] for r in body["rejected"]] == [f"bogus:{c}", "not an id"]
    status, body = await site.call(
        "POST", "/tasks", body={"tasks": [f"cover:{c}", b]}, headers=AUTH
    )
    assert status == 202 and body == {"added": 1, "known": 1, "rejected": []}
    await site.wait_archived(b, c, timeout=10)
    status, info = await site.task(c)
    assert status == 200 and info["phase"] == "archived" and info["kind"] == "cover"
    assert (await site.task("never-heard-of"))[0] == 404
    # The Bearer token, and well-formed bodies, are required.
    assert (await site.call("POST", "/tasks", body={"tasks": [b]}))[0] == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await site.call("GET", f"/tasks/{b}", headers=wrong))[0] == 401
    for bad in (b"{not json", b'{"tasks": "abc"}', b'{"tasks": [1]}'):
        status, body = await site.call(
            "POST", "/tasks", body=bad, headers={**AUTH, "Content-Type": "application/json"}
        )
        assert status == 400 and body["error"]
    huge = "\n".join(fake_hex_id(str(i)) for i in range(40_000))
    assert (await site.call("POST", "/tasks", body=huge, headers=AUTH))[0] == 413
    _, metrics = await site.get("/metrics")
    assert metric(metrics, "suno_archiver_intake_tasks_added_total") == 2


async def test_intake_tasks_survive_kill_9_and_list_edits(
    site: IntakeSite, sandbox: Sandbox
) -> None:
    task_id = fake_hex_id("survivor")
    sandbox.api.add_music(task_id, ready_after_s=3.0)
    daemon = await site.daemon()
    status, _ = await site.call("POST", "/tasks", body={"tasks": [task_id]}, headers=AUTH)
    assert status == 202
    daemon.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
    await daemon.kill()
    other = fake_hex_id("listed-later")
    sandbox.api.add_music(other)
    site.list_tasks(other)  # a list that does not name it
    await site.daemon()
    await site.wait_archived(other)
    status, info = await site.task(task_id)
    assert status == 200 and info["phase"] == "pending"
    await until(finished(sandbox, task_id, 3.0))
    assert (await site.callback(music_callback(task_id)))[0] == 200
    await site.wait_archived(task_id, timeout=10)
