"""A state and archive root as a real archive of N tasks has them once indexed: each archived
task's view row in its shard, and the browse files written from them. The daemon's index is then
measured in its steady state (new tasks on top of a page already written), not as the first
index of a million tasks that have no manifest.

Every row is the row of one of the bench server's tiny tasks (two tracks, a title, style tags,
a cover each, a line of lyrics: about 1 KB of page and 0.2 KB of playlist), with the task's own
ID and a date before any appended task's, in shards of SHARD_TASKS in that order. Written
with the archiver's own Indexer, which looks for changed tasks first (finding none), so the
state and the files are what `run` would have left.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from archiver.browse.indexer import SHARD_TASKS, Indexer
from archiver.browse.view import view_row
from archiver.state.store import StateStore
from archiver.storage.local import LocalStorage

_ID = "feedface" * 4  # the template's task ID, replaced by each task's
_WHEN = "2001-01-01T00:00:00Z"  # the template's date, likewise
_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)  # task n is n seconds after it: all before today


def _template() -> tuple[str, str, str, str, int]:
    track = {
        "title": "Sandbox song feedfa",
        "tags": "electrifying, rock",
        "duration": 0.2,
        "model_name": "chirp-v4",
        "created_at": _WHEN,
        "prompt": "[Verse] a tiny song",
    }
    doc = {
        "task_id": _ID,
        "kind": "music",
        "status": "SUCCESS",
        "outcome": "archived",
        "tracks": [
            track
            | {
                "audio_id": f"{n:032x}",
                "audio": {"path": f"{_ID}/{n:032x}.mp3"},
                "image": {"path": f"{_ID}/{n:032x}.jpg"},
            }
            for n in (1, 2)
        ],
    }
    row = view_row(doc)
    return row.data, row.lyrics, row.m3u, row.hay, row.tracks


def seed(state_path: Path, archive: Path, ids: list[str]) -> None:
    """Add a view row for each of `ids` (archived tasks in the state, updated_at 1.0) and write
    both files from them."""
    data, lyrics, m3u, hay, tracks = _template()

    def values(start: int) -> Iterator[tuple[object, ...]]:
        for n, task_id in enumerate(ids[start : start + 100_000], start):
            when = (_EPOCH + timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%SZ")
            yield (
                task_id,
                n // SHARD_TASKS,
                when,
                data.replace(_ID, task_id).replace(_WHEN, when),
                lyrics,
                m3u.replace(_ID, task_id),
                hay.replace(_ID, task_id),
                tracks,
            )

    with StateStore.open(state_path) as state:
        for start in range(0, len(ids), 100_000):
            with state.transaction() as db:
                db.executemany(
                    "INSERT INTO view (task_id, seen_at, shard, sort_key, data, lyrics, m3u, hay, "
                    "tracks) VALUES (?, 1.0, ?, ?, ?, ?, ?, ?, ?)",
                    values(start),
                )
        with state.transaction() as db:
            db.executemany(
                "INSERT INTO view_shards (shard, changes) VALUES (?, 1)",
                ((n,) for n in range(-(-len(ids) // SHARD_TASKS))),
            )
        asyncio.run(_write(state, archive))


async def _write(state: StateStore, archive: Path) -> None:
    storage = LocalStorage(archive)
    try:
        indexer = Indexer(state, storage)
        await indexer.update_rows()  # finds every row current (and says when it looked)
        await indexer.write()
    finally:
        await storage.close()
