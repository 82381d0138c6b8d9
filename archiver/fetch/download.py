"""One URL → a verified local temp file: hash, length, resume, magic bytes, size limit.

The downloader of the pipeline (gallery-dl's split): it knows nothing of tasks or storage. It
streams into a uniquely named `*.part` file, hashes while writing, resumes an interrupted body
with `Range`, checks what the body *is* from its magic bytes (never `Content-Type`), and either
returns a complete file the caller owns or raises `FetchError` and leaves nothing. The temp file
is archiver.partfile's; what a status or a body's first bytes mean is archiver.fetchfaults'.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp
import structlog

from archiver.api.backoff import backoff_delay
from archiver.errors import FetchError
from archiver.fetch.faults import (
    Dead,
    Retry,
    check_status,
    classify_head,
    final_error,
    validator_of,
)
from archiver.fetch.partfile import Part, open_part
from archiver.storage.space import Reserve
from archiver.tasks.lifecycle import is_fetchable

log = structlog.get_logger()

_HEAD_BYTES = 512  # enough of the body's start to tell an HTML page from the rest
_CONTENT_RANGE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")


@dataclass(frozen=True)
class Fetched:
    path: Path  # a temp file in temp_dir the caller now owns (moves or deletes it)
    url: str  # the URL that worked
    bytes: int  # of the file
    sha256: str  # hex, of exactly the bytes in `path`
    media: str  # archiver.kinds.media type sniffed from the magic bytes (MP3/PNG/JPEG)
    source_bytes: int  # of the body as downloaded: the file's, unless a Reshape changed its head
    source_sha256: str


class Reshape(Protocol):
    """Puts other bytes in place of a body's first ones as it streams in (an MP3's own ID3v2
    tag, by the archive's): the file is written once, never copied to change its head."""

    def head_size(self, first: bytes) -> int:
        """How many leading bytes to replace, judged from the body's first bytes (at least
        the first 512, or the whole body when shorter)."""
        ...

    def replacement(self, head: bytes) -> bytes:
        """What to write instead of `head`: those leading bytes (fewer if the body is short)."""
        ...


