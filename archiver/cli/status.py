"""`status`: what the state knows, read while the daemon may be running; and the one way
tasks are counted by phase and said, which systemd's STATUS=, the progress line and the
backfill summary share.

A SQLite state is opened read-only (archiver.state.opening.read_state), without the one-process
lock the running daemon holds: a read-only WAL reader never blocks the writer and sees the last
committed step of every task. A PostgreSQL state is read as the daemons share it, and says which
daemons are alive and how many tasks each holds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from archiver.errors import UsageError, one_line
from archiver.kinds.timestamps import utc_iso_of
from archiver.state.opening import STATE_ERRORS, StateRef, read_state, where
from archiver.state.protocol import Daemon
from archiver.tasks.expiry import DEFAULT_RETENTION_DAYS, RISK_PHASES, expires_at, risk_window
from archiver.tasks.taskstate import PHASE_LABELS, Phase, TaskState, counts_text


@dataclass(frozen=True)
class StatusReport:
    state: str  # as messages name it: a path, or a URL without its password
    counts: dict[Phase, int]
    problems: tuple[TaskState, ...]  # partial, failed, not found, timed out; oldest first
    kinds: dict[str, int] = field(default_factory=dict)  # tasks by kind, kinds present only
    # not archived, files expiring within 2 days (archiver.expiry), soonest first
    at_risk: tuple[TaskState, ...] = ()
    retention_days: float = DEFAULT_RETENTION_DAYS
    now: float = 0.0  # when the report was read: the time left is counted from it
    daemons: tuple[Daemon, ...] = ()  # PostgreSQL: the daemons alive, with the leases they hold


def read_status(
    state: StateRef,
    *,
    retention_days: float = DEFAULT_RETENTION_DAYS,
    now: float | None = None,
    alive_s: float = 60.0,
) -> StatusReport:
    """Counts by phase, the tasks that ended badly and the tasks at risk of expiring.
    UsageError when there is no state, or it cannot be reached (the service's state is under
    /var/lib/private, root's only). `alive_s`: a daemon whose heartbeat is older is not listed."""
    now = time.time() if now is None else now
    with read_state(state) as store:
        try:
            at_risk = store.born_between(*risk_window(now, retention_days), RISK_PHASES)
            return StatusReport(
                store.where,
                store.counts(),
                tuple(store.problems()),
                store.kind_counts(),
                tuple(at_risk),
                retention_days,
                now,
                tuple(store.daemons(now, alive_s)),
            )
        except STATE_ERRORS as exc:
            raise UsageError(
                f"{where(state)}: cannot read state database: {one_line(exc)}"
            ) from None


def format_status(report: StatusReport) -> str:
    total = sum(report.counts.values())
    lines = [f"{total} tasks in {report.state}", f"  {counts_text(report.counts, zeros=True)}"]
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
    for daemon in report.daemons:
        lines.append(
            f"  {'daemon':<10} {daemon.host} pid {daemon.pid}  heartbeat "
            f"{max(0, round(report.now - daemon.heartbeat_at))} s ago, {daemon.leases} leases"
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
        "state": report.state,
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
        "daemons": [
            {
                "host": d.host,
                "pid": d.pid,
                "started_at": utc_iso_of(d.started_at),
                "heartbeat_at": utc_iso_of(d.heartbeat_at),
                "leases": d.leases,
            }
            for d in report.daemons
        ],
    }
