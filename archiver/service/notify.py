"""Alerts: a JSON POST `{"event", "message", "task_id", "at", "count"}` to each `notify.urls`
entry when the archive stops working (SPEC "Alerts").

Plain webhooks rather than Apprise: ntfy, Gotify, Slack-compatible relays, Home Assistant and
any small script take a JSON POST as it is, the daemon already speaks aiohttp, and a library of
a hundred services would be a dependency to keep current for one POST.

`Alerter` sends: rate-limited per event (the first at once; what follows within WINDOW_S goes
as one alert that counts them), delivered by a background task with a few retries, so a dead
or slow receiver never holds archiving up; a failure is logged and dropped. `DaemonAlerts`
decides what is worth an alert from what the daemon sees anyway: task changes (the engine's
`on_change`) and the `archiving_paused` / `archiving_resumed` log events.

Several daemons on one state: a task's end is alerted by the daemon that saved it (one, under
its lease); a pause, its end and silence are seen by every daemon, so the first to say one in
its time bucket says it for the cluster (`share`), and silence counts the last API answer of
any daemon (their heartbeats carry it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import structlog

from archiver.errors import one_line
from archiver.kinds.timestamps import utc_iso_of
from archiver.state.opening import STATE_ERRORS
from archiver.tasks.taskstate import Phase, TaskState

log = structlog.get_logger()

WINDOW_S = 60.0  # at most one alert of an event this often; the rest are counted into it
ATTEMPTS = 3  # deliveries of one alert to one URL
TIMEOUT_S = 10.0
FLUSH_S = 2.0  # on stop, how long queued alerts may take to go out
QUEUE_MAX = 1000  # alerts waiting for delivery; more are dropped (and logged)
_LISTED = 10  # task IDs a burst's message names

_ENDED = {
    Phase.FAILED: ("task_failed", "the task failed"),
    Phase.PARTIAL: ("task_partial", "archived without some files"),
    Phase.NOT_FOUND: ("task_not_found", "no endpoint knows the task"),
    Phase.TIMED_OUT: ("task_timed_out", "not finished in time"),
}
_STORED = frozenset({Phase.ARCHIVED, Phase.PARTIAL, Phase.FAILED})  # phases a manifest makes


class Alerter:
    def __init__(
        self,
        urls: Sequence[str],
        *,
        secrets: Sequence[str] = (),
        window_s: float = WINDOW_S,
        retry_base_s: float = 1.0,
        user_agent: str = "suno-archiver",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._urls = list(urls)
        self._secrets = [s for s in secrets if s]
        self._window_s = window_s
        self._retry_base_s = retry_base_s
        self._user_agent = user_agent
        self._clock = clock
        self._held: dict[str, list[tuple[str, str | None]]] = {}  # event → alerts in its window
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_MAX)
        self._sender: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Alerter:
        if self._urls:
            self._sender = asyncio.create_task(self._deliver_all(), name="alerts")
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._sender is not None:
            with contextlib.suppress(TimeoutError):  # what is queued gets a moment to go
                await asyncio.wait_for(self._queue.join(), FLUSH_S)
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)

    def send(self, event: str, message: str, task_id: str | None = None) -> None:
        """Queue an alert (never waits). Within the event's window it is held and counted."""
        if not self._urls:
            return
        message = self._scrub(message)
        if event in self._held:
            self._held[event].append((message, task_id))
            return
        self._open_window(event)
        self._enqueue(event, message, task_id, 1)

    def _open_window(self, event: str) -> None:
        self._held[event] = []
        asyncio.get_running_loop().call_later(self._window_s, self._close_window, event)

    def _close_window(self, event: str) -> None:
        held = self._held.pop(event, [])
        if not held:
            return
        self._open_window(event)  # a steady stream goes out as one alert a window
        if len(held) == 1:
            self._enqueue(event, held[0][0], held[0][1], 1)
            return
        ids = [task_id for _, task_id in held if task_id]
        named = ", ".join(ids[:_LISTED]) + (" …" if len(ids) > _LISTED else "")
        message = f"{len(held)} times: {held[-1][0]}" + (f" (tasks {named})" if named else "")
        self._enqueue(event, message, None, len(held))

    def _enqueue(self, event: str, message: str, task_id: str | None, count: int) -> None:
        body = {
            "event": event,
            "message": message,
            "task_id": task_id,
            "at": utc_iso_of(self._clock()),
            "count": count,
        }
        try:
            self._queue.put_nowait(body)
        except asyncio.QueueFull:
            log.warning("alert_dropped", alert=event, reason="too many alerts waiting")

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text

    async def _deliver_all(self) -> None:
        headers = {"User-Agent": self._user_agent}
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:
            while True:
                body = await self._queue.get()
                await asyncio.gather(*(self._deliver(http, url, body) for url in self._urls))
                self._queue.task_done()

    async def _deliver(self, http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> None:
        error = ""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with http.post(url, json=body) as resp:
                    if resp.status < 300:
                        log.debug("alert_sent", alert=body["event"], url=url)
                        return
                    error = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}".rstrip(": ")
            if attempt < ATTEMPTS:
                await asyncio.sleep(self._retry_base_s * 2 ** (attempt - 1))
        log.warning("alert_failed", alert=body["event"], url=url, error=error, attempts=ATTEMPTS)


