"""Each task kind's record, decision and callback shape, on the vendors' documented examples
(API-NOTES §2 and §3), pure: no network, no clock."""

from __future__ import annotations

import json
from typing import Any

import pytest

from archiver.kinds import KINDS, PREFIXES, PROBE_ORDER, callback_kind, decide, files_to_fetch
from archiver.kinds.base import ArchiveNow, GiveUp, Kind, PollAgain
from archiver.kinds.media import JSON, MP3, MP4, TEXT, WAV
from archiver.kinds.outputs import INCOMPLETE_AFTER_S
from archiver.kinds.records import parse_cover

DAY = 86400.0
TASK = "3e63b4cc88d52611159371f6af5571e7"

WAV_DATA: dict[str, Any] = {
    "taskId": TASK, "musicId": "8551-662c", "musicIndex": 0,
    "callbackUrl": "https://api.example.com/callback", "completeTime": "2025-01-01 00:10:00",
    "response": {"audioWavUrl": "https://example.com/s/04e6-e727.wav"},
    "successFlag": "SUCCESS", "createTime": "2025-01-01 00:00:00",
    "errorCode": None, "errorMessage": None,
}  # fmt: skip
_NULL_STEMS = {
    f"{stem}Url": None
    for stem in ("backingVocals", "drums", "bass", "guitar", "keyboard", "percussion",
                 "strings", "synth", "fx", "brass", "woodwinds")
}  # fmt: skip
SEPARATE_VOCAL: dict[str, Any] = {
    "taskId": TASK, "musicId": "376c687e", "musicIndex": 0, "completeTime": 1753782937000,
    "response": {
        "id": None, "originUrl": None,
        "originData": [
            {"duration": 245.6, "audio_url": "https://example001.mp3",
             "stem_type_group_name": "Vocals", "id": "3d7021c9"},
            {"duration": 245.6, "audio_url": "https://example002.mp3",
             "stem_type_group_name": "Instrumental", "id": "d92a13bf"},
        ],
        "instrumentalUrl": "https://file.aiquickdraw.com/s/d92a13bf_Instrumental.mp3",
        "vocalUrl": "https://file.aiquickdraw.com/s/3d7021c9_Vocals.mp3",
        **_NULL_STEMS,
    },
    "successFlag": "SUCCESS", "createTime": 1753782854000, "errorCode": None, "errorMessage": None,
}  # fmt: skip
MIDI_DATA: dict[str, Any] = {
    "taskId": TASK, "recordTaskId": -1, "audioId": "e231-8cadc7dc",
    "completeTime": 1760335255000,
    "midiData": {"state": "complete", "instruments": [
        {"name": "Drums", "notes": [{"pitch": 73, "start": 0.0364, "end": 0.1822, "velocity": 1}]},
    ]},
    "successFlag": 1, "createTime": 1760335251000, "errorCode": None, "errorMessage": None,
}  # fmt: skip
MP4_DATA: dict[str, Any] = {
    **{k: v for k, v in WAV_DATA.items() if k != "response"},
    "response": {"videoUrl": "https://example.com/videos/video_847715e66259.mp4"},
}
LYRICS_DATA: dict[str, Any] = {
    "taskId": TASK, "param": '{"prompt":"A song about peaceful night in the city"}',
    "response": {"taskId": TASK, "data": [
        {"text": "[Verse]\n我穿越城市黑暗夜", "title": "钢铁侠", "status": "complete",
         "errorMessage": ""},
        {"text": "", "title": "钢铁侠", "status": "failed", "errorMessage": "sensitive"},
        {"text": "[Verse]\n风在呼唤我名字", "title": "钢铁侠", "status": "complete",
         "errorMessage": ""},
    ]},
    "status": "SUCCESS", "type": "LYRICS", "errorCode": None, "errorMessage": None,
}  # fmt: skip


def parse(kind: Kind, data: dict[str, Any]) -> Any:
    return KINDS[kind].parse(data, TASK)


