"""What the archiver knows about one task: its phase and its row's fields, as plain records.

Pure (no I/O): the engine's steps, status, metrics and notifications reason about these; the
SQLite file that keeps them is archiver.state.store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from archiver.kinds.records import Kind
from archiver.tasks import manifest


class Phase(StrEnum):
    PENDING = "pending"  # listed, not finished: polled on schedule
    ARCHIVED = "archived"
    PARTIAL = "partial"  # manifest written, some file unobtainable
    FAILED = "failed"  # the API said the task failed (manifest written)
    NOT_FOUND = "not_found"  # no endpoint knew it through tasks.not_found_after_s
    TIMED_OUT = "timed_out"  # not finished within give_up_after_s


PROBLEMS: frozenset[Phase] = frozenset(
    {Phase.PARTIAL, Phase.FAILED, Phase.NOT_FOUND, Phase.TIMED_OUT}
)

# The phase a task's manifest outcome puts it in: the engine's archive step, the manifest it
# trusts, reindex and repair all read it here.
PHASE_OF_OUTCOME: Final[Mapping[str, Phase]] = {
    manifest.ARCHIVED: Phase.ARCHIVED,
    manifest.PARTIAL: Phase.PARTIAL,
    manifest.FAILED: Phase.FAILED,
}

# Phases a task list or the intake may start again when it names the task anew.
RETRYABLE = (Phase.PARTIAL, Phase.NOT_FOUND, Phase.TIMED_OUT)

# Each phase as people read it, in the order counts are given.
PHASE_LABELS: dict[Phase, str] = {
    Phase.ARCHIVED: "archived",
    Phase.PENDING: "pending",
    Phase.PARTIAL: "partial",
    Phase.FAILED: "failed",
    Phase.NOT_FOUND: "not found",
    Phase.TIMED_OUT: "timed out",
}


def counts_text(counts: Mapping[Phase, int], *, zeros: bool = False) -> str:
    """'12 archived, 3 pending, 1 failed': phases with no task left out unless `zeros`."""
    return ", ".join(
        f"{counts.get(phase, 0)} {label}"
        for phase, label in PHASE_LABELS.items()
        if zeros or counts.get(phase, 0)
    )


UNKNOWN_KIND = "unknown"  # how status and metrics name the kind of a task not yet found


@dataclass(frozen=True, slots=True)
class TaskState:
    task_id: str
    kind: Kind | None
    phase: Phase
    first_seen_at: float  # wall clock (time.time()), persisted
    next_poll_at: float
    polls: int  # successful API answers so far
    attempts: int  # consecutive failures of any step (the backoff grows with them)
    last_status: str | None  # the API's last status string
    last_error: str | None
    updated_at: float
    # Archive tries of the finished task that ended in a transient file failure; the engine's
    # ARCHIVE_ATTEMPTS of them make the next try final. Failed API calls do not count here.
    archive_attempts: int = 0
    created_at: float | None = None  # the API's createTime of the task (epoch seconds), once seen
    completed_at: float | None = None  # its completeTime: the files expire a retention after it
    unknown_polls: int = 0  # answers "no such task" in a row (the not-found backoff grows)

    @property
    def born_at(self) -> float | None:
        """When the task's files start their retention: completed, else created (earlier, so
        an expiry from it errs on the safe side); None while the API told neither."""
        return self.completed_at if self.completed_at is not None else self.created_at
