"""records: every variant of the record-info `data` object in SPEC parses without raising."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from archiver.kinds.records import CoverRecord, MusicRecord, Track, parse_cover, parse_music

TASK = "5c79a1b2c3d4be8e"
COVER_TASK = "21aee3c3c2a01fa5e030b3799fa4dd56"


def track_json(**overrides: Any) -> dict[str, Any]:
    """One sunoData item as the music endpoint documents it (seed example, IDs unmasked)."""
    item: dict[str, Any] = {
        "id": "e231a5b0-1c2d-4e5f-8a9b-0c1d8cadc7dc",
        "audioUrl": "https://example.cn/e231.mp3",
        "streamAudioUrl": "https://example.cn/stream/e231",
        "imageUrl": "https://example.cn/e231.jpeg",
        "prompt": "[Verse] 夜晚城市 灯火辉煌",
        "modelName": "chirp-v3-5",
        "title": "钢铁侠",
        "tags": "electrifying, rock",
        "createTime": "2025-01-01 00:00:00",
        "duration": 198.44,
    }
    item.update(overrides)
    return item


def music_json(*tracks: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "taskId": TASK,
        "parentMusicId": "",
        "param": '{"prompt":"A calm piano track","customMode":true}',
        "response": {"taskId": TASK, "sunoData": list(tracks)},
        "status": "SUCCESS",
        "type": "GENERATE",
        "errorCode": None,
        "errorMessage": None,
    }
    data.update(overrides)
    return data


def cover_json(**overrides: Any) -> dict[str, Any]:
    """The cover endpoint's documented example."""
    data: dict[str, Any] = {
        "taskId": COVER_TASK,
        "parentTaskId": "73d6128b3523a0079df10da9471017c8",
        "callbackUrl": "https://api.example.com/callback",
        "completeTime": "2025-01-15T10:35:27.000Z",
        "response": {
            "images": [
                "https://tempfile.aiquickdraw.com/s/1753958521_6c1b.png",
                "https://tempfile.aiquickdraw.com/s/1753958524_c153.png",
            ]
        },
        "successFlag": 1,
        "createTime": "2025-01-15T10:33:01.000Z",
        "errorCode": 200,
        "errorMessage": "",
    }
    data.update(overrides)
    return data


# --- music ------------------------------------------------------------------------------------


def test_documented_music_example_parses_into_typed_track() -> None:
    record = parse_music(music_json(track_json()), TASK)
    assert isinstance(record, MusicRecord)
    assert record.task_id == TASK
    assert record.status == "SUCCESS"
    assert record.error_code is None and record.error_message is None
    assert record.tracks == (
        Track(
            audio_id="e231a5b0-1c2d-4e5f-8a9b-0c1d8cadc7dc",
            title="钢铁侠",
            tags="electrifying, rock",
            duration=198.44,
            model_name="chirp-v3-5",
            prompt="[Verse] 夜晚城市 灯火辉煌",
            created_at="2025-01-01T00:00:00Z",
            audio_url="https://example.cn/e231.mp3",
            image_url="https://example.cn/e231.jpeg",
            source_audio_url="",
            source_image_url="",
        ),
    )


@pytest.mark.parametrize(
    ("create_time", "expected"),
    [
        (1735689600000, "2025-01-01T00:00:00Z"),  # epoch ms, as the live API sends it
        (1735689600123.0, "2025-01-01T00:00:00Z"),  # float ms
        ("1735689600000", "2025-01-01T00:00:00Z"),  # ms as a digit string
        (1735689600, "2025-01-01T00:00:00Z"),  # epoch seconds, just in case
        ("2025-01-01 00:00:00", "2025-01-01T00:00:00Z"),  # documented form, naive = UTC
        ("2025-01-15T10:33:01.000Z", "2025-01-15T10:33:01Z"),  # ISO with Z and fractions
        ("2025-01-01T08:00:00+08:00", "2025-01-01T00:00:00Z"),  # ISO with an offset
        ("2025-01-01", "2025-01-01T00:00:00Z"),
        ("yesterday", None),
        ("", None),
        (None, None),
        (0, None),
        (-5, None),
        (True, None),
        (10**30, None),  # beyond year 9999
        ({"ms": 1}, None),
    ],
)
def test_create_time_epoch_ms_or_date_string_becomes_iso_utc(
    create_time: object, expected: str | None
) -> None:
    record = parse_music(music_json(track_json(createTime=create_time)), TASK)
    assert record.tracks[0].created_at == expected