def run(record: Any, age_s: float = 0.0, give_up_after_s: float = DAY) -> Any:
    return decide(record, age_s=age_s, give_up_after_s=give_up_after_s, last_status=None)


def names(record: Any) -> dict[str, str]:
    return {spec.key_stem.removeprefix(f"{TASK}/"): spec.role for spec in files_to_fetch(record)}


# --- the registry -------------------------------------------------------------------------------


def test_the_registry_names_every_kind_with_its_endpoint_in_the_spec_order() -> None:
    assert tuple(Kind) == PROBE_ORDER
    assert PROBE_ORDER[:2] == (Kind.MUSIC, Kind.COVER)  # what users list most costs one call
    assert set(PREFIXES) == {"music", "cover", "wav", "stems", "mp4", "midi", "lyrics"}
    assert KINDS[Kind.STEMS].path == "/api/v1/vocal-removal/record-info"
    assert KINDS[Kind.MIDI].path == "/api/v1/midi/record-info"


# --- records and their files -------------------------------------------------------------------


def test_wav_yields_its_one_url_to_be_checked_as_wav() -> None:
    record = parse(Kind.WAV, WAV_DATA)
    (spec,) = files_to_fetch(record)
    assert (spec.key_stem, spec.role, spec.urls) == (
        f"{TASK}/wav",
        "wav",
        ("https://example.com/s/04e6-e727.wav",),
    )
    assert spec.accept == frozenset({WAV})
    assert isinstance(run(record), ArchiveNow)


def test_mp4_yields_the_video_to_be_checked_as_mp4() -> None:
    (spec,) = files_to_fetch(parse(Kind.MP4, MP4_DATA))
    assert (spec.role, spec.accept) == ("video", frozenset({MP4}))


def test_stems_skip_null_fields_and_keep_origin_data() -> None:
    record = parse(Kind.STEMS, SEPARATE_VOCAL)
    assert names(record) == {
        "instrumental": "instrumental",
        "vocals": "vocals",
        "origin-1-vocals": "origin",
        "origin-2-instrumental": "origin",
    }
    assert all(spec.accept == frozenset({MP3}) for spec in files_to_fetch(record))


def test_split_stem_names_each_stem_as_the_api_does() -> None:
    response = dict(SEPARATE_VOCAL["response"], instrumentalUrl=None, originData=[])
    response |= {"backingVocalsUrl": "https://x.test/bv.mp3", "drumsUrl": "https://x.test/d.mp3"}
    record = parse(Kind.STEMS, dict(SEPARATE_VOCAL, response=response))
    assert names(record) == {
        "vocals": "vocals",
        "backing_vocals": "backing_vocals",
        "drums": "drums",
    }


def test_the_same_url_in_two_stem_fields_is_fetched_once() -> None:
    url = "https://x.test/same.mp3"
    response = dict(SEPARATE_VOCAL["response"], originData=[], vocalUrl=url, originUrl=url)
    assert len(files_to_fetch(parse(Kind.STEMS, dict(SEPARATE_VOCAL, response=response)))) == 2


def test_midi_notes_are_stored_inline_as_json() -> None:
    (spec,) = files_to_fetch(parse(Kind.MIDI, MIDI_DATA))
    assert (spec.key_stem, spec.role, spec.urls, spec.accept) == (
        f"{TASK}/midi",
        "midi",
        (),
        frozenset({JSON}),
    )
    assert spec.inline is not None and json.loads(spec.inline) == MIDI_DATA["midiData"]


def test_lyrics_variants_become_numbered_texts_and_one_json() -> None:
    record = parse(Kind.LYRICS, LYRICS_DATA)
    specs = {spec.key_stem.removeprefix(f"{TASK}/"): spec for spec in files_to_fetch(record)}
    assert list(specs) == ["lyrics-1", "lyrics-3", "lyrics"]  # the failed variant has no text
    assert specs["lyrics-1"].inline == "[Verse]\n我穿越城市黑暗夜".encode()
    assert specs["lyrics-1"].accept == frozenset({TEXT})
    assert json.loads(specs["lyrics"].inline or b"") == LYRICS_DATA["response"]["data"]
    assert {spec.role for spec in specs.values()} == {"lyrics"}


