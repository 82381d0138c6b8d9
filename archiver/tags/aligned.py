"""`[tagging] aligned_lyrics`: each archived song's timestamped lyrics, asked of the API once
the track's MP3 is stored, kept as `<task_id>/<name>.lyrics.json` (the answer's `data` as it
came) and `<task_id>/<name>.lrc` (line timings, see `archiver.lrc`), both named in the track's
manifest entry (`lyrics`, `lrc`).

An instrumental has no words: its JSON is kept and it has no LRC; an API with nothing to give
(`data: null`) leaves both out. Neither is an error. A refusal is recorded in the manifest
(the task is then partial and tried again later); a passing failure is raised for the
archivist to try the task again, unless this try is its last.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from archiver.errors import ApiError, ApiRejected, ApiUnusable
from archiver.kinds.base import FileSpec
from archiver.kinds.media import JSON, LRC
from archiver.kinds.outputs import json_bytes
from archiver.kinds.records import MusicRecord
from archiver.tags.lrc import lrc_lines, lrc_text
from archiver.tasks.manifest import TrackFiles, error_entry, is_error_entry

LyricsSource = Callable[[str, str], Awaitable[dict[str, Any] | None]]  # (task ID, audio ID)
Store = Callable[[FileSpec], Awaitable[dict[str, Any]]]  # an inline file → its manifest entry


def lyrics_files(task_id: str, name: str, aligned: Mapping[str, Any]) -> tuple[FileSpec, ...]:
    """The JSON of the answer, and the LRC when the track has words."""
    stem = f"{task_id}/{name}"
    files = [FileSpec(f"{stem}.lyrics", (), frozenset({JSON}), "lyrics", None, json_bytes(aligned))]
    lines = lrc_lines(aligned)
    if lines:
        lrc = lrc_text(lines).encode("utf-8")
        files.append(FileSpec(stem, (), frozenset({LRC}), "lrc", None, lrc))
    return tuple(files)


def stored_keys(name: str, task_id: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """The (path without extension, role) of a track's lyrics JSON and LRC in a manifest."""
    stem = f"{task_id}/{name}"
    return (f"{stem}.lyrics", "lyrics"), (stem, "lrc")


async def add_aligned_lyrics(
    record: MusicRecord,
    tracks: Sequence[TrackFiles],
    names: Sequence[str],
    *,
    kept: Mapping[tuple[str, str], dict[str, Any]],
    source: LyricsSource,
    store: Store,
    source_url: str,
    final: bool,
) -> list[TrackFiles]:
    """`tracks` with the lyrics of every track whose MP3 is stored; those an earlier try
    stored (`kept`, by `stored_keys`) are not asked for again."""
    out: list[TrackFiles] = []
    for track, files, name in zip(record.tracks, tracks, names, strict=True):
        if files.audio is None or is_error_entry(files.audio):
            out.append(files)
            continue
        json_key, lrc_key = stored_keys(name, record.task_id)
        if json_key in kept:
            out.append(replace(files, lyrics=kept[json_key], lrc=kept.get(lrc_key)))
            continue
        try:
            aligned = await source(record.task_id, track.audio_id)
        except ApiUnusable:
            raise
        except ApiError as exc:
            if not final and not isinstance(exc, ApiRejected):
                raise
            out.append(replace(files, lyrics=error_entry(source_url=source_url, error=str(exc))))
            continue
        if aligned is None:
            out.append(files)
            continue
        entries = [await store(spec) for spec in lyrics_files(record.task_id, name, aligned)]
        out.append(replace(files, lyrics=entries[0], lrc=entries[1] if len(entries) > 1 else None))
    return out
