"""The stand-in records of music and cover tasks, as a function of the time since a task's
first poll: the stages a song goes through (PENDING, TEXT_SUCCESS, FIRST_SUCCESS, finished),
the variants SPEC lists (epoch-ms or string times, null and empty data, odd URLs, unknown
fields, non-finite numbers) and the failures; and a song's timestamped lyrics.
"""

from __future__ import annotations

import json
import math
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

_DATA_URL = "data:audio/mpeg;base64,SUQzAwAAAAAAAA=="  # an empty ID3 tag


@dataclass
class MusicTask:
    task_id: str
    tracks: int = 2
    ready_after_s: float = 0.0
    fail_status: str | None = None
    seconds: float = 3.0
    error_code: int = 400
    error_message: str = "Lyrics contained copyrighted material"
    create_time: Literal["ms", "string"] = "ms"
    callback_exception: bool = False  # final status CALLBACK_EXCEPTION, tracks complete
    pending_data: Literal["null", "empty", "no_response"] = (
        "null"  # sunoData null / [] / no response
    )
    extra_fields: bool = False  # unknown fields in the body, data, response and tracks
    # source* URLs: 403, a working copy, null, or (None) no such keys
    source_urls: Literal["forbidden", "ok", "null"] | None = None
    title: str | None = None  # every track's title (Suno gives both tracks the same one)
    audio_ids: Sequence[str] | None = None  # per track
    prompt: str = "[Verse]\nSandbox lyrics, line one\n[Chorus]\nSandbox chorus"
    tags: str = "electrifying, rock"
    model_name: str = "chirp-v4"
    missing_audio: int | None = None  # 1-based track whose audioUrl stays "" (null once finished)
    odd_audio_url: Literal["ftp", "data"] | None = None  # track 1's audioUrl is not http(s)
    non_finite: bool = False  # NaN and Infinity in the JSON (Python's json writes them)
    instrumental: bool = False  # its timestamped lyrics have no words
    unknown_for_s: float = 0.0  # answered as unknown this long (the vendor still replicating it)
    created_ago_s: float = 0.0
    files: dict[str, str] = field(default_factory=dict)  # "audio1", "image1", … → URL path
    started: float | None = None


@dataclass
class CoverTask:
    task_id: str
    images: int = 2
    ready_after_s: float = 0.0
    failed: bool = False
    parent_task_id: str = ""
    create_time: Literal["ms", "string"] = "string"
    extra_fields: bool = False
    empty_for_s: float = 0.0  # `data` is {} this long, as the live cover endpoint's first seconds
    created_ago_s: float = 0.0
    files: list[str] = field(default_factory=list)
    started: float | None = None


def fake_hex_id(label: str) -> str:
    """A 32-hex-character ID like the vendors' task IDs, stable for a label."""
    a = zlib.crc32(label.encode())
    b = zlib.crc32(label.encode()[::-1] + b"#")
    c = zlib.crc32(b"%" + label.encode())
    d = zlib.crc32(label.encode() + b"!")
    return f"{a:08x}{b:08x}{c:08x}{d:08x}"


def _stage(elapsed: float, ready_after: float) -> int:
    """0 PENDING, 1 TEXT_SUCCESS, 2 FIRST_SUCCESS, 3 finished."""
    if elapsed >= ready_after:
        return 3
    if elapsed >= ready_after * 3 / 4:
        return 2
    return 1 if elapsed >= ready_after / 4 else 0


def _time(created_ms: int, form: Literal["ms", "string"], *, iso: bool = False) -> Any:
    """A createTime/completeTime as the live API (epoch ms) or the docs (a date string) give it."""
    if form == "ms":
        return created_ms
    if iso:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created_ms // 1000))
        return f"{stamp}.{created_ms % 1000:03d}Z"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(created_ms / 1000))


def music_data(task: MusicTask, elapsed: float, created_ms: int, origin: str) -> dict[str, Any]:
    stage = _stage(elapsed, task.ready_after_s)
    failed = task.fail_status is not None and stage == 3
    if failed:
        status = task.fail_status
    elif stage == 3:
        status = "CALLBACK_EXCEPTION" if task.callback_exception else "SUCCESS"
    else:
        status = ("PENDING", "TEXT_SUCCESS", "FIRST_SUCCESS")[stage]
    if task.fail_status is not None and stage in (1, 2):
        status, stage = "PENDING", 0  # a task that will fail shows no text on the way

    response: dict[str, Any] | None = {"taskId": task.task_id, "sunoData": None}
    if failed:
        response = {
            "taskId": task.task_id, "sunoData": None,
            "errorCode": task.error_code, "errorMessage": task.error_message,
        }  # fmt: skip
    elif stage == 0:
        if task.pending_data == "empty":
            response = {"taskId": task.task_id, "sunoData": []}
        elif task.pending_data == "no_response":
            response = None
    else:
        assert response is not None
        response["sunoData"] = [
            _track(task, i, origin, created_ms, stage=stage) for i in range(1, task.tracks + 1)
        ]
    if response is not None and task.extra_fields:
        response["unknownList"] = [{"x": 1}]
    param = {"prompt": task.prompt, "style": task.tags, "title": task.title or "", "model": "V4"}
    data: dict[str, Any] = {
        "taskId": task.task_id,
        "parentMusicId": "",
        "param": json.dumps(param, ensure_ascii=False),
        "response": response,
        "status": status,
        "type": task.model_name,
        "operationType": "generate",
        "errorCode": task.error_code if failed else None,
        "errorMessage": task.error_message if failed else None,
        "createTime": _time(created_ms, task.create_time),
    }
    if stage == 3:
        done_ms = created_ms + round(task.ready_after_s * 1000)
        data["completeTime"] = _time(done_ms, task.create_time)
    if task.non_finite:
        data["creditsLeft"] = math.inf
    if task.extra_fields:
        data["newFeatureFlag"] = {"nested": [1, "two", None]}
        data["creditsUsed"] = 12
    return data


