"""The engine's side of its state: claims on a shared one, tasks other daemons changed, and
what happens when the state cannot be written or reached. A part of `Engine` (loop.py), kept
apart so that the scheduling loop reads on its own.

On a state of its own (SQLite) every task is the engine's. On a shared one (PostgreSQL) a due
task is stepped only under a lease this daemon won (`claim`, one round trip for all the due
ones); a task another daemon holds is read again and looked at later; a step whose lease lapsed
meanwhile is not saved (LeaseLost). A state that does not answer pauses the engine for
STATE_RETRY_S at a time; the tasks in flight keep their files (stored idempotently).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from pathlib import Path

import structlog

from archiver.api.client import AUTH_RETRY_S
from archiver.engine.pending import PendingTasks
from archiver.errors import StorageFull, UsageError, one_line
from archiver.state.given import Merged
from archiver.state.opening import STATE_ERRORS
from archiver.state.protocol import LeaseLost, Store
from archiver.storage.space import state_full
from archiver.tasks.taskstate import UNKNOWN_KIND, Phase, TaskState

log = structlog.get_logger()

# A state write that failed (full disk) pauses the daemon this many base retry delays (60 s),
# at most AUTH_RETRY_S.
STATE_RETRY_FACTOR = 2.0
STATE_RETRY_S = 5.0  # a shared state that did not answer is asked again this often
CLAIM_RETRY_S = 5.0  # a task another daemon holds is looked at again this often (at most lease_s)


class SharedState:
    """Engine's methods about its state (see the module docstring); Engine sets these."""

    _state: Store
    _owner: str | None
    _lease_s: float
    _pending: PendingTasks
    _running: dict[str, asyncio.Task[None]]
    _paused_until: float
    _wake: asyncio.Event
    _clock: Callable[[], float]
    _fatal_errors: bool
    _fatal: BaseException | None
    _retry_base_s: float
    _hold: Callable[[TaskState, StorageFull], TaskState]

    def _claimed(self, due: list[TaskState], now: float) -> list[TaskState]:
        """Those of `due` this engine may step now: all of them on a state of its own; on a
        shared one, those it won a lease on (one round trip for the lot). The others are
        read again: another daemon is stepping them or just did (its schedule is taken)."""
        if self._owner is None:
            return due
        ids = [s.task_id for s in due]
        try:
            won = self._state.claim(ids, self._owner, now, self._lease_s)
            lost = [tid for tid in ids if tid not in won]
            fresh = self._state.get_many(lost) if lost else {}
        except STATE_ERRORS as exc:
            self._state_unreachable(exc)
            for state in due:
                self._pending.due_at(state.task_id, self._paused_until)
            return []
        for task_id in lost:
            state = fresh.get(task_id)
            if state is None:
                continue
            self._pending.record(state)
            if state.phase is Phase.PENDING and state.next_poll_at <= now:
                # leased by a daemon that is stepping it: look again when its lease may lapse
                self._pending.due_at(task_id, now + min(self._lease_s, CLAIM_RETRY_S))
        return [s for s in due if s.task_id in won]

    def _state_unreachable(self, exc: Exception) -> None:
        """The shared state cannot be reached (PostgreSQL down or restarting): no task starts
        until it answers again; the tasks in flight keep their files (stored idempotently)."""
        now = self._clock()
        if now >= self._paused_until:
            log.error("state_unreachable", state=self._state.where, error=one_line(exc))
        self._paused_until = max(self._paused_until, now + STATE_RETRY_S)
        self._wake.set()

    def take_changes(self, states: Iterable[TaskState]) -> None:
        """Tasks other daemons added or stepped (a shared state): the pending ones are
        scheduled here too, whichever daemon is free steps them; ended ones are forgotten."""
        new: list[TaskState] = []
        counts: dict[tuple[str, Phase], int] = {}
        for state in states:
            if state.task_id in self._running or self._pending.states.get(state.task_id) == state:
                continue
            if state.task_id in self._pending.states:
                self._pending.record(state)
            elif state.phase is Phase.PENDING:
                new.append(state)
                key = (state.kind.value if state.kind else UNKNOWN_KIND, state.phase)
                counts[key] = counts.get(key, 0) + 1
        if new:
            self._pending.merge(Merged(new, counts, False, [], 0), whole=False, running=())
            self._wake.set()

    def _lease_lost(self, exc: LeaseLost) -> None:
        """This daemon's lease lapsed (it was frozen, or cut off from the database) and
        another took the task over: nothing of this step is saved; the task is read again."""
        log.warning("lease_lost", task_id=exc.task_id, owner=self._owner)
        try:
            fresh = self._state.get_many([exc.task_id]).get(exc.task_id)
        except STATE_ERRORS as error:
            self._state_unreachable(error)
            self._pending.due_at(exc.task_id, self._paused_until)
            return
        if fresh is not None:
            self._pending.record(fresh)

    def _state_write_failed(self, state: TaskState, exc: Exception) -> None:
        """The step's outcome could not be saved. A full disk holds archiving as any full
        storage does. Otherwise backfill ends with the error, and the daemon pauses. Either
        way the task is done again from the state it had (which is what the state still says;
        storing is idempotent, so files already stored are not stored twice)."""
        full = state_full(Path(self._state.where), exc)
        if full is not None:
            self._hold(state, full)
            self._pending.due_at(state.task_id, self._clock())
            return
        if self._fatal_errors:
            log.error("state_write_failed", error=one_line(exc), state=self._state.where)
            self._fatal = state_error(self._state, exc)
            self._wake.set()
            return
        pause_s = min(AUTH_RETRY_S, STATE_RETRY_FACTOR * self._retry_base_s)
        self._paused_until = max(self._paused_until, self._clock() + pause_s)
        log.error(
            "state_write_failed",
            error=one_line(exc),
            state=self._state.where,
            retry_in_s=round(self._paused_until - self._clock(), 1),
        )
        self._pending.due_at(state.task_id, self._paused_until)


def state_error(state: Store, exc: Exception) -> UsageError:
    """A state that cannot be written is for a person to fix (a full disk, a locked file, a
    database server that is down)."""
    return UsageError(f"{state.where}: cannot save the task state: {one_line(exc)}")
