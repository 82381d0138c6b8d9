"""WAV conversions (`GET /api/v1/wav/record-info`): `successFlag` a string (PENDING, SUCCESS,
CREATE_TASK_FAILED, GENERATE_WAV_FAILED, CALLBACK_EXCEPTION); the file is
`response.audioWavUrl`, stored as `<task_id>/wav.wav` once its magic bytes say WAV."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from archiver.kinds import fields
from archiver.kinds.base import Kind
from archiver.kinds.media import WAV
from archiver.kinds.outputs import OutputRecord, one_file_record, output_kind, schedule


class WavRecord(OutputRecord):
    pass


def parse_wav(data: Mapping[str, Any], task_id: str) -> WavRecord:
    return one_file_record(
        WavRecord, data, task_id, field="audioWavUrl", media_type=WAV, role="wav"
    )


def is_callback(body: Mapping[str, Any]) -> bool:
    """`{code, msg, data: {audioWavUrl (older: audio_wav_url), task_id}}`."""
    data = fields.callback_data(body)
    return fields.callback_stage(data) is None and (
        "audioWavUrl" in data or "audio_wav_url" in data
    )


KIND: Final = output_kind(
    Kind.WAV,
    path="/api/v1/wav/record-info",
    record_type=WavRecord,
    parse=parse_wav,
    schedule=schedule(ready_after_s=20.0, window_s=10.0, window_end_s=120.0),  # takes 30-90 s
    is_callback=is_callback,
)
