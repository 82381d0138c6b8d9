"""The events sender: delivers the outbox (archiver.state.outbox) to `[events] urls`.

It runs beside the engine and never in its way: it reads due deliveries from the state a
batch at a time (memory stays flat however long the outbox), posts each signed event
(archiver.service.webhooks), and records every answer as it comes. Anything but a 2xx, a
timeout or a refused connection is tried again after RETRY_S (about 5 s, 5 min, 30 min, 2 h,
5 h, then every 10 h) until `events.give_up_after_s` has passed since the event; then it is
given up (`suno-archiver events --failed` lists it, `--redeliver` tries again). A URL that
keeps failing raises an alert. The engine wakes the sender when it writes an event; it also
looks every POLL_S for events other daemons or the `events` command made due.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence

import aiohttp
import structlog

from archiver import __version__
from archiver.config import Config
from archiver.errors import StorageError
from archiver.service.eventbody import EventBodies
from archiver.service.notify import Alerter
from archiver.service.webhooks import signed_headers
from archiver.state import outbox
from archiver.state.opening import STATE_ERRORS
from archiver.state.outboxes import outbox_of
from archiver.state.protocol import Store
from archiver.storage import Storage
from archiver.storage.urls import file_urls
from archiver.tasks.taskstate import Phase, TaskState

log = structlog.get_logger()

RETRY_S = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0)  # then RETRY_S[-1] again and again
POLL_S = 1.0  # a look for deliveries made due elsewhere (another daemon, `events --redeliver`)
BATCH = 100  # deliveries claimed at once
CONCURRENCY = 8  # posts in flight at once
FAILS_BEFORE_ALERT = 5  # failed attempts in a row to one URL before it is worth an alert


def sender_for(
    config: Config,
    state: Store,
    storage: Storage,
    *,
    alerter: Alerter | None = None,
    retry_scale: float = 1.0,
) -> EventSender | None:
    """The sender of `config`'s [events] over `state` and `storage`; None without urls."""
    events = config.events
    if not events.urls:
        return None
    return EventSender(
        state,
        EventBodies(storage, file_urls(config.storage, storage)),
        urls=events.urls,
        key=events.key,
        timeout_s=events.timeout_s,
        give_up_after_s=events.give_up_after_s,
        alerter=alerter,
        user_agent=f"{config.api.user_agent}/{__version__}",
        retry_scale=retry_scale,
    )


def retry_delay(attempts: int) -> float:
    """The wait after the `attempts`-th failed attempt (1, 2, …)."""
    return RETRY_S[min(attempts, len(RETRY_S)) - 1]


