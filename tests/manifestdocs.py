"""Manifest documents as the browse view reads them: a music task of two tracks, any field
changed at will."""

from __future__ import annotations

from typing import Any

TASK = "a1b2c3"


def music(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema_version": 1,
        "task_id": TASK,
        "kind": "music",
        "status": "SUCCESS",
        "outcome": "archived",
        "error": None,
        "tracks": [track(1), track(2)],
        "raw": {"createTime": 1735689600000},
        "archived_at": "2026-01-02T00:00:00Z",
        "archiver": {"name": "suno-archiver", "version": "0"},
    }
    return doc | changes


def track(n: int, **changes: Any) -> dict[str, Any]:
    return {
        "audio_id": f"au{n}",
        "title": "Neon Highway",
        "tags": "synthwave",
        "duration": 198.44 + n,
        "model_name": "chirp-v4",
        "prompt": "[Verse] the same lyrics",
        "created_at": f"2025-01-0{n}T00:00:00Z",
        "audio": {"path": f"{TASK}/au{n}.mp3", "bytes": 1, "sha256": "0" * 64}
        | {"content_type": "audio/mpeg"},
        "image": {"path": f"{TASK}/au{n}.jpeg", "bytes": 1, "sha256": "0" * 64},
    } | changes