class DaemonAlerts:
    """What the daemon alerts on: bad task ends, pauses and resumes (once each), silence."""

    def __init__(self, alerter: Alerter, *, silence_after_s: float) -> None:
        self._alerter = alerter
        self._silence_after_s = silence_after_s
        self._paused: str | None = None  # the cause of the pause last alerted
        self._paused_at = 0.0
        self._silent = False  # a silence alert was sent and nothing moved since
        # several daemons: True for the one daemon that says an event first (Store.first_to_say)
        self._first: Callable[[str, float], bool] | None = None

    def share(self, first_to_say: Callable[[str, float], bool]) -> None:
        """Alert a pause, its end and silence once for all the daemons of a shared state."""
        self._first = first_to_say

    def _send_once(self, key: str, bucket_s: float, event: str, message: str) -> None:
        """Send unless another daemon said `key` in this time bucket already; a state
        that cannot be asked does not silence the alert (better twice than never)."""
        if self._first is not None:
            now = time.time()
            try:
                if not self._first(f"{key}:{int(now // bucket_s)}", now):
                    return
            except STATE_ERRORS as exc:  # the shared state is away: say it anyway
                log.warning("alert_not_deduplicated", alert=event, error=one_line(exc))
        self._alerter.send(event, message)

    @property
    def alerter(self) -> Alerter:
        """Where other parts of the daemon send their alerts (the events sender)."""
        return self._alerter

    def task_changed(self, state: TaskState) -> None:
        """The engine's `on_change`: a bad end alerts; a task stored ends a storage pause."""
        ended = _ENDED.get(state.phase)
        if ended is not None:
            event, what = ended
            detail = f": {state.last_error}" if state.last_error else ""
            self._alerter.send(event, f"{state.task_id}: {what}{detail}", state.task_id)
        if self._paused is not None and state.phase in _STORED:
            self._resumed(self._paused)

    def log_processor(
        self, _logger: Any, _method: str, event: structlog.types.EventDict
    ) -> structlog.types.EventDict:
        """A structlog processor: `archiving_paused` alerts once a cause; `archiving_resumed`
        (a storage that has room again) ends the pause."""
        name = event.get("event")
        if name == "archiving_paused":
            cause = str(event.get("cause"))
            if cause != self._paused:
                self._paused, self._paused_at = cause, time.time()
                message = f"archiving paused ({cause}): {event.get('error', '')}".rstrip(": ")
                self._send_once(f"paused:{cause}", WINDOW_S, "archiving_paused", message)
        elif name == "archiving_resumed" and self._paused is not None:
            self._resumed(self._paused)
        elif name == "state_unreachable" and self._paused != "state":
            # not deduplicated: the state that would say who said it first is the one away
            self._paused, self._paused_at = "state", time.time()
            message = f"archiving paused (state): {event.get('state')}: {event.get('error')}"
            self._alerter.send("archiving_paused", message)
        elif name == "state_reachable_again" and self._paused == "state":
            self._resumed("state")
        return event

    def _resumed(self, cause: str) -> None:
        self._paused = None
        message = f"archiving resumed after a pause ({cause})"
        self._send_once(f"resumed:{cause}", WINDOW_S, "archiving_resumed", message)

    def tick(
        self, *, last_answer_at: float | None, quiet_s: float, pending: Callable[[], int]
    ) -> None:
        """Every few seconds: an API answer since a pause for the key or base_url ends it;
        and `silence` once when pending tasks saw no API answer (so nothing archived) for
        `quiet_s` ≥ silence_after_s, again only after something moved. `pending` counts
        them, asked only when quiet that long."""
        api_pause = self._paused in ("api_key", "api_url")
        if api_pause and last_answer_at is not None and last_answer_at > self._paused_at:
            self._resumed(str(self._paused))
        if quiet_s < self._silence_after_s:
            self._silent = False
            return
        waiting = 0 if self._silent else pending()
        if waiting:
            self._silent = True
            self._send_once(
                "silence",
                self._silence_after_s,
                "silence",
                f"{waiting} pending tasks, no answer from the API and nothing archived "
                f"for {quiet_s:.0f} s",
            )
