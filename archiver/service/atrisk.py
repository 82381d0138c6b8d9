"""`task.at_risk` events: a pending task whose files expire within two days (archiver.tasks.
expiry) gets one, once, written by a look at the state every AT_RISK_EVERY_S."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence

import structlog

from archiver.state import outbox
from archiver.state.store import StateStore
from archiver.tasks.expiry import risk_window

log = structlog.get_logger()

AT_RISK_EVERY_S = 60.0


async def watch_at_risk(
    state: StateStore,
    *,
    retention_days: float,
    urls: Sequence[str],
    on_new: Callable[[], None],
    every_s: float = AT_RISK_EVERY_S,
    clock: Callable[[], float] = time.time,
) -> None:
    """Until cancelled: write the at-risk events due, and call `on_new` when there were any."""
    while True:
        now = clock()
        try:
            count = outbox.insert_at_risk(state, *risk_window(now, retention_days), now, urls)
        except sqlite3.Error as exc:
            log.error("events_state_unusable", error=str(exc))
        else:
            if count:
                log.warning("tasks_at_risk", count=count)
                on_new()
        await asyncio.sleep(every_s)
