"""Every callback shape the vendors document → task ID, kind, stage (API-NOTES.md 3.3), and
kie's webhook signature (3.2). Pure functions: no server here."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest

from archiver.intake.callbacks import Callback, MalformedCallback, parse_callback
from archiver.intake.signing import signature, signature_problem

TRACK = {
    "id": "8551662c",
    "audio_url": "https://example.cn/a.mp3",
    "stream_audio_url": "https://example.cn/a",
    "image_url": "https://example.cn/a.jpeg",
    "title": "Iron Man",
    "duration": 198.44,
}


def music(stage: str, tracks: list[dict[str, Any]], code: int = 200) -> dict[str, Any]:
    return {
        "code": code,
        "msg": "…",
        "data": {"callbackType": stage, "task_id": "m1", "data": tracks},
    }


SHAPES: list[tuple[str, dict[str, Any], Callback]] = [
    ("music text", music("text", []), Callback("m1", "music", "text", 200)),
    ("music first", music("first", [TRACK]), Callback("m1", "music", "first", 200)),
    ("music complete", music("complete", [TRACK, TRACK]), Callback("m1", "music", "complete", 200)),
    ("music error (empty data)", music("error", [], 501), Callback("m1", None, "error", 501)),
    ("music failed (api.box)", music("failed", [], 400), Callback("m1", None, "error", 400)),
    (
        "lyrics",
        {
            "code": 200,
            "data": {
                "callbackType": "complete",
                "taskId": "l1",
                "data": [{"text": "[Verse]", "title": "t", "status": "complete"}],
            },
        },
        Callback("l1", "lyrics", "complete", 200),
    ),
    (
        "cover",
        {"code": 200, "data": {"images": ["https://x/1.png"], "taskId": "c1"}, "msg": "success"},
        Callback("c1", "cover", "complete", 200),
    ),
    (
        "wav",
        {"code": 200, "data": {"audioWavUrl": "https://x/a.wav", "task_id": "w1"}},
        Callback("w1", "wav", "complete", 200),
    ),
    (
        "wav (older kie page)",
        {"code": 200, "data": {"audio_wav_url": "https://x/a.wav", "task_id": "w2"}},
        Callback("w2", "wav", "complete", 200),
    ),
    (
        "stems",
        {
            "code": 200,
            "data": {"task_id": "s1", "vocal_removal_info": {"vocal_url": "https://x/v.mp3"}},
        },
        Callback("s1", "stems", "complete", 200),
    ),
    (
        "mp4",
        {"code": 200, "data": {"task_id": "v1", "video_url": "https://x/v.mp4"}},
        Callback("v1", "mp4", "complete", 200),
    ),
    (
        "midi (task_id at the top)",
        {"task_id": "d1", "code": 200, "data": {"state": "complete", "instruments": []}},
        Callback("d1", "midi", "complete", 200),
    ),
    (
        "midi failed",
        {"task_id": "d2", "code": 500, "msg": "failed", "data": None},
        Callback("d2", None, "error", 500),
    ),
    (
        "complete without any task ID",
        {"code": 200, "data": {"callbackType": "complete", "data": [TRACK]}},
        Callback(None, "music", "complete", 200),
    ),
    (
        "unknown fields everywhere",
        {
            "code": 200,
            "extra": {"x": 1},
            "data": {
                "callbackType": "COMPLETE",
                "task_id": "u1",
                "new": [1],
                "data": [{**TRACK, "future_field": True}],
            },
        },
        Callback("u1", "music", "complete", 200),
    ),
]


@pytest.mark.parametrize(("body", "expected"), [s[1:] for s in SHAPES], ids=[s[0] for s in SHAPES])
def test_each_documented_shape_gives_its_task_kind_and_stage(
    body: dict[str, Any], expected: Callback
) -> None:
    assert parse_callback(body) == expected


def test_only_the_complete_and_error_stages_say_the_task_ended() -> None:
    assert [
        parse_callback(music(s, [])).finished for s in ("text", "first", "complete", "error")
    ] == [
        False,
        False,
        True,
        True,
    ]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([1, 2], "not a JSON object"),
        ("text", "not a JSON object"),
        ({"data": {"task_id": "../etc/passwd"}}, "task_id is not a task ID"),
        ({"data": {"taskId": 42}}, "taskId is not a task ID"),
        ({"data": {"task_id": "a", "callbackType": "halfway"}}, "unknown callbackType"),
    ],
)
def test_what_is_not_a_callback_is_refused_with_a_reason(body: object, reason: str) -> None:
    with pytest.raises(MalformedCallback, match=reason):
        parse_callback(body)


KEY = b"kie-webhook-key"


def test_a_signature_is_base64_of_hmac_sha256_over_task_id_dot_timestamp() -> None:
    expected = base64.b64encode(hmac.new(KEY, b"t1.1700000000", hashlib.sha256).digest()).decode()
    assert signature(KEY, "t1", "1700000000") == expected
    assert signature_problem(KEY, "t1", "1700000000", expected, now=1_700_000_100) is None


@pytest.mark.parametrize(
    ("task_id", "timestamp", "given", "now", "reason"),
    [
        ("t1", None, "x", 1_700_000_000, "unsigned"),
        ("t1", "1700000000", None, 1_700_000_000, "unsigned"),
        (None, "1700000000", "x", 1_700_000_000, "needs its task ID"),
        ("t1", "17e8", "x", 1_700_000_000, "not Unix seconds"),
        ("t1", "1700000000", "SIG", 1_700_000_301, "more than 5 minutes off"),
        ("t1", "1700000000", "SIG", 1_699_999_699, "more than 5 minutes off"),
        ("t2", "1700000000", "SIG", 1_700_000_000, "does not match"),  # another task's
        ("t1", "1700000000", "bm90IGl0", 1_700_000_000, "does not match"),
    ],
)
def test_a_missing_stale_or_wrong_signature_is_refused(
    task_id: str | None, timestamp: str | None, given: str | None, now: float, reason: str
) -> None:
    if given == "SIG":
        given = signature(KEY, "t1", "1700000000")
    problem = signature_problem(KEY, task_id, timestamp, given, now)
    assert problem is not None and reason in problem
