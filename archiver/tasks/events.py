"""Task events (SPEC "Task events"): their types, and which change of a task is one. Pure.

An event tells an application that a task reached an end (or is at risk of never reaching
one): the engine's save of a task entering an ending phase is `task.<phase>`; `task.at_risk`
(a pending task whose files expire within two days) and `task.repaired` (verify --repair put
files back) come from the daemon's risk watch and from repair.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from archiver.tasks.taskstate import Phase

ARCHIVED: Final = "task.archived"
PARTIAL: Final = "task.partial"
FAILED: Final = "task.failed"
NOT_FOUND: Final = "task.not_found"
TIMED_OUT: Final = "task.timed_out"
AT_RISK: Final = "task.at_risk"
REPAIRED: Final = "task.repaired"

TYPES: Final = (ARCHIVED, PARTIAL, FAILED, NOT_FOUND, TIMED_OUT, AT_RISK, REPAIRED)

_OF_PHASE: Final[Mapping[Phase, str]] = {
    Phase.ARCHIVED: ARCHIVED,
    Phase.PARTIAL: PARTIAL,
    Phase.FAILED: FAILED,
    Phase.NOT_FOUND: NOT_FOUND,
    Phase.TIMED_OUT: TIMED_OUT,
}


def ending_event(before: Phase, after: Phase) -> str | None:
    """The event a task's save is when it goes from `before` to `after`: the end it enters
    (once: a save that keeps its phase is no news), else None."""
    return None if after is before else _OF_PHASE.get(after)


@dataclass(frozen=True)
class Recording:
    """Which events the state keeps (`[events] types`), and the URLs each is sent to (none:
    kept for the pull feed only)."""

    types: frozenset[str]
    urls: tuple[str, ...]
