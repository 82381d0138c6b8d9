"""Vocal and stem separations (`GET /api/v1/vocal-removal/record-info`): `successFlag` a
string (PENDING, SUCCESS, CREATE_TASK_FAILED, GENERATE_AUDIO_FAILED, CALLBACK_EXCEPTION).

Every non-null `response.*Url` is a stem (`vocalUrl`, `instrumentalUrl`, `drumsUrl`, …; the
type of separation decides which are null), stored as `<task_id>/<role>.mp3` with the role
named after the field (`vocals`, `instrumental`, `backing_vocals`, `drums`, …, `origin`);
each `originData[].audio_url` is stored as `<task_id>/origin-<n>-<group>.mp3`, role `origin`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from archiver.kinds import fields
from archiver.kinds.base import FileSpec, Kind
from archiver.kinds.media import MP3
from archiver.kinds.outputs import (
    OutputRecord,
    distinct,
    output_kind,
    output_record,
    schedule,
    slug,
    url_file,
)

_URL_FIELD: Final = re.compile(r"([a-z][A-Za-z0-9]*)Url")
_ROLE_OF: Final = {"vocal": "vocals"}  # the SPEC's word for the stem the API calls `vocalUrl`


class StemsRecord(OutputRecord):
    pass


def parse_stems(data: Mapping[str, Any], task_id: str) -> StemsRecord:
    fields.check_task_id(data, task_id)
    response = fields.mapping(data.get("response"))
    specs: list[FileSpec | None] = []
    for key, value in response.items():
        match = _URL_FIELD.fullmatch(key)
        if match:
            role = stem_role(match.group(1))
            specs.append(url_file(task_id, role, value, MP3, role))
    for n, item in enumerate(fields.items(response.get("originData")), start=1):
        group = slug(fields.text(item.get("stem_type_group_name")))
        name = f"origin-{n}-{group}" if group else f"origin-{n}"
        specs.append(url_file(task_id, name, item.get("audio_url"), MP3, "origin"))
    return output_record(
        StemsRecord,
        data,
        task_id,
        status=fields.status_word(data.get("successFlag")),
        files=distinct(specs),
    )


def stem_role(field: str) -> str:
    """`backingVocals` → `backing_vocals`, `vocal` → `vocals`."""
    snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", field).lower()
    return _ROLE_OF.get(snake, snake)


def is_callback(body: Mapping[str, Any]) -> bool:
    """`{code, msg, data: {task_id, vocal_removal_info: {vocal_url, …}}}`."""
    data = fields.callback_data(body)
    return fields.callback_stage(data) is None and "vocal_removal_info" in data


KIND: Final = output_kind(
    Kind.STEMS,
    path="/api/v1/vocal-removal/record-info",
    record_type=StemsRecord,
    parse=parse_stems,
    # A separation takes one to two and a half minutes (the documented examples: 83 s, 132 s).
    schedule=schedule(ready_after_s=30.0, window_s=15.0, window_end_s=180.0),
    is_callback=is_callback,
)
