"""The stand-in file host: serves sample media over HTTP with Range support.

Fault injection (resets, truncation, stalls, ignored Range, HTML, expiry, lying headers) is
configured per file, so that the fetcher's recovery paths run against a real socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiofiles
from aiohttp import web

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_READ_BYTES = 256 * 1024
_HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>503 Service Temporarily Unavailable</title></head>\n"
    b"<body><h1>Service Temporarily Unavailable</h1><p>Please try again later.</p></body></html>\n"
)


@dataclass
class FileFaults:
    """Misbehaviours of one file.

    A `*_times` counter says on how many requests its fault applies (the first ones that reach
    it); after that the file behaves. `None` means on every request. Byte counts
    (`reset_after_bytes`, `truncate_to`, `stall_after_bytes`) are bytes of that response's body,
    so a resumed request makes progress each time.
    """

    reset_after_bytes: int | None = None  # headers + this many bytes, then a TCP reset
    reset_times: int | None = 1
    truncate_to: int | None = None  # full Content-Length claimed, this many bytes, clean close
    truncate_times: int | None = 1
    stall_after_bytes: int | None = None  # this many bytes, then silence until the client leaves
    stall_times: int | None = 1
    ignore_range: bool = False  # always 200 with the whole body
    status: int | None = None  # e.g. 404/403/410 (an expired URL) or 503
    status_times: int | None = None
    retry_after: str | None = None  # Retry-After header sent with `status`
    html: bool = False  # HTTP 200, text/html, an error page instead of the file
    html_times: int | None = None
    content_type: str | None = None  # a lie about the type, e.g. "text/plain"
    no_content_length: bool = False  # chunked transfer encoding
    # After the first response, the file holds these bytes instead: a CDN that replaced it
    # between a client's attempts (its ETag changes with it).
    changed_to: bytes | None = None
    fixed_etag: bool = False  # the ETag stays when the content changes (derived from the name)


@dataclass(frozen=True)
class CdnRequest:
    """One GET as the file host saw it (for tests: which Range, which headers)."""

    name: str
    range: str | None
    headers: dict[str, str]


@dataclass
class _File:
    data: bytes | Path
    content_type: str
    faults: FileFaults = field(default_factory=FileFaults)
    used: Counter[str] = field(default_factory=Counter)  # fault name -> times applied
    version: int = 0  # of the content, for its ETag

    @property
    def etag(self) -> str:
        if self.faults.fixed_etag:
            return f'"{id(self)}"'
        return f'"v{self.version}-{self.size()}"'

    def size(self) -> int:
        return self.data.stat().st_size if isinstance(self.data, Path) else len(self.data)

    def take(self, fault: str, times: int | None) -> bool:
        """Whether `fault` applies to this request; counts it if so."""
        if times is not None and self.used[fault] >= times:
            return False
        self.used[fault] += 1
        return True


class Cdn:
    """Files under `/files/<name>`; `hits` counts GET requests per name, `requests` lists them,
    `max_in_flight` is the most GETs it was answering at once."""

    def __init__(self) -> None:
        self._files: dict[str, _File] = {}
        # every response sent at most this fast (a slow file host: the cluster bench), or None
        self.rate_bytes_per_s: float | None = None
        self.hits: Counter[str] = Counter()
        self.requests: list[CdnRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0

    def add(
        self,
        name: str,
        data: bytes | Path,
        *,
        content_type: str,
        faults: FileFaults | None = None,
    ) -> str:
        """Serve `data` (bytes, or a file for big ones) as `name`; returns the URL path."""
        self._files[name] = _File(data, content_type, faults or FileFaults())
        return f"/files/{name}"

    def set_faults(self, name: str, faults: FileFaults) -> None:
        """Replace the faults of an added file; their counters start again from zero."""
        entry = self._files[name]
        entry.faults = faults
        entry.used.clear()

    def install(self, app: web.Application) -> None:
        app.router.add_get("/files/{name}", self._serve)

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        if request.method != "GET":
            return await self._answer(request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        is_get = request.method == "GET"
        if is_get:
            self.hits[name] += 1
            self.requests.append(
                CdnRequest(name, request.headers.get("Range"), dict(request.headers))
            )
        entry = self._files.get(name)
        if entry is None:
            raise web.HTTPNotFound()
        faults = entry.faults

        if faults.status is not None and entry.take("status", faults.status_times):
            headers = {"Retry-After": faults.retry_after} if faults.retry_after else None
            return web.Response(status=faults.status, text="refused\n", headers=headers)
        if faults.html and entry.take("html", faults.html_times):
            return web.Response(body=_HTML_PAGE, content_type="text/html", charset="utf-8")

        if faults.changed_to is not None and entry.used["served"] and entry.take("changed", 1):
            entry.data = faults.changed_to
            entry.version += 1
        entry.used["served"] += 1

        size = entry.size()
        start, end = 0, size  # end exclusive
        status = 200
        header = request.headers.get("Range")
        if_range = request.headers.get("If-Range")
        if if_range is not None and if_range != entry.etag:
            header = None  # RFC 9110: the file changed since, so the whole of it
        if header is not None and not faults.ignore_range:
            parsed = _parse_range(header, size)
            if parsed is None:
                return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
            start, end = parsed
            status = 206

        response = web.StreamResponse(status=status)
        response.headers["Content-Type"] = faults.content_type or entry.content_type
        response.headers["Accept-Ranges"] = "bytes"
        response.headers["ETag"] = entry.etag
        if status == 206:
            response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        if faults.no_content_length:
            response.enable_chunked_encoding()
        else:
            response.content_length = end - start
        await response.prepare(request)
        if not is_get:
            return response

        # At most one body fault per response, in this order of precedence.
        cut: tuple[str, int] | None = None
        if faults.reset_after_bytes is not None and entry.take("reset", faults.reset_times):
            cut = ("reset", faults.reset_after_bytes)
        elif faults.truncate_to is not None and entry.take("truncate", faults.truncate_times):
            cut = ("truncate", faults.truncate_to)
        elif faults.stall_after_bytes is not None and entry.take("stall", faults.stall_times):
            cut = ("stall", faults.stall_after_bytes)
        limit = end if cut is None else min(end, start + cut[1])

        async for chunk in _read(entry.data, start, limit):
            await response.write(chunk)
            if self.rate_bytes_per_s:
                await asyncio.sleep(len(chunk) / self.rate_bytes_per_s)
        if cut is None:
            await response.write_eof()
            return response
        await _misbehave(request, cut[0])
        return response


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """`bytes=N-`, `bytes=N-M` or `bytes=-N` → [start, end) within the file; None: 416."""
    match = _RANGE.match(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # suffix: the last N bytes
        return (max(0, size - int(last)), size) if int(last) > 0 and size > 0 else None
    start = int(first)
    end = size if last == "" else min(size, int(last) + 1)
    if start >= size or end <= start:
        return None
    return start, end


async def _read(data: bytes | Path, start: int, end: int) -> AsyncIterator[bytes]:
    """The bytes [start, end) in chunks; a Path is streamed, never read whole."""
    if isinstance(data, bytes):
        for offset in range(start, end, _READ_BYTES):
            yield data[offset : min(end, offset + _READ_BYTES)]
        return
    async with aiofiles.open(data, "rb") as handle:
        await handle.seek(start)
        remaining = end - start
        while remaining > 0:
            chunk = await handle.read(min(_READ_BYTES, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk


async def _misbehave(request: web.Request, how: str) -> None:
    """End a response mid-body: a TCP reset, a clean close, or a stall until the client leaves."""
    transport = request.transport
    if transport is None:
        return
    # Let the bytes already written leave the socket and reach the client before the fault.
    for _ in range(100):
        if transport.is_closing() or transport.get_write_buffer_size() == 0:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    if how == "stall":
        while request.transport is not None and not request.transport.is_closing():
            await asyncio.sleep(0.05)
        return
    if how == "reset":
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # SO_LINGER 0: close() sends RST, not FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()
