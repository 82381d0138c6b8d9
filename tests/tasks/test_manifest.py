"""The manifest document: SPEC keys and order, the outcome rule, error mapping, raw kept."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

import pytest

from archiver.kinds.records import CoverRecord, MusicRecord, Track
from archiver.tasks.manifest import (
    SCHEMA_VERSION,
    TrackFiles,
    audio_entry,
    build_manifest,
    decode_manifest,
    encode_manifest,
    error_entry,
    file_entry,
    stored_entries,
)

AT = datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC)
FILE_KEYS = ["path", "bytes", "sha256", "content_type", "source_url"]

RAW_MUSIC: dict[str, Any] = {
    "taskId": "m1",
    "status": "SUCCESS",
    "response": {
        "sunoData": [
            {"id": "a1", "title": "Ünïcode 東京", "duration": 198.44, "newField": [1, None]},
            {"id": "a2", "title": "Two", "duration": None},
        ]
    },
    "createTime": 1735689600000,
    "errorCode": None,
    "errorMessage": "",
    "zUnknown": {"b": 1, "a": 2},
}


def track(audio_id: str, title: str = "Song") -> Track:
    return Track(
        audio_id=audio_id,
        title=title,
        tags="pop",
        duration=198.44,
        model_name="chirp-v4",
        prompt="la la",
        created_at="2025-01-01T00:00:00Z",
        audio_url=f"https://cdn/{audio_id}.mp3",
        image_url=f"https://cdn/{audio_id}.jpg",
        source_audio_url="",
        source_image_url="",
    )


def music(
    *, status: str = "SUCCESS", code: int | None = None, message: str | None = None, n: int = 2
) -> MusicRecord:
    return MusicRecord(
        task_id="m1",
        status=status,
        tracks=tuple(track(f"a{i + 1}") for i in range(n)),
        error_code=code,
        error_message=message,
        raw=MappingProxyType(RAW_MUSIC),
    )


def cover(*, status: str = "SUCCESS", images: int = 2) -> CoverRecord:
    return CoverRecord(
        task_id="c1",
        parent_task_id="m1",
        status=status,
        images=tuple(f"https://cdn/c{i}.png" for i in range(images)),
        error_code=None,
        error_message=None,
        raw={"taskId": "c1", "parentTaskId": "m1", "successFlag": 1, "response": {"images": []}},
    )


def audio(i: int) -> dict[str, Any]:
    return audio_entry(
        key=f"m1/a{i}.mp3",
        size=5000 + i,
        sha256="ab" * 32,
        source_url=f"https://cdn/a{i}.mp3",
        source_sha256="cd" * 32,
        source_bytes=4000 + i,
    )


def image(key: str, ctype: str = "image/jpeg") -> dict[str, Any]:
    return file_entry(key=key, size=100, sha256="ef" * 32, content_type=ctype, source_url="u")


def good_tracks() -> list[TrackFiles]:
    return [TrackFiles(audio=audio(i), image=image(f"m1/a{i}.jpg")) for i in (1, 2)]


def test_music_manifest_has_every_spec_key_in_order():
    doc = build_manifest(
        music(), task_failed=False, tracks=good_tracks(), archived_at=AT, version="1.2"
    )
    assert list(doc) == [
        "schema_version", "task_id", "kind", "status", "outcome", "error", "tracks",
        "raw", "archived_at", "archiver",
    ]  # fmt: skip
    assert doc["schema_version"] == SCHEMA_VERSION == 1
    assert (doc["task_id"], doc["kind"], doc["status"]) == ("m1", "music", "SUCCESS")
    assert (doc["outcome"], doc["error"]) == ("archived", None)
    assert doc["archived_at"] == "2026-01-02T03:04:05Z"
    assert doc["archiver"] == {"name": "suno-archiver", "version": "1.2"}
    first = doc["tracks"][0]
    assert list(first) == [
        "audio_id", "title", "tags", "duration", "model_name", "prompt", "created_at",
        "audio", "image",
    ]  # fmt: skip
    assert first["audio_id"] == "a1"
    assert first["duration"] == 198.44
    assert first["created_at"] == "2025-01-01T00:00:00Z"
    assert list(first["audio"]) == [*FILE_KEYS, "source_sha256", "source_bytes"]
    assert first["audio"]["content_type"] == "audio/mpeg"
    assert first["audio"]["path"] == "m1/a1.mp3"
    assert (first["audio"]["bytes"], first["audio"]["source_bytes"]) == (5001, 4001)
    assert list(first["image"]) == FILE_KEYS


def test_cover_manifest_has_every_spec_key_in_order():
    images = [image("c1/0.png", "image/png"), image("c1/1.png", "image/png")]
    doc = build_manifest(cover(), task_failed=False, images=images, archived_at=AT, version="1")
    assert list(doc) == [
        "schema_version", "task_id", "kind", "status", "outcome", "error", "images",
        "parent_task_id", "raw", "archived_at", "archiver",
    ]  # fmt: skip
    assert (doc["kind"], doc["status"], doc["outcome"]) == ("cover", "SUCCESS", "archived")
    assert doc["parent_task_id"] == "m1"
    assert doc["images"] == images
    assert "tracks" not in doc


def test_failed_task_is_failed_whatever_its_files():
    doc = build_manifest(
        music(status="GENERATE_AUDIO_FAILED", code=501, message="Generation failed"),
        task_failed=True,
        archived_at=AT,
        version="1",
    )
    assert doc["outcome"] == "failed"
    assert doc["error"] == {"code": 501, "message": "Generation failed"}
    assert [t["audio"] for t in doc["tracks"]] == [None, None]  # metadata kept, no files
    failed_cover = build_manifest(
        cover(status="FAILED"), task_failed=True, archived_at=AT, version="1"
    )
    assert failed_cover["outcome"] == "failed"
    assert failed_cover["status"] == "FAILED"


@pytest.mark.parametrize(
    "files",
    [
        [TrackFiles(audio=error_entry(source_url="u", error="HTTP 403"), image=None), None],
        [TrackFiles(audio=None, image=None), None],  # no audio by the deadline
        [None, TrackFiles(audio=audio(2), image=error_entry(source_url="u", error="expired"))],
    ],
    ids=["audio-error", "audio-missing", "image-error"],
)
def test_partial_when_some_file_is_unobtainable(files):
    tracks = [f if f is not None else good_tracks()[i] for i, f in enumerate(files)]
    doc = build_manifest(music(), task_failed=False, tracks=tracks, archived_at=AT, version="1")
    assert doc["outcome"] == "partial"


def test_error_entry_is_stored_as_given():
    entry = error_entry(source_url="https://cdn/a1.mp3", error="HTTP 404: URL expired")
    assert entry == {"source_url": "https://cdn/a1.mp3", "error": "HTTP 404: URL expired"}
    tracks = [TrackFiles(audio=entry, image=None), good_tracks()[1]]
    doc = build_manifest(music(), task_failed=False, tracks=tracks, archived_at=AT, version="1")
    assert doc["tracks"][0]["audio"] == entry
    assert doc["tracks"][0]["image"] is None


def test_music_without_tracks_is_partial():
    doc = build_manifest(music(n=0), task_failed=False, archived_at=AT, version="1")
    assert (doc["outcome"], doc["tracks"]) == ("partial", [])


def test_cover_with_an_unfetchable_or_no_image_is_partial():
    images = [image("c1/0.png"), error_entry(source_url="u", error="403")]
    doc = build_manifest(cover(), task_failed=False, images=images, archived_at=AT, version="1")
    assert doc["outcome"] == "partial"
    none = build_manifest(cover(images=0), task_failed=False, archived_at=AT, version="1")
    assert none["outcome"] == "partial"


def test_track_files_must_match_the_record_tracks():
    with pytest.raises(ValueError, match="TrackFiles"):
        build_manifest(
            music(), task_failed=False, tracks=good_tracks()[:1], archived_at=AT, version="1"
        )


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (None, None, None),
        (200, "", None),
        (200, None, None),
        (None, "   ", None),
        (400, "bad prompt", {"code": 400, "message": "bad prompt"}),
        (501, None, {"code": 501, "message": None}),
        (None, "Generation failed", {"code": None, "message": "Generation failed"}),
    ],
)
def test_error_mapping(code, message, expected):
    doc = build_manifest(
        music(code=code, message=message), task_failed=False, archived_at=AT, version="1"
    )
    assert doc["error"] == expected


def test_raw_is_kept_exactly():
    doc = build_manifest(
        music(), task_failed=False, tracks=good_tracks(), archived_at=AT, version="1"
    )
    decoded = decode_manifest(encode_manifest(doc))
    assert decoded["raw"] == RAW_MUSIC
    assert json.dumps(decoded["raw"]) == json.dumps(RAW_MUSIC)  # same key order, same values


def test_archived_at_is_utc_and_must_be_aware():
    plus_two = datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    doc = build_manifest(music(), task_failed=True, archived_at=plus_two, version="1")
    assert doc["archived_at"] == "2026-01-02T03:04:05Z"
    with pytest.raises(ValueError, match="timezone"):
        build_manifest(music(), task_failed=True, archived_at=datetime(2026, 1, 1), version="1")


def test_encoding_is_indented_utf8_in_spec_order_with_trailing_newline():
    doc = build_manifest(
        music(), task_failed=False, tracks=good_tracks(), archived_at=AT, version="1"
    )
    shuffled = dict(reversed(list(doc.items())))
    data = encode_manifest(shuffled)
    assert data == encode_manifest(doc)
    text = data.decode("utf-8")
    assert text.endswith("}\n")
    assert "東京" in text  # ensure_ascii=False
    assert text.startswith('{\n  "schema_version": 1,\n  "task_id": "m1",')
    assert list(json.loads(data)) == list(doc)


def test_encoding_refuses_nan():
    doc = build_manifest(music(), task_failed=True, archived_at=AT, version="1")
    doc["tracks"][0]["duration"] = float("nan")
    with pytest.raises(ValueError):
        encode_manifest(doc)


def test_decode_round_trips():
    doc = build_manifest(
        cover(), task_failed=False, images=[image("c1/0.png")], archived_at=AT, version="1"
    )
    assert decode_manifest(encode_manifest(doc)) == doc


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"\xff\xfe garbage",
        b"[1, 2]",
        b"null",
        b'{"schema_version": 2, "kind": "music"}',
        b'{"schema_version": true, "kind": "music"}',
        b'{"schema_version": "1", "kind": "music"}',
        b'{"schema_version": 1, "kind": "video"}',
        b'{"schema_version": 1, "kind": "music", "task_id": "x"}',
    ],
)
def test_decode_rejects_garbage_and_other_schemas(data: bytes):
    with pytest.raises(ValueError):
        decode_manifest(data)


def test_decode_rejects_a_manifest_missing_a_required_key():
    doc = build_manifest(
        music(), task_failed=False, tracks=good_tracks(), archived_at=AT, version="1"
    )
    for key in ("tracks", "raw", "outcome", "archiver"):
        broken = {k: v for k, v in doc.items() if k != key}
        with pytest.raises(ValueError, match=key):
            decode_manifest(encode_manifest(broken))
    cover_doc = build_manifest(cover(), task_failed=True, archived_at=AT, version="1")
    del cover_doc["parent_task_id"]
    with pytest.raises(ValueError, match="parent_task_id"):
        decode_manifest(encode_manifest(cover_doc))


def test_stored_entries_are_the_stored_files_by_name_and_role():
    tracks = [
        TrackFiles(audio=audio(1), image=error_entry(source_url="u", error="404")),
        TrackFiles(audio=error_entry(source_url="u", error="503"), image=image("m1/a2.jpg")),
    ]
    doc = json.loads(
        encode_manifest(
            build_manifest(music(), task_failed=False, tracks=tracks, archived_at=AT, version="1")
        )
    )
    assert stored_entries(doc) == {
        ("m1/a1", "audio"): audio(1),
        ("m1/a2", "image"): image("m1/a2.jpg"),
    }
    covers = build_manifest(
        cover(), task_failed=False, images=[image("c1/cover-1.png", "image/png")], archived_at=AT,
        version="1",
    )  # fmt: skip
    assert list(stored_entries(covers)) == [("c1/cover-1", "cover")]


def test_stored_entries_skip_what_does_not_describe_a_stored_file():
    doc = {
        "tracks": [
            None,
            {"audio": {"path": "m1/a.mp3", "sha256": "ab"}},  # no size
            {"audio": {"path": "m1/b.mp3", "bytes": "5", "sha256": "ab"}},
            {"image": {"path": 7, "bytes": 5, "sha256": "ab"}},
            {"audio": ["m1/c.mp3"]},
        ],
        "images": "m1/cover-1.png",
    }
    assert stored_entries(doc) == {}
    assert stored_entries({}) == {}