@pytest.mark.parametrize(
    ("duration", "expected"),
    [
        (198.44, 198.44),
        (200, 200.0),
        ("198.44", 198.44),
        (None, None),
        ("", None),
        ("n/a", None),
        (float("nan"), None),
        (-1, None),
        (False, None),
    ],
)
def test_duration_accepts_numbers_and_numeric_strings_else_none(
    duration: object, expected: float | None
) -> None:
    assert (
        parse_music(music_json(track_json(duration=duration)), TASK).tracks[0].duration == expected
    )


@pytest.mark.parametrize(
    "response",
    [
        {"taskId": TASK, "sunoData": None},
        {"taskId": TASK, "sunoData": []},
        {"taskId": TASK},
        None,
        "not an object",
        [],
    ],
)
def test_missing_null_or_empty_suno_data_means_zero_tracks(response: object) -> None:
    record = parse_music(music_json(response=response, status="PENDING"), TASK)
    assert record.tracks == ()
    assert record.status == "PENDING"


def test_response_key_absent_means_zero_tracks() -> None:
    data = music_json(status="TEXT_SUCCESS")
    del data["response"]
    assert parse_music(data, TASK).tracks == ()


def test_null_fields_become_empty_strings_and_missing_audio_url_is_empty() -> None:
    item = {
        "id": "abc",
        "audioUrl": None,
        "imageUrl": None,
        "title": None,
        "tags": None,
        "prompt": None,
        "modelName": None,
        "duration": None,
        "createTime": None,
    }
    track = parse_music(music_json(item, status="FIRST_SUCCESS"), TASK).tracks[0]
    assert track == Track("abc", "", "", None, "", "", None, "", "", "", "")


def test_audio_url_empty_string_is_kept_empty() -> None:
    record = parse_music(music_json(track_json(audioUrl=""), status="FIRST_SUCCESS"), TASK)
    assert record.tracks[0].audio_url == ""


def test_source_urls_are_parsed_and_stream_urls_are_not_fetch_fields() -> None:
    item = track_json(
        sourceAudioUrl="https://cdn1.suno.ai/e231.mp3",
        sourceImageUrl="https://cdn2.suno.ai/image_e231.jpeg",
        sourceStreamAudioUrl="https://cdn1.suno.ai/stream/e231",
    )
    record = parse_music(music_json(item), TASK)
    track = record.tracks[0]
    assert track.source_audio_url == "https://cdn1.suno.ai/e231.mp3"
    assert track.source_image_url == "https://cdn2.suno.ai/image_e231.jpeg"
    assert "stream" not in track.audio_url and "stream" not in track.source_audio_url
    # ...but raw keeps the stream URLs exactly as received
    suno_data = record.raw["response"]["sunoData"][0]
    assert suno_data["sourceStreamAudioUrl"] == "https://cdn1.suno.ai/stream/e231"
    assert suno_data["streamAudioUrl"] == "https://example.cn/stream/e231"


def test_two_tracks_arriving_in_different_polls_parse_as_they_are() -> None:
    record = parse_music(
        music_json(
            track_json(id="one"),
            track_json(id="two", audioUrl="", duration=None),
            status="FIRST_SUCCESS",
        ),
        TASK,
    )
    assert [t.audio_id for t in record.tracks] == ["one", "two"]
    assert [t.audio_url != "" for t in record.tracks] == [True, False]


