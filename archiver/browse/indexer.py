"""Keeps `index.html` and `playlist.m3u8` current in storage, from view rows kept in the state.

`refresh` reads only the manifests of tasks that changed since their row was made (the state's
`updated_at` says which), then rewrites both files if anything changed since it last did:
that is what `backfill` does at its end and `run` at most once a minute and at shutdown.
`rebuild` (the `index` command) reads the manifest of every task the state knows.
Both files are drafted in the storage's temp folder, streamed from the state's rows (see
draft.py: after a few new tasks, the new rows and a kernel copy of the old ones), then stored
like any file: atomically (rename; S3: upload, then confirm), the playlist first, so a page
never names a playlist older than itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from archiver import __version__
from archiver.browse.draft import Current, Draft, draft
from archiver.browse.render import (
    INDEX_CONTENT_TYPE,
    INDEX_KEY,
    PLAYLIST_CONTENT_TYPE,
    PLAYLIST_KEY,
)
from archiver.browse.store import FileMark, ViewStore, read_snapshot
from archiver.browse.view import ViewRow, view_row
from archiver.errors import StorageError
from archiver.fetch.archiving import read_manifest
from archiver.kinds.timestamps import utc_iso_of
from archiver.state.store import StateStore
from archiver.storage import Storage
from archiver.storage.space import os_fault
from archiver.tasks.taskstate import Phase

log = structlog.get_logger()

SHOWN = (Phase.ARCHIVED, Phase.PARTIAL, Phase.FAILED)  # the phases that leave a manifest
# After its first look at every task, a refresh looks only at tasks updated since its last look
# began, less this margin: the engine stamps them with the same wall clock, which may step back.
CLOCK_MARGIN_S = 3600.0
_READ_CHUNK = 64  # manifests read at once (S3: concurrent GETs; local: no difference)
_REBUILD_CHUNK = 5000  # rows stored at once by `rebuild`


@dataclass(frozen=True)
class Written:
    tasks: int  # tasks on the page
    tracks: int  # archived MP3s: playlist entries
    read: int  # manifests read to get there
    spliced: bool  # the rows already written were copied, not written again


class Indexer:
    def __init__(
        self,
        state: StateStore,
        storage: Storage,
        *,
        clock: Callable[[], float] = time.time,
        version: str = __version__,
    ) -> None:
        self._state = state
        self._views = ViewStore(state)
        self._storage = storage
        self._clock = clock
        self._version = version
        # Whether the files lag behind the rows: a row changed since the last write. None at
        # start: then only a missing file says so (a process killed between storing rows and
        # writing the files leaves them behind until the next change, or `index`).
        self._behind: bool | None = None
        # See CLOCK_MARGIN_S; kept in the state, so that a restart looks only at the tasks
        # updated since the last look (a million tasks take 0.6 s to look at). None: look
        # at every task (a new state).
        self._since: float | None = self._views.looked()

    async def refresh(self) -> Written | None:
        """Bring the rows of changed tasks up to date; rewrite both files when a row changed
        or a file is missing. Returns what was written (None: nothing to do).
        Raises StorageError when the storage fails (nothing is kept: the next call reads the
        same manifests again)."""
        read = await self.update_rows()
        if self._behind is None:
            self._behind = not await self.files_present()
        if not self._behind:
            return None
        return await self.write(read=read)

    async def files_present(self) -> bool:
        """Whether both files are in the storage."""
        return await self._storage.exists(INDEX_KEY) and await self._storage.exists(PLAYLIST_KEY)

    async def update_rows(self) -> int:
        """Store the rows of the tasks changed since their row was made (each one manifest
        read); return how many were read."""
        since = self._clock() - CLOCK_MARGIN_S
        stale = self._views.stale(SHOWN, changed_since=self._since)
        rows, gone = await self._read(stale)
        self._views.put(rows, drop=gone, looked=since)
        if stale:
            self._behind = True
        self._since = since
        return len(stale)

    async def rebuild(self) -> Written:
        """Read the manifest of every task the state knows and write both files anew. The rows
        are stored a chunk at a time (a million never sit in memory); until the last one is,
        the state says no look was made, so that a rebuild cut short is finished by the next
        refresh's look at every task."""
        since = self._clock() - CLOCK_MARGIN_S
        tasks = self._state.task_times()
        self._views.put([], replace_all=True)
        for start in range(0, len(tasks), _REBUILD_CHUNK):
            rows, _gone = await self._read(tasks[start : start + _REBUILD_CHUNK])
            self._views.put(rows)
        self._views.put([], looked=since)
        self._since = since
        return await self.write(read=len(tasks))

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
        """Both files from the stored rows; `read`: the manifests read for them, for the log."""
        current = self._current()
        try:
            made = await asyncio.to_thread(self._draft, current)
        except OSError as e:  # the temp folder is full, say: a StorageError like any write's
            raise os_fault(self._storage.temp_dir / INDEX_KEY, e) from e
        try:
            await self._storage.replace_file(
                PLAYLIST_KEY, made.playlist, content_type=PLAYLIST_CONTENT_TYPE
            )
            await self._storage.replace_file(INDEX_KEY, made.page, content_type=INDEX_CONTENT_TYPE)
        finally:
            made.page.unlink(missing_ok=True)  # not stored: the storage consumes what it stores
            made.playlist.unlink(missing_ok=True)
        layout = made.layout
        # Recorded only while the stored files are the drafts (a rename keeps size, mtime and
        # inode): a splice copies from them.
        stored = current and (_mark_of(current.page), _mark_of(current.playlist))
        self._views.set_layout(layout if stored == (layout.page, layout.playlist) else None)
        written = Written(tasks=layout.rows, tracks=layout.tracks, read=read, spliced=made.spliced)
        log.info(
            "index_written",
            tasks=written.tasks,
            tracks=written.tracks,
            manifests_read=read,
            bytes=layout.page.size,
            spliced=made.spliced,
        )
        self._behind = False
        return written

    def _current(self) -> Current | None:
        """The files' local names and the last layout (None: S3, no splice is possible)."""
        page, playlist = self._storage.local_path(INDEX_KEY), self._storage.local_path(PLAYLIST_KEY)
        if page is None or playlist is None:
            return None  # S3: each write is a full one
        return Current(page=page, playlist=playlist, layout=self._views.layout())

    def _draft(self, current: Current | None) -> Draft:
        generated = utc_iso_of(self._clock()).replace("T", " ").replace("Z", " UTC")
        db = read_snapshot(self._state)
        try:
            return draft(
                db, self._storage.temp_dir, current, generated_at=generated, version=self._version
            )
        finally:
            db.close()


def _mark_of(path: str) -> FileMark | None:
    """The file's mark as it is now: the layout holds only for the files it describes."""
    try:
        return FileMark.of(os.stat(path))
    except OSError:
        return None


async def refresh_logged(indexer: Indexer, *, changed: bool = True) -> Written | None:
    """`indexer.refresh()` for `backfill` and `run`: a failure is logged, never raised (the
    archive is what matters; the next refresh tries again). Not `changed` (no task changed
    since the files were last written): only missing files are written, as looking for
    stale rows reads every task."""
    try:
        if not changed and await indexer.files_present():
            return None
        return await indexer.refresh()
    except (StorageError, sqlite3.Error) as exc:
        log.warning("index_not_written", error=str(exc))
        return None


async def keep_current(indexer: Indexer, interval_s: float, stop: asyncio.Event) -> None:
    """`run`: refresh now and then every `interval_s` until `stop` (the caller refreshes once
    more after its last archiving)."""
    while not stop.is_set():
        await refresh_logged(indexer)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