class EventSender:
    def __init__(
        self,
        state: Store,
        bodies: EventBodies,
        *,
        urls: Sequence[str],
        key: bytes,
        timeout_s: float,
        give_up_after_s: float,
        alerter: Alerter | None = None,
        user_agent: str = "suno-archiver",
        retry_scale: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._outbox = outbox_of(state)
        self._bodies = bodies
        self._urls = tuple(urls)
        self._key = key
        self._timeout_s = timeout_s
        self._give_up_after_s = give_up_after_s
        self._alerter = alerter
        self._user_agent = user_agent
        self._scale = retry_scale  # < 1 compresses RETRY_S (tests)
        self._clock = clock
        self._wake = asyncio.Event()
        self._finishing = False  # `finish`: return once nothing is due
        self._failing: dict[str, int] = {}  # URL → failed attempts in a row
        self._slots = asyncio.Semaphore(CONCURRENCY)

    def task_changed(self, state: TaskState) -> None:
        """The engine's `on_change`: a task that ended has just written its event."""
        if state.phase is not Phase.PENDING:
            self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def finish(self) -> None:
        """Make `run` return once nothing is due any more (posts in flight are answered and
        recorded first: a cancelled post may have reached the URL, and would go again)."""
        self._finishing = True
        self._wake.set()

    async def run(self) -> None:
        """Deliver until cancelled (or, after `finish`, until nothing is due). A state that
        cannot be read or written is logged and tried again (archiving reports it too)."""
        self._drop_unlisted()
        async with self.session() as http:
            while True:
                self._wake.clear()
                try:
                    sent = await self.send_due(http)
                    if self._finishing and not sent:
                        return
                    wait_s = 0.0 if sent else self._idle_s()
                except STATE_ERRORS as exc:  # a full disk, a database away: the engine says so too
                    log.error("events_state_unusable", error=str(exc))
                    wait_s = POLL_S
                if wait_s > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), wait_s)

    def session(self) -> aiohttp.ClientSession:
        """The HTTP session posts go through (`send_due`'s `http`)."""
        return aiohttp.ClientSession(
            headers={"User-Agent": self._user_agent, "Content-Type": "application/json"},
            timeout=aiohttp.ClientTimeout(total=self._timeout_s),
        )

    def _drop_unlisted(self) -> None:
        """Deliveries still due to a URL taken out of [events] urls are given up (`events
        --failed` lists them; `--redeliver` sends them to the URLs configured now)."""
        try:
            dropped = self._outbox.drop_unlisted(self._urls, self._clock())
        except STATE_ERRORS as exc:
            log.error("events_state_unusable", error=str(exc))
            return
        if dropped:
            log.warning("events_for_removed_urls_given_up", deliveries=dropped)

    def _idle_s(self) -> float:
        due = self._outbox.next_due(self._urls)
        return POLL_S if due is None else min(POLL_S, max(0.0, due - self._clock()))

    async def flush(self, timeout_s: float) -> None:
        """Send what is due now, for at most `timeout_s`; what fails, or is not sent by then,
        stays in the outbox (`backfill`'s last act, and `events --redeliver`'s)."""
        self.finish()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.run(), timeout_s)

    async def send_due(self, http: aiohttp.ClientSession) -> int:
        """Post one batch of the deliveries due now; return how many were tried."""
        lease_s = self._timeout_s * 2 + 30.0  # outlives any one post, then another may take it
        due = self._outbox.claim(self._clock(), lease_s, BATCH, self._urls)
        await asyncio.gather(*(self._deliver(http, delivery) for delivery in due))
        return len(due)

    async def _deliver(self, http: aiohttp.ClientSession, delivery: outbox.Delivery) -> None:
        try:
            async with self._slots:
                error = await self._post(http, delivery)
        except asyncio.CancelledError:  # stopping: due again at once for the next sender
            self._outbox.release(delivery)
            raise
        now = self._clock()
        event = delivery.event
        if error is None:
            self._outbox.delivered(delivery, now)
            log.debug("event_delivered", event_id=event.id, type=event.type, url=delivery.url)
            if self._failing.pop(delivery.url, 0) >= FAILS_BEFORE_ALERT:
                log.info("events_url_recovered", url=delivery.url)
            return
        attempts = delivery.attempts + 1
        if now - delivery.since >= self._give_up_after_s:
            self._outbox.given_up(delivery, error, now)
            log.error(
                "event_given_up",
                event_id=event.id,
                type=event.type,
                task_id=event.task_id,
                url=delivery.url,
                attempts=attempts,
                error=error,
            )
            self._alert(
                "event_given_up",
                f"event {event.id} ({event.type}) not delivered to {delivery.url} after "
                f"{attempts} attempts: {error}",
                event.task_id,
            )
        else:
            delay_s = retry_delay(attempts) * self._scale
            self._outbox.retry_at(delivery, error, now + delay_s)
            log.warning(
                "event_retry_later",
                event_id=event.id,
                url=delivery.url,
                attempt=attempts,
                error=error,
                delay_s=round(delay_s, 1),
            )
        fails = self._failing.get(delivery.url, 0) + 1
        self._failing[delivery.url] = fails
        if fails == FAILS_BEFORE_ALERT:
            self._alert(
                "events_failing",
                f"events to {delivery.url} keep failing ({fails} attempts in a row): {error}",
                None,
            )

    async def _post(self, http: aiohttp.ClientSession, delivery: outbox.Delivery) -> str | None:
        """None when the URL took the event (2xx), else what went wrong."""
        try:
            body = await self._bodies.body(delivery.event)
        except StorageError as exc:
            return f"cannot read the manifest: {exc}"
        headers = signed_headers(self._key, delivery.event.msg_id, int(self._clock()), body)
        try:
            async with http.post(delivery.url, data=body, headers=headers) as resp:
                if 200 <= resp.status < 300:
                    return None
                return f"HTTP {resp.status}"
        except TimeoutError:
            return f"no answer within {self._timeout_s:g} s"
        except (aiohttp.ClientError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}".rstrip(": ")

    def _alert(self, event: str, message: str, task_id: str | None) -> None:
        if self._alerter is not None:
            self._alerter.send(event, message, task_id)
