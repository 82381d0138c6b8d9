"""The fetcher tests' fixtures: a file host, a client session, the temp folder and a fetcher
made in it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from fetching import Host, serve

from archiver.fetch.download import Fetcher
from archiver.sandbox.cdn import Cdn


@pytest.fixture
async def host() -> AsyncIterator[Host]:
    cdn = Cdn()
    app = web.Application()
    cdn.install(app)
    runner, base = await serve(app)
    yield Host(cdn, base)
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def temp_dir(tmp_path: Path) -> Path:
    return tmp_path / "tmp"


@pytest.fixture
def make_fetcher(session: aiohttp.ClientSession, temp_dir: Path) -> Callable[..., Fetcher]:
    def make(**kwargs: Any) -> Fetcher:
        options: dict[str, Any] = {
            "temp_dir": temp_dir,
            "max_bytes": 10 * 1024 * 1024,
            "attempts": 3,
            "read_timeout_s": 5.0,
            "backoff_base_s": 0.001,
            "chunk_bytes": 4096,
        }
        options.update(kwargs)
        return Fetcher(session, **options)

    return make
