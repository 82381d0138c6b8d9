"""What an engine is given, and asked about one task: a list in pieces (`stage`), a whole list
(`set_tasks`), more tasks (`add_tasks`: appended lines, the intake), a callback's poll
(`poll_now`). A part of `Engine` (loop.py), kept apart so that the scheduling loop reads on its
own; the given set itself lives in the state (`Store.given`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterable

from archiver.engine.pending import PendingTasks
from archiver.engine.shared import state_error
from archiver.state.given import Added, Conflict
from archiver.state.opening import STATE_ERRORS
from archiver.state.protocol import Given, Store
from archiver.tasks.expiry import RISK_PHASES, risk_window
from archiver.tasks.tasklist import TaskRef
from archiver.tasks.taskstate import Phase, TaskState


class TaskGiving:
    """Engine's methods that give it tasks (see the module docstring); Engine sets these."""

    _given: Given
    _state: Store
    _owner: str | None
    _clock: Callable[[], float]
    _pending: PendingTasks
    _running: dict[str, asyncio.Task[None]]
    _repoll: set[str]
    _called_back: set[str]
    _wake: asyncio.Event
    take_changes: Callable[[Iterable[TaskState]], None]

    @property
    def given_lost(self) -> bool:
        """What this engine was given was emptied under it (a shared state's connection was
        replaced): the daemon gives it again whole (`set_tasks`)."""
        return self._given.lost

    def stage(self, refs: Iterable[TaskRef], *, first: bool = False) -> None:
        """Hold `refs` for the next `set_tasks` or `add_tasks` (`first`: forget what an
        unfinished batch left): a long list is fed in pieces, read between awaits."""
        try:
            self._given.stage(refs, first=first)
        except STATE_ERRORS as exc:
            raise state_error(self._state, exc) from exc

    def stage_bare(self, data: bytes, first_line: int) -> bool:
        """`stage` for a piece of a list whose lines are each a bare ID (`GivenTasks.stage_bare`):
        False when it is not, and nothing was staged."""
        try:
            return self._given.stage_bare(data, first_line)
        except STATE_ERRORS as exc:
            raise state_error(self._state, exc) from exc

    def set_tasks(
        self,
        refs: Iterable[TaskRef] = (),
        *,
        retry: Collection[Phase] = (),
        keep_http: bool = False,
    ) -> list[Conflict]:
        """Make `refs` (and those staged) the whole task list: new IDs are due at once, IDs no
        longer listed stop being polled. Tasks ended in a `retry` phase are tried again. With
        `keep_http` (`run`), the tasks the HTTP intake was given stay whether the list names
        them or not. Returns the mentions whose prefix contradicts an earlier one."""
        return self._give(refs, whole=True, retry=retry, http=keep_http).conflicts

    def add_tasks(
        self,
        refs: Iterable[TaskRef] = (),
        *,
        via_http: bool = False,
        retry: Collection[Phase] = (),
    ) -> Added:
        """Add `refs` (and those staged) to the tasks given so far (an appended line, the
        HTTP intake, saved to the state before this returns) and wake the engine: new tasks
        are due at once; known ones keep their schedule, except those ended in a `retry`
        phase, which are due again at once. `via_http` marks them as the HTTP intake's, kept
        by `set_tasks(keep_http=True)`. Costs the refs' own work, whatever the number of tasks
        given before."""
        return self._give(refs, whole=False, retry=retry, http=via_http)

    def _give(
        self, refs: Iterable[TaskRef], *, whole: bool, retry: Collection[Phase], http: bool
    ) -> Added:
        try:
            self._given.stage(refs)
            merged = self._given.merge(whole=whole, now=self._clock(), retry=retry, http=http)
            # A shared state's pending tasks are every daemon's, whichever list or intake gave
            # them: a whole list read again drops none of them from this daemon's schedule.
            shared = self._state.pending_since(0) if whole and self._owner else ()
        except STATE_ERRORS as exc:
            raise state_error(self._state, exc) from exc
        self._pending.merge(merged, whole=whole, running=self._running)
        self.take_changes(shared)
        self._wake.set()
        return Added(merged.new, merged.conflicts)

    def not_archived(self) -> list[TaskState]:
        """The given tasks that did not end archived, in the order given (read from the
        state: for the summary of a run)."""
        return self._given.not_archived()

    def at_risk(self, now: float, retention_days: float) -> int:
        """How many given tasks are at risk of losing their files (`archiver.expiry`), counted
        in the state: partial and timed-out tasks are not held here."""
        try:
            return self._given.count_born(*risk_window(now, retention_days), RISK_PHASES)
        except STATE_ERRORS as exc:
            raise state_error(self._state, exc) from exc

    def poll_now(self, task_id: str) -> bool:
        """Poll a pending task at once (a callback said it moved on), or right after the step
        in flight; False when the engine has no such pending task. Asking again while that
        poll is still due costs nothing more. From then on its scheduled polls are at least
        CALLBACK_NET_S apart: the vendor's next callback is expected to say when to look."""
        state = self._pending.states.get(task_id)
        if state is None or state.phase is not Phase.PENDING:
            return False
        self._called_back.add(task_id)
        if task_id in self._running:
            self._repoll.add(task_id)
            return True
        now = self._clock()
        if self._owner is not None and state.next_poll_at > now:
            try:  # on a shared state, a claim takes only a task whose row says it is due
                self._state.due_now(task_id, now)
            except STATE_ERRORS as exc:
                raise state_error(self._state, exc) from exc
        if state.next_poll_at > now:
            self._pending.due_at(task_id, now)
            self._wake.set()
        return True

    def task(self, task_id: str) -> TaskState | None:
        """One task as the engine or, for a task it does not hold, the state knows it."""
        state = self._pending.states.get(task_id)
        if state is not None:
            return state
        try:
            return self._state.get_many([task_id]).get(task_id)
        except STATE_ERRORS as exc:
            raise state_error(self._state, exc) from exc
