"""Cover images (`GET /api/v1/suno/cover/record-info`): `successFlag` 0 waiting, 2 generating,
1 done, 3 failed; the images are `response.images[]`, stored as `<task_id>/cover-<n>`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from archiver.kinds import fields
from archiver.kinds.base import (
    ArchiveNow,
    Decision,
    FileSpec,
    Kind,
    TaskKind,
    norm,
    urls,
    wait_or_give_up,
)
from archiver.kinds.music import IMAGE_TYPES, SCHEDULE

PATH: Final = "/api/v1/suno/cover/record-info"
_STATUS: Final = {0: "PENDING", 1: "SUCCESS", 2: "GENERATING", 3: "FAILED"}


@dataclass(frozen=True)
class CoverRecord:
    task_id: str
    parent_task_id: str | None
    status: str  # "PENDING" | "GENERATING" | "SUCCESS" | "FAILED" (from successFlag 0/2/1/3)
    images: tuple[str, ...]
    error_code: int | None
    error_message: str | None
    raw: Mapping[str, Any]
    created_time: float | None = None  # Unix time of the task's createTime
    completed_time: float | None = None  # of its completeTime


def parse_cover(data: Mapping[str, Any], task_id: str) -> CoverRecord:
    """The cover record-info `data` object answered for `task_id` → CoverRecord
    (`successFlag` becomes a status word).

    Raises ValueError only when `data` is not an object or names another task.
    """
    fields.check_task_id(data, task_id)
    response = fields.mapping(data.get("response"))
    images = response.get("images")
    found = images if isinstance(images, list) else []
    code, message = fields.error_fields(data, response)
    flag = fields.integer(data.get("successFlag"))
    return CoverRecord(
        task_id=task_id,
        parent_task_id=fields.text(data.get("parentTaskId")).strip() or None,
        status=_STATUS.get(flag, "PENDING") if flag is not None else "PENDING",
        images=tuple(u.strip() for u in found if isinstance(u, str) and u.strip()),
        error_code=code,
        error_message=message,
        raw=data,
        created_time=fields.epoch(data.get("createTime")),
        completed_time=fields.epoch(data.get("completeTime")),
    )


def decide(
    record: CoverRecord, *, age_s: float, give_up_after_s: float, last_status: str | None
) -> Decision:
    """What to do with a freshly polled cover record. Never raises."""
    status = norm(record.status)
    if status == "SUCCESS" and record.images:
        return ArchiveNow(files_to_fetch(record), task_failed=False)
    if status == "FAILED":
        return ArchiveNow((), task_failed=True)
    return wait_or_give_up(
        status,
        f"status {status}" + (" without images" if status == "SUCCESS" else ""),
        age_s=age_s,
        give_up_after_s=give_up_after_s,
        last_status=last_status,
        schedule=SCHEDULE,  # a cover takes ~45 s; the song's schedule has served it well
        files_at_deadline=files_to_fetch(record),
    )


def files_to_fetch(record: CoverRecord) -> tuple[FileSpec, ...]:
    """Every distinct image, as `<task_id>/cover-<n>`."""
    covers = [found for url in dict.fromkeys(record.images) if (found := urls(url))]
    return tuple(
        FileSpec(f"{record.task_id}/cover-{n}", found, IMAGE_TYPES, "cover", None)
        for n, found in enumerate(covers, start=1)
    )


def is_callback(body: Mapping[str, Any]) -> bool:
    """A cover callback: `data.images` beside `data.taskId`, one stage only."""
    data = fields.callback_data(body)
    return fields.callback_stage(data) is None and "images" in data


KIND: Final = TaskKind(
    kind=Kind.COVER,
    path=PATH,
    record_type=CoverRecord,
    parse=parse_cover,
    decide=decide,
    files=files_to_fetch,
    is_callback=is_callback,
)
