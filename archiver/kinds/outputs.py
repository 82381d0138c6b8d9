"""What the kinds made from a finished song share (WAV, stems, MP4, MIDI, lyrics): one record
shape whose files are known when it is parsed, and one decision over it.

Their manifests list the files in `files`, each entry with its `role` (SPEC "Task kinds").
Files are named by role, never by anything the API chose: `<task_id>/<role>.<ext>`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from operator import attrgetter
from typing import Any, Final, TypeVar

from archiver.kinds import fields
from archiver.kinds.base import (
    ArchiveNow,
    Decision,
    FileSpec,
    Kind,
    Schedule,
    TaskKind,
    finite_age,
    norm,
    urls,
    wait_or_give_up,
)

FINISHED: Final = frozenset({"SUCCESS", "CALLBACK_EXCEPTION"})  # the latter: files often complete
# A finished task still without its file this long (the file normally comes with SUCCESS) is
# archived as partial: a later backfill or daemon start tries it again.
INCOMPLETE_AFTER_S: Final = 600.0


@dataclass(frozen=True)
class OutputRecord:
    task_id: str
    status: str  # a status word: PENDING, SUCCESS, CALLBACK_EXCEPTION, *_FAILED, …
    files: tuple[FileSpec, ...]  # what the record yields as it stands
    error_code: int | None
    error_message: str | None
    raw: Mapping[str, Any]  # the API's `data` object exactly as received
    created_time: float | None = None  # Unix time of the task's createTime
    completed_time: float | None = None  # of its completeTime


R = TypeVar("R", bound=OutputRecord)


def output_record(
    record_type: type[R],
    data: Mapping[str, Any],
    task_id: str,
    *,
    status: str,
    files: tuple[FileSpec, ...],
) -> R:
    """The record of `data` (already checked to be about `task_id`)."""
    code, message = fields.error_fields(data, fields.mapping(data.get("response")))
    created, completed = (
        fields.epoch(data.get("createTime")),
        fields.epoch(data.get("completeTime")),
    )
    return record_type(task_id, status, files, code, message, data, created, completed)


def one_file_record(
    record_type: type[R],
    data: Mapping[str, Any],
    task_id: str,
    *,
    field: str,
    media_type: str,
    role: str,
) -> R:
    """A record whose one file is `response.<field>` (WAV, MP4) and whose status is the
    string `successFlag`; the file is `<task_id>/<role>`."""
    fields.check_task_id(data, task_id)
    found = url_file(
        task_id, role, fields.mapping(data.get("response")).get(field), media_type, role
    )
    return output_record(
        record_type,
        data,
        task_id,
        status=fields.status_word(data.get("successFlag")),
        files=(found,) if found else (),
    )


def schedule(*, ready_after_s: float, window_s: float, window_end_s: float) -> Schedule:
    """A kind's schedule from its typical duration; a finished task whose file has not shown
    yet is polled fast (it is about to)."""
    return Schedule(
        ready_after_s=ready_after_s,
        window_s=window_s,
        window_end_s=window_end_s,
        late_from_s=window_end_s + 120.0,
        nearly_done=FINISHED,
    )


def decide_outputs(
    record: OutputRecord,
    *,
    schedule: Schedule,
    age_s: float,
    give_up_after_s: float,
    last_status: str | None,
) -> Decision:
    """Archive when finished with files (or failed), wait otherwise. Never raises."""
    status = norm(record.status)
    if status in FINISHED and record.files:
        return ArchiveNow(record.files, task_failed=False)
    if status == "FAILED" or status.endswith(("_FAILED", "_ERROR")):
        return ArchiveNow(record.files, task_failed=True)
    if status in FINISHED and finite_age(age_s) >= INCOMPLETE_AFTER_S:
        return ArchiveNow((), task_failed=False)  # the file never came: partial
    reason = f"status {status}" + (" without files yet" if status in FINISHED else "")
    return wait_or_give_up(
        status,
        reason,
        age_s=age_s,
        give_up_after_s=give_up_after_s,
        last_status=last_status,
        schedule=schedule,
        files_at_deadline=record.files,
    )


def output_kind(
    kind: Kind,
    *,
    path: str,
    record_type: type[OutputRecord],
    parse: Callable[[Mapping[str, Any], str], OutputRecord],
    schedule: Schedule,
    is_callback: Callable[[Mapping[str, Any]], bool],
) -> TaskKind:
    """The registry entry of a kind of this shape."""
    return TaskKind(
        kind=kind,
        path=path,
        record_type=record_type,
        parse=parse,
        decide=partial(decide_outputs, schedule=schedule),
        files=attrgetter("files"),
        is_callback=is_callback,
    )


def url_file(task_id: str, name: str, url: object, accept: str, role: str) -> FileSpec | None:
    """The file behind a URL field; None when the field is null or empty."""
    found = urls(fields.text(url).strip())
    return FileSpec(f"{task_id}/{name}", found, frozenset({accept}), role, None) if found else None


def inline_file(task_id: str, name: str, data: bytes, media_type: str, role: str) -> FileSpec:
    """A file the archiver writes from the record itself (no URL)."""
    return FileSpec(f"{task_id}/{name}", (), frozenset({media_type}), role, None, inline=data)


def json_bytes(value: object) -> bytes:
    """Inline data as a JSON file: indented, UTF-8, trailing newline."""
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def slug(text: str) -> str:
    """A file-name word from an API label ("Backing Vocals" → "backing-vocals")."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]


def distinct(specs: list[FileSpec | None]) -> tuple[FileSpec, ...]:
    """The files given, without the missing ones and without a second file of the same URL."""
    seen: set[tuple[str, ...]] = set()
    out: list[FileSpec] = []
    for spec in specs:
        if spec is not None and (spec.inline is not None or spec.urls not in seen):
            seen.add(spec.urls)
            out.append(spec)
    return tuple(out)
