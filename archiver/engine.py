"""The loop `backfill` and `run` share: due tasks → poll → decide → archive → state.

The engine owns scheduling only. What a record means is decided by `lifecycle` (pure), how a
finished task becomes files is `archiving`, and every change of a task is saved to the state
at once, so a kill -9 at any point loses at most the step in flight.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import replace

import structlog

from archiver.api import AUTH_RETRY_S, SunoApi
from archiver.archiving import Archivist, RetryLater, read_manifest
from archiver.backoff import backoff_delay
from archiver.due import DueQueue, Urgency
from archiver.errors import (
    ApiError,
    ApiUnusable,
    AuthError,
    NoCredits,
    StorageAccessError,
    StorageError,
    StorageFull,
    UnknownTask,
    UsageError,
    WrongEndpoint,
)
from archiver.expiry import RISK_PHASES, risk_window
from archiver.given import Added, Conflict, GivenTasks
from archiver.lifecycle import ArchiveNow, FileSpec, GiveUp, PollAgain, decide, unknown_delay
from archiver.records import Kind, Record
from archiver.state import UNKNOWN_KIND, Phase, StateStore, TaskState
from archiver.storage import Storage
from archiver.storage.space import state_full
from archiver.tasklist import TaskRef

log = structlog.get_logger()

# A state write that failed (full disk) pauses the daemon this many base retry delays (60 s),
# at most AUTH_RETRY_S.
STATE_RETRY_FACTOR = 2.0
# A task the vendor calls back about is polled on each callback, and on schedule no sooner
# than this: the schedule is then only the net under a lost callback (a song's stages are
# 15-120 s apart, so callbacks that come make every scheduled poll in between unneeded).
CALLBACK_NET_S = 120.0
ARCHIVE_ATTEMPTS = 5  # archive tries with a transient file failure before the manifest records it
# else StorageAccessError
_PAUSE_CAUSES = {AuthError: "api_key", NoCredits: "credits", WrongEndpoint: "api_url"}
_PHASE_OF_OUTCOME = {"archived": Phase.ARCHIVED, "partial": Phase.PARTIAL, "failed": Phase.FAILED}


class Engine:
    """Archives the tasks it is given. `set_tasks` (a whole list) and `add_tasks` (more
    tasks: appended lines, intake) feed it; `run` drives it until stopped or, with
    `until_done`, until every task has ended."""

    def __init__(
        self,
        *,
        api: SunoApi,
        archivist: Archivist,
        storage: Storage,
        state: StateStore,
        give_up_after_s: float,
        fatal_errors: bool,
        not_found_after_s: float = 900.0,
        retry_base_s: float = 30.0,
        poll_time_scale: float = 1.0,
        max_in_flight: int = 16,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[TaskState], None] | None = None,
    ) -> None:
        self._api = api
        self._archivist = archivist
        self._storage = storage
        self._state = state
        self._give_up_after_s = give_up_after_s
        self._not_found_after_s = not_found_after_s
        self._fatal_errors = fatal_errors  # backfill: a bad key or unusable storage ends the run
        self._retry_base_s = retry_base_s
        self._scale = poll_time_scale  # < 1 compresses the polling schedule (demo, tests)
        self._max_in_flight = max_in_flight
        self._clock = clock
        self._on_change = on_change
        self._given = GivenTasks(state)
        self._active: dict[str, TaskState] = {}  # the given tasks still pending, only
        self._counts: dict[Phase, int] = dict.fromkeys(Phase, 0)
        self._kind_counts: Counter[tuple[str, Phase]] = Counter()  # by (kind or UNKNOWN_KIND)
        self._due = DueQueue()  # pending tasks by when they are due, then by urgency
        # Each pending task's place in the order given (list order, then appended and intake
        # tasks): the oldest line goes first among the undated.
        self._rank: dict[str, int] = {}
        self._ranks = itertools.count()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._repoll: set[str] = set()  # running tasks to poll again as soon as their step ends
        self._called_back: set[str] = set()  # pending tasks polled on callbacks (CALLBACK_NET_S)
        self._wake = asyncio.Event()
        self._paused_until = 0.0
        self._held: StorageFull | None = None  # archiving waits for space (see `resume`)
        self._fatal: BaseException | None = None

    @property
    def pending(self) -> Mapping[str, TaskState]:
        """The given tasks still pending, as the engine last knew them: the engine holds
        nothing else (ended tasks live in the state only)."""
        return self._active

    @property
    def counts(self) -> Mapping[Phase, int]:
        """The given tasks by phase, kept as tasks change: one mapping, updated in place."""
        return self._counts

    @property
    def kind_counts(self) -> Mapping[tuple[str, Phase], int]:
        """The given tasks by kind (UNKNOWN_KIND until found) and phase, kept likewise."""
        return self._kind_counts

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
    def state(self) -> StateStore:
        return self._state

    @property
    def storage(self) -> Storage:
        return self._storage

    def stage(self, refs: Iterable[TaskRef], *, first: bool = False) -> None:
        """Hold `refs` for the next `set_tasks` or `add_tasks` (`first`: forget what an
        unfinished batch left): a long list is fed in pieces, read between awaits."""
        try:
            self._given.stage(refs, first=first)
        except sqlite3.Error as exc:
            raise _state_error(self._state, exc) from exc

    def stage_bare(self, data: bytes, first_line: int) -> bool:
        """`stage` for a piece of a list whose lines are each a bare ID (`GivenTasks.stage_bare`):
        False when it is not, and nothing was staged."""
        try:
            return self._given.stage_bare(data, first_line)
        except sqlite3.Error as exc:
            raise _state_error(self._state, exc) from exc

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
        except sqlite3.Error as exc:
            raise _state_error(self._state, exc) from exc
        if whole:
            self._active = {}
            self._due.reset(())
            self._rank = {}
            self._counts.update(dict.fromkeys(Phase, 0))
            self._kind_counts.clear()
        for (kind, phase), n in merged.counts.items():
            self._counts[phase] += n
            self._kind_counts[(kind, phase)] += n
        for state in merged.pending:  # in the order given
            self._rank.setdefault(state.task_id, next(self._ranks))
            current = self._active.get(state.task_id)
            if current is not None:  # scheduled already (or in flight): a prefix may settle it
                if current.kind is None and state.kind is not None:
                    settled = replace(current, kind=state.kind)
                    self._count(current, -1)
                    self._count(settled, 1)
                    self._active[state.task_id] = settled
                continue
            self._active[state.task_id] = state
            if state.task_id not in self._running:  # else its step saves and schedules it
                self._due.push(state.next_poll_at, state.task_id)
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
        except sqlite3.Error as exc:
            raise _state_error(self._state, exc) from exc

    def poll_now(self, task_id: str) -> bool:
        """Poll a pending task at once (a callback said it moved on), or right after the step
        in flight; False when the engine has no such pending task. Asking again while that
        poll is still due costs nothing more. From then on its scheduled polls are at least
        CALLBACK_NET_S apart: the vendor's next callback is expected to say when to look."""
        state = self._active.get(task_id)
        if state is None or state.phase is not Phase.PENDING:
            return False
        self._called_back.add(task_id)
        if task_id in self._running:
            self._repoll.add(task_id)
            return True
        now = self._clock()
        if state.next_poll_at > now:
            self._active[task_id] = replace(state, next_poll_at=now)
            self._due.push(now, task_id)
            self._wake.set()
        return True

    def task(self, task_id: str) -> TaskState | None:
        """One task as the engine or, for a task it does not hold, the state knows it."""
        state = self._active.get(task_id)
        if state is not None:
            return state
        try:
            return self._state.get_many([task_id]).get(task_id)
        except sqlite3.Error as exc:
            raise _state_error(self._state, exc) from exc

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
                if until_done and not self._running and (not self._due or self._held):
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
            entry = self._due.pop_due(now, self._urgency)
            if entry is None:
                break
            at, task_id = entry
            state = self._active.get(task_id)
            if (
                state is None
                or state.phase is not Phase.PENDING
                or task_id in self._running
                or at < state.next_poll_at
            ):
                continue  # removed from the list, or superseded by a newer entry
            task = asyncio.create_task(self._process(state), name=f"task-{task_id}")
            self._running[task_id] = task
            task.add_done_callback(lambda _t, task_id=task_id: self._finished(task_id))

    def _urgency(self, task_id: str) -> Urgency:
        """Which due task goes first: the one whose files expire first (the API dated it),
        then the undated ones in task-list order."""
        state = self._active.get(task_id)
        born = state.born_at if state is not None else None
        return (math.inf if born is None else born), self._rank.get(task_id, len(self._rank))

    def _finished(self, task_id: str) -> None:
        self._running.pop(task_id, None)
        if task_id in self._repoll:
            self._repoll.discard(task_id)
            self.poll_now(task_id)
        self._wake.set()

    def _idle_timeout(self) -> float | None:
        if len(self._running) >= self._max_in_flight or not self._due or self._held:
            return None  # a finishing task, a new list or `resume` wakes us
        wake_at = max(self._due.next_at(), self._paused_until)
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

    def _record(self, state: TaskState) -> None:
        self._state.save(state)
        if state.phase is not Phase.PENDING:
            self._called_back.discard(state.task_id)
        before = self._active.get(state.task_id)
        if before is not None:
            self._count(before, -1)
            self._count(state, 1)
            if state.phase is Phase.PENDING:
                self._active[state.task_id] = state
                self._due.push(state.next_poll_at, state.task_id)
            else:  # ended: from now on the state's alone
                del self._active[state.task_id]
                self._rank.pop(state.task_id, None)
        if self._on_change is not None:
            self._on_change(state)

    def _count(self, state: TaskState, n: int) -> None:
        self._counts[state.phase] += n
        self._kind_counts[(state.kind.value if state.kind else UNKNOWN_KIND, state.phase)] += n

    # --- one task -----------------------------------------------------------------------------

    async def _process(self, state: TaskState) -> None:
        with structlog.contextvars.bound_contextvars(task_id=state.task_id):
            try:
                new = await self._step(state)
            except StorageFull as exc:
                new = self._hold(state, exc)
            except (ApiUnusable, StorageAccessError) as exc:
                if self._fatal_errors:
                    self._fatal = exc
                    self._wake.set()
                    return
                new = self._pause(state, exc)
            except Exception as exc:  # a bug must cost one task a retry, never the daemon
                log.exception("task_step_crashed")
                new = self._retry_later(state, exc)
            try:
                self._record(new)
            except sqlite3.Error as exc:  # a full disk, a read-only or locked database
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
        return self._stamp(state, next_poll_at=self._paused_until, last_error=str(exc))

    def _hold(self, state: TaskState, exc: StorageFull) -> TaskState:
        """Start no task until space returns. Full is never the task's fault: no attempt is
        counted and no error recorded; the task is due again as soon as archiving resumes."""
        if self._held is None:
            log.error("storage_full", where=exc.where, free_bytes=exc.free_bytes, error=str(exc))
        self._held = exc
        return self._stamp(state, next_poll_at=self._clock())

    def _state_write_failed(self, state: TaskState, exc: sqlite3.Error) -> None:
        """The step's outcome could not be saved. A full disk holds archiving as any full
        storage does. Otherwise backfill ends with the error, and the daemon pauses. Either
        way the task is done again from the state it had (which is what the state still says;
        storing is idempotent, so files already stored are not stored twice)."""
        full = state_full(self._state.path, exc)
        if full is not None:
            self._hold(state, full)
            self._due_again(state.task_id, self._clock())
            return
        if self._fatal_errors:
            log.error("state_write_failed", error=str(exc), path=str(self._state.path))
            self._fatal = _state_error(self._state, exc)
            self._wake.set()
            return
        pause_s = min(AUTH_RETRY_S, STATE_RETRY_FACTOR * self._retry_base_s)
        self._paused_until = max(self._paused_until, self._clock() + pause_s)
        log.error(
            "state_write_failed",
            error=str(exc),
            path=str(self._state.path),
            retry_in_s=round(self._paused_until - self._clock(), 1),
        )
        self._due_again(state.task_id, self._paused_until)

    def _due_again(self, task_id: str, at: float) -> None:
        """A task whose step could not be saved is due again at `at`, as the state says it is."""
        current = self._active.get(task_id)
        if current is not None and current.phase is Phase.PENDING:
            self._active[task_id] = replace(current, next_poll_at=at)
            self._due.push(at, task_id)

    async def _step(self, state: TaskState) -> TaskState:
        if state.polls == 0:  # new to the state (or the state was lost): archived already?
            try:
                adopted = await self._adopt_manifest(state)
            except StorageAccessError:
                raise
            except StorageError as exc:  # archiving now could write over a complete manifest
                return self._retry_later(state, exc)
            if adopted is not None:
                return adopted
        try:
            kind, record = await self._api.lookup(state.task_id, state.kind)
        except UnknownTask as exc:
            return self._unknown(state, exc)
        except ApiUnusable:
            raise
        except ApiError as exc:
            return self._retry_later(state, exc)

        previous = state.last_status
        state = replace(
            state,
            kind=kind,
            polls=state.polls + 1,
            unknown_polls=0,
            last_status=record.status,
            created_at=_first_known(record.created_time, state.created_at),
            completed_at=_first_known(record.completed_time, state.completed_at),
        )
        now = self._clock()
        age_s = now - state.first_seen_at
        # The schedule runs on the task's own age (from its createTime); the give-up deadline
        # still counts from first sight, so it moves along by the age the task had by then.
        head_start_s = (
            0.0 if state.created_at is None else max(0.0, state.first_seen_at - state.created_at)
        )
        decision = decide(
            record,
            age_s=(age_s + head_start_s) / self._scale,
            give_up_after_s=(self._give_up_after_s + head_start_s) / self._scale,
            last_status=previous,
        )
        match decision:
            case PollAgain(delay_s=delay_s, reason=reason):
                if state.task_id in self._called_back:
                    remaining_s = (self._give_up_after_s - age_s) / self._scale
                    delay_s = max(delay_s, min(CALLBACK_NET_S, remaining_s))
                log.debug("task_waiting", status=record.status, reason=reason, delay_s=delay_s)
                return self._stamp(
                    state,
                    attempts=0,
                    last_error=None,
                    next_poll_at=self._clock() + delay_s * self._scale,
                )
            case GiveUp(files=()):
                log.warning("task_timed_out", status=record.status)
                return self._stamp(
                    state,
                    phase=Phase.TIMED_OUT,
                    last_error=f"not finished after {self._give_up_after_s:g} s "
                    f"(last status {record.status})",
                )
            case GiveUp(files=files):
                return await self._archive(state, record, files, task_failed=False, final=True)
            case ArchiveNow(files=files, task_failed=task_failed):
                final = (
                    state.archive_attempts + 1 >= ARCHIVE_ATTEMPTS or age_s >= self._give_up_after_s
                )
                return await self._archive(state, record, files, task_failed, final=final)
        raise AssertionError(f"unhandled decision {decision!r}")

    async def _archive(
        self,
        state: TaskState,
        record: Record,
        files: tuple[FileSpec, ...],
        task_failed: bool,
        *,
        final: bool,
    ) -> TaskState:
        try:
            result = await self._archivist.archive(
                record, files, task_failed=task_failed, final=final
            )
        except (StorageAccessError, StorageFull):
            raise
        except RetryLater as exc:
            return self._retry_later(state, exc, file_failure=True)
        except StorageError as exc:
            return self._retry_later(state, exc)
        log.info(
            "task_archived",
            outcome=result.outcome,
            status=record.status,
            files=result.files,
            bytes=result.bytes,
        )
        problems = "; ".join(result.problems) or None
        return self._stamp(
            state,
            phase=_PHASE_OF_OUTCOME[result.outcome],
            attempts=0,
            archive_attempts=0,
            last_error=problems,
        )

    async def _adopt_manifest(self, state: TaskState) -> TaskState | None:
        """A task the state does not know (new, or the state was deleted) may be archived
        already: a complete manifest is trusted instead of downloading again."""
        doc = await read_manifest(self._storage, state.task_id)
        phase = _PHASE_OF_OUTCOME.get(doc["outcome"]) if doc is not None else None
        if doc is None or phase not in (Phase.ARCHIVED, Phase.FAILED):
            return None  # a partial archive is completed by polling again
        log.info("manifest_trusted", outcome=doc["outcome"])
        return self._stamp(state, phase=phase, kind=Kind(doc["kind"]), last_status=doc["status"])

    def _unknown(self, state: TaskState, exc: UnknownTask) -> TaskState:
        """No endpoint knows the task. A just-created one is unknown for a while, so it stays
        pending, asked again on a growing backoff (`lifecycle.unknown_delay`), until
        `not_found_after_s` has passed since it was first seen; the last poll lands there."""
        unknown = state.unknown_polls + 1
        now = self._clock()
        window_ends = state.first_seen_at + self._not_found_after_s
        state = replace(state, unknown_polls=unknown)
        if now >= window_ends:
            log.warning(
                "task_not_found",
                error=str(exc),
                polls=unknown,
                after_s=round(now - state.first_seen_at, 1),
            )
            return self._stamp(state, phase=Phase.NOT_FOUND, last_error=str(exc))
        next_at = min(now + unknown_delay(unknown) * self._scale, window_ends)
        log.info("task_unknown_yet", error=str(exc), poll=unknown, delay_s=round(next_at - now, 1))
        return self._stamp(state, last_error=str(exc), next_poll_at=next_at)

    def _retry_later(
        self, state: TaskState, exc: BaseException, *, file_failure: bool = False
    ) -> TaskState:
        """Try again after a backoff that grows with the consecutive failures of any kind.
        A `file_failure` (some file of the finished task failed transiently) also counts
        towards ARCHIVE_ATTEMPTS; failed API calls or storage writes do not."""
        attempts = state.attempts + 1
        state = replace(state, archive_attempts=state.archive_attempts + int(file_failure))
        if self._clock() - state.first_seen_at >= self._give_up_after_s:
            log.warning("task_timed_out", error=str(exc))
            return self._stamp(state, phase=Phase.TIMED_OUT, attempts=attempts, last_error=str(exc))
        retry_after = getattr(exc, "retry_after", None)
        delay_s = backoff_delay(
            attempts, base_s=self._retry_base_s, cap_s=1800.0, retry_after_s=retry_after
        )
        log.warning("task_retry_later", error=str(exc), attempt=attempts, delay_s=round(delay_s, 1))
        return self._stamp(
            state, attempts=attempts, last_error=str(exc), next_poll_at=self._clock() + delay_s
        )

    def _stamp(self, state: TaskState, **changes: object) -> TaskState:
        return replace(state, updated_at=self._clock(), **changes)  # type: ignore[arg-type]


def _first_known(new: float | None, old: float | None) -> float | None:
    return new if new is not None else old


def _state_error(state: StateStore, exc: sqlite3.Error) -> UsageError:
    """A state that cannot be written is for a person to fix (a full disk, a locked file)."""
    return UsageError(f"{state.path}: cannot save the task state: {exc}")
