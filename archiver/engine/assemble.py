"""Config → a running engine: the one place that builds the I/O objects and closes them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

from archiver import __version__
from archiver.api.client import RateLimiter, SunoApi
from archiver.config import Config
from archiver.engine.cluster import daemon_name
from archiver.engine.loop import Engine
from archiver.errors import UsageError
from archiver.fetch.archiving import Archivist
from archiver.fetch.download import Fetcher
from archiver.fetch.taskfiles import TaskFetcher
from archiver.state.opening import open_state
from archiver.state.protocol import LeaseLost, Store
from archiver.storage import Storage, open_storage
from archiver.storage.space import Reserve
from archiver.tasks.events import Recording
from archiver.tasks.taskstate import TaskState


def require_api_key(config: Config) -> None:
    if not config.api.api_key:
        where = f"{config.source}: " if config.source else ""
        raise UsageError(
            f"{where}no API key: set [api] api_key or api_key_file, or the SUNO_API_KEY variable"
        )


@dataclass(frozen=True)
class Pipeline:
    """The I/O objects the engine drives; `verify --repair` drives them too."""

    api: SunoApi
    archivist: Archivist
    storage: Storage
    state: Store
    events: Recording | None  # the task events saved with the state's changes
    owner: str  # this process's name in a shared state's leases


@asynccontextmanager
async def open_pipeline(config: Config) -> AsyncIterator[Pipeline]:
    require_api_key(config)
    user_agent = f"{config.api.user_agent}/{__version__}"
    state = open_state(config.state)
    owner = daemon_name()
    try:
        storage = await open_storage(config.storage)
        try:
            async with (
                aiohttp.ClientSession(headers={"User-Agent": user_agent}) as api_http,
                # File hosts get no credentials, and raw bytes: a compressed transfer would
                # not match its Content-Length once aiohttp inflated it.
                aiohttp.ClientSession(
                    headers={"User-Agent": user_agent, "Accept-Encoding": "identity"}
                ) as file_http,
            ):
                api = SunoApi(
                    api_http,
                    base_url=config.api.base_url,
                    api_key=config.api.api_key,
                    limiter=RateLimiter(config.api.requests_per_second),
                    timeout_s=config.api.timeout_s,
                )
                fetcher = Fetcher(
                    file_http,
                    temp_dir=storage.temp_dir,
                    max_bytes=config.download.max_file_bytes,
                    attempts=config.download.attempts,
                    read_timeout_s=config.download.timeout_s,
                    reserve=_reserve(config),
                )
                files = TaskFetcher(
                    fetcher=fetcher,
                    storage=storage,
                    tagging=config.tagging,
                    download_slots=asyncio.Semaphore(config.download.concurrency),
                )
                archivist = Archivist(
                    files=files,
                    storage=storage,
                    tagging=config.tagging,
                    version=__version__,
                    clock=time.time,
                    aligned_lyrics=api.timestamped_lyrics
                    if config.tagging.aligned_lyrics
                    else None,
                    fence=_lease_fence(state, owner, config.state.lease_s)
                    if state.shared
                    else None,
                )
                yield Pipeline(api, archivist, storage, state, event_recording(config), owner)
        finally:
            await storage.close()
    finally:
        state.close()


@asynccontextmanager
async def open_engine(
    config: Config,
    *,
    fatal_errors: bool,
    on_change: Callable[[TaskState], None] | None = None,
    retry_base_s: float = 30.0,
    poll_time_scale: float = 1.0,
) -> AsyncIterator[Engine]:
    async with open_pipeline(config) as pipeline:
        yield Engine(
            api=pipeline.api,
            archivist=pipeline.archivist,
            storage=pipeline.storage,
            state=pipeline.state,
            give_up_after_s=config.tasks.give_up_after_s,
            not_found_after_s=config.tasks.not_found_after_s,
            fatal_errors=fatal_errors,
            retry_base_s=retry_base_s,
            poll_time_scale=poll_time_scale,
            on_change=on_change,
            events=pipeline.events,
            owner=pipeline.owner,
            lease_s=config.state.lease_s,
        )


def event_recording(config: Config) -> Recording | None:
    """The task events to keep: with `[events] urls` (to send them) or an intake listener
    (its pull feed, GET /events); None keeps none."""
    if not config.events.urls and not config.intake.listen:
        return None
    return Recording(types=config.events.types, urls=config.events.urls)


def _lease_fence(state: Store, owner: str, lease_s: float) -> Callable[[str], None]:
    """Before a manifest is written: renew this daemon's lease on the task, or raise
    LeaseLost (logged by the engine) when another daemon took it over meanwhile."""

    def fence(task_id: str) -> None:
        if not state.confirm(task_id, owner, time.time(), lease_s):
            raise LeaseLost(task_id)

    return fence


def _reserve(config: Config) -> Reserve | None:
    """The free space downloads must leave: local storage only (a bucket's is not ours to
    measure, and S3's cache folder holds one file a download at most)."""
    if config.storage.backend != "local":
        return None
    return Reserve(config.storage.path, config.storage.min_free_bytes)
