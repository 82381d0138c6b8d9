"""Task events: archived → event delivered, and the sender's memory over a long outbox.

- Latency: the real daemon (`suno-archiver run`, a child process) archives music tasks of two
  songs of `--seconds` from the stand-in API in this process and posts each task's event to
  an endpoint here (every signature checked with the standardwebhooks library). Latency: from
  the manifest's write (its mtime) to the event's arrival. The same run without [events] is
  the baseline of the wall time: events must not slow archiving.
- Memory: the sender alone (bench/eventsender.py, a child process) delivers an outbox of
  1,000 and then `--events-outbox` events (each body made from a real manifest); its peak
  RSS must not grow with the outbox.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiohttp import web
from standardwebhooks import Webhook

from archiver.sandbox import Sandbox, fake_hex_id
from archiver.state import outbox
from archiver.state.store import StateStore
from bench.options import Options
from bench.procs import REPO, log_tail, run_child
from bench.report import Table, mb, median, percentile, verdict

LATENCY_TARGET_S = 0.5
SMALL_OUTBOX = 1_000


class _Endpoint:
    """An application's webhook endpoint: verifies, counts, and notes when each task's
    event arrived."""

    def __init__(self, secret: str) -> None:
        self.verifier = Webhook(secret)
        self.arrived: dict[str, float] = {}  # task ID → time.time() of its event
        self.count = 0
        self.bad = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._post)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _post(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = self.verifier.verify(raw, dict(request.headers))
        except Exception:
            self.bad += 1
            return web.Response(status=400)
        self.count += 1
        self.arrived.setdefault(body["data"]["task_id"], time.time())
        return web.Response(status=204)


def _secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def _configure(folder: Path, sandbox: Sandbox, tasks: list[str], hook: str | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tasks.txt").write_text("".join(f"{t}\n" for t in tasks))
    events = ""
    if hook is not None:
        events = f'[events]\nurls = ["{hook}"]\nsecret_file = "events.secret"\n'
    (folder / "archive.toml").write_text(
        f'[api]\nbase_url = "{sandbox.base_url}"\napi_key = "sandbox-key"\n'
        'requests_per_second = 1000\n[tasks]\nlist = "tasks.txt"\n'
        '[storage]\npath = "archive"\nmin_free_bytes = 0\n[index]\nenabled = false\n' + events
    )


async def _daemon_run(
    opts: Options, folder: Path, endpoint: _Endpoint | None, secret: str
) -> tuple[float, list[float]]:
    """The wall time until every manifest is written, and each event's latency."""
    sandbox = Sandbox()
    await sandbox.start()
    try:
        tasks = [fake_hex_id(f"events-{folder.name}-{i}") for i in range(opts.events_tasks)]
        for task_id in tasks:
            sandbox.api.add_music(task_id, seconds=opts.seconds)
        (folder / "events.secret").parent.mkdir(parents=True, exist_ok=True)
        (folder / "events.secret").write_text(secret)
        _configure(folder, sandbox, tasks, endpoint.url if endpoint else None)
        log = (folder / "daemon.log").open("wb")
        start = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "archiver.cli", "run", "--config", "archive.toml",
            cwd=folder, stdout=log, stderr=log,
        )  # fmt: skip
        try:
            manifests = [folder / "archive" / t / "manifest.json" for t in tasks]
            deadline = start + 300
            while not all(m.exists() for m in manifests):
                if time.monotonic() > deadline or proc.returncode is not None:
                    raise RuntimeError(f"not archived in time: {log_tail(folder / 'daemon.log')}")
                await asyncio.sleep(0.005)
            wall_s = time.monotonic() - start
            while endpoint is not None and len(endpoint.arrived) < len(tasks):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"events missing: {log_tail(folder / 'daemon.log')}")
                await asyncio.sleep(0.005)
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            await proc.wait()
            log.close()
        latencies = []
        if endpoint is not None:
            for task_id, manifest in zip(tasks, manifests, strict=True):
                latencies.append(endpoint.arrived[task_id] - manifest.stat().st_mtime)
        return wall_s, latencies
    finally:
        await sandbox.stop()


