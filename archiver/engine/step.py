"""One step of one task: a look at its manifest (new to the state), a poll, the decision, the
archive → the task's next state.

The step never writes the state and never schedules: it returns what the task has become and
the engine saves and schedules that. Faults that concern every task (the API unusable, the
storage unreachable or full) are raised for the engine to pause or hold on; whatever concerns
this task alone ends in its next state (polled again, retried later, ended).
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import replace

import structlog

from archiver.api.backoff import backoff_delay
from archiver.api.client import SunoApi
from archiver.errors import (
    ApiError,
    ApiUnusable,
    StorageAccessError,
    StorageError,
    StorageFull,
    UnknownTask,
)
from archiver.fetch.archiving import Archivist, RetryLater, read_manifest
from archiver.kinds.records import Kind, Record
from archiver.storage import Storage
from archiver.tasks.lifecycle import ArchiveNow, FileSpec, GiveUp, PollAgain, decide, unknown_delay
from archiver.tasks.taskstate import PHASE_OF_OUTCOME, Phase, TaskState

log = structlog.get_logger()

# A task the vendor calls back about is polled on each callback, and on schedule no sooner
# than this: the schedule is then only the net under a lost callback (a song's stages are
# 15-120 s apart, so callbacks that come make every scheduled poll in between unneeded).
CALLBACK_NET_S = 120.0
ARCHIVE_ATTEMPTS = 5  # archive tries with a transient file failure before the manifest records it


class TaskStepper:
    def __init__(
        self,
        *,
        api: SunoApi,
        archivist: Archivist,
        storage: Storage,
        give_up_after_s: float,
        not_found_after_s: float,
        retry_base_s: float,
        poll_time_scale: float,
        clock: Callable[[], float],
        called_back: Container[str],
    ) -> None:
        self._api = api
        self._archivist = archivist
        self._storage = storage
        self._give_up_after_s = give_up_after_s
        self._not_found_after_s = not_found_after_s
        self._retry_base_s = retry_base_s
        self._scale = poll_time_scale  # < 1 compresses the polling schedule (demo, tests)
        self._clock = clock
        self._called_back = called_back  # tasks the vendor calls back about (CALLBACK_NET_S)

    async def step(self, state: TaskState) -> TaskState:
        """The task's next state. Raises StorageFull, ApiUnusable and StorageAccessError: every
        task meets them."""
        if state.polls == 0:  # new to the state (or the state was lost): archived already?
            try:
                adopted = await self._adopt_manifest(state)
            except StorageAccessError:
                raise
            except StorageError as exc:  # archiving now could write over a complete manifest
                return self.retry_later(state, exc)
            if adopted is not None:
                return adopted
        try:
            kind, record = await self._api.lookup(state.task_id, state.kind)
        except UnknownTask as exc:
            return self._unknown(state, exc)
        except ApiUnusable:
            raise
        except ApiError as exc:
            return self.retry_later(state, exc)

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
                return self.stamp(
                    state,
                    attempts=0,
                    last_error=None,
                    next_poll_at=self._clock() + delay_s * self._scale,
                )
            case GiveUp(files=()):
                log.warning("task_timed_out", status=record.status)
                return self.stamp(
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
            return self.retry_later(state, exc, file_failure=True)
        except StorageError as exc:
            return self.retry_later(state, exc)
        log.info(
            "task_archived",
            outcome=result.outcome,
            status=record.status,
            files=result.files,
            bytes=result.bytes,
        )
        problems = "; ".join(result.problems) or None
        return self.stamp(
            state,
            phase=PHASE_OF_OUTCOME[result.outcome],
            attempts=0,
            archive_attempts=0,
            last_error=problems,
        )

    async def _adopt_manifest(self, state: TaskState) -> TaskState | None:
        """A task the state does not know (new, or the state was deleted) may be archived
        already: a complete manifest is trusted instead of downloading again."""
        doc = await read_manifest(self._storage, state.task_id)
        phase = PHASE_OF_OUTCOME.get(doc["outcome"]) if doc is not None else None
        if doc is None or phase not in (Phase.ARCHIVED, Phase.FAILED):
            return None  # a partial archive is completed by polling again
        log.info("manifest_trusted", outcome=doc["outcome"])
        return self.stamp(state, phase=phase, kind=Kind(doc["kind"]), last_status=doc["status"])

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
            return self.stamp(state, phase=Phase.NOT_FOUND, last_error=str(exc))
        next_at = min(now + unknown_delay(unknown) * self._scale, window_ends)
        log.info("task_unknown_yet", error=str(exc), poll=unknown, delay_s=round(next_at - now, 1))
        return self.stamp(state, last_error=str(exc), next_poll_at=next_at)

    def retry_later(
        self, state: TaskState, exc: BaseException, *, file_failure: bool = False
    ) -> TaskState:
        """Try again after a backoff that grows with the consecutive failures of any kind.
        A `file_failure` (some file of the finished task failed transiently) also counts
        towards ARCHIVE_ATTEMPTS; failed API calls or storage writes do not."""
        attempts = state.attempts + 1
        state = replace(state, archive_attempts=state.archive_attempts + int(file_failure))
        if self._clock() - state.first_seen_at >= self._give_up_after_s:
            log.warning("task_timed_out", error=str(exc))
            return self.stamp(state, phase=Phase.TIMED_OUT, attempts=attempts, last_error=str(exc))
        retry_after = getattr(exc, "retry_after", None)
        delay_s = backoff_delay(
            attempts, base_s=self._retry_base_s, cap_s=1800.0, retry_after_s=retry_after
        )
        log.warning("task_retry_later", error=str(exc), attempt=attempts, delay_s=round(delay_s, 1))
        return self.stamp(
            state, attempts=attempts, last_error=str(exc), next_poll_at=self._clock() + delay_s
        )

    def stamp(self, state: TaskState, **changes: object) -> TaskState:
        """`state` with `changes`, updated now."""
        return replace(state, updated_at=self._clock(), **changes)  # type: ignore[arg-type]


def _first_known(new: float | None, old: float | None) -> float | None:
    return new if new is not None else old
