"""Music videos (`GET /api/v1/mp4/record-info`): `successFlag` a string (PENDING, SUCCESS,
CREATE_TASK_FAILED, GENERATE_MP4_FAILED, CALLBACK_EXCEPTION); the file is
`response.videoUrl`, stored as `<task_id>/video.mp4` once its magic bytes say MP4."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from archiver.kinds import fields
from archiver.kinds.base import Kind
from archiver.kinds.media import MP4
from archiver.kinds.outputs import OutputRecord, one_file_record, output_kind, schedule


class Mp4Record(OutputRecord):
    pass


def parse_mp4(data: Mapping[str, Any], task_id: str) -> Mp4Record:
    return one_file_record(Mp4Record, data, task_id, field="videoUrl", media_type=MP4, role="video")


def is_callback(body: Mapping[str, Any]) -> bool:
    """`{code, msg, data: {task_id, video_url}}`."""
    data = fields.callback_data(body)
    return fields.callback_stage(data) is None and ("video_url" in data or "videoUrl" in data)


KIND: Final = output_kind(
    Kind.MP4,
    path="/api/v1/mp4/record-info",
    record_type=Mp4Record,
    parse=parse_mp4,
    # A video is rendered from the finished song: minutes, longer than a song's audio.
    schedule=schedule(ready_after_s=60.0, window_s=20.0, window_end_s=360.0),
    is_callback=is_callback,
)
