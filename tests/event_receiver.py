"""An application's webhook endpoint on loopback for event tests: every POST's signature is
checked with the `standardwebhooks` library (a bad one fails the test), and what it does with
a request can be changed at any time: take it, answer 500, hang, or be down (not listening)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EventReceiver:
    def __init__(self, secret: str, *, port: int | None = None) -> None:
        self.verifier = Webhook(secret)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/events"
        self.mode = "ok"  # "ok" | "fail" (HTTP 500) | "hang" (answers after hang_s)
        self.hang_s = 2.0
        self.taken: list[dict[str, Any]] = []  # {"id", "body"} of each request answered 2xx
        self.attempts: list[tuple[str, str]] = []  # (webhook-id, mode) of every request
        self.bad_signatures = 0
        self.keep_bodies = True  # False: only count what was taken (a long run's memory)
        self.count = 0  # requests answered 2xx
        self._runner: web.AppRunner | None = None

    async def start(self) -> EventReceiver:
        app = web.Application()
        app.router.add_post("/events", self._post)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _post(self, request: web.Request) -> web.Response:
        raw = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            body = self.verifier.verify(raw, headers)
        except Exception:
            self.bad_signatures += 1
            return web.Response(status=400)
        if self.keep_bodies:
            self.attempts.append((headers["webhook-id"], self.mode))
        if self.mode == "fail":
            return web.Response(status=500)
        if self.mode == "hang":
            await asyncio.sleep(self.hang_s)
            return web.Response(status=204)  # too late: the sender gave up waiting
        self.count += 1
        if self.keep_bodies:
            self.taken.append({"id": headers["webhook-id"], "body": body, "raw": json.loads(raw)})
        return web.Response(status=204)

    def ids(self) -> list[str]:
        return [t["id"] for t in self.taken]

    async def wait_for(self, n: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The events taken, once at least `n` were."""
        deadline = time.monotonic() + timeout
        while len(self.taken) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.taken)} events of {n} within {timeout} s")
            await asyncio.sleep(0.02)
        return self.taken
