"""Keeps the browse files current in storage, from view rows kept in the state.

`refresh` reads only the manifests of tasks that changed since their row was made (the state's
`updated_at` says which), then writes what changed since it last wrote: that is what `backfill`
does at its end and `run` at most once a minute and at shutdown. `rebuild` (the `index`
command) reads the manifest of every task the state knows and writes every file anew.

A write renders only the shards whose rows changed (after new tasks, the newest one; after a
task archived again, its own), each from one snapshot of the state, and stores each file like
any small file (temp name, then rename; S3: put, then confirm). Then the table of shards, then
`playlist.m3u8`, then `index.html` (when missing, or first written by this process): a reader
never finds a page, or a table, naming a shard file that is not there yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from archiver import __version__
from archiver.browse.dialect import open_snapshot, view_store
from archiver.browse.pgstore import PgSnapshot
from archiver.browse.render import (
    INDEX_CONTENT_TYPE,
    INDEX_KEY,
    PLAYLIST_CONTENT_TYPE,
    PLAYLIST_KEY,
    SCRIPT_CONTENT_TYPE,
    TABLE_KEY,
    ShardFiles,
    render_page,
    render_recent,
    render_shard,
    render_table,
    shard_playlist_key,
    tasks_key,
    words_key,
)
from archiver.browse.store import SqliteSnapshot
from archiver.browse.view import ViewRow, view_row
from archiver.errors import StorageError
from archiver.fetch.archiving import read_manifest
from archiver.kinds.timestamps import utc_iso_of
from archiver.state.opening import STATE_ERRORS
from archiver.state.protocol import Store
from archiver.storage import Storage
from archiver.tasks.taskstate import Phase

log = structlog.get_logger()

# The writer's snapshot, on either store (browse/store.py and browse/pgstore.py).
Snapshot = SqliteSnapshot | PgSnapshot
# Several daemons on one state: the one holding this advisory lock writes the browse files.
_INDEX_LOCK = "index"


SHOWN = (Phase.ARCHIVED, Phase.PARTIAL, Phase.FAILED)  # the phases that leave a manifest
# After its first look at every task, a refresh looks only at tasks updated since its last look
# began, less this margin: the engine stamps them with the same wall clock, which may step back.
CLOCK_MARGIN_S = 3600.0
# Tasks a shard holds: the files a rewrite after new tasks makes are about this many tasks'
# rows (1-3 KB each with lyrics), a search reads one small file per shard.
SHARD_TASKS = 500
_READ_CHUNK = 64  # manifests read at once (S3: concurrent GETs; local: no difference)
_REBUILD_CHUNK = 5000  # rows stored at once by `rebuild`
_SHARDS_AT_ONCE = 4  # shards rendered and stored at once (S3: concurrent PUTs)


@dataclass(frozen=True)
class Written:
    tasks: int  # tasks on the page
    tracks: int  # archived MP3s
    read: int  # manifests read to get there
    shards: int  # shards whose files were written
    bytes: int  # bytes stored


class Indexer:
    def __init__(
        self,
        state: Store,
        storage: Storage,
        *,
        clock: Callable[[], float] = time.time,
        version: str = __version__,
        shard_tasks: int = SHARD_TASKS,
    ) -> None:
        self._state = state
        self._views = view_store(state)
        self._storage = storage
        self._clock = clock
        self._version = version
        self._shard_tasks = shard_tasks
        # Whether the files lag behind the rows: a row changed since the last write. None at
        # start: then only a missing page or table says so (a process killed between storing
        # rows and writing the files leaves them behind until the next change, or `index`).
        self._behind: bool | None = None
        self._page_written = False  # this process wrote index.html (its bytes follow the version)
        # See CLOCK_MARGIN_S; kept in the state, so that a restart looks only at the tasks
        # updated since the last look (a million tasks take 0.6 s to look at). None: look
        # at every task (a new state).
        self._since: float | None = self._views.looked()

    async def refresh(self) -> Written | None:
        """Bring the rows of changed tasks up to date; write the files of what changed, or of
        everything when the page or its table is missing. Returns what was written (None:
        nothing to do). Raises StorageError when the storage fails (what was not written stays
        due: the next call writes it)."""
        with self._state.try_lock(_INDEX_LOCK) as ours:
            if not ours:  # another daemon of the shared state writes it now
                return None
            return await self._refresh()

    async def _refresh(self) -> Written | None:
        read = await self.update_rows()
        if self._behind is None:
            self._behind = not await self.files_present()
            if self._behind:
                self._views.forget_written()  # the shard files may be gone with them
        if not self._behind:
            return None
        return await self.write(read=read)

    async def files_present(self) -> bool:
        """Whether the page and its table are in the storage."""
        return await self._storage.exists(INDEX_KEY) and await self._storage.exists(TABLE_KEY)

    async def update_rows(self) -> int:
        """Store the rows of the tasks changed since their row was made (each one manifest
        read); return how many were read."""
        since = self._clock() - CLOCK_MARGIN_S
        stale = self._views.stale(SHOWN, changed_since=self._since)
        rows, gone = await self._read(stale)
        self._views.put(rows, drop=gone, looked=since, shard_tasks=self._shard_tasks)
        if stale:
            self._behind = True
        self._since = since
        return len(stale)

    async def rebuild(self) -> Written:
        """Read the manifest of every task the state knows and write every file anew. The rows
        are stored a chunk at a time (a million never sit in memory); until the last one is,
        the state says no look was made, so that a rebuild cut short is finished by the next
        refresh's look at every task."""
        since = self._clock() - CLOCK_MARGIN_S
        self._views.put([], replace_all=True, shard_tasks=self._shard_tasks)
        read = 0
        db = await asyncio.to_thread(open_snapshot, self._state)
        try:
            chunks = db.tasks_in_order(_REBUILD_CHUNK)
            while tasks := await asyncio.to_thread(next, chunks, None):
                rows, _gone = await self._read(tasks)
                self._views.put(rows, shard_tasks=self._shard_tasks)
                read += len(tasks)
        finally:
            await asyncio.to_thread(db.close)
        self._views.put([], looked=since, shard_tasks=self._shard_tasks)
        self._since = since
        self._page_written = False
        return await self.write(read=read)

    async def _read(
        self, tasks: Sequence[tuple[str, float]]
    ) -> tuple[list[tuple[ViewRow, float]], list[str]]:
        """The rows of `tasks` (task ID, updated_at), and the IDs without a readable manifest."""
        rows: list[tuple[ViewRow, float]] = []
        gone: list[str] = []
        for start in range(0, len(tasks), _READ_CHUNK):
            chunk = tasks[start : start + _READ_CHUNK]
            docs = await asyncio.gather(*(read_manifest(self._storage, t) for t, _ in chunk))
            for (task_id, seen), doc in zip(chunk, docs, strict=True):
                if doc is None:
                    gone.append(task_id)
                else:
                    rows.append((view_row(doc), seen))
            await asyncio.sleep(0)  # local reads do not yield: let the daemon's loop breathe
        return rows, gone

    async def write(self, *, read: int = 0) -> Written:
        """The files of every changed shard, then the table, the playlist and the page, from
        one snapshot of the stored rows; `read`: the manifests read for them, for the log."""
        db = await asyncio.to_thread(open_snapshot, self._state)
        try:
            await asyncio.to_thread(db.begin)  # one snapshot for every file
            written = await self._write(db, read)
        finally:
            await asyncio.to_thread(db.close)  # ends the snapshot
        self._behind = False
        log.info(
            "index_written",
            tasks=written.tasks,
            tracks=written.tracks,
            manifests_read=read,
            shards=written.shards,
            bytes=written.bytes,
        )
        return written

    async def _write(self, db: Snapshot, read: int) -> Written:
        changed = await asyncio.to_thread(db.changed_shards)
        stored = 0
        for start in range(0, len(changed), _SHARDS_AT_ONCE):
            chunk = changed[start : start + _SHARDS_AT_ONCE]
            made = await asyncio.to_thread(_render_shards, db, chunk)
            sizes = await _every(*(self._store_shard(files) for files in made))
            stored += sum(sizes)
            self._views.mark_written(files.info for files in made)
        # The table from the main connection: it names only shards whose files are stored.
        table = self._views.shard_table()
        generated = utc_iso_of(self._clock()).replace("T", " ").replace("Z", " UTC")
        stored += await self._store(
            TABLE_KEY,
            render_table(
                table,
                shard_tasks=self._shard_tasks,
                generated_at=generated,
                version=self._version,
            ),
            SCRIPT_CONTENT_TYPE,
        )
        playlist, _ = await asyncio.to_thread(lambda: render_recent(db.newest_m3u()))
        stored += await self._store(PLAYLIST_KEY, playlist, PLAYLIST_CONTENT_TYPE)
        if not self._page_written or not await self._storage.exists(INDEX_KEY):
            page = render_page(version=self._version)
            stored += await self._store(INDEX_KEY, page, INDEX_CONTENT_TYPE)
            self._page_written = True
        return Written(
            tasks=sum(s.tasks for s in table),
            tracks=sum(s.tracks for s in table),
            read=read,
            shards=len(changed),
            bytes=stored,
        )

    async def _store_shard(self, files: ShardFiles) -> int:
        shard = files.info.shard
        sizes = await _every(
            self._store(tasks_key(shard), files.tasks, SCRIPT_CONTENT_TYPE),
            self._store(words_key(shard), files.words, SCRIPT_CONTENT_TYPE),
            self._store(shard_playlist_key(shard), files.playlist, PLAYLIST_CONTENT_TYPE),
        )
        return sum(sizes)

    async def _store(self, key: str, data: bytes, content_type: str) -> int:
        await self._storage.put_bytes(key, data, content_type=content_type)
        return len(data)


