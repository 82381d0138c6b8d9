"""Lenient readers of the API's JSON fields, shared by every kind's record parser.

Every oddity (null, a wrong type, a number as a string, NaN) degrades to an empty value; only
a record that is not an object or names another task is refused (`check_task_id`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from archiver.kinds.timestamps import utc_iso

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Below this an epoch number is read as seconds, not milliseconds: 1e11 ms is March 1973,
# while 1e11 s is the year 5138. The API sends milliseconds; this only guards a variant.
_EPOCH_SECONDS_BELOW = 100_000_000_000
# Body/record codes that mean "no error" (the cover endpoint puts errorCode 200 on success).
_NO_ERROR_CODES: Final = frozenset({0, 200})


def check_task_id(data: object, asked: str) -> None:
    """The record's folder and manifest are named by the ID that was asked for, never by the
    one in the answer: a record that names another task (a caching proxy's mix-up) would
    otherwise overwrite that task's manifest. A record naming no task is taken as the asked one."""
    if not isinstance(data, Mapping):
        raise ValueError(f"record data is not a JSON object but {type(data).__name__}")
    for value in (data.get("taskId"), mapping(data.get("response")).get("taskId")):
        said = text(value).strip()
        if said and said != asked:
            raise ValueError(f"the API answered for task {said[:64]!r}, not {asked!r}")


def mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def items(value: object) -> list[Mapping[str, Any]]:
    """The objects of a JSON list (null or anything else: none)."""
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def text(value: object) -> str:
    """A string field: null, objects and lists become ""; numbers become their digits."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int | float):
        return str(value)
    return ""


def status_word(value: object) -> str:
    return text(value).strip().upper() or "PENDING"


def number(value: object) -> float | None:
    """int, float or numeric string → finite float; anything else (bool, NaN, "abc") → None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return result if math.isfinite(result) else None


def integer(value: object) -> int | None:
    result = number(value)
    if result is None or not result.is_integer():
        return None
    return int(result)


def duration(value: object) -> float | None:
    result = number(value)
    return result if result is not None and result >= 0 else None


def created_at(value: object) -> str | None:
    """Epoch milliseconds (number or digit string) or a date string → "YYYY-MM-DDTHH:MM:SSZ"."""
    found = moment(value)
    return utc_iso(found) if found is not None else None


def epoch(value: object) -> float | None:
    """A createTime / completeTime (any form `moment` reads) → Unix time in seconds."""
    found = moment(value)
    return found.timestamp() if found is not None else None


def moment(value: object) -> datetime | None:
    """Epoch milliseconds (a number or digit string; below 1e11 read as seconds) or an ISO 8601
    / "YYYY-MM-DD HH:MM:SS" string (naive = UTC) → an aware datetime; None for anything else."""
    try:
        ms = None if isinstance(value, str) and not _looks_numeric(value) else number(value)
        if ms is not None:
            if ms <= 0:  # a placeholder, not a moment
                return None
            if ms < _EPOCH_SECONDS_BELOW:
                ms *= 1000
            return _EPOCH + timedelta(milliseconds=ms)
        if isinstance(value, str) and value.strip():
            found = datetime.fromisoformat(value.strip())
            return found if found.tzinfo is not None else found.replace(tzinfo=UTC)
        return None
    except (ValueError, OverflowError, OSError):
        return None


def _looks_numeric(value: str) -> bool:
    body = value.strip().lstrip("+-")
    return bool(body) and body.replace(".", "", 1).isdigit()


def error_fields(
    data: Mapping[str, Any], response: Mapping[str, Any]
) -> tuple[int | None, str | None]:
    """errorCode / errorMessage from the top of `data`, or failing that from `response`."""
    code = _error_code(data.get("errorCode"))
    if code is None:
        code = _error_code(response.get("errorCode"))
    message = text(data.get("errorMessage")).strip() or text(response.get("errorMessage")).strip()
    return code, message or None


def _error_code(value: object) -> int | None:
    code = integer(value)
    return None if code in _NO_ERROR_CODES else code


def callback_data(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """A callback body's `data` object (empty when it has none)."""
    return mapping(body.get("data"))


def callback_stage(data: Mapping[str, Any]) -> str | None:
    """A staged callback's stage (music's and lyrics' `callbackType`), lower case; None for the
    kinds that call back once."""
    stage = data.get("callbackType")
    return None if stage is None else text(stage).strip().lower()


def first_item(value: object) -> Mapping[str, Any]:
    """The first element of a JSON list when it is an object, else an empty one."""
    return mapping(value[0]) if isinstance(value, list) and value else {}
