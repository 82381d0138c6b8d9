"""A daemon among several on one shared state: its heartbeat, the renewal of its leases while
its steps last, and the tasks the others added or stepped, taken into its own schedule.

Every `lease_s / 3` the daemon renews (so a lease outlives two missed renewals) and beats its
heart; every PULL_S it reads the tasks changed since its last look (an index range of the state,
not a scan), so that a task given to another daemon, by its list or its intake, is stepped by
whichever daemon is free. The state being away pauses the engine (archiver.engine.loop) and is
said once; this loop keeps trying and the engine resumes by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import structlog

from archiver.engine.loop import Engine
from archiver.errors import one_line
from archiver.state.opening import STATE_ERRORS
from archiver.state.protocol import Daemon, Store
from archiver.tasks.taskstate import Phase

log = structlog.get_logger()

PULL_S = 2.0  # how often a daemon looks for tasks the others changed
# A change is looked for again this long after it was last seen: clocks of daemons on several
# machines differ a little, and a transaction may commit a moment after its updated_at.
PULL_MARGIN_S = 30.0
# The shared state's counts for /metrics are read this often (a count over every task).
COUNTS_S = 30.0


def daemon_name() -> str:
    """This daemon's name in the shared state: host, pid and a random part (a pid is reused
    after a restart, and two containers may both be pid 1)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Membership:
    """One daemon's part in the cluster, driven by `run` beside the engine."""

    def __init__(
        self,
        state: Store,
        engine: Engine,
        name: str | None,
        *,
        lease_s: float,
        last_answer: Callable[[], float | None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._state = state
        self._engine = engine
        self._lease_s = lease_s
        self._clock = clock
        self._me = Daemon(
            name or daemon_name(), socket.gethostname(), os.getpid(), clock(), clock(), 0
        )
        self._seen = 0.0  # the last pull's time: 0 reads every pending task (at start)
        self.reachable = True  # /healthz says 503 while the shared state does not answer
        self._last_answer = last_answer  # this daemon's last API answer (metrics)
        self.cluster_answer: float | None = None  # the latest any daemon had
        # (tasks by phase, daemons alive) of the shared state, for /metrics
        self.counts: tuple[dict[Phase, int], int] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        beat_every = self._lease_s / 3
        next_beat = next_count = 0.0
        while not stop.is_set():
            now = self._clock()
            try:
                if now >= next_beat:
                    self._state.renew(self._me.daemon_id, now, self._lease_s)
                    me = self._me
                    self.cluster_answer = self._state.heartbeat(
                        Daemon(me.daemon_id, me.host, me.pid, me.started_at, now, 0,
                               self._last_answer())
                    )  # fmt: skip
                    next_beat = now + beat_every
                changed = self._state.pending_since(self._seen - PULL_MARGIN_S if self._seen else 0)
                self._seen = now
                self._engine.take_changes(changed)
                if now >= next_count:
                    alive = self._state.daemons(now, self._lease_s)
                    self.counts = (self._state.counts(), len(alive))
                    next_count = now + COUNTS_S
                if not self.reachable:
                    log.info("state_reachable_again", state=self._state.where)
                self.reachable = True
            except STATE_ERRORS as exc:
                if self.reachable:
                    log.error(
                        "state_unreachable",
                        state=self._state.where,
                        error=one_line(exc),
                    )
                self.reachable = False
                next_beat = 0.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PULL_S)

    def health(self) -> dict[str, Any] | None:
        """/healthz's `archiving_paused` while the shared state does not answer."""
        if self.reachable:
            return None
        return {"cause": "state_unreachable", "state": self._state.where}

    def leave(self) -> None:
        """A clean stop: the leases go at once (not after lease_s), the heartbeat row too."""
        try:
            self._state.leave(self._me.daemon_id)
        except STATE_ERRORS as exc:
            log.warning("state_leave_failed", error=one_line(exc))