async def _every(*stores: Awaitable[int]) -> list[int]:
    """Await every one of `stores`, then raise the first failure: a failed file leaves none of
    the others still being written when the write ends (the next one may write them again)."""
    done = await asyncio.gather(*stores, return_exceptions=True)
    for result in done:
        if isinstance(result, BaseException):
            raise result
    return [r for r in done if not isinstance(r, BaseException)]


def _render_shards(db: Snapshot, shards: Sequence[tuple[int, int]]) -> list[ShardFiles]:
    """Blocking: the files of `shards` ((shard, changes) each) from the snapshot `db`."""
    return [render_shard(shard, changes, db.shard_rows(shard)) for shard, changes in shards]


async def refresh_logged(indexer: Indexer, *, changed: bool = True) -> Written | None:
    """`indexer.refresh()` for `backfill` and `run`: a failure is logged, never raised (the
    archive is what matters; the next refresh tries again). Not `changed` (no task changed
    since the files were last written): only missing files are written, as looking for
    stale rows reads every task."""
    try:
        if not changed and await indexer.files_present():
            return None
        return await indexer.refresh()
    except (StorageError, *STATE_ERRORS) as exc:
        log.warning("index_not_written", error=str(exc))
        return None


async def keep_current(indexer: Indexer, interval_s: float, stop: asyncio.Event) -> None:
    """`run`: refresh now and then every `interval_s` until `stop` (the caller refreshes once
    more after its last archiving)."""
    while not stop.is_set():
        await refresh_logged(indexer)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
