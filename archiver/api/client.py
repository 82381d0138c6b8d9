"""The HTTP client for the record-info endpoints: auth, retries, the shared rate limit.

It sends the calls and reads the answers (capped in size, the key never in an error); what an
answer means, a record or an `archiver.errors` class, is archiver.apianswers'.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import structlog

from archiver.api.answers import answer_data, classify_answer, vendor_of
from archiver.api.backoff import backoff_delay
from archiver.errors import (
    ApiError,
    ApiUnusable,
    Maintenance,
    SlowDown,
    TransientApiError,
    UnknownTask,
)
from archiver.kinds import KINDS, PROBE_ORDER
from archiver.kinds.records import Kind, Record

log = structlog.get_logger()
T = TypeVar("T")

PATHS: Mapping[Kind, str] = {kind: task_kind.path for kind, task_kind in KINDS.items()}
ALIGNED_LYRICS_PATH = "/api/v1/generate/get-timestamped-lyrics"
MAX_ANSWER_BYTES = 8 * 1024 * 1024  # a record is a few kB; anything this big is not one
# A rejected key or a wrong base_url is fixed by a person, not by hammering the API: the
# client holds every call back this long, and the daemon's engine pauses as long.
AUTH_RETRY_S = 300.0
_RETRIED = (SlowDown, Maintenance, TransientApiError)


class RateLimiter:
    """One cap of `per_second` calls for all tasks together; `pause` holds every caller back."""

    def __init__(self, per_second: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if per_second <= 0:
            raise ValueError("requests_per_second must be > 0")
        self._interval = 1.0 / per_second
        self._clock = clock
        self._next = float("-inf")  # the earliest time the next call may start
        self._paused_until = float("-inf")

    async def acquire(self) -> None:
        # Reserve a slot synchronously (no await in between, so no lock is needed), sleep until
        # it, and start over if a pause was ordered meanwhile.
        while True:
            now = self._clock()
            slot = max(now, self._next, self._paused_until)
            self._next = slot + self._interval
            if slot > now:
                await asyncio.sleep(slot - now)
            if self._clock() >= self._paused_until:
                return

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self._clock() + seconds)


class SunoApi:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        api_key: str,
        limiter: RateLimiter,
        attempts: int = 4,
        backoff_base_s: float = 1.0,
        timeout_s: float = 30.0,
    ) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._vendor = vendor_of(self._base_url)
        self.__key = api_key
        self._limiter = limiter
        self._attempts = max(1, attempts)
        self._backoff_base_s = backoff_base_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    def __repr__(self) -> str:
        return f"SunoApi(base_url={self._base_url!r})"

    async def lookup(self, task_id: str, kind: Kind | None) -> tuple[Kind, Record]:
        """The record of `task_id`; with `kind` None, ask each kind's endpoint in the probe
        order until one knows it (each call counts against the rate cap like any other)."""
        if kind is not None:
            return kind, await self.record(kind, task_id)
        for probe in PROBE_ORDER:
            try:
                return probe, await self.record(probe, task_id)
            except UnknownTask:
                continue
        asked = " nor the ".join(PROBE_ORDER)
        raise UnknownTask(f"neither the {asked} endpoint knows task {task_id}")

    async def record(self, kind: Kind, task_id: str) -> Record:
        """One endpoint's record, retrying slow-downs, maintenance and transient failures."""
        return await self._retrying(task_id, str(kind), lambda: self._call(kind, task_id))

    async def timestamped_lyrics(self, task_id: str, audio_id: str) -> dict[str, Any] | None:
        """A music track's word timings (`POST …/get-timestamped-lyrics`): the answer's `data`
        object, or None when the API has none to give (`data: null`, or 404/422)."""
        try:
            return await self._retrying(
                task_id, "aligned_lyrics", lambda: self._call_lyrics(task_id, audio_id)
            )
        except UnknownTask:
            return None

    async def _retrying(self, task_id: str, what: str, call: Callable[[], Awaitable[T]]) -> T:
        attempt = 1
        while True:
            try:
                return await call()
            except ApiUnusable as exc:
                # The calls of other tasks already waiting in the limiter would be refused too.
                self._limiter.pause(exc.retry_after or AUTH_RETRY_S)
                raise
            except _RETRIED as exc:
                if attempt >= self._attempts:
                    raise
                delay = backoff_delay(
                    attempt, base_s=self._backoff_base_s, retry_after_s=exc.retry_after
                )
                if isinstance(exc, SlowDown | Maintenance):
                    self._limiter.pause(delay)  # every task slows down, not only this one
                log.warning(
                    "api_retry",
                    task_id=task_id,
                    kind=what,
                    error=str(exc),
                    error_class=type(exc).__name__,
                    attempt=attempt,
                    delay_s=round(delay, 3),
                )
                await asyncio.sleep(delay)
                attempt += 1

    async def _call(self, kind: Kind, task_id: str) -> Record:
        answer = await self._request(PATHS[kind], params={"taskId": task_id})
        with self._redacted():
            return classify_answer(kind, task_id, *answer[:2], **answer[2])

    async def _call_lyrics(self, task_id: str, audio_id: str) -> dict[str, Any]:
        body = {"taskId": task_id, "audioId": audio_id}
        answer = await self._request(ALIGNED_LYRICS_PATH, json_body=body)
        with self._redacted():
            return answer_data("aligned lyrics", *answer[:2], **answer[2])

    async def _request(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes, dict[str, Any]]:
        """One call (a GET with `params`, or a POST of `json_body`) within the rate cap:
        HTTP status, body, and the keywords `classify_answer` takes besides."""
        await self._limiter.acquire()
        headers = {"Authorization": f"Bearer {self.__key}", "Accept": "application/json"}
        url = self._base_url + path
        method = "GET" if json_body is None else "POST"
        try:
            async with self._session.request(
                method,
                url,
                params=params,
                json=json_body,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as resp:
                body = await _read_capped(resp)
                status, reason = resp.status, resp.reason or ""
                retry_after = resp.headers.get("Retry-After")
        except TimeoutError:
            raise TransientApiError(
                f"no answer from the API within {self._timeout.total:g} s"
            ) from None
        except aiohttp.ClientError as exc:
            message = self._redact(f"connection to the API failed: {type(exc).__name__}: {exc}")
            raise TransientApiError(message) from None
        extra = {
            "path": urlsplit(url).path,
            "retry_after": retry_after,
            "reason": reason,
            "vendor": self._vendor,
        }
        return status, body, extra

    @contextlib.contextmanager
    def _redacted(self) -> Iterator[None]:
        """An error that quotes the key (an echoing proxy) must not leak it."""
        try:
            yield
        except ApiError as exc:
            if self.__key and self.__key in str(exc):
                raise type(exc)(self._redact(str(exc)), retry_after=exc.retry_after) from None
            raise

    def _redact(self, text: str) -> str:
        return text.replace(self.__key, "***") if self.__key else text


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise TransientApiError(f"the API's answer is over {MAX_ANSWER_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