def _track(task: MusicTask, i: int, origin: str, created_ms: int, *, stage: int) -> dict[str, Any]:
    files = task.files
    audio = (stage == 3 or (stage == 2 and i == 1)) and task.missing_audio != i
    track: dict[str, Any] = {
        "id": track_audio_id(task, i),
        # "" until done; a track the API never delivers shows null on the finished task
        "audioUrl": origin + files[f"audio{i}"] if audio else (None if stage == 3 else ""),
        "streamAudioUrl": origin + files[f"stream{i}"],
        "imageUrl": origin + files[f"image{i}"],
        "prompt": task.prompt,
        "modelName": task.model_name,
        "title": task.title if task.title is not None else f"Sandbox song {task.task_id[:6]}",
        "tags": task.tags,
        "createTime": _time(created_ms, task.create_time),
        "duration": round(task.seconds, 2) if audio else None,
    }
    if audio and i == 1 and task.odd_audio_url == "ftp":  # the same file, by another scheme
        track["audioUrl"] = "ftp" + track["audioUrl"].removeprefix("http")
    elif audio and i == 1 and task.odd_audio_url == "data":
        track["audioUrl"] = _DATA_URL
    if audio and task.non_finite:
        track["duration"] = math.nan
    if task.source_urls == "null":
        track["sourceAudioUrl"] = track["sourceStreamAudioUrl"] = track["sourceImageUrl"] = None
    elif task.source_urls is not None:
        track["sourceAudioUrl"] = origin + files[f"source_audio{i}"] if audio else ""
        track["sourceStreamAudioUrl"] = f"{origin}/forbidden/{task.task_id}-{i}-stream"
        track["sourceImageUrl"] = origin + files[f"source_image{i}"]
    if task.extra_fields:
        track["negativeTags"] = ""
        track["isNewFieldFrom2026"] = True
    return track


def track_audio_id(task: MusicTask, i: int) -> str:
    if task.audio_ids and i <= len(task.audio_ids):
        return task.audio_ids[i - 1]
    return fake_hex_id(f"{task.task_id}:audio:{i}")


def aligned_words(prompt: str) -> list[dict[str, Any]]:
    """The prompt's words as the API aligns them: a line break and any section tag before a
    line's first word ("[Verse]\nNight"), a line every 5 s from 10 s, 0.4 s a word."""
    words: list[dict[str, Any]] = []
    pending = ""
    line_no = 0
    for line in prompt.splitlines():
        if line.strip().startswith("[") or not line.strip():
            pending += line.strip() + "\n"  # a section tag rides on the next word
            continue
        for n, word in enumerate(line.split()):
            start = 10.0 + 5.0 * line_no + 0.4 * n
            text = (pending + ("\n" if words and n == 0 and not pending else "")) + word
            words.append({"word": text, "success": True, "startS": start,
                          "endS": round(start + 0.35, 2), "palign": 0})  # fmt: skip
            pending = ""
        line_no += 1
    return words


def cover_data(task: CoverTask, elapsed: float, created_ms: int, origin: str) -> dict[str, Any]:
    done = elapsed >= task.ready_after_s
    flag = (3 if task.failed else 1) if done else (2 if elapsed >= task.ready_after_s / 2 else 0)
    data: dict[str, Any] = {
        "taskId": task.task_id,
        "parentTaskId": task.parent_task_id,
        "callbackUrl": "https://api.example.com/callback",
        "completeTime": None,
        "response": None,
        "successFlag": flag,
        "createTime": _time(created_ms, task.create_time, iso=True),
        "errorCode": None,
        "errorMessage": None,
    }
    if flag == 1:
        data["response"] = {"images": [origin + path for path in task.files]}
        done_ms = created_ms + round(task.ready_after_s * 1000)
        data["completeTime"] = _time(done_ms, task.create_time, iso=True)
        data["errorCode"], data["errorMessage"] = 200, ""
    elif flag == 3:
        data["errorCode"], data["errorMessage"] = 500, "Internal error - Please try again later."
    if task.extra_fields:
        data["coverStyle"] = "sandbox"
        if data["response"] is not None:
            data["response"]["unknownKey"] = 1
    return data