@pytest.mark.parametrize("times", [("2025-01-01 00:00:00", "2025-01-01 00:10:00"), (1, 2)])
def test_string_and_epoch_ms_times_both_parse(times: tuple[Any, Any]) -> None:
    data = dict(WAV_DATA, createTime=times[0], completeTime=times[1])
    record = parse(Kind.WAV, data)
    assert isinstance(run(record), ArchiveNow)
    assert record.created_time is not None and record.completed_time is not None
    assert record.completed_time > record.created_time


def test_a_record_about_another_task_is_refused() -> None:
    with pytest.raises(ValueError, match="answered for task"):
        KINDS[Kind.WAV].parse(WAV_DATA, "another")


# --- finished, failed, waiting -------------------------------------------------------------------


@pytest.mark.parametrize("kind", [Kind.WAV, Kind.STEMS, Kind.MP4])
def test_pending_string_flag_waits_with_null_response(kind: Kind) -> None:
    data = dict(WAV_DATA, successFlag="PENDING", response=None)
    decision = run(parse(kind, data), age_s=5)
    assert isinstance(decision, PollAgain) and decision.delay_s >= 2


@pytest.mark.parametrize(
    ("kind", "flag"),
    [
        (Kind.WAV, "CREATE_TASK_FAILED"),
        (Kind.WAV, "GENERATE_WAV_FAILED"),
        (Kind.STEMS, "GENERATE_AUDIO_FAILED"),
        (Kind.MP4, "GENERATE_MP4_FAILED"),
    ],
)
def test_failure_flags_end_the_task_failed(kind: Kind, flag: str) -> None:
    data = dict(WAV_DATA, successFlag=flag, response=None, errorCode=501, errorMessage="failed")
    record = parse(kind, data)
    assert run(record) == ArchiveNow((), task_failed=True)
    assert (record.error_code, record.error_message) == (501, "failed")


def test_midi_flag_2_is_failed_while_the_cover_flag_2_is_generating() -> None:
    midi = parse(Kind.MIDI, dict(MIDI_DATA, successFlag=2, midiData=None))
    assert midi.status == "CREATE_TASK_FAILED" and run(midi) == ArchiveNow((), task_failed=True)
    midi3 = parse(Kind.MIDI, dict(MIDI_DATA, successFlag=3, midiData=None))
    assert run(midi3) == ArchiveNow((), task_failed=True)
    cover = parse_cover({"taskId": TASK, "successFlag": 2, "response": None}, TASK)
    assert cover.status == "GENERATING" and isinstance(run(cover), PollAgain)


@pytest.mark.parametrize("flag", [0, "0", None])
def test_midi_waiting(flag: object) -> None:
    assert isinstance(
        run(parse(Kind.MIDI, dict(MIDI_DATA, successFlag=flag, midiData=None))), PollAgain
    )


def test_midi_flag_given_as_a_word_or_digits_is_read() -> None:
    assert parse(Kind.MIDI, dict(MIDI_DATA, successFlag="1")).status == "SUCCESS"
    assert parse(Kind.MIDI, dict(MIDI_DATA, successFlag="SUCCESS")).status == "SUCCESS"


@pytest.mark.parametrize("status", ["GENERATE_LYRICS_FAILED", "SENSITIVE_WORD_ERROR"])
def test_lyrics_failures(status: str) -> None:
    data = dict(LYRICS_DATA, status=status, response=None)
    assert run(parse(Kind.LYRICS, data)) == ArchiveNow((), task_failed=True)


def test_callback_exception_with_its_file_is_archived_like_success() -> None:
    record = parse(Kind.WAV, dict(WAV_DATA, successFlag="CALLBACK_EXCEPTION"))
    assert isinstance(run(record), ArchiveNow) and not run(record).task_failed


