"""The fetcher's tests' stand-in file host (the sandbox's CDN on loopback), the song it serves,
and what they check of a fetch: the file whole, nothing left behind, where a resume started."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from aiohttp import web

from archiver.fetch.download import Fetched
from archiver.kinds import media
from archiver.sandbox.cdn import Cdn

MP3 = frozenset({media.MP3})
SONG = media.sample_mp3(seconds=8, seed=7)  # about 130 kB


class Host:
    def __init__(self, cdn: Cdn, base: str) -> None:
        self.cdn = cdn
        self.base = base

    def add(self, name: str, data: bytes | Path = SONG, **kwargs: Any) -> str:
        kwargs.setdefault("content_type", "audio/mpeg")
        return self.base + self.cdn.add(name, data, **kwargs)

    def ranges(self, name: str) -> list[str | None]:
        return [r.range for r in self.cdn.requests if r.name == name]


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


def leftovers(temp_dir: Path) -> list[Path]:
    return sorted(temp_dir.iterdir()) if temp_dir.exists() else []


def assert_same(fetched: Fetched, source: bytes) -> None:
    data = fetched.path.read_bytes()
    assert data == source
    assert fetched.bytes == len(source)
    assert fetched.sha256 == hashlib.sha256(source).hexdigest()


def resume_offset(header: str | None) -> int:
    assert header is not None and header.startswith("bytes=") and header.endswith("-")
    return int(header.removeprefix("bytes=").removesuffix("-"))
