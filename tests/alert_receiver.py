"""A webhook receiver on loopback for alert tests: records every JSON POST it gets."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web


class Receiver:
    def __init__(self, *, fail_first: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.requests = 0
        self.fail_first = fail_first  # answer 500 to this many requests first
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _hook(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.requests <= self.fail_first:
            return web.Response(status=500)
        self.bodies.append(await request.json())
        return web.Response(status=204)

    def events(self) -> list[str]:
        return [b["event"] for b in self.bodies]

    async def wait_for(self, n: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """The bodies, once at least `n` came."""
        deadline = time.monotonic() + timeout
        while len(self.bodies) < n:
            assert time.monotonic() < deadline, f"{len(self.bodies)} alerts of {n}: {self.bodies}"
            await asyncio.sleep(0.02)
        return self.bodies
