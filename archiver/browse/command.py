"""`suno-archiver index`: the browse files written anew from the manifests of every known task."""

from __future__ import annotations

from archiver.browse.indexer import Indexer
from archiver.browse.render import INDEX_KEY, PLAYLIST_FOLDER, SHARD_FOLDER
from archiver.config import Config
from archiver.errors import StorageError, UsageError
from archiver.state.opening import open_state
from archiver.storage import open_storage


async def write_index(config: Config) -> str:
    """Rebuild the view from the manifests and write every file; returns the line to print.
    Raises UsageError (one line) when the state or the storage cannot be used."""
    state = open_state(config.state)
    try:
        storage = await open_storage(config.storage)
        try:
            written = await Indexer(state, storage).rebuild()
        except StorageError as exc:
            raise UsageError(f"{config.storage.location}: cannot write the index: {exc}") from exc
        finally:
            await storage.close()
    finally:
        state.close()
    where = config.storage.location.rstrip("/")
    return (
        f"{where}/{INDEX_KEY}: {written.tracks} tracks in {written.tasks} tasks "
        f"({written.read} manifests read), in {written.shards} shards under {SHARD_FOLDER}/ "
        f"and {PLAYLIST_FOLDER}/"
    )
