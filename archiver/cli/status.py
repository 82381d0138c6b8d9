"""`status`: what the state knows, read while the daemon may be running; and the one way
tasks are counted by phase and said, which systemd's STATUS=, the progress line and the
backfill summary share.

The state is opened read-only with SQLite directly, not through `StateStore.open`: that takes
the one-process lock the running daemon holds. A read-only WAL reader never blocks the writer
and sees the last committed step of every task.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archiver.errors import UsageError
from archiver.kinds.timestamps import utc_iso_of
from archiver.state.readonly import read_only_state
from archiver.tasks.expiry import DEFAULT_RETENTION_DAYS, RISK_PHASES, expires_at, risk_window
from archiver.tasks.taskstate import PHASE_LABELS, Phase, TaskState, counts_text


@dataclass(frozen=True)
class StatusReport:
    state_path: Path
    counts: dict[Phase, int]
    problems: tuple[TaskState, ...]  # partial, failed, not found, timed out; oldest first
    kinds: dict[str, int] = field(default_factory=dict)  # tasks by kind, kinds present only
    # not archived, files expiring within 2 days (archiver.expiry), soonest first
    at_risk: tuple[TaskState, ...] = ()
    retention_days: float = DEFAULT_RETENTION_DAYS
    now: float = 0.0  # when the report was read: the time left is counted from it


def read_status(
    state_path: Path, *, retention_days: float = DEFAULT_RETENTION_DAYS, now: float | None = None
) -> StatusReport:
    """Counts by phase, the tasks that ended badly and the tasks at risk of expiring.
    UsageError when there is no state, or it cannot be reached (the service's state is under
    /var/lib/private, root's only)."""
    now = time.time() if now is None else now
    with read_only_state(state_path) as store:
        try:
            at_risk = store.born_between(*risk_window(now, retention_days), RISK_PHASES)
            return StatusReport(
                state_path,
                store.counts(),
                tuple(store.problems()),
                store.kind_counts(),
                tuple(at_risk),
                retention_days,
                now,
            )
        except sqlite3.Error as exc:
            raise UsageError(f"{state_path}: cannot read state database: {exc}") from None


def format_status(report: StatusReport) -> str:
    total = sum(report.counts.values())
    lines = [f"{total} tasks in {report.state_path}", f"  {counts_text(report.counts, zeros=True)}"]
    if report.kinds:
        lines.append("  by kind: " + ", ".join(f"{n} {kind}" for kind, n in report.kinds.items()))
    for task in report.problems:
        detail = task.last_error or task.last_status or ""
        when = utc_iso_of(task.updated_at)
        lines.append(f"  {PHASE_LABELS[task.phase]:<10} {task.task_id}  {when}  {detail}".rstrip())
    for task in report.at_risk:
        expires, left = _left(report, task)
        lines.append(
            f"  {'at risk':<10} {task.task_id}  expires {utc_iso_of(expires)} "
            f"({_duration(left)} left), {PHASE_LABELS[task.phase]}"
        )
    return "\n".join(lines)


def _left(report: StatusReport, task: TaskState) -> tuple[float, float]:
    """When the task's files expire, and the seconds left until then."""
    expires = expires_at(task, report.retention_days)
    assert expires is not None  # at risk: dated
    return expires, expires - report.now


def _duration(seconds: float) -> str:
    hours = int(seconds // 3600)
    return (
        f"{hours // 24} d {hours % 24} h"
        if hours >= 24
        else f"{hours} h {int(seconds % 3600 // 60)} min"
    )


def status_json(report: StatusReport) -> dict[str, Any]:
    return {
        "state": str(report.state_path),
        "total": sum(report.counts.values()),
        "counts": {phase.value: n for phase, n in report.counts.items()},
        "kinds": dict(report.kinds),
        "problems": [
            {
                "task_id": t.task_id,
                "kind": t.kind.value if t.kind else None,
                "phase": t.phase.value,
                "last_status": t.last_status,
                "last_error": t.last_error,
                "polls": t.polls,
                "updated_at": utc_iso_of(t.updated_at),
            }
            for t in report.problems
        ],
        "at_risk": [
            {
                "task_id": t.task_id,
                "kind": t.kind.value if t.kind else None,
                "phase": t.phase.value,
                "expires_at": utc_iso_of(expires),
                "seconds_left": round(left),
            }
            for t in report.at_risk
            for expires, left in [_left(report, t)]
        ],
    }
