"""The per-task manifest document (SPEC "Manifest", schema_version 1).

Pure: the engine hands in the record and what became of each file; this module decides the
outcome (the only place that does) and lays the document out in the SPEC's key order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from archiver.kinds import of
from archiver.kinds.records import CoverRecord, Kind, MusicRecord, OutputRecord, Record
from archiver.kinds.timestamps import utc_iso

SCHEMA_VERSION: Final = 1
ARCHIVER_NAME: Final = "suno-archiver"
MANIFEST_NAME: Final = "manifest.json"

ARCHIVED: Final = "archived"
PARTIAL: Final = "partial"
FAILED: Final = "failed"
OUTCOMES: Final = frozenset({ARCHIVED, PARTIAL, FAILED})

_API_SUCCESS_CODE: Final = 200

# Key orders of the SPEC; encode_manifest puts known keys in this order, any others after.
_TOP_KEYS: Final = (
    "schema_version",
    "task_id",
    "kind",
    "status",
    "outcome",
    "error",
    "tracks",
    "images",
    "parent_task_id",
    "files",
    "raw",
    "archived_at",
    "archiver",
)
_TRACK_KEYS: Final = (
    "audio_id",
    "title",
    "tags",
    "duration",
    "model_name",
    "prompt",
    "created_at",
    "audio",
    "image",
    "lyrics",
    "lrc",
)
_FILE_KEYS: Final = (
    "path",
    "bytes",
    "sha256",
    "content_type",
    "source_url",
    "source_sha256",
    "source_bytes",
    "role",
    "error",
)
# Music and cover manifests keep their shape; every other kind lists its files in `files`.
_REQUIRED: Final = {kind.value: ("files",) for kind in Kind} | {
    Kind.MUSIC.value: ("tracks",),
    Kind.COVER.value: ("images", "parent_task_id"),
}
_REQUIRED_COMMON: Final = (
    "schema_version",
    "task_id",
    "kind",
    "status",
    "outcome",
    "error",
    "raw",
    "archived_at",
    "archiver",
)


def manifest_key(task_id: str) -> str:
    """Where a task's manifest is stored."""
    return f"{task_id}/{MANIFEST_NAME}"


@dataclass(frozen=True)
class TrackFiles:
    """What became of one track's files, in the order of `record.tracks`."""

    audio: dict[str, Any] | None  # audio entry, error entry, or None: no audio to get
    image: dict[str, Any] | None  # file entry, error entry, or None: no image URL
    # [tagging] aligned_lyrics: the timestamped lyrics (JSON) and the LRC made of them; None
    # when not asked for or when there are none (an instrumental has no LRC)
    lyrics: dict[str, Any] | None = None
    lrc: dict[str, Any] | None = None


def file_entry(
    *, key: str, size: int, sha256: str, content_type: str, source_url: str | None
) -> dict[str, Any]:
    """A stored file; `key` is its path relative to the archive root (`<task_id>/…`)."""
    return {
        "path": key,
        "bytes": size,
        "sha256": sha256,
        "content_type": content_type,
        "source_url": source_url,
    }


def audio_entry(
    *, key: str, size: int, sha256: str, source_url: str, source_sha256: str, source_bytes: int
) -> dict[str, Any]:
    """A stored MP3: `size`/`sha256` of the tagged file, `source_*` of the download."""
    entry = file_entry(
        key=key, size=size, sha256=sha256, content_type="audio/mpeg", source_url=source_url
    )
    entry["source_sha256"] = source_sha256
    entry["source_bytes"] = source_bytes
    return entry


def error_entry(*, source_url: str, error: str) -> dict[str, Any]:
    """A file that could not be fetched; makes the outcome `partial`."""
    return {"source_url": source_url, "error": error}


def role_entry(entry: Mapping[str, Any], role: str) -> dict[str, Any]:
    """A `files` entry: the file's (or its error's) entry with its role."""
    return {**entry, "role": role}


def is_error_entry(entry: Mapping[str, Any] | None) -> bool:
    return entry is not None and "error" in entry and "path" not in entry


