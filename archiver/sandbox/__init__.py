"""The stand-in Suno API (every kind's record-info endpoint) and file host, on a loopback port.

Used by the tests, by `suno-archiver demo` and by the benchmarks (`python -m archiver.sandbox`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from archiver.config.listen import is_loopback
from archiver.sandbox.cdn import Cdn
from archiver.sandbox.fakeapi import FAULTS, FakeApi
from archiver.sandbox.outputs import OutputKind
from archiver.sandbox.songs import fake_hex_id

__all__ = ["FAULTS", "Cdn", "FakeApi", "Sandbox", "fake_hex_id", "is_loopback"]


class Sandbox:
    """`api` answers the record-info calls, `cdn` serves the files, both on one aiohttp app."""

    def __init__(
        self, *, api_key: str = "sandbox-key", clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.api_key = api_key
        self.cdn = Cdn()
        self.api = FakeApi(self.cdn, api_key=api_key, clock=clock)
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    def __repr__(self) -> str:
        return f"Sandbox(base_url={self._base_url!r})"

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the sandbox is not started")
        return self._base_url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if not is_loopback(host):
            raise ValueError(f"the sandbox only listens on loopback addresses, not {host!r}")
        app = web.Application()
        self.api.install(app)
        self.cdn.install(app)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self._base_url = f"http://{shown}:{bound_port}"

    async def stop(self) -> None:
        self.api.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Sandbox:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def add_music(
        self,
        task_id: str,
        *,
        tracks: int = 2,
        ready_after_s: float = 0.0,
        fail_status: str | None = None,
        seconds: float = 3.0,
        **variant: Any,
    ) -> None:
        """A music task; `variant` takes the knobs of `songs.MusicTask` (create_time,
        callback_exception, pending_data, extra_fields, source_urls, title, audio_ids,
        missing_audio, odd_audio_url, non_finite, error_code, error_message, prompt, tags,
        model_name, instrumental)."""
        self.api.add_music(
            task_id,
            tracks=tracks,
            ready_after_s=ready_after_s,
            fail_status=fail_status,
            seconds=seconds,
            **variant,
        )

    def add_output(self, kind: OutputKind, task_id: str, **variant: Any) -> None:
        """A `kind` task ("wav", "stems", "mp4", "midi", "lyrics"); `variant` takes the knobs
        of `outputs.OutputTask` (ready_after_s, fail_status, callback_exception, create_time,
        stems_type, no_file, wrong_body, wav_seconds, variants)."""
        self.api.add_output(kind, task_id, **variant)

    def add_cover(
        self,
        task_id: str,
        *,
        images: int = 2,
        ready_after_s: float = 0.0,
        failed: bool = False,
        parent_task_id: str = "",
        **variant: Any,
    ) -> None:
        """A cover task; `variant`: create_time ("string" default, or "ms"), extra_fields."""
        self.api.add_cover(
            task_id,
            images=images,
            ready_after_s=ready_after_s,
            failed=failed,
            parent_task_id=parent_task_id,
            **variant,
        )
