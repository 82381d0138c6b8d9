"""The HTTP client for both record-info endpoints: auth, error classes, retries, rate limit.

Every answer is classified in one place (`classify_answer`, with its code table
`error_for_code`), so the engine only ever sees a record or one of the `archiver.errors` classes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import aiohttp
import structlog

from archiver.backoff import backoff_delay, parse_retry_after
from archiver.errors import (
    ApiError,
    ApiRejected,
    ApiUnusable,
    AuthError,
    Maintenance,
    NoCredits,
    SlowDown,
    TransientApiError,
    UnknownTask,
    WrongEndpoint,
)
from archiver.kinds import KINDS, PROBE_ORDER
from archiver.records import Kind, Record

log = structlog.get_logger()
T = TypeVar("T")

PATHS: Mapping[Kind, str] = {kind: task_kind.path for kind, task_kind in KINDS.items()}
ALIGNED_LYRICS_PATH = "/api/v1/generate/get-timestamped-lyrics"
MAX_ANSWER_BYTES = 8 * 1024 * 1024  # a record is a few kB; anything this big is not one
MAX_RETRY_AFTER_S = 3600.0
# A rejected key or a wrong base_url is fixed by a person, not by hammering the API: the
# client holds every call back this long, and the daemon's engine pauses as long.
AUTH_RETRY_S = 300.0
_RETRIED = (SlowDown, Maintenance, TransientApiError)
# What a code means for the user: the same number differs between the vendors (API-NOTES §4).
_SLOW_DOWN = {
    429: "the API rate-limits this key",  # kie.ai; sunoapi.org's body 429 is credits
    430: "the API asks to call less often",  # sunoapi.org
    405: "the API asks to call less often",  # sunoapi.org
    433: "the kie.ai sub-key is over its usage limit (raise it in the key's settings)",
}
Vendor = Literal["kie", "sunoapi"] | None
_UNKNOWN_TASK_CODES = frozenset({404, 422})


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


def classify_answer(
    kind: Kind,
    task_id: str,
    status: int,
    body: bytes,
    *,
    path: str,
    retry_after: str | None = None,
    reason: str = "",
    vendor: Vendor = None,
) -> Record:
    """The HTTP answer to a call about `task_id` at URL `path` → the parsed record, or the
    `archiver.errors` class that says what to do.

    HTTP status and body `code` mean the same thing and go through the same table.
    """
    data = answer_data(
        f"{kind} endpoint",
        status,
        body,
        path=path,
        retry_after=retry_after,
        reason=reason,
        vendor=vendor,
    )
    try:
        return KINDS[kind].parse(data, task_id)  # type: ignore[no-any-return]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise TransientApiError(f"the API's {kind} record is unusable: {exc}") from exc


def answer_data(
    what: str,
    status: int,
    body: bytes,
    *,
    path: str,
    retry_after: str | None = None,
    reason: str = "",
    vendor: Vendor = None,
) -> dict[str, Any]:
    """The `data` object of an answer from `what` (named in errors), or the error class."""
    doc = _json_or_none(body)
    msg = _short(doc.get("msg")) if isinstance(doc, dict) else ""
    if status != 200:
        if status in _UNKNOWN_TASK_CODES and not _is_envelope(doc):
            # The vendor says "unknown task" in its JSON; a bare 404 is a router's: a wrong
            # base_url would otherwise make every task "not found", for good.
            raise WrongEndpoint(
                f"HTTP {status} for {_short(path)} is not an answer of the record-info API: "
                "check api.base_url (the API's root, e.g. https://api.kie.ai)"
            )
        raise error_for_code(
            status, msg or reason, retry_after=_retry_after_s(retry_after), vendor=vendor
        )
    if doc is None:
        looks_html = body.lstrip()[:1] == b"<"
        shape = "an HTML page" if looks_html else "malformed JSON"
        raise TransientApiError(f"the API answered with {shape} instead of a record")
    if not isinstance(doc, dict):
        raise TransientApiError("the API's answer is not a JSON object")
    code = doc.get("code")
    if isinstance(code, str) and code.strip().isdigit():
        code = int(code)
    if not isinstance(code, int) or isinstance(code, bool):
        raise TransientApiError(f"the API's answer has no usable code ({_short(code)})")
    if code != 200:
        raise error_for_code(
            code, msg, retry_after=_retry_after_s(retry_after), vendor=vendor, in_body=True
        )
    data = doc.get("data")
    if data is None or data == {}:  # the cover endpoint's first seconds after creation: {}
        said = "null" if data is None else "{}"
        raise UnknownTask(f"the {what} does not know this task (data: {said})")
    if not isinstance(data, dict):
        raise TransientApiError("the API's `data` is not an object")
    return data


def error_for_code(
    code: int,
    msg: str,
    *,
    retry_after: float | None = None,
    vendor: Vendor = None,
    in_body: bool = False,
) -> ApiError:
    """The error class for an HTTP status or body code other than 200 (`in_body`: the
    envelope's `code` of an HTTP 200), as `vendor` means it."""
    said = f"{code}: {msg}" if msg else str(code)
    if code == 401:
        return AuthError(
            "the API rejected the key (401): check the API key "
            "(api.api_key, api.api_key_file or SUNO_API_KEY)"
        )
    if _no_credits(code, msg, vendor, in_body=in_body):
        return NoCredits(
            f"the API account is out of credits ({said}): top up the account",
            retry_after=retry_after,
        )
    if code in _SLOW_DOWN:
        return SlowDown(f"{_SLOW_DOWN[code]} ({said}): slowing down", retry_after=retry_after)
    if code == 455:
        return Maintenance(f"the API is in maintenance ({said})", retry_after=retry_after)
    if code in _UNKNOWN_TASK_CODES:
        return UnknownTask(f"the endpoint does not know this task ({said})")
    if code >= 500:
        return TransientApiError(f"the API failed ({said})", retry_after=retry_after)
    if 400 <= code < 500:
        return ApiRejected(f"the API refused the request ({said})")
    return TransientApiError(f"the API answered an unexpected code ({said})")


def vendor_of(base_url: str) -> Vendor:
    """Which vendor's code table applies: by the API's host name (None: another host, such
    as a proxy or the stand-in API, where only the message tells a 429's meaning)."""
    host = (urlsplit(base_url).hostname or "").lower()
    for vendor, domain in (("kie", "kie.ai"), ("sunoapi", "sunoapi.org")):
        if host == domain or host.endswith("." + domain):
            return vendor  # type: ignore[return-value]
    return None


def _no_credits(code: int, msg: str, vendor: Vendor, *, in_body: bool) -> bool:
    """402 is kie.ai's "insufficient credits"; a body 429 is sunoapi.org's (kie.ai's 429 is a
    rate limit). Elsewhere the message decides."""
    if code == 402:
        return True
    if code != 429 or vendor == "kie":
        return False
    return in_body if vendor == "sunoapi" else "credit" in msg.lower()


def _retry_after_s(value: str | None) -> float | None:
    return parse_retry_after(value, cap_s=MAX_RETRY_AFTER_S)


def _json_or_none(body: bytes) -> Any:
    # NaN and ±Infinity (as words, or as a number like 1e999) become null: JSON has no such
    # values, and the manifest (which keeps `raw`) could never be written with them.
    try:
        return json.loads(body, parse_constant=_null, parse_float=_finite_or_null)
    except (ValueError, UnicodeDecodeError):
        return None


def _null(_word: str) -> None:
    return None


def _finite_or_null(text: str) -> float | None:
    number = float(text)
    return number if math.isfinite(number) else None


def _is_envelope(doc: Any) -> bool:
    """The vendor's JSON answer shape (`code`, `msg`, `data`), error or not."""
    return isinstance(doc, dict) and ("code" in doc or "msg" in doc)


def _short(value: object, limit: int = 200) -> str:
    text = "" if value is None else str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
