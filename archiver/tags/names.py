"""The `[tagging] album` and `artist` templates: `{field}` placeholders filled per track. Pure.

Only plain field names are allowed (no `{title.upper}`, no format specs): a template is text
with holes, checked when the config is read, so that a typo is an error that names the key
rather than a tag written wrong on every track.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Final

from archiver.kinds.records import MusicRecord

FIELDS: Final = ("title", "task_title", "task_id", "audio_id", "model", "tags", "year")
_FORMATTER: Final = string.Formatter()


def template_problem(template: str) -> str | None:
    """Why `template` is not usable (None when it is)."""
    try:
        parts = list(_FORMATTER.parse(template))
    except ValueError as exc:
        return f"{exc} (write {{{{ and }}}} for a literal brace)"
    for _text, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in FIELDS or spec or conversion:
            return f"{{{name}}} is not one of " + ", ".join(f"{{{f}}}" for f in FIELDS)
    return None


def fill(template: str, values: Mapping[str, str]) -> str:
    """`template` with its fields replaced (a checked template; missing values are "")."""
    return template.format_map({name: values.get(name, "") for name in FIELDS}).strip()


def track_values(record: MusicRecord, index: int) -> dict[str, str]:
    """The fields of `record.tracks[index]`. task_title: the first track title of the task,
    so that both tracks of a task land in one album."""
    track = record.tracks[index]
    task_title = next((t.title.strip() for t in record.tracks if t.title.strip()), "")
    created = track.created_at or ""
    return {
        "title": track.title.strip(),
        "task_title": task_title,
        "task_id": record.task_id,
        "audio_id": track.audio_id,
        "model": track.model_name,
        "tags": track.tags,
        "year": created[:4] if created[:4].isdigit() else "",
    }
