"""The daemon's periodic work on the kept task events: `task.at_risk` (a pending task whose
files expire within two days, archiver.tasks.expiry) once per task, written by a look at the
state every AT_RISK_EVERY_S and at once when a poll shows a task at risk (`task_changed`);
and forgetting the events older than `events.keep_days`, every PRUNE_EVERY_S."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence

import structlog

from archiver.state.opening import STATE_ERRORS
from archiver.state.outboxes import outbox_of
from archiver.state.protocol import Store
from archiver.tasks.expiry import risk_window
from archiver.tasks.taskstate import Phase, TaskState

log = structlog.get_logger()

AT_RISK_EVERY_S = 60.0
PRUNE_EVERY_S = 3600.0
DAY_S = 86_400.0


class EventWatch:
    def __init__(
        self,
        state: Store,
        *,
        retention_days: float,
        keep_days: float,
        at_risk: bool,
        urls: Sequence[str],
        on_new: Callable[[], None],
        every_s: float = AT_RISK_EVERY_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._outbox = outbox_of(state)
        self._retention_days = retention_days
        self._keep_s = keep_days * DAY_S
        self._at_risk = at_risk  # task.at_risk is among [events] types
        self._urls = urls
        self._on_new = on_new  # wakes the sender
        self._every_s = every_s
        self._clock = clock
        self._wake = asyncio.Event()

    def task_changed(self, task: TaskState) -> None:
        """The engine's `on_change`: a pending task now known to be at risk is looked at now."""
        if self._at_risk and task.phase is Phase.PENDING and task.born_at is not None:
            low, high = risk_window(self._clock(), self._retention_days)
            if low < task.born_at <= high:
                self._wake.set()

    async def run(self) -> None:
        """Until cancelled: write the at-risk events due (and wake the sender when there were
        any); prune old events."""
        next_prune = 0.0
        while True:
            self._wake.clear()
            now = self._clock()
            try:
                if self._at_risk:
                    self._write_at_risk(now)
                if now >= next_prune:
                    pruned = self._outbox.prune(now - self._keep_s)
                    next_prune = now + PRUNE_EVERY_S
                    if pruned:
                        log.info("events_pruned", older_than_keep_days=pruned)
            except STATE_ERRORS as exc:
                log.error("events_state_unusable", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._every_s)

    def _write_at_risk(self, now: float) -> None:
        low, high = risk_window(now, self._retention_days)
        count = self._outbox.insert_at_risk(low, high, now, self._urls)
        if count:
            log.warning("tasks_at_risk", count=count)
            self._on_new()
