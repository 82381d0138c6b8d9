"""What the API client makes of each answer, against the stand-in API over real loopback HTTP:
every status of both endpoints, unknown tasks and which endpoint a bare ID belongs to, an answer
about another task; and the classification table itself, without a network."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest
from apiclients import COVER, TASK, FakeClock, make_api

from archiver.api.answers import MAX_RETRY_AFTER_S, classify_answer
from archiver.api.backoff import parse_retry_after
from archiver.api.client import PATHS
from archiver.errors import ApiRejected, TransientApiError, UnknownTask, WrongEndpoint
from archiver.kinds import media
from archiver.kinds.records import CoverRecord, Kind, MusicRecord
from archiver.kinds.timestamps import utc_iso_of
from archiver.sandbox import Sandbox
from archiver.sandbox.scenarios import add_demo_tasks

OTHER = "00000000111111112222222233333333"


def classify(kind: Kind, status: int, body: bytes) -> MusicRecord | CoverRecord:
    """`classify_answer` for a call about TASK at the endpoint's usual path."""
    return classify_answer(kind, TASK, status, body, path=PATHS[kind])


async def fetch(http: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
    async with http.get(url) as resp:
        return resp.status, await resp.read()


# --- every status of both endpoints, parsed through the client --------------------------------


@pytest.fixture
async def clocked() -> AsyncIterator[tuple[Sandbox, FakeClock]]:
    clock = FakeClock()
    sb = Sandbox(clock=clock)
    await sb.start()
    try:
        yield sb, clock
    finally:
        await sb.stop()


async def test_music_task_goes_through_every_status_from_its_first_poll(clocked, http):
    sb, clock = clocked
    sb.add_music(TASK, ready_after_s=100.0, title="Song")
    api = make_api(sb, http)
    clock.now += 500  # time before the first poll does not count

    pending = await api.record(Kind.MUSIC, TASK)
    assert isinstance(pending, MusicRecord)
    assert (pending.status, pending.tracks) == ("PENDING", ())
    assert pending.raw["response"]["sunoData"] is None

    clock.now += 30
    text = await api.record(Kind.MUSIC, TASK)
    assert text.status == "TEXT_SUCCESS"
    assert [(t.title, t.audio_url, t.duration) for t in text.tracks] == [("Song", "", None)] * 2

    clock.now += 50
    first = await api.record(Kind.MUSIC, TASK)
    assert first.status == "FIRST_SUCCESS"
    assert first.tracks[0].audio_url and first.tracks[0].duration == 3.0
    assert first.tracks[1].audio_url == ""

    clock.now += 20
    done = await api.record(Kind.MUSIC, TASK)
    assert done.status == "SUCCESS"
    assert all(t.audio_url.startswith(sb.base_url + "/files/") for t in done.tracks)
    assert len({t.audio_id for t in done.tracks}) == 2
    for track in done.tracks:
        status, body = await fetch(http, track.audio_url)
        assert status == 200 and media.sniff(body[:16]) == media.MP3
        status, body = await fetch(http, track.image_url)
        assert status == 200 and media.sniff(body[:16]) == media.JPEG


async def test_ready_after_zero_is_success_at_once(sandbox, http):
    sandbox.add_music(TASK, tracks=3)
    record = await make_api(sandbox, http).record(Kind.MUSIC, TASK)
    assert record.status == "SUCCESS" and len(record.tracks) == 3
    assert all(t.audio_url for t in record.tracks)


@pytest.mark.parametrize("status", ["GENERATE_AUDIO_FAILED", "SENSITIVE_WORD_ERROR"])
async def test_failed_music_task_carries_error_code_and_message(sandbox, http, status):
    sandbox.add_music(TASK, fail_status=status)
    record = await make_api(sandbox, http).record(Kind.MUSIC, TASK)
    assert record.status == status
    assert (record.error_code, record.error_message) == (
        400,
        "Lyrics contained copyrighted material",
    )
    assert record.raw["response"]["errorCode"] == 400
    assert record.tracks == ()


async def test_callback_exception_has_complete_tracks(sandbox, http):
    sandbox.add_music(TASK, callback_exception=True)
    record = await make_api(sandbox, http).record(Kind.MUSIC, TASK)
    assert record.status == "CALLBACK_EXCEPTION"
    assert all(t.audio_url and t.duration for t in record.tracks)


@pytest.mark.parametrize("form", ["null", "empty", "no_response"])
async def test_pending_forms_have_no_tracks(clocked, http, form):
    sb, _ = clocked
    sb.add_music(TASK, ready_after_s=60, pending_data=form)
    record = await make_api(sb, http).record(Kind.MUSIC, TASK)
    assert (record.status, record.tracks) == ("PENDING", ())


async def test_create_time_as_epoch_ms_and_as_string_give_the_same_instant(sandbox, http):
    sandbox.add_music(TASK, create_time="ms")
    sandbox.add_music(TASK[::-1], create_time="string")
    api = make_api(sandbox, http)
    as_ms = await api.record(Kind.MUSIC, TASK)
    as_text = await api.record(Kind.MUSIC, TASK[::-1])
    assert isinstance(as_ms.raw["response"]["sunoData"][0]["createTime"], int)
    assert isinstance(as_text.raw["response"]["sunoData"][0]["createTime"], str)
    assert isinstance(as_ms.raw["createTime"], int) and isinstance(as_text.raw["createTime"], str)
    asked_at = time.time()
    for record in (as_ms, as_text):  # both created at their first poll, a moment ago
        assert record.created_time is not None
        assert asked_at - 2 < record.created_time <= asked_at
        assert record.tracks[0].created_at == utc_iso_of(record.created_time)


async def test_unknown_fields_are_kept_in_raw(sandbox, http):
    sandbox.add_music(TASK, extra_fields=True)
    sandbox.add_cover(COVER, extra_fields=True)
    api = make_api(sandbox, http)
    music = await api.record(Kind.MUSIC, TASK)
    assert music.raw["newFeatureFlag"] == {"nested": [1, "two", None]}
    assert music.raw["response"]["sunoData"][0]["isNewFieldFrom2026"] is True
    cover = await api.record(Kind.COVER, COVER)
    assert cover.raw["coverStyle"] == "sandbox"


async def test_source_urls_are_refused_and_stream_is_not_the_file(sandbox, http):
    sandbox.add_music(TASK, source_urls="forbidden")
    record = await make_api(sandbox, http).record(Kind.MUSIC, TASK)
    track = record.tracks[0]
    for url in (track.source_audio_url, track.source_image_url):
        assert (await fetch(http, url))[0] == 403
    raw = record.raw["response"]["sunoData"][0]
    assert (await fetch(http, raw["sourceStreamAudioUrl"]))[0] == 403
    _, stream = await fetch(http, raw["streamAudioUrl"])
    _, audio = await fetch(http, track.audio_url)
    assert media.sniff(stream[:16]) == media.MP3 and len(stream) < len(audio)


async def test_working_source_urls_serve_a_copy(sandbox, http):
    sandbox.add_music(TASK, source_urls="ok")
    track = (await make_api(sandbox, http).record(Kind.MUSIC, TASK)).tracks[0]
    assert (await fetch(http, track.source_audio_url)) == (await fetch(http, track.audio_url))


async def test_nan_and_infinity_in_the_json_arrive_as_null(sandbox, http):
    # The manifest keeps `raw` and its encoder refuses NaN: the task would never be archived.
    sandbox.add_music(TASK, non_finite=True)
    record = await make_api(sandbox, http).record(Kind.MUSIC, TASK)
    assert record.raw["creditsLeft"] is None
    assert [t["duration"] for t in record.raw["response"]["sunoData"]] == [None, None]
    assert [t.duration for t in record.tracks] == [None, None]
    json.dumps(record.raw, allow_nan=False)


async def test_path_like_titles_and_audio_ids_arrive_verbatim(sandbox, http):
    sandbox.add_music(TASK, title="../../etc/passwd", audio_ids=["a/b\\c", "../x"])
    record = await make_api(sandbox, http).record(Kind.MUSIC, TASK)
    assert [t.title for t in record.tracks] == ["../../etc/passwd"] * 2
    assert [t.audio_id for t in record.tracks] == ["a/b\\c", "../x"]


async def test_a_track_can_stay_without_audio_in_success(sandbox, http):
    sandbox.add_music(TASK, missing_audio=2)
    record = await make_api(sandbox, http).record(Kind.MUSIC, TASK)
    assert record.status == "SUCCESS"
    assert record.tracks[0].audio_url and record.tracks[1].audio_url == ""


async def test_cover_task_goes_pending_generating_success(clocked, http):
    sb, clock = clocked
    sb.add_cover(COVER, ready_after_s=10, parent_task_id=TASK, images=2)
    api = make_api(sb, http)
    pending = await api.record(Kind.COVER, COVER)
    assert isinstance(pending, CoverRecord)
    assert (pending.status, pending.images) == ("PENDING", ())
    clock.now += 5
    assert (await api.record(Kind.COVER, COVER)).status == "GENERATING"
    clock.now += 5
    done = await api.record(Kind.COVER, COVER)
    assert done.status == "SUCCESS" and done.parent_task_id == TASK and len(done.images) == 2
    for url in done.images:
        status, body = await fetch(http, url)
        assert status == 200 and media.sniff(body[:16]) == media.PNG


async def test_failed_cover_task(sandbox, http):
    sandbox.add_cover(COVER, failed=True)
    record = await make_api(sandbox, http).record(Kind.COVER, COVER)
    assert (record.status, record.images, record.error_code) == ("FAILED", (), 500)


async def test_every_demo_task_is_readable(sandbox, http):
    lines = [line for line in add_demo_tasks(sandbox) if not line.startswith("#")]
    api = make_api(sandbox, http)
    seen = set()
    for line in lines:
        prefix, _, task_id = line.strip().rpartition(":")
        try:
            _, record = await api.lookup(task_id, Kind(prefix) if prefix else None)
        except UnknownTask:  # the cover task, whose `data` is empty for its first second
            seen.add("unknown yet")
        else:
            seen.add(record.status)
    assert {"SUCCESS", "CALLBACK_EXCEPTION", "PENDING", "SENSITIVE_WORD_ERROR"} <= seen
    assert "unknown yet" in seen


# --- unknown tasks and endpoint detection -----------------------------------------------------


@pytest.mark.parametrize("form", ["null", "code404", "code422", "http404", "http422"])
async def test_unknown_task_forms(sandbox, http, form):
    sandbox.api.unknown_form = form
    with pytest.raises(UnknownTask):
        await make_api(sandbox, http).record(Kind.MUSIC, TASK)
    assert sandbox.api.calls[("music", TASK)] == 1  # never retried


async def test_a_task_of_the_other_endpoint_is_unknown(sandbox, http):
    sandbox.add_music(TASK)
    sandbox.add_cover(COVER)
    api = make_api(sandbox, http)
    with pytest.raises(UnknownTask):
        await api.record(Kind.COVER, TASK)
    with pytest.raises(UnknownTask):
        await api.record(Kind.MUSIC, COVER)


async def test_bare_cover_id_is_found_after_one_music_call(sandbox, http):
    sandbox.add_cover(COVER)
    kind, record = await make_api(sandbox, http).lookup(COVER, None)
    assert kind is Kind.COVER and isinstance(record, CoverRecord)
    assert sandbox.api.calls == {("music", COVER): 1, ("cover", COVER): 1}


async def test_bare_music_id_needs_one_call(sandbox, http):
    sandbox.add_music(TASK)
    kind, _ = await make_api(sandbox, http).lookup(TASK, None)
    assert kind is Kind.MUSIC and sandbox.api.total_calls == 1


async def test_known_kind_asks_only_its_endpoint(sandbox, http):
    sandbox.add_cover(COVER)
    kind, _ = await make_api(sandbox, http).lookup(COVER, Kind.COVER)
    assert kind is Kind.COVER and sandbox.api.calls == {("cover", COVER): 1}


async def test_id_unknown_to_every_endpoint(sandbox, http):
    with pytest.raises(UnknownTask, match="neither the music nor the cover nor the wav"):
        await make_api(sandbox, http).lookup(TASK, None)
    assert sandbox.api.total_calls == len(Kind)  # each endpoint asked once


# --- an answer about another task -------------------------------------------------------------


@pytest.mark.parametrize("kind", [Kind.MUSIC, Kind.COVER])
async def test_an_answer_about_another_task_is_transient(sandbox, http, kind):
    add = sandbox.add_music if kind is Kind.MUSIC else sandbox.add_cover
    add(TASK)
    add(OTHER)
    sandbox.api.fail_next(1, "other_task")
    with pytest.raises(TransientApiError, match=f"answered for task '{OTHER}', not '{TASK}'"):
        await make_api(sandbox, http, attempts=1).record(kind, TASK)


async def test_an_answer_about_another_task_is_retried_until_it_is_the_right_one(sandbox, http):
    sandbox.add_music(TASK)
    sandbox.add_music(OTHER)
    sandbox.api.fail_next(1, "other_task")
    record = await make_api(sandbox, http).record(Kind.MUSIC, TASK)
    assert record.task_id == TASK and record.raw["taskId"] == TASK
    assert sandbox.api.calls[("music", TASK)] == 2


# --- the classification table, without a network ----------------------------------------------


@pytest.mark.parametrize("code", [400, 409, 413, 451])  # 402: no credits (test_expiry.py)
@pytest.mark.parametrize("as_http", [True, False])
def test_other_4xx_are_rejections(code, as_http):
    body = json.dumps({"code": code, "msg": "no", "data": None}).encode()
    with pytest.raises(ApiRejected, match=str(code)):
        classify(Kind.MUSIC, code if as_http else 200, body)


@pytest.mark.parametrize("body", [b"[1, 2]", b'{"msg": "no code"}', b'{"code": 200, "data": 5}'])
def test_odd_json_shapes_are_transient(body):
    with pytest.raises(TransientApiError):
        classify(Kind.COVER, 200, body)


@pytest.mark.parametrize("status", [404, 422])
@pytest.mark.parametrize(
    "body",
    [
        b"<html><body><h1>404 Not Found</h1><hr>nginx</body></html>",
        b"404: Not Found",
        b"",
        b'{"error": "no route"}',
        b'["not", "the", "envelope"]',
    ],
)
def test_404_or_422_without_the_vendors_json_is_a_wrong_endpoint(status, body):
    with pytest.raises(WrongEndpoint, match=rf"HTTP {status} for {PATHS[Kind.MUSIC]}.*base_url"):
        classify(Kind.MUSIC, status, body)


@pytest.mark.parametrize("status", [404, 422])
@pytest.mark.parametrize("as_http", [True, False])
def test_404_or_422_in_the_vendors_json_is_an_unknown_task(status, as_http):
    body = json.dumps({"code": status, "msg": "not found", "data": None}).encode()
    with pytest.raises(UnknownTask):
        classify(Kind.MUSIC, status if as_http else 200, body)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_every_form_of_nan_and_infinity_becomes_null(literal):
    track = f'{{"id": "a", "audioUrl": "https://x.example/a.mp3", "duration": {literal}}}'
    data = f'{{"taskId": "{TASK}", "status": "SUCCESS", "response": {{"sunoData": [{track}]}}}}'
    body = f'{{"code": 200, "msg": "success", "data": {data}}}'.encode()
    record = classify(Kind.MUSIC, 200, body)
    assert record.raw["response"]["sunoData"][0]["duration"] is None
    json.dumps(record.raw, allow_nan=False)  # what the manifest encoder demands


def test_retry_after_forms():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    cap = MAX_RETRY_AFTER_S
    assert parse_retry_after("2", cap_s=cap) == 2.0
    assert parse_retry_after("0.3", cap_s=cap) == 0.3
    date = "Thu, 01 Jan 2026 00:00:10 GMT"
    assert parse_retry_after(date, cap_s=cap, now=lambda: now) == 10.0
    assert parse_retry_after("soon", cap_s=cap) is None
    assert parse_retry_after("nan", cap_s=cap) is None
    assert parse_retry_after(None, cap_s=cap) is None
    assert parse_retry_after("99999999", cap_s=cap) == 3600.0
