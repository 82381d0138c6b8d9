"""A vendor's callback body → what it hints at: which task, of which kind, at which stage.

Pure: no I/O. A callback is a hint, never the truth (the task's record-info is polled before
anything is archived), so only what scheduling needs is read; every URL in it is ignored.
Shapes: API-NOTES.md section 3.3 (music text/first/complete/error, lyrics, cover, WAV, stems,
MP4, MIDI), with the task ID as `data.task_id`, `data.taskId` or a top-level `task_id`/`taskId`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from archiver.records import is_id

_STAGES = {"text": "text", "first": "first", "complete": "complete", "error": "error"}
_STAGES["failed"] = "error"  # api.box's copy of the music callback says "failed"
_ENDED = frozenset({"complete", "error"})
_TRACK_KEYS = frozenset({"audio_url", "audioUrl", "stream_audio_url", "id", "image_url"})


class MalformedCallback(ValueError):
    """The body is JSON but no callback: the reason is said to the caller."""


@dataclass(frozen=True, slots=True)
class Callback:
    task_id: str | None  # None: nothing to do but log it
    kind: str | None  # "music", "lyrics", "cover", "wav", "stems", "mp4", "midi"; None: unsure
    stage: str  # "text", "first", "complete" or "error"
    code: int | None  # the body's `code` (200 = fine)

    @property
    def finished(self) -> bool:
        """The callback says the task ended (done or failed); polling decides what it means."""
        return self.stage in _ENDED


def parse_callback(body: object) -> Callback:
    """The decoded JSON body of a callback → Callback; MalformedCallback when it is none."""
    if not isinstance(body, Mapping):
        raise MalformedCallback("the body is not a JSON object")
    data = body.get("data")
    data = data if isinstance(data, Mapping) else {}
    code = body.get("code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    task_id = _task_id(body, data)
    callback_type = data.get("callbackType")
    if isinstance(callback_type, str) and callback_type.strip().lower() in _STAGES:
        stage = _STAGES[callback_type.strip().lower()]
    elif callback_type is not None:
        raise MalformedCallback(f"unknown callbackType {str(callback_type)[:40]!r}")
    else:  # the one-stage kinds: done, unless the code says it failed
        stage = "complete" if code in (None, 200) else "error"
    return Callback(task_id, _kind(data, stage, callback_type is not None), stage, code)


def _task_id(body: Mapping[str, Any], data: Mapping[str, Any]) -> str | None:
    for where in (data, body):
        for name in ("task_id", "taskId"):
            value = where.get(name)
            if value is None or value == "":
                continue
            if not isinstance(value, str) or not is_id(value):
                raise MalformedCallback(f"{name} is not a task ID (1-128 of A-Z a-z 0-9 _ -)")
            return value
    return None


def _kind(data: Mapping[str, Any], stage: str, staged: bool) -> str | None:
    """The kind the shape tells, or None when it does not (a failed music or lyrics
    callback has empty `data.data`: the archiver then finds out by asking)."""
    if staged:
        if stage in ("text", "first"):
            return "music"  # lyrics callbacks have one stage only
        items = data.get("data")
        first = items[0] if isinstance(items, list) and items else None
        if not isinstance(first, Mapping):
            return None
        if _TRACK_KEYS & first.keys():
            return "music"
        return "lyrics" if "text" in first else None
    if "vocal_removal_info" in data:
        return "stems"
    if "audioWavUrl" in data or "audio_wav_url" in data:
        return "wav"
    if "video_url" in data or "videoUrl" in data:
        return "mp4"
    if "images" in data:
        return "cover"
    if "instruments" in data or "state" in data:
        return "midi"
    return None
