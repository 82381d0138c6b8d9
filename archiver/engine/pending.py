"""The engine's pending tasks: each one's latest state, when it is due, its place in the order
given, and the tallies of the given tasks by phase and kind.

Only pending tasks are held: a task that ends is forgotten here (the state has it). The tallies
count every given task, kept as tasks are given and change.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Container, Mapping
from dataclasses import replace

from archiver.engine.due import DueQueue, Urgency
from archiver.state.given import Merged
from archiver.tasks.taskstate import UNKNOWN_KIND, Phase, TaskState


class PendingTasks:
    def __init__(self) -> None:
        self._active: dict[str, TaskState] = {}
        self._counts: dict[Phase, int] = dict.fromkeys(Phase, 0)
        self._kind_counts: Counter[tuple[str, Phase]] = Counter()  # by (kind or UNKNOWN_KIND)
        self._due = DueQueue()  # pending tasks by when they are due, then by urgency
        # Each pending task's place in the order given (list order, then appended and intake
        # tasks): the oldest line goes first among the undated.
        self._rank: dict[str, int] = {}
        self._ranks = itertools.count()

    @property
    def states(self) -> Mapping[str, TaskState]:
        return self._active

    @property
    def counts(self) -> Mapping[Phase, int]:
        return self._counts

    @property
    def kind_counts(self) -> Mapping[tuple[str, Phase], int]:
        return self._kind_counts

    @property
    def queued(self) -> bool:
        """Whether any entry waits in the due queue (stale ones too: see `pop_due`)."""
        return bool(self._due)

    def next_due_at(self) -> float:
        """When the next entry is due: -inf when one is due already, +inf when none waits."""
        return self._due.next_at()

    def merge(self, merged: Merged, *, whole: bool, running: Container[str]) -> None:
        """Take in what `GivenTasks.merge` did: `whole` replaces everything held. A task
        `running` is scheduled by its step when it ends, not here."""
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
            if state.task_id not in running:
                self._due.push(state.next_poll_at, state.task_id)

    def pop_due(self, now: float, running: Container[str]) -> TaskState | None:
        """The most urgent pending task due by `now` and not `running`, taken out of the due
        queue; None when there is none. Entries that no longer hold are dropped on the way."""
        while (entry := self._due.pop_due(now, self._urgency)) is not None:
            at, task_id = entry
            state = self._active.get(task_id)
            if (
                state is None
                or state.phase is not Phase.PENDING
                or task_id in running
                or at < state.next_poll_at
            ):
                continue  # removed from the list, or superseded by a newer entry
            return state
        return None

    def record(self, state: TaskState) -> None:
        """A held task changed (one not held, say no longer listed, leaves everything as it
        is): pending, it is due at its next poll; ended, it is forgotten."""
        before = self._active.get(state.task_id)
        if before is None:
            return
        self._count(before, -1)
        self._count(state, 1)
        if state.phase is Phase.PENDING:
            self._active[state.task_id] = state
            self._due.push(state.next_poll_at, state.task_id)
        else:  # ended: from now on the state's alone
            del self._active[state.task_id]
            self._rank.pop(state.task_id, None)

    def due_at(self, task_id: str, at: float) -> None:
        """A pending task is due at `at` instead."""
        current = self._active.get(task_id)
        if current is not None and current.phase is Phase.PENDING:
            self._active[task_id] = replace(current, next_poll_at=at)
            self._due.push(at, task_id)

    def _urgency(self, task_id: str) -> Urgency:
        """Which due task goes first: the one whose files expire first (the API dated it),
        then the undated ones in task-list order."""
        state = self._active.get(task_id)
        born = state.born_at if state is not None else None
        return (math.inf if born is None else born), self._rank.get(task_id, len(self._rank))

    def _count(self, state: TaskState, n: int) -> None:
        self._counts[state.phase] += n
        self._kind_counts[(state.kind.value if state.kind else UNKNOWN_KIND, state.phase)] += n
