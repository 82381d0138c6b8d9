"""Lyrics (`GET /api/v1/lyrics/record-info`): text only. `data.status` a string (PENDING,
SUCCESS, CREATE_TASK_FAILED, GENERATE_LYRICS_FAILED, CALLBACK_EXCEPTION,
SENSITIVE_WORD_ERROR); the variants are `response.data[]` (`text`, `title`, `status`).

Each variant's text is stored as `<task_id>/lyrics-<n>.txt` (n counts every variant, so a
failed one leaves a gap) and all of them, as received, as `<task_id>/lyrics.json`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from archiver.kinds import fields
from archiver.kinds.base import FileSpec, Kind
from archiver.kinds.media import JSON, TEXT
from archiver.kinds.outputs import (
    OutputRecord,
    inline_file,
    json_bytes,
    output_kind,
    output_record,
    schedule,
)


class LyricsRecord(OutputRecord):
    pass


def parse_lyrics(data: Mapping[str, Any], task_id: str) -> LyricsRecord:
    fields.check_task_id(data, task_id)
    variants = fields.mapping(data.get("response")).get("data")
    files: list[FileSpec] = []
    if isinstance(variants, list) and variants:
        for n, variant in enumerate(fields.items(variants), start=1):
            text = fields.text(variant.get("text"))
            if text.strip():
                files.append(inline_file(task_id, f"lyrics-{n}", text.encode(), TEXT, "lyrics"))
        files.append(inline_file(task_id, "lyrics", json_bytes(variants), JSON, "lyrics"))
    return output_record(
        LyricsRecord,
        data,
        task_id,
        status=fields.status_word(data.get("status")),
        files=tuple(files),
    )


def is_callback(body: Mapping[str, Any]) -> bool:
    """`{code, msg, data: {callbackType, taskId, data: [{text, title, …}]}}`: a music callback
    has the same outline but carries tracks, not texts (the registry asks music first)."""
    data = fields.callback_data(body)
    return fields.callback_stage(data) is not None and "text" in fields.first_item(data.get("data"))


KIND: Final = output_kind(
    Kind.LYRICS,
    path="/api/v1/lyrics/record-info",
    record_type=LyricsRecord,
    parse=parse_lyrics,
    schedule=schedule(ready_after_s=10.0, window_s=5.0, window_end_s=60.0),  # text: seconds
    is_callback=is_callback,
)
