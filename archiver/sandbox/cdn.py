"""The stand-in file host: serves sample media over HTTP with Range support.

Fault injection (resets, truncation, ignored Range, HTML, expiry) is configured per file.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web


@dataclass
class FileFaults:
    """Misbehaviours of one file. Counters (`*_times`) say on how many requests they apply."""


@dataclass
class _File:
    data: bytes | Path
    content_type: str
    faults: FileFaults = field(default_factory=FileFaults)


class Cdn:
    """Files under `/files/<name>`; `hits` counts GET requests per name."""

    def __init__(self) -> None:
        self._files: dict[str, _File] = {}
        self.hits: Counter[str] = Counter()

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

    def install(self, app: web.Application) -> None:
        app.router.add_get("/files/{name}", self._serve)

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.hits[name] += 1
        entry = self._files.get(name)
        if entry is None:
            raise web.HTTPNotFound()
        if isinstance(entry.data, Path):
            return web.FileResponse(entry.data, headers={"Content-Type": entry.content_type})
        response = web.Response(body=entry.data, content_type=entry.content_type)
        return response
