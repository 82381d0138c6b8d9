"""The daemon's side of a full storage: say once that archiving paused, and resume it by
itself when space returns, without a restart.

The engine holds archiving at the first StorageFull (see Engine.held). The daemon calls
`check` every few seconds and on SIGHUP: the first check that sees the hold logs
`archiving_paused` (cause `storage_full`, the folder or bucket, its free bytes) and marks
/healthz failing; later checks ask the folder's free space (one statvfs) and resume once there
is room for what was refused. A bucket's free space cannot be asked: archiving tries again
every BUCKET_RETRY_S, quietly; the first task archived after that says `archiving_resumed`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog

from archiver.engine.loop import Engine
from archiver.errors import StorageFull
from archiver.storage.space import free_bytes
from archiver.tasks.taskstate import Phase, TaskState

log = structlog.get_logger()

BUCKET_RETRY_S = 60.0  # a full bucket is tried again this often (its free space is unknown)
# Resume with room for more than the write that failed: without it, the first file to come
# would fill the disk again at once.
RESUME_MARGIN_BYTES = 1 << 20


class SpaceWatch:
    def __init__(
        self, engine: Engine, *, min_free_bytes: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._engine = engine
        self._min_free = min_free_bytes
        self._clock = clock
        self.paused: StorageFull | None = None  # what archiving waits for, as first met
        self._tried_at = 0.0

    def health(self) -> dict[str, Any] | None:
        """/healthz's `archiving_paused` (None while archiving)."""
        if self.paused is None:
            return None
        return {
            "cause": "storage_full",
            "where": self.paused.where,
            "free_bytes": self.paused.free_bytes,
        }

    def check(self, *, now: bool = False) -> None:
        """Notice a new hold, or resume when space returned. `now` (SIGHUP): a full bucket is
        tried again at once."""
        held = self._engine.held
        if held is not None and self.paused is None:
            self.paused = held
            self._tried_at = self._clock()
            log.error(
                "archiving_paused",
                cause="storage_full",
                where=held.where,
                free_bytes=held.free_bytes,
                error=str(held),
            )
            return
        if held is None or self.paused is None:
            return  # archiving, or trying a bucket again (see task_changed)
        if held.path is not None:
            free = free_bytes(held.path)
            needed = held.needed_bytes or self._min_free + RESUME_MARGIN_BYTES
            if free is not None and free >= needed:
                self._resumed(free_bytes=free)
                self._engine.resume()
        elif now or self._clock() - self._tried_at >= BUCKET_RETRY_S:
            self._tried_at = self._clock()
            self._engine.resume()

    def task_changed(self, state: TaskState) -> None:
        """A task archived while a bucket was being tried again: it has room."""
        if self.paused is not None and self._engine.held is None and state.phase in _STORED:
            self._resumed(free_bytes=None)

    def _resumed(self, *, free_bytes: int | None) -> None:
        assert self.paused is not None
        where = self.paused.where
        log.info("archiving_resumed", cause="storage_full", where=where, free_bytes=free_bytes)
        self.paused = None


_STORED = frozenset({Phase.ARCHIVED, Phase.PARTIAL, Phase.FAILED})  # phases a manifest makes