def test_non_object_items_in_suno_data_are_skipped() -> None:
    record = parse_music(music_json(track_json(id="ok"), None, "junk", 7), TASK)
    assert [t.audio_id for t in record.tracks] == ["ok"]


def test_path_like_audio_id_and_title_are_kept_verbatim_for_the_manifest() -> None:
    record = parse_music(music_json(track_json(id="../../etc/passwd", title="a/b\\..\\c")), TASK)
    assert record.tracks[0].audio_id == "../../etc/passwd"
    assert record.tracks[0].title == "a/b\\..\\c"


def test_unknown_extra_fields_are_ignored_and_kept_in_raw() -> None:
    data = music_json(
        track_json(negativeTags="metal", newField={"x": 1}), operationType="generate", foo=[1]
    )
    data["response"]["brandNew"] = True
    snapshot = copy.deepcopy(data)
    record = parse_music(data, TASK)
    assert record.raw == snapshot
    assert record.raw is data


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("SUCCESS", "SUCCESS"),
        (" first_success ", "FIRST_SUCCESS"),
        ("CALLBACK_EXCEPTION", "CALLBACK_EXCEPTION"),
        ("SOMETHING_NEW", "SOMETHING_NEW"),
        (None, "PENDING"),
        ("", "PENDING"),
        ({"weird": 1}, "PENDING"),
    ],
)
def test_status_is_uppercased_and_missing_means_pending(status: object, expected: str) -> None:
    assert parse_music(music_json(status=status), TASK).status == expected


def test_missing_status_key_means_pending() -> None:
    data = music_json()
    del data["status"]
    assert parse_music(data, TASK).status == "PENDING"


FAILED_AUDIO = "Audio generation failed"


@pytest.mark.parametrize(
    ("top", "inside", "expected"),
    [
        ({"errorCode": 501, "errorMessage": FAILED_AUDIO}, {}, (501, FAILED_AUDIO)),
        ({"errorCode": None}, {"errorCode": 501, "errorMessage": "boom"}, (501, "boom")),
        ({}, {"errorCode": "400", "errorMessage": "copyrighted"}, (400, "copyrighted")),
        ({"errorCode": "413", "errorMessage": ""}, {"errorMessage": "matches"}, (413, "matches")),
        ({"errorCode": "x", "errorMessage": 5}, {}, (None, "5")),
        ({"errorCode": 200, "errorMessage": ""}, {}, (None, None)),
        ({"errorCode": True}, {}, (None, None)),
    ],
)
def test_error_code_and_message_come_from_data_or_else_from_response(
    top: dict[str, Any], inside: dict[str, Any], expected: tuple[int | None, str | None]
) -> None:
    data = music_json(status="GENERATE_AUDIO_FAILED", **{"errorCode": None, **top})
    data["response"] = {"taskId": TASK, "sunoData": None, **inside}
    record = parse_music(data, TASK)
    assert (record.error_code, record.error_message) == expected


@pytest.mark.parametrize("blank", [None, "", "   ", "absent"])
def test_a_record_naming_no_task_is_the_task_asked_for(blank: object) -> None:
    music, cover = music_json(track_json()), cover_json()
    for data in (music, music["response"], cover):
        if blank == "absent":
            del data["taskId"]
        else:
            data["taskId"] = blank
    assert parse_music(music, TASK).task_id == TASK
    assert parse_cover(cover, COVER_TASK).task_id == COVER_TASK


@pytest.mark.parametrize("where", ["data", "response"])
@pytest.mark.parametrize("other", ["0123456789abcdef", "../escape", "5c79****be8e", 42])
def test_a_record_naming_another_task_is_refused(where: str, other: object) -> None:
    music, cover = music_json(track_json()), cover_json()
    (music if where == "data" else music["response"])["taskId"] = other
    (cover if where == "data" else cover["response"])["taskId"] = other
    with pytest.raises(ValueError, match=rf"answered for task '.*', not '{TASK}'"):
        parse_music(music, TASK)
    with pytest.raises(ValueError, match=rf"answered for task '.*', not '{COVER_TASK}'"):
        parse_cover(cover, COVER_TASK)