def test_success_without_its_file_waits_then_ends_partial() -> None:
    record = parse(Kind.WAV, dict(WAV_DATA, response={"audioWavUrl": None}))
    waiting = run(record, age_s=100)
    assert isinstance(waiting, PollAgain) and waiting.delay_s <= 10  # the file is about to show
    assert run(record, age_s=INCOMPLETE_AFTER_S) == ArchiveNow((), task_failed=False)


def test_an_unfinished_task_gives_up_at_the_deadline() -> None:
    record = parse(Kind.MP4, dict(MP4_DATA, successFlag="PENDING", response=None))
    assert run(record, age_s=100, give_up_after_s=100) == GiveUp(())


def test_a_video_is_asked_less_often_than_a_wav_early_on() -> None:
    wav = run(parse(Kind.WAV, dict(WAV_DATA, successFlag="PENDING", response=None)))
    mp4 = run(parse(Kind.MP4, dict(MP4_DATA, successFlag="PENDING", response=None)))
    assert wav.delay_s < mp4.delay_s


# --- callbacks ------------------------------------------------------------------------------------

CALLBACKS: list[tuple[dict[str, Any], Kind]] = [
    (
        {"code": 200, "msg": "All generated successfully.", "data": {
            "callbackType": "complete", "task_id": "2fac9f72",
            "data": [{"id": "8551", "audio_url": "https://x.test/a.mp3", "title": "Iron Man"}]}},
        Kind.MUSIC,
    ),
    (
        {"code": 200, "data": {"callbackType": "text", "task_id": "2fac9f72", "data": []}},
        Kind.MUSIC,
    ),
    (
        {"code": 200, "data": {"images": ["https://x.test/1.png"], "taskId": "21aee3c3"},
         "msg": "success"},
        Kind.COVER,
    ),
    (
        {"code": 200, "msg": "success",
         "data": {"audioWavUrl": "https://x.test/a.wav", "task_id": "988ec8d3"}},
        Kind.WAV,
    ),
    (
        {"code": 200, "msg": "success",
         "data": {"audio_wav_url": "https://x.test/a.wav", "task_id": "988ec8d3"}},
        Kind.WAV,
    ),
    (
        {"code": 200, "msg": "vocal Removal generated successfully.", "data": {
            "task_id": "3e63b4cc", "vocal_removal_info": {"origin_url": "", "vocal_url": "x"}}},
        Kind.STEMS,
    ),
    (
        {"code": 200, "msg": "MP4 generated successfully.",
         "data": {"task_id": "taskId_774b", "video_url": "https://x.test/v.mp4"}},
        Kind.MP4,
    ),
    (
        {"task_id": "5c79be8e", "code": 200, "msg": "success", "data": {
            "state": "complete", "instruments": [{"name": "Drums", "notes": [
                {"pitch": 73, "start": "0.036458333333333336", "end": "0.18", "velocity": 1}]}]}},
        Kind.MIDI,
    ),
    (
        {"code": 200, "msg": "All generated successfully.", "data": {
            "callbackType": "complete", "taskId": "11dc8b0f",
            "data": [{"text": "[Verse]\n…", "title": "t", "status": "complete"}]}},
        Kind.LYRICS,
    ),
]  # fmt: skip


@pytest.mark.parametrize(("body", "expected"), CALLBACKS)
def test_a_callback_tells_its_kind_by_its_shape(body: dict[str, Any], expected: Kind) -> None:
    assert callback_kind(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"code": 200, "data": None},
        {"code": 200, "data": {"callbackType": "complete", "data": []}},  # no tracks: no kind
        {"code": 200, "data": {"something": "else", "task_id": "x"}},
        ["not", "an", "object"],
    ],
)
def test_a_body_no_kind_knows_is_none(body: Any) -> None:
    assert callback_kind(body if isinstance(body, dict) else {}) is None
