"""The daemon's task-list watcher: notices a change of the file at once (inotify, through
watchfiles, on its folder: an append, a save by rename, a delete) and, as a fallback and to
see what inotify cannot (a network mount), every `WATCH_INTERVAL_S` by its inode, size and
mtime. An append costs the appended lines (`ListFile`); anything else, and SIGHUP, a whole
reread that also stops the tasks no longer listed.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import structlog
from watchfiles import awatch

from archiver.engine.loop import Engine
from archiver.errors import UsageError
from archiver.service.metrics import Metrics
from archiver.tasks.listfile import ListFile
from archiver.tasks.tasklist import BadLine, tasks_of
from archiver.tasks.taskstate import RETRYABLE

log = structlog.get_logger()

WATCH_INTERVAL_S = 2.0  # the stat fallback: how soon a change inotify missed is noticed
_NOTIFY_TIMEOUT_MS = 1000  # how long the inotify thread waits before it checks for a stop

Signature = tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns


class TaskListWatcher:
    """Feeds the engine from the list file whenever the file is not what it was."""

    def __init__(self, path: Path, engine: Engine, metrics: Metrics) -> None:
        self._path = path
        self._file = ListFile(path)
        self._engine = engine
        self._metrics = metrics
        self._signature: Signature | None = None
        self._problem: str | None = None  # the last problem logged, to log each only once
        self._changed = asyncio.Event()  # inotify saw the file change
        self._stop_notify = asyncio.Event()
        self.loaded = False  # a list was read at least once in this process

    async def notice_changes(self) -> None:
        """Set the changed flag whenever inotify reports the file; until `stop`. Without
        inotify (no such folder yet, no watches left) the stat fallback still sees edits."""
        name = self._path.name
        try:
            async for _ in awatch(
                self._path.parent,
                watch_filter=lambda _change, path: Path(path).name == name,
                recursive=False,
                stop_event=self._stop_notify,
                rust_timeout=_NOTIFY_TIMEOUT_MS,
            ):
                self._changed.set()
        except (OSError, RuntimeError) as exc:
            log.warning(
                "task_list_notify_unavailable",
                file=str(self._path),
                error=str(exc),
                polling_every_s=WATCH_INTERVAL_S,
            )

    def stop(self) -> None:
        self._stop_notify.set()

    async def wait(self, reread: asyncio.Event) -> bool:
        """Until the file changed, SIGHUP (`reread`, then True: read it whole) or
        WATCH_INTERVAL_S passed."""
        waiters = [asyncio.create_task(reread.wait()), asyncio.create_task(self._changed.wait())]
        try:
            await asyncio.wait(waiters, timeout=WATCH_INTERVAL_S, return_when="FIRST_COMPLETED")
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        self._changed.clear()
        force = reread.is_set()
        reread.clear()
        return force

    def _stat(self) -> Signature | None:
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            self._report("task_list_missing", None)
            return None
        except OSError as exc:
            self._report("task_list_unreadable", exc.strerror or str(exc))
            return None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def _report(self, event: str, error: str | None) -> None:
        if self._problem == f"{event}:{error}":
            return
        self._problem = f"{event}:{error}"
        if self.loaded:  # the daemon keeps archiving what the last good list named
            log.warning(event, file=str(self._path), error=error, keeping_tasks=True)
        else:
            log.warning(event, file=str(self._path), error=error, waiting=True)

    async def check(self, *, force: bool = False) -> bool:
        """Read what changed in the list (all of it if `force`); True when the engine got
        tasks or lost some."""
        signature = self._stat()
        if signature is None:
            self._signature = None
            self._file.forget()  # a new file by the same name is read whole
            return False
        if signature == self._signature and not force:
            return False
        self._signature = signature  # taken before reading: a later edit is seen next time
        if force:
            self._file.forget()
        bad: list[BadLine] = []
        try:
            self._engine.stage((), first=True)
            whole = await self._file.read(
                lambda items: self._engine.stage(tasks_of(items, bad)), self._engine.stage_bare
            )
            if whole:
                # Process start: tasks that ended without everything archived are tried
                # again, as a new `backfill` would. Later edits only add and remove.
                conflicts = self._engine.set_tasks(
                    retry=() if self.loaded else RETRYABLE, keep_http=True
                )
            else:
                conflicts = self._engine.add_tasks().conflicts
        except UsageError as exc:  # unreadable, or the state cannot be written: next check
            self._signature = None
            self._file.forget()
            self._report("task_list_unreadable", str(exc))
            return False
        self._file.commit()
        self._problem = None
        bad.extend(c.as_bad_line() for c in conflicts)
        for line in sorted(bad, key=lambda line: line.line_no):
            log.warning(
                "task_line_skipped", file=str(self._path), line=line.line_no, reason=line.reason
            )
        self._metrics.seed(self._engine.pending.values())
        log.info(
            "task_list_loaded" if whole else "task_list_appended",
            file=str(self._path),
            tasks=sum(self._engine.counts.values()),
            pending=len(self._engine.pending),
            skipped_lines=len(bad),
        )
        self.loaded = True
        return True
