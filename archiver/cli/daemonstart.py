"""The daemon's start and pulse: READY=1 and STATUS= to systemd (`Readiness`), the /healthz loop
clock and the watchdog (`heartbeat`), and storage that cannot be opened at start, waited out
instead of an exit (`open_engine_when_storage_opens`). A part of `run` (daemon.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AsyncExitStack

import structlog

from archiver.api.backoff import backoff_delay
from archiver.config import Config
from archiver.engine.assemble import open_engine
from archiver.engine.loop import Engine
from archiver.errors import StorageError
from archiver.service.metrics import Metrics
from archiver.service.sdnotify import Notifier
from archiver.tasks.taskstate import TaskState

log = structlog.get_logger()

TICK_S = 1.0  # the loop's heartbeat for /healthz
# Storage unusable at start is retried with backoff from `retry_base_s`, capped at this many
# times it (30 s → at most 300 s between attempts): a missing bucket waits for a person.
STORAGE_RETRY_CAP = 10.0


class Readiness:
    """READY=1 the first time the daemon has something to report, STATUS= after that."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self.sent = False

    def announce(self, status: str) -> None:
        if self.sent:
            self.notifier.status(status)
        else:
            self.notifier.ready(status)
            self.sent = True


async def heartbeat(notifier: Notifier, metrics: Metrics, readiness: Readiness) -> None:
    """Tick /healthz's loop clock every second and, once READY=1 is sent, ping the systemd
    watchdog every half of WATCHDOG_USEC: from start to stop, storage waits included."""
    loop = asyncio.get_running_loop()
    interval = min(TICK_S, notifier.watchdog_s or TICK_S)
    next_ping = 0.0
    while True:
        metrics.tick()
        if readiness.sent and notifier.watchdog_s is not None and loop.time() >= next_ping:
            notifier.watchdog()
            next_ping = loop.time() + notifier.watchdog_s
        await asyncio.sleep(interval)


async def open_engine_when_storage_opens(
    stack: AsyncExitStack,
    config: Config,
    on_change: Callable[[TaskState], None],
    retry_base_s: float,
    poll_time_scale: float,
    stop: asyncio.Event,
    reread: asyncio.Event,
    readiness: Readiness,
) -> Engine | None:
    """The engine, entered on `stack` once its storage opens; None if stopped before.

    Storage that cannot be used (a missing bucket, denied access, an unreachable endpoint, an
    archive folder not mounted yet) is waited out, not a reason to exit: systemd hears READY=1
    with the reason in STATUS=, the log says it once per attempt, and the attempts slow down to
    one every `STORAGE_RETRY_CAP` base delays (300 s by default). SIGHUP tries again at once.
    Other errors at start (no API key, the state in use) still end the daemon.
    """
    attempt = 0
    while True:
        try:
            engine = await stack.enter_async_context(
                open_engine(
                    config,
                    fatal_errors=False,
                    on_change=on_change,
                    retry_base_s=retry_base_s,
                    poll_time_scale=poll_time_scale,
                )
            )
        except StorageError as exc:
            attempt += 1
            delay_s = backoff_delay(
                attempt, base_s=retry_base_s, cap_s=STORAGE_RETRY_CAP * retry_base_s
            )
            log.error(
                "storage_unavailable",
                storage=config.storage.location,
                error=str(exc),
                attempt=attempt,
                retry_in_s=round(delay_s, 1),
            )
            if stop.is_set():  # SIGTERM during the attempt: STOPPING=1 is already sent
                return None
            readiness.announce(f"waiting for storage: {exc}")
            if await _sleep_unless_signalled(delay_s, stop, reread):
                return None
            continue
        if attempt:
            log.info("storage_available", storage=config.storage.location, attempts=attempt + 1)
        return engine


async def _sleep_unless_signalled(
    delay_s: float, stop: asyncio.Event, reread: asyncio.Event
) -> bool:
    """Wait `delay_s`, cut short by SIGHUP; True when SIGTERM/SIGINT came instead."""
    waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(reread.wait())]
    try:
        await asyncio.wait(waiters, timeout=delay_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
    reread.clear()  # the task list is read anyway once the engine opens
    return stop.is_set()
