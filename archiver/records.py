"""The API's JSON `data` object → typed, frozen records (every variant listed in SPEC)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from archiver.timestamps import utc_iso


class Kind(StrEnum):
    MUSIC = "music"
    COVER = "cover"


_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")


def is_id(text: str) -> bool:
    """An ID of the SPEC's form (1-128 of A-Z a-z 0-9 _ -): a task ID, and the form an audio
    ID must have to name a file as it is."""
    return _ID.fullmatch(text) is not None


@dataclass(frozen=True)
class Track:
    audio_id: str
    title: str
    tags: str
    duration: float | None  # null until the audio exists
    model_name: str
    prompt: str
    created_at: str | None  # ISO 8601 UTC ("2025-01-01T00:00:00Z"), from epoch ms or a date string
    audio_url: str  # "" until the track is done
    image_url: str
    source_audio_url: str
    source_image_url: str


@dataclass(frozen=True)
class MusicRecord:
    task_id: str
    status: str  # the API's status string, e.g. "SUCCESS", "FIRST_SUCCESS"
    tracks: tuple[Track, ...]
    error_code: int | None
    error_message: str | None
    raw: Mapping[str, Any]  # the API's `data` object exactly as received


@dataclass(frozen=True)
class CoverRecord:
    task_id: str
    parent_task_id: str | None
    status: str  # "PENDING" | "GENERATING" | "SUCCESS" | "FAILED" (from successFlag 0/2/1/3)
    images: tuple[str, ...]
    error_code: int | None
    error_message: str | None
    raw: Mapping[str, Any]


Record = MusicRecord | CoverRecord


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Below this an epoch number is read as seconds, not milliseconds: 1e11 ms is March 1973,
# while 1e11 s is the year 5138. The API sends milliseconds; this only guards a variant.
_EPOCH_SECONDS_BELOW = 100_000_000_000
# Body/record codes that mean "no error" (the cover endpoint puts errorCode 200 on success).
_NO_ERROR_CODES = frozenset({0, 200})
_COVER_STATUS = {0: "PENDING", 1: "SUCCESS", 2: "GENERATING", 3: "FAILED"}


def parse_music(data: Mapping[str, Any], task_id: str) -> MusicRecord:
    """The music record-info `data` object answered for `task_id` → MusicRecord.

    Raises ValueError only when `data` is not an object or names another task; every other
    oddity (null `response`, missing fields, wrong types) degrades to empty values.
    """
    _check_task_id(data, task_id)
    response = _mapping(data.get("response"))
    suno_data = response.get("sunoData")
    items = suno_data if isinstance(suno_data, list) else []
    tracks = tuple(_track(item) for item in items if isinstance(item, Mapping))
    code, message = _error(data, response)
    return MusicRecord(
        task_id=task_id,
        status=_status(data.get("status")),
        tracks=tracks,
        error_code=code,
        error_message=message,
        raw=data,
    )


def parse_cover(data: Mapping[str, Any], task_id: str) -> CoverRecord:
    """The cover record-info `data` object answered for `task_id` → CoverRecord
    (`successFlag` becomes a status word).

    Raises ValueError only when `data` is not an object or names another task.
    """
    _check_task_id(data, task_id)
    response = _mapping(data.get("response"))
    images = response.get("images")
    urls = images if isinstance(images, list) else []
    code, message = _error(data, response)
    flag = _integer(data.get("successFlag"))
    return CoverRecord(
        task_id=task_id,
        parent_task_id=_text(data.get("parentTaskId")).strip() or None,
        status=_COVER_STATUS.get(flag, "PENDING") if flag is not None else "PENDING",
        images=tuple(u.strip() for u in urls if isinstance(u, str) and u.strip()),
        error_code=code,
        error_message=message,
        raw=data,
    )


# --- helpers ----------------------------------------------------------------------------------


def _check_task_id(data: object, asked: str) -> None:
    """The record's folder and manifest are named by the ID that was asked for, never by the
    one in the answer: a record that names another task (a caching proxy's mix-up) would
    otherwise overwrite that task's manifest. A record naming no task is taken as the asked one."""
    if not isinstance(data, Mapping):
        raise ValueError(f"record data is not a JSON object but {type(data).__name__}")
    for value in (data.get("taskId"), _mapping(data.get("response")).get("taskId")):
        said = _text(value).strip()
        if said and said != asked:
            raise ValueError(f"the API answered for task {said[:64]!r}, not {asked!r}")


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: object) -> str:
    """A string field: null, objects and lists become ""; numbers become their digits."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int | float):
        return str(value)
    return ""


def _status(value: object) -> str:
    return _text(value).strip().upper() or "PENDING"


def _number(value: object) -> float | None:
    """int, float or numeric string → finite float; anything else (bool, NaN, "abc") → None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _integer(value: object) -> int | None:
    number = _number(value)
    if number is None or not number.is_integer():
        return None
    return int(number)


def _duration(value: object) -> float | None:
    number = _number(value)
    return number if number is not None and number >= 0 else None


def _created_at(value: object) -> str | None:
    """Epoch milliseconds (number or digit string) or a date string → "YYYY-MM-DDTHH:MM:SSZ"."""
    try:
        number = None if isinstance(value, str) and not _looks_numeric(value) else _number(value)
        if number is not None:
            if number <= 0:  # a placeholder, not a moment
                return None
            if number < _EPOCH_SECONDS_BELOW:
                number *= 1000
            moment = _EPOCH + timedelta(milliseconds=number)
        elif isinstance(value, str) and value.strip():
            moment = datetime.fromisoformat(value.strip())
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
        else:
            return None
        return utc_iso(moment)
    except (ValueError, OverflowError, OSError):
        return None


def _looks_numeric(text: str) -> bool:
    body = text.strip().lstrip("+-")
    return bool(body) and body.replace(".", "", 1).isdigit()


def _error(data: Mapping[str, Any], response: Mapping[str, Any]) -> tuple[int | None, str | None]:
    """errorCode / errorMessage from the top of `data`, or failing that from `response`."""
    code = _error_code(data.get("errorCode"))
    if code is None:
        code = _error_code(response.get("errorCode"))
    message = _text(data.get("errorMessage")).strip() or _text(response.get("errorMessage")).strip()
    return code, message or None


def _error_code(value: object) -> int | None:
    code = _integer(value)
    return None if code in _NO_ERROR_CODES else code


def _track(item: Mapping[str, Any]) -> Track:
    return Track(
        audio_id=_text(item.get("id")),
        title=_text(item.get("title")),
        tags=_text(item.get("tags")),
        duration=_duration(item.get("duration")),
        model_name=_text(item.get("modelName")),
        prompt=_text(item.get("prompt")),
        created_at=_created_at(item.get("createTime")),
        audio_url=_text(item.get("audioUrl")).strip(),
        image_url=_text(item.get("imageUrl")).strip(),
        source_audio_url=_text(item.get("sourceAudioUrl")).strip(),
        source_image_url=_text(item.get("sourceImageUrl")).strip(),
    )
