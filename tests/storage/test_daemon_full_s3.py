"""`run` into a bucket that fills up: a loopback proxy in front of moto answers every PUT with
MinIO's 507 XMinioStorageFull while `full` is set. Archiving pauses (said once), nothing is
charged to a task, and once the store has room a SIGHUP tries again at once and the daemon
resumes without a restart."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from buckets import FULL_ANSWER, new_bucket
from s3daemons import Site, add_site
from s3server import MotoServer
from yarl import URL

from archiver.sandbox import Sandbox

pytestmark = pytest.mark.usefixtures("aws_env")

_HOP = {"host", "content-length", "transfer-encoding", "connection"}  # not forwarded as is


class FullingProxy:
    """Forwards every request to moto, but answers PUTs 507 while `full`."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.full = True
        self.refused = 0
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> FullingProxy:
        self._http = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if self.full and request.method == "PUT":
            self.refused += 1
            return web.Response(status=507, body=FULL_ANSWER, content_type="application/xml")
        assert self._http is not None
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in _HOP - {"content-encoding"}
        }
        async with self._http.request(
            request.method,
            URL(self.upstream + request.raw_path, encoded=True),
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as answer:
            data = await answer.read()
            out = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP}
            if request.method == "HEAD":  # the object's size is the answer: keep it
                out["Content-Length"] = answer.headers.get("Content-Length", "0")
                return web.Response(status=answer.status, headers=out)
            return web.Response(status=answer.status, body=data, headers=out)


@pytest.fixture
async def proxy(server: MotoServer) -> AsyncIterator[FullingProxy]:
    p = await FullingProxy(server.url).start()
    try:
        yield p
    finally:
        await p.stop()


async def test_a_full_bucket_pauses_archiving_and_a_sighup_resumes_it_once_there_is_room(
    tmp_path: Path,
    sandbox: Sandbox,
    server: MotoServer,
    proxy: FullingProxy,
    sites: list[Site],
    request: pytest.FixtureRequest,
) -> None:
    bucket = new_bucket(server.url, request)
    site = add_site(sites, tmp_path, sandbox, proxy.url, bucket)
    sandbox.add_music("song_a")
    sandbox.add_music("song_b")
    site.list_tasks("song_a", "song_b")
    daemon = await site.daemon()

    paused = await daemon.wait_for("archiving_paused")
    assert paused["cause"] == "storage_full" and paused["where"] == f"s3://{bucket.name}"
    assert "XMinioStorageFull" in paused["error"]
    assert site.archived() == set()
    assert not daemon.named("file_unobtainable") and not daemon.named("task_retry_later")

    proxy.full = False
    await daemon.send(signal.SIGHUP)  # a bucket is tried again at once (else every minute)
    await daemon.wait_for("archiving_resumed")
    await site.wait_archived("song_a", "song_b")
    assert len(daemon.named("archiving_paused")) == 1
    assert await daemon.stop() == 0
