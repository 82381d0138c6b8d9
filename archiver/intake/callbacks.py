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

from archiver.kinds import callback_kind
from archiver.kinds.records import Kind, is_id

_STAGES = {"text": "text", "first": "first", "complete": "complete", "error": "error"}
_STAGES["failed"] = "error"  # api.box's copy of the music callback says "failed"
_ENDED = frozenset({"complete", "error"})


class MalformedCallback(ValueError):
    """The body is JSON but no callback: the reason is said to the caller."""


@dataclass(frozen=True, slots=True)
class Callback:
    task_id: str | None  # None: nothing to do but log it
    kind: Kind | None  # told by the body's shape (`kinds.callback_kind`); None: unsure
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
    return Callback(task_id, callback_kind(body), stage, code)


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