async def _latency(opts: Options, work: Path) -> tuple[float, float, list[float], int]:
    secret = _secret()
    endpoint = _Endpoint(secret)
    await endpoint.start()
    try:
        plain_s, _ = await _daemon_run(opts, work / "without", None, secret)
        events_s, latencies = await _daemon_run(opts, work / "with", endpoint, secret)
    finally:
        await endpoint.stop()
    return plain_s, events_s, latencies, endpoint.bad


@contextmanager
def _endpoint_thread(secret: str) -> Iterator[_Endpoint]:
    """The endpoint on its own event loop in a thread, while a child process is waited for."""
    loop = asyncio.new_event_loop()
    endpoint = _Endpoint(secret)
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(endpoint.start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(endpoint.stop())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(30)
    try:
        yield endpoint
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


def _outbox_peak(work: Path, archive: Path, tasks: list[str], n: int) -> tuple[int, float, int]:
    """The sender's peak RSS and wall time delivering `n` events; and how many arrived."""
    folder = work / f"outbox-{n}"
    folder.mkdir(parents=True, exist_ok=True)
    state = folder / "state.sqlite3"
    secret = _secret()
    with _endpoint_thread(secret) as endpoint:
        with StateStore.open(state) as store, store.transaction() as db:
            for i in range(n):
                task_id = tasks[i % len(tasks)]
                event = outbox.NewEvent(
                    "task.archived", task_id, "music", "archived", None, time.time(),
                    (endpoint.url,),
                )  # fmt: skip
                outbox.insert(db, event)
        run = run_child(
            [sys.executable, "-m", "bench.eventsender", str(state), str(archive), endpoint.url,
             secret],
            log=folder / "sender.log", cwd=REPO,
        )  # fmt: skip
        if run.returncode != 0:
            raise RuntimeError(f"the sender failed: {log_tail(folder / 'sender.log')}")
        return run.max_rss, run.wall_s, endpoint.count - endpoint.bad


def measure(opts: Options, work: Path) -> Table:
    table = Table(
        f"Events: {opts.events_tasks} music tasks of 2 songs of {opts.seconds:g} s through the "
        f"daemon; the sender alone over {SMALL_OUTBOX:,} and {opts.events_outbox:,} events",
        ["case", "archived → event delivered, median s", "p95 s", "wall s", "sender peak RSS MB",
         "events / s"],
    )  # fmt: skip
    plain_s, events_s, latencies, bad = asyncio.run(_latency(opts, work))
    lat = median(latencies)
    table.add("daemon without [events] (baseline)", "", "", f"{plain_s:.1f}", "", "")
    table.add(
        "daemon with [events]",
        f"{lat:.3f} (target <= {LATENCY_TARGET_S:g}: {verdict(lat <= LATENCY_TARGET_S)})",
        f"{percentile(latencies, 95):.3f}",
        f"{events_s:.1f} ({events_s / plain_s:.2f} of the baseline)",
        "",
        "",
    )
    archive = work / "with" / "archive"
    tasks = sorted(p.parent.name for p in archive.glob("*/manifest.json"))
    peaks = []
    for n in (SMALL_OUTBOX, opts.events_outbox):
        rss, wall_s, arrived = _outbox_peak(work, archive, tasks, n)
        peaks.append(rss)
        if arrived != n:
            table.failures.append(f"outbox of {n}: {arrived} events arrived")
        table.add(f"sender, outbox of {n:,}", "", "", f"{wall_s:.1f}", mb(rss), f"{n / wall_s:.0f}")
    flat = peaks[1] <= peaks[0] * 1.2 + 5 * 1024**2
    table.notes.append(
        f"sender memory over {opts.events_outbox:,} events: {mb(peaks[1])} against "
        f"{mb(peaks[0])} over {SMALL_OUTBOX:,} (target: flat: {verdict(flat)})"
    )
    if bad:
        table.failures.append(f"{bad} events failed the standardwebhooks check")
    table.notes.append(
        "latency: from the manifest's mtime to the event's arrival (the event is saved with the "
        "task's phase, right after the manifest; the sender is woken by the save)"
    )
    return table