class Fetcher:
    """Downloads files from the CDN URLs of a record.

    `session` must not carry the API key: it is meant for file hosts only.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        temp_dir: Path,
        max_bytes: int,
        attempts: int = 5,
        read_timeout_s: float = 60.0,
        backoff_base_s: float = 1.0,
        chunk_bytes: int = 256 * 1024,
        reserve: Reserve | None = None,
    ) -> None:
        if "Authorization" in session.headers or session.auth is not None:
            raise ValueError("the file-host session must not carry credentials")
        self._session = session
        self._temp_dir = temp_dir
        self._max_bytes = max_bytes
        self._attempts = max(1, attempts)
        self._backoff_base_s = backoff_base_s
        self._chunk_bytes = chunk_bytes
        self._reserve = reserve  # free space a download must leave (local storage)
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=read_timeout_s, sock_read=read_timeout_s
        )

    async def fetch(
        self, urls: Sequence[str], accept: frozenset[str], reshape: Reshape | None = None
    ) -> Fetched:
        """The first of `urls` that gives a complete body of a type in `accept`, its head
        replaced as `reshape` says (the file then differs from the body as downloaded).

        Dead URLs (401/403/404/410, not media) fall through to the next one; transient
        failures are retried up to `attempts` times per URL, resuming with Range. What
        `reshape` raises (TaggingError: not a taggable MP3) ends the fetch as it is.
        """
        want = _Want(accept, reshape)
        failures: list[tuple[str, str, bool]] = []  # (url, reason, permanent)
        part: Part | None = None
        try:
            for url in urls:
                if not is_fetchable(url):
                    log.warning("fetch_url_refused", url=url, reason="not an http(s) URL")
                    failures.append((url, "not an http(s) URL", True))
                    continue
                if part is None:
                    part = await open_part(self._temp_dir)
                elif part.have or part.kind:
                    await part.restart()  # bytes of another host are not resumed
                try:
                    fetched = await self._fetch_url(url, part, want)
                except Dead as dead:
                    failures.append((url, str(dead), True))
                except Retry as retry:
                    failures.append((url, retry.reason, False))
                else:
                    part = None  # the caller owns the file now
                    return fetched
            raise final_error(failures)
        finally:
            if part is not None:
                await part.discard()

    async def _fetch_url(self, url: str, part: Part, want: _Want) -> Fetched:
        for attempt in range(1, self._attempts + 1):
            try:
                await self._transfer(url, part, want)
            except Retry as retry:
                if attempt == self._attempts:
                    log.warning("fetch_gave_up", url=url, attempts=attempt, reason=retry.reason)
                    raise
                delay = backoff_delay(
                    attempt, base_s=self._backoff_base_s, retry_after_s=retry.retry_after
                )
                log.info(
                    "fetch_retry",
                    url=url,
                    attempt=attempt,
                    reason=retry.reason,
                    have=part.have,
                    delay_s=round(delay, 3),
                )
                await asyncio.sleep(delay)
            else:
                return await self._finish(url, part)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _transfer(self, url: str, part: Part, want: _Want) -> None:
        """One request; returns when the whole body is in the part file."""
        headers = {"Accept-Encoding": "identity"}
        if part.have:
            headers["Range"] = f"bytes={part.have}-"
            if part.validator:  # a file changed since answers whole (200), never spliced
                headers["If-Range"] = part.validator
        try:
            async with self._session.get(url, headers=headers, timeout=self._timeout) as resp:
                total = await self._check_response(url, resp, part)
                self._check_room(None if total is None else total - part.have)
                await self._read_body(resp, part, want, sized=total is not None)
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            # resets, ClientPayloadError (body shorter than Content-Length), read stalls
            raise Retry(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
        if total is not None and part.have != total:
            raise Retry(f"body ended at {part.have} of {total} bytes")

    async def _check_response(
        self, url: str, resp: aiohttp.ClientResponse, part: Part
    ) -> int | None:
        """Classify the status and position the part file; returns the file's declared size."""
        status = resp.status
        check_status(url, status, resp.headers)
        if status == 416:
            log.info("fetch_restarted", url=url, reason="range_not_satisfiable", had=part.have)
            await part.restart()
            raise Retry("HTTP 416")
        encoded = resp.headers.get("Content-Encoding", "identity").lower() != "identity"
        length = None if encoded else resp.content_length
        if status == 200:
            if part.have:
                log.info("fetch_restarted", url=url, reason="range_ignored", had=part.have)
                await part.restart()
            self._check_size(length)
            part.validator, part.size = validator_of(resp.headers), length
            return length
        match = _CONTENT_RANGE.match(resp.headers.get("Content-Range", "").strip())
        start = int(match.group(1)) if match else -1
        total = None if match is None or match.group(3) == "*" else int(match.group(3))
        changed = total is not None and part.size is not None and total != part.size
        if start != part.have or changed:
            reason = "file_changed" if changed else "range_mismatch"
            log.info("fetch_restarted", url=url, reason=reason, had=part.have)
            await part.restart()
            raise Retry(f"206 for bytes {start}- of {total}, not {part.have}- of {part.size}")
        if total is None and length is not None:
            total = start + length
        self._check_size(total)
        if start:
            log.info("fetch_resumed", url=url, offset=start, total=total)
        return total

    def _check_size(self, declared: int | None) -> None:
        if declared is not None and declared > self._max_bytes:
            raise FetchError(
                f"file is {declared} bytes, over the limit of {self._max_bytes}", permanent=True
            )

    def _check_room(self, incoming: int | None) -> None:
        """StorageFull unless `incoming` bytes (None: unknown, counted as they come) leave the
        reserve free."""
        if self._reserve is not None:
            self._reserve.check(incoming or 0)

    async def _read_body(
        self, resp: aiohttp.ClientResponse, part: Part, want: _Want, *, sized: bool
    ) -> None:
        """The body into `part`; one of unknown length (`sized` False) checks the reserve at
        every chunk, as the length it would have announced is not known."""
        head = bytearray()  # the body's first bytes, held back until what they are is known
        kind: str | None = None
        need = _HEAD_BYTES
        async for chunk in resp.content.iter_chunked(self._chunk_bytes):
            if part.have + len(head) + len(chunk) > self._max_bytes:
                raise FetchError(
                    f"body grew over the limit of {self._max_bytes} bytes", permanent=True
                )
            if not sized:
                self._check_room(len(chunk))
            if part.kind is not None:
                await part.write(chunk)
                continue
            head += chunk
            if len(head) < need:
                continue
            if kind is None:
                kind = classify_head(head, want.accept)
                if want.reshape is not None:
                    need = max(need, want.reshape.head_size(bytes(head)))
                    if len(head) < need:
                        continue
            await self._write_head(part, bytes(head), kind, want)
            head = bytearray()
        if part.kind is None:  # the whole body is shorter than its head
            kind = kind or classify_head(head, want.accept)
            await self._write_head(part, bytes(head), kind, want)

    async def _write_head(self, part: Part, head: bytes, kind: str, want: _Want) -> None:
        """The body's first bytes into the file: the part a Reshape replaces, by its bytes."""
        if want.reshape is None:
            await part.write(head)
        else:
            size = want.reshape.head_size(head)
            await part.write(head[:size], instead=want.reshape.replacement(head[:size]))
            await part.write(head[size:])
        part.kind = kind

    async def _finish(self, url: str, part: Part) -> Fetched:
        await part.close()
        assert part.kind is not None
        source = part.source.hexdigest()
        stored = source if part.stored is None else part.stored.hexdigest()
        fetched = Fetched(part.path, url, part.written, stored, part.kind, part.have, source)
        log.info("fetch_done", url=url, bytes=fetched.bytes, media=fetched.media)
        return fetched


@dataclass(frozen=True)
class _Want:
    accept: frozenset[str]  # archiver.kinds.media types the body must sniff as
    reshape: Reshape | None