def stored_entries(doc: Mapping[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """The file entries of a decoded manifest that describe a stored file, by (path without
    its extension, role) (see `listed_files`)."""
    return {(entry["path"].rpartition(".")[0], role): entry for entry, role, _ in listed_files(doc)}


def listed_files(doc: Mapping[str, Any]) -> Iterator[tuple[dict[str, Any], str, str | None]]:
    """(entry, role, audio ID) of each stored file a decoded manifest lists, in its order:
    role "audio", "image", "lyrics" or "lrc" with the track's audio ID for a track's files,
    "cover" for a cover image, the entry's own role for the `files` of other kinds (no audio
    ID). Error entries, and entries lacking a path, size or hash, are left out."""

    def stored(entry: object) -> bool:
        return (
            isinstance(entry, dict)
            and isinstance(entry.get("path"), str)
            and isinstance(entry.get("sha256"), str)
            and type(entry.get("bytes")) is int
        )

    for track in _list(doc.get("tracks")):
        if isinstance(track, dict):
            audio_id = track.get("audio_id") if isinstance(track.get("audio_id"), str) else None
            for role in ("audio", "image", "lyrics", "lrc"):
                if stored(track.get(role)):
                    yield track[role], role, audio_id
    for entry in _list(doc.get("images")):
        if stored(entry):
            yield entry, "cover", None
    for entry in _list(doc.get("files")):
        if stored(entry) and isinstance(entry.get("role"), str):
            yield entry, entry["role"], None


def outcome(
    record: Record,
    *,
    task_failed: bool,
    tracks: Sequence[TrackFiles] = (),
    images: Sequence[Mapping[str, Any]] = (),
    files: Sequence[Mapping[str, Any]] = (),
) -> str:
    """`failed` (the task failed), `partial` (some file unobtainable) or `archived`."""
    if task_failed:
        return FAILED
    if isinstance(record, OutputRecord):
        images = files  # the same rule: none at all, or one not obtained, is partial
    if isinstance(record, MusicRecord):
        if not tracks:
            return PARTIAL
        for files in tracks:
            if files.audio is None or any(
                is_error_entry(entry) for entry in (files.audio, files.image, files.lyrics)
            ):
                return PARTIAL
        return ARCHIVED
    if not images or any(is_error_entry(entry) for entry in images):
        return PARTIAL
    return ARCHIVED


def build_manifest(
    record: Record,
    *,
    task_failed: bool,
    tracks: Sequence[TrackFiles] = (),
    images: Sequence[dict[str, Any]] = (),
    files: Sequence[dict[str, Any]] = (),
    archived_at: datetime,
    version: str,
) -> dict[str, Any]:
    """The manifest of one task.

    Music: `tracks` has one TrackFiles per `record.tracks`, in order, or is empty when no file
    was fetched at all (a failed task). Cover: `images` has one entry per image. Other kinds:
    `files` has one `role_entry` per file.
    """
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "task_id": record.task_id,
        "kind": of(record).kind.value,
        "status": record.status,
        "outcome": outcome(
            record, task_failed=task_failed, tracks=tracks, images=images, files=files
        ),
        "error": _error(record),
    }
    if isinstance(record, MusicRecord):
        doc["tracks"] = _tracks(record, tracks)
    elif isinstance(record, CoverRecord):
        doc["images"] = [dict(entry) for entry in images]
        doc["parent_task_id"] = record.parent_task_id
    elif isinstance(record, OutputRecord):
        doc["files"] = [dict(entry) for entry in files]
    else:  # pragma: no cover - Record is a closed union
        raise TypeError(f"not a record: {type(record).__name__}")
    doc["raw"] = _plain(record.raw)
    doc["archived_at"] = utc_iso(archived_at)
    doc["archiver"] = {"name": ARCHIVER_NAME, "version": version}
    return doc


def encode_manifest(doc: Mapping[str, Any]) -> bytes:
    """UTF-8 JSON, indented, keys in SPEC order, trailing newline. NaN/Infinity → ValueError."""
    text = json.dumps(_ordered(doc), indent=2, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


def decode_manifest(data: bytes) -> dict[str, Any]:
    """Parse a stored manifest; ValueError when it is not a schema_version 1 manifest."""
    try:
        doc = json.loads(data)
    except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise ValueError(f"manifest is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError("manifest is not a JSON object")
    version = doc.get("schema_version")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise ValueError(f"unsupported manifest schema_version {version!r}")
    kind = doc.get("kind")
    if kind not in _REQUIRED:
        raise ValueError(f"manifest kind {kind!r} is not one of {', '.join(_REQUIRED)}")
    missing = [key for key in (*_REQUIRED_COMMON, *_REQUIRED[kind]) if key not in doc]
    if missing:
        raise ValueError(f"manifest lacks {', '.join(missing)}")
    if doc["outcome"] not in OUTCOMES:
        raise ValueError(f"manifest outcome {doc['outcome']!r} is unknown")
    return doc


# --- helpers ----------------------------------------------------------------------------------


def _error(record: Record) -> dict[str, Any] | None:
    code = record.error_code if record.error_code != _API_SUCCESS_CODE else None
    message = (
        record.error_message if record.error_message and record.error_message.strip() else None
    )
    if code is None and message is None:
        return None
    return {"code": code, "message": message}


def _tracks(record: MusicRecord, files: Sequence[TrackFiles]) -> list[dict[str, Any]]:
    if files and len(files) != len(record.tracks):
        raise ValueError(f"{len(files)} TrackFiles for {len(record.tracks)} tracks")
    files = files or [TrackFiles(audio=None, image=None)] * len(record.tracks)
    return [
        {
            "audio_id": track.audio_id,
            "title": track.title,
            "tags": track.tags,
            "duration": track.duration,
            "model_name": track.model_name,
            "prompt": track.prompt,
            "created_at": track.created_at,
            "audio": dict(got.audio) if got.audio is not None else None,
            "image": dict(got.image) if got.image is not None else None,
        }
        | {key: dict(entry) for key, entry in (("lyrics", got.lyrics), ("lrc", got.lrc)) if entry}
        for track, got in zip(record.tracks, files, strict=True)
    ]


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _plain(value: Any) -> Any:
    """Mappings (even read-only proxies) and tuples → dicts and lists, order kept."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _ordered(doc: Mapping[str, Any]) -> dict[str, Any]:
    out = _reorder(doc, _TOP_KEYS)
    if isinstance(out.get("tracks"), list):
        out["tracks"] = [_ordered_track(t) for t in out["tracks"]]
    for key in ("images", "files"):
        if isinstance(out.get(key), list):
            out[key] = [_ordered_file(e) for e in out[key]]
    return out


def _ordered_track(track: Any) -> Any:
    if not isinstance(track, Mapping):
        return track
    out = _reorder(track, _TRACK_KEYS)
    for key in ("audio", "image", "lyrics", "lrc"):
        if key in out:
            out[key] = _ordered_file(out[key])
    return out


def _ordered_file(entry: Any) -> Any:
    return _reorder(entry, _FILE_KEYS) if isinstance(entry, Mapping) else entry


def _reorder(mapping: Mapping[str, Any], order: Sequence[str]) -> dict[str, Any]:
    known = {key: mapping[key] for key in order if key in mapping}
    return known | {key: value for key, value in mapping.items() if key not in known}
