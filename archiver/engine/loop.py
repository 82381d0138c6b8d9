"""The loop `backfill` and `run` share: due tasks → poll → decide → archive → state.

The engine owns the loop: which task runs when, how many at once, and the faults that hold
every task back (a pause, a full storage, a state that cannot be written). What it is given
(lists, appended lines, the intake, callbacks) is `giving`; the pending tasks and their due
queue are `pending`; one task's step (manifest, poll, decision, archive) is `step`, where what a
record means is decided by `lifecycle` (pure) and how a finished task becomes files is
`archiving`. Every change of a task is saved to the state at once, so a kill -9 at any point
loses at most the step in flight; a task that ends is saved with its event (the outbox,
`archiver.state.outbox`), which the daemon's sender delivers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

import structlog

from archiver.api.client import AUTH_RETRY_S, SunoApi
from archiver.engine.giving import TaskGiving
from archiver.engine.pending import PendingTasks
from archiver.engine.shared import SharedState
from archiver.engine.step import TaskStepper
from archiver.errors import (
    ApiUnusable,
    AuthError,
    InternalError,
    NoCredits,
    StorageAccessError,
    StorageFull,
    WrongEndpoint,
)
from archiver.fetch.archiving import Archivist
from archiver.state.opening import STATE_ERRORS
from archiver.state.outbox import NewEvent
from archiver.state.protocol import LeaseLost, Store
from archiver.storage import Storage
from archiver.tasks.events import Recording, ending_event
from archiver.tasks.taskstate import Phase, TaskState

log = structlog.get_logger()

# else StorageAccessError
_PAUSE_CAUSES = {AuthError: "api_key", NoCredits: "credits", WrongEndpoint: "api_url"}


class Engine(SharedState, TaskGiving):
    """Archives the tasks it is given. `set_tasks` (a whole list) and `add_tasks` (more
    tasks: appended lines, intake) feed it; `run` drives it until stopped or, with
    `until_done`, until every task has ended."""

    def __init__(
        self,
        *,
        api: SunoApi,
        archivist: Archivist,
        storage: Storage,
        state: Store,
        give_up_after_s: float,
        fatal_errors: bool,
        not_found_after_s: float = 900.0,
        retry_base_s: float = 30.0,
        poll_time_scale: float = 1.0,
        max_in_flight: int = 16,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[TaskState], None] | None = None,
        events: Recording | None = None,
        owner: str = "",
        lease_s: float = 60.0,
    ) -> None:
        self._called_back: set[str] = set()  # pending tasks polled on callbacks (CALLBACK_NET_S)
        self._stepper = TaskStepper(
            api=api,
            archivist=archivist,
            storage=storage,
            give_up_after_s=give_up_after_s,
            not_found_after_s=not_found_after_s,
            retry_base_s=retry_base_s,
            poll_time_scale=poll_time_scale,
            clock=clock,
            called_back=self._called_back,
        )
        self._storage = storage
        self._state = state
        self._fatal_errors = fatal_errors  # backfill: a bad key, bad storage, a bug end the run
        self._retry_base_s = retry_base_s
        self._max_in_flight = max_in_flight
        self._clock = clock
        self._on_change = on_change
        self._events = events  # task events written with the saves they report; None: off
        self._given = state.given()
        # Several daemons on one state: a task is stepped under a lease in `owner`'s name.
        self._owner = owner if state.shared else None
        self._lease_s = lease_s
        self._pending = PendingTasks()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._repoll: set[str] = set()  # running tasks to poll again as soon as their step ends
        self._wake = asyncio.Event()
        self._paused_until = 0.0
        self._held: StorageFull | None = None  # archiving waits for space (see `resume`)
        self._fatal: BaseException | None = None

    @property
    def pending(self) -> Mapping[str, TaskState]:
        """The given tasks still pending, as the engine last knew them: the engine holds
        nothing else (ended tasks live in the state only)."""
        return self._pending.states

    @property
    def counts(self) -> Mapping[Phase, int]:
        """The given tasks by phase, kept as tasks change: one mapping, updated in place."""
        return self._pending.counts

    @property
    def kind_counts(self) -> Mapping[tuple[str, Phase], int]:
        """The given tasks by kind (UNKNOWN_KIND until found) and phase, kept likewise."""
        return self._pending.kind_counts

    @property
    def in_flight(self) -> int:
        return len(self._running)

    @property
    def held(self) -> StorageFull | None:
        """The storage-full fault no new task starts for, until `resume`."""
        return self._held

    def resume(self) -> None:
        """Start tasks again after a storage-full hold (the daemon calls it once space
        returned); those that find the storage still full hold it again."""
        self._held = None
        self._wake.set()

    @property
    def owner(self) -> str | None:
        """The name this engine's leases are held in (None: its state is its own)."""
        return self._owner

    @property
    def state(self) -> Store:
        return self._state

    @property
    def storage(self) -> Storage:
        return self._storage

    async def run(
        self, stop: asyncio.Event, *, until_done: bool = False, grace_s: float = 0.0
    ) -> None:
        """Work until `stop` is set (or, with `until_done`, nothing is left to do). In-flight
        tasks then get `grace_s` to finish before they are cancelled (cancelled downloads
        remove their temp files). Raises the first fatal error (see `fatal_errors`); with
        `until_done`, a storage-full hold ends the run once the tasks in flight are done, and
        raises it."""
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set() and self._fatal is None:
                self._wake.clear()
                self._start_due()
                if until_done and not self._running and (not self._pending.queued or self._held):
                    break
                waking = asyncio.create_task(self._wake.wait())
                await asyncio.wait(
                    {waking, stopping}, timeout=self._idle_timeout(), return_when="FIRST_COMPLETED"
                )
                waking.cancel()
        finally:
            stopping.cancel()
            await self._drain(grace_s)
        if self._fatal is not None:
            raise self._fatal
        if until_done and self._held is not None:
            raise self._held

    # --- scheduling -------------------------------------------------------------------------

    def _start_due(self) -> None:
        now = self._clock()
        if now < self._paused_until or self._held is not None:
            return
        while len(self._running) < self._max_in_flight:
            due: list[TaskState] = []
            while len(self._running) + len(due) < self._max_in_flight:
                state = self._pending.pop_due(now, (*self._running, *(s.task_id for s in due)))
                if state is None:
                    break
                due.append(state)
            if not due:
                break
            for state in self._claimed(due, now):
                task_id = state.task_id
                task = asyncio.create_task(self._process(state), name=f"task-{task_id}")
                self._running[task_id] = task
                task.add_done_callback(lambda _t, task_id=task_id: self._finished(task_id))
            if now < self._paused_until:
                break

    def _finished(self, task_id: str) -> None:
        self._running.pop(task_id, None)
        if task_id in self._repoll:
            self._repoll.discard(task_id)
            self.poll_now(task_id)
        self._wake.set()

    def _idle_timeout(self) -> float | None:
        if len(self._running) >= self._max_in_flight or not self._pending.queued or self._held:
            return None  # a finishing task, a new list or `resume` wakes us
        wake_at = max(self._pending.next_due_at(), self._paused_until)
        return max(0.0, wake_at - self._clock())

    async def _drain(self, grace_s: float) -> None:
        running = list(self._running.values())
        if not running:
            return
        if grace_s > 0:
            log.info("waiting_for_in_flight", tasks=len(running), grace_s=grace_s)
            _, running = await asyncio.wait(running, timeout=grace_s)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        if running:
            log.info("abandoned_in_flight", tasks=len(running))

    def _record(self, state: TaskState, before: Phase) -> None:
        try:
            self._state.save(state, self._event(state, before), owner=self._owner)
        except LeaseLost as exc:
            self._lease_lost(exc)
            return
        if state.phase is not Phase.PENDING:
            self._called_back.discard(state.task_id)
        self._pending.record(state)
        if self._on_change is not None:
            self._on_change(state)

    def _event(self, state: TaskState, before: Phase) -> NewEvent | None:
        """The event the save of `state` is (a task entering an end), if one is kept."""
        event_type = ending_event(before, state.phase)
        if self._events is None or event_type not in self._events.types:
            return None
        return NewEvent(
            type=event_type,
            task_id=state.task_id,
            kind=state.kind.value if state.kind else None,
            outcome=state.phase.value,
            error=state.last_error,
            at=state.updated_at,
            urls=self._events.urls,
        )

    # --- one task's step, and the faults that hold every task back ----------------------------

    async def _process(self, state: TaskState) -> None:
        with structlog.contextvars.bound_contextvars(task_id=state.task_id):
            try:
                new = await self._stepper.step(state)
            except LeaseLost as exc:  # the manifest was not written: another daemon has it
                self._lease_lost(exc)
                return
            except StorageFull as exc:
                new = self._hold(state, exc)
            except (ApiUnusable, StorageAccessError) as exc:
                if self._fatal_errors:
                    self._fatal = exc
                    self._wake.set()
                    return
                new = self._pause(state, exc)
            except Exception as exc:  # a bug: it ends backfill; it costs the daemon one retry
                log.exception("task_step_crashed")
                if self._fatal_errors:  # retried, it would hold backfill until give_up_after_s
                    self._fatal = InternalError(
                        f"task {state.task_id}: internal error: {type(exc).__name__}: "
                        f"{' '.join(str(exc).split())} "
                        "(a bug: the log has the traceback)"
                    )
                    self._fatal.__cause__ = exc
                    self._wake.set()
                    return
                new = self._stepper.retry_later(state, exc)
            try:
                self._record(new, state.phase)
            except STATE_ERRORS as exc:  # a full disk, a read-only or locked database
                self._state_write_failed(state, exc)

    def _pause(self, state: TaskState, exc: ApiUnusable | StorageAccessError) -> TaskState:
        """Hold every task back until a person fixed the key, the credits, the base_url or the
        storage (for the API's Retry-After when it gave one). The tasks in flight meet the same
        error: only the first one says so."""
        now = self._clock()
        pause_s = getattr(exc, "retry_after", None) or AUTH_RETRY_S
        if now >= self._paused_until:
            cause = _PAUSE_CAUSES.get(type(exc), "storage")
            log.error("archiving_paused", cause=cause, error=str(exc), retry_in_s=pause_s)
        self._paused_until = now + pause_s
        return self._stepper.stamp(state, next_poll_at=self._paused_until, last_error=str(exc))

    def _hold(self, state: TaskState, exc: StorageFull) -> TaskState:
        """Start no task until space returns. Full is never the task's fault: no attempt is
        counted and no error recorded; the task is due again as soon as archiving resumes."""
        if self._held is None:
            log.error("storage_full", where=exc.where, free_bytes=exc.free_bytes, error=str(exc))
        self._held = exc
        return self._stepper.stamp(state, next_poll_at=self._clock())
