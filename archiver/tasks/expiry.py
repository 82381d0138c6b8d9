"""When a task's files expire, and which tasks are at risk of losing them. Pure.

The API deletes a finished task's files `tasks.retention_days` (14) after it completed
(sunoapi.org says 15 for music: not counted on). Until the API gave the completion time, the
creation time stands in: earlier, so the expiry errs on the early side. A task is at risk while
nothing says its files are safe (pending, partial or timed out) and they expire within
`AT_RISK_S` (2 days); once the expiry has passed the files are gone, and it is no longer at
risk but lost.
"""

from __future__ import annotations

from typing import Final

from archiver.tasks.taskstate import Phase, TaskState

DAY_S: Final = 86_400.0
DEFAULT_RETENTION_DAYS: Final = 14.0  # tasks.retention_days
AT_RISK_S: Final = 2 * DAY_S
RISK_PHASES: Final = frozenset({Phase.PENDING, Phase.PARTIAL, Phase.TIMED_OUT})


def expires_at(task: TaskState, retention_days: float) -> float | None:
    """When the task's files expire (Unix time), or None while the API told no time."""
    return None if task.born_at is None else task.born_at + retention_days * DAY_S


def risk_window(now: float, retention_days: float) -> tuple[float, float]:
    """The `born_at` times (lo, hi] of tasks whose files expire within AT_RISK_S of `now`."""
    lo = now - retention_days * DAY_S
    return lo, lo + AT_RISK_S
