"""The engine's queue of pending tasks: when each is due, and which due task goes first.

Tasks wait in a heap by the time their next poll is due. Those whose time has come move to a
second heap ordered by urgency (the engine's `urgency`: the task whose files expire first,
then tasks the API has not dated yet, in task-list order). So when more tasks are due than the
rate cap lets through, the ones closest to expiry are polled first, and a long new list is
worked through oldest line first, not in ID order.

Entries are hints: a task may have several (it was rescheduled, or polled at once), and the
engine skips the ones that no longer hold when it pops them.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Iterator

Urgency = tuple[float, int]  # (expiry-ordering time or +inf, list position): smaller first


class DueQueue:
    def __init__(self) -> None:
        self._waiting: list[tuple[float, str]] = []  # (due at, task_id)
        self._ready: list[tuple[float, int, float, str]] = []  # (*urgency, at, task_id)

    def __bool__(self) -> bool:
        return bool(self._waiting or self._ready)

    def __iter__(self) -> Iterator[tuple[float, str]]:
        """Every entry (due at, task_id), in no particular order."""
        yield from self._waiting
        for *_, at, task_id in self._ready:
            yield at, task_id

    def reset(self, entries: Iterable[tuple[float, str]]) -> None:
        """Hold exactly these (due at, task_id) entries."""
        self._waiting = list(entries)
        heapq.heapify(self._waiting)
        self._ready = []

    def push(self, at: float, task_id: str) -> None:
        heapq.heappush(self._waiting, (at, task_id))

    def pop_due(self, now: float, urgency: Callable[[str], Urgency]) -> tuple[float, str] | None:
        """The (due at, task_id) entry of the most urgent task due by `now`, taken out of the
        queue; None when no task is due."""
        while self._waiting and self._waiting[0][0] <= now:
            at, task_id = heapq.heappop(self._waiting)
            heapq.heappush(self._ready, (*urgency(task_id), at, task_id))
        if not self._ready:
            return None
        *_, at, task_id = heapq.heappop(self._ready)
        return at, task_id

    def next_at(self) -> float:
        """When the next task is due: -inf when one is due already, +inf when none waits."""
        if self._ready:
            return -math.inf
        return self._waiting[0][0] if self._waiting else math.inf