@pytest.mark.parametrize("data", [None, [], "data", 7])
def test_data_that_is_not_an_object_raises_value_error(data: object) -> None:
    with pytest.raises(ValueError, match="not a JSON object"):
        parse_music(data, TASK)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a JSON object"):
        parse_cover(data, COVER_TASK)  # type: ignore[arg-type]


def test_numeric_fields_where_strings_are_expected_do_not_raise() -> None:
    record = parse_music(music_json(track_json(id=12345, title=2024, tags=["a"], prompt={})), TASK)
    track = record.tracks[0]
    assert (track.audio_id, track.title, track.tags, track.prompt) == ("12345", "2024", "", "")


# --- cover ------------------------------------------------------------------------------------


def test_documented_cover_example_parses_as_success_without_error() -> None:
    record = parse_cover(cover_json(), COVER_TASK)
    assert isinstance(record, CoverRecord)
    assert record.task_id == COVER_TASK
    assert record.parent_task_id == "73d6128b3523a0079df10da9471017c8"
    assert record.status == "SUCCESS"
    assert record.images == (
        "https://tempfile.aiquickdraw.com/s/1753958521_6c1b.png",
        "https://tempfile.aiquickdraw.com/s/1753958524_c153.png",
    )
    assert record.error_code is None and record.error_message is None
    assert record.raw["completeTime"] == "2025-01-15T10:35:27.000Z"


@pytest.mark.parametrize(
    ("flag", "status"),
    [
        (0, "PENDING"),
        (1, "SUCCESS"),
        (2, "GENERATING"),
        (3, "FAILED"),
        ("1", "SUCCESS"),
        (" 3 ", "FAILED"),
        (1.0, "SUCCESS"),
        (4, "PENDING"),
        (-1, "PENDING"),
        (None, "PENDING"),
        ("done", "PENDING"),
        (True, "PENDING"),
    ],
)
def test_cover_success_flag_maps_to_status_word(flag: object, status: str) -> None:
    assert parse_cover(cover_json(successFlag=flag), COVER_TASK).status == status


def test_cover_missing_success_flag_means_pending() -> None:
    data = cover_json()
    del data["successFlag"]
    assert parse_cover(data, COVER_TASK).status == "PENDING"


@pytest.mark.parametrize(
    ("response", "images"),
    [
        (None, ()),
        ({}, ()),
        ({"images": None}, ()),
        ({"images": "https://x/a.png"}, ()),
        ({"images": ["https://x/a.png", None, "", 3, " https://x/b.png "]}, ("https://x/a.png", "https://x/b.png")),
    ],
)  # fmt: skip
def test_cover_images_null_or_odd_entries_are_dropped(
    response: object, images: tuple[str, ...]
) -> None:
    assert parse_cover(cover_json(successFlag=0, response=response), COVER_TASK).images == images


def test_cover_failure_reports_error_from_data_or_response() -> None:
    top = parse_cover(
        cover_json(successFlag=3, errorCode=500, errorMessage="Internal error"), COVER_TASK
    )
    assert (top.status, top.error_code, top.error_message) == ("FAILED", 500, "Internal error")
    inside = parse_cover(
        cover_json(
            successFlag="3",
            errorCode=None,
            errorMessage=None,
            response={"images": None, "errorCode": "500", "errorMessage": "try later"},
        ),
        COVER_TASK,
    )
    assert (inside.error_code, inside.error_message) == (500, "try later")


def test_cover_missing_parent_task_id_is_none() -> None:
    assert parse_cover(cover_json(parentTaskId=None), COVER_TASK).parent_task_id is None
    assert parse_cover(cover_json(parentTaskId=""), COVER_TASK).parent_task_id is None
