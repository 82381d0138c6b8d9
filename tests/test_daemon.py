"""`suno-archiver run`: the daemon as a real subprocess against the stand-in API.

The stand-in API runs in the test process (so a test can inject faults and count calls), the
daemon in a child process started as a user or systemd would: `python -m archiver.cli run`.
Every task here is finished at its first poll, so nothing waits for the real polling schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest
from archive_checks import LOCK_FILE, TEMP_DIR, verify_archive
from s3server import MotoServer

from archiver.sandbox import Sandbox
from archiver.sandbox.cdn import FileFaults
from archiver.service.metrics import Metrics
from archiver.tasks.taskstate import Phase, TaskState

REPO = Path(__file__).resolve().parent.parent

Event = dict[str, Any]
LOCAL = 'path = "archive"'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The CLI with keyword arguments for `run_daemon` from argv[1] (JSON): a short `retry_base_s`
# (30 s in production) or a compressed `poll_time_scale`, so that a test waits seconds, not
# minutes, for the engine's own retries and polls.
_TUNED = """
import functools, json, sys
import archiver.cli.daemon
archiver.cli.daemon.run_daemon = functools.partial(
    archiver.cli.daemon.run_daemon, **json.loads(sys.argv[1])
)
from archiver.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


class Daemon:
    """One `suno-archiver run` child; its JSON log lines are collected as they come."""

    def __init__(
        self,
        workdir: Path,
        env: dict[str, str] | None = None,
        *,
        tuning: dict[str, float] | None = None,
    ) -> None:
        self.workdir = workdir
        self.extra_env = env or {}
        self.tuning = tuning
        self.proc: asyncio.subprocess.Process | None = None
        self.events: list[Event] = []
        self.raw: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    async def start(self, started: str | None = "daemon_ready") -> Daemon:
        """Start it; return once it logged `started` (at once when None)."""
        env = {**os.environ, "PYTHONPATH": str(REPO), **self.extra_env}
        env.pop("SUNO_API_KEY", None)
        cli = ["-c", _TUNED, json.dumps(self.tuning)] if self.tuning else ["-m", "archiver.cli"]
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, *cli, "run", "--config", "archive.toml",
            cwd=self.workdir, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read())
        if started is not None:
            await self.wait_for(started)
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for line in self.proc.stderr:
            text = line.decode(errors="replace").rstrip("\n")
            self.raw.append(text)
            with contextlib.suppress(ValueError):
                self.events.append(json.loads(text))

    def named(self, event: str) -> list[Event]:
        return [e for e in self.events if e.get("event") == event]

    async def wait_for(
        self, event: str, timeout: float = 20.0, where: Callable[[Event], bool] = lambda e: True
    ) -> Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.named(event):
                if where(e):
                    return e
            assert self.proc is not None
            if self.proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {event!r} within {timeout} s; log:\n" + "\n".join(self.raw))

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        rc = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._reader is not None:
            await self._reader
        return rc

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            await self._reader


class Site:
    """A work folder: archive.toml, tasks.txt, the archive and its state."""

    def __init__(self, root: Path, sandbox: Sandbox) -> None:
        self.root = root
        self.sandbox = sandbox
        self.archive = root / "archive"
        self.tasks = root / "tasks.txt"
        self.metrics_port = _free_port()
        self.daemons: list[Daemon] = []

    def configure(
        self,
        *,
        api_key: str = "sandbox-key",
        grace_s: float = 10.0,
        storage: str = LOCAL,
        download_timeout_s: float = 60.0,
        extra: str = "",
    ) -> None:
        (self.root / "archive.toml").write_text(
            f"""
[api]
base_url = "{self.sandbox.base_url}"
api_key = "{api_key}"
requests_per_second = 50

[tasks]
list = "tasks.txt"
give_up_after_s = 600

[storage]
min_free_bytes = 0
{storage}

[download]
attempts = 2
timeout_s = {download_timeout_s}

[daemon]
grace_period_s = {grace_s}
metrics_listen = "127.0.0.1:{self.metrics_port}"
{extra}""",
            encoding="utf-8",
        )

    def list_tasks(self, *lines: str) -> None:
        tmp = self.tasks.with_suffix(".new")
        tmp.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        tmp.replace(self.tasks)

    async def daemon(
        self,
        env: dict[str, str] | None = None,
        *,
        tuning: dict[str, float] | None = None,
        started: str | None = "daemon_ready",
    ) -> Daemon:
        d = Daemon(self.root, env, tuning=tuning)
        self.daemons.append(d)
        return await d.start(started)

    def manifest(self, task_id: str) -> dict[str, Any] | None:
        path = self.archive / task_id / "manifest.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    async def wait_archived(self, *task_ids: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.manifest(t) for t in task_ids):
                return
            if self.daemons:
                assert self.daemons[-1].running, "\n".join(self.daemons[-1].raw)
            await asyncio.sleep(0.1)
        missing = [t for t in task_ids if not self.manifest(t)]
        raise AssertionError(f"not archived within {timeout} s: {missing}")

    def temp_leftovers(self) -> list[str]:
        temp = self.archive / TEMP_DIR
        return (
            sorted(p.name for p in temp.iterdir() if p.name != LOCK_FILE) if temp.exists() else []
        )

    def check_archive(self) -> None:
        """Every file a manifest names is there, whole; no temp file is left behind."""
        verify_archive(self.archive)

    async def cli(self, *args: str) -> tuple[int, str, str]:
        """`suno-archiver ARGS --config archive.toml` as a subprocess: exit code, stdout,
        stderr."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "archiver.cli", *args, "--config", "archive.toml",
            cwd=self.root, env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        return proc.returncode or 0, out.decode(), err.decode()

    async def get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.metrics_port}{path}"
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            return resp.status, await resp.text()


@pytest.fixture
async def site(tmp_path: Path, sandbox: Sandbox) -> AsyncIterator[Site]:
    s = Site(tmp_path, sandbox)
    s.configure()
    try:
        yield s
    finally:
        for d in s.daemons:
            await d.kill()


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics:\n{text}")


def _calls(sandbox: Sandbox, task_id: str) -> int:
    return sum(n for (_endpoint, tid), n in sandbox.api.calls.items() if tid == task_id)


async def _status_json(site: Site) -> dict[str, Any]:
    code, out, err = await site.cli("status", "--json")
    assert code == 0, err
    return json.loads(out)


# --- the daemon end to end --------------------------------------------------------------------


async def test_archives_the_list_and_follows_its_edits_until_sigterm(site: Site) -> None:
    sb = site.sandbox
    sb.add_music("song_a")
    sb.add_music("song_b", tracks=1)
    sb.add_cover("cover_c")
    sb.add_music("song_d")
    sb.add_music("slow_e", ready_after_s=3600)
    site.list_tasks("# my songs", "song_a", "music:song_b", "cover:cover_c", "not an id!")
    daemon = await site.daemon()
    await site.wait_archived("song_a", "song_b", "cover_c")

    # IDs appended while it runs start at once; removed ones leave the list.
    site.list_tasks("song_a", "music:song_b", "cover:cover_c", "not an id!", "song_d", "slow_e")
    await site.wait_archived("song_d")
    await daemon.wait_for("task_list_loaded", where=lambda e: e["tasks"] == 5)
    site.list_tasks("song_a", "music:song_b", "cover:cover_c", "song_d")
    await daemon.wait_for("task_list_loaded", where=lambda e: e["tasks"] == 4)
    # A bad line is reported once per version of the file, with its line number.
    skipped = daemon.named("task_line_skipped")
    assert [e["line"] for e in skipped] == [5, 4]

    # SIGHUP rereads the list even though it did not change.
    loads = len(daemon.named("task_list_loaded"))
    await daemon.send(signal.SIGHUP)
    await daemon.wait_for("task_list_reread_requested")
    for _ in range(50):
        if len(daemon.named("task_list_loaded")) > loads:
            break
        await asyncio.sleep(0.1)
    assert len(daemon.named("task_list_loaded")) == loads + 1

    status, body = await site.get("/metrics")
    assert status == 200
    assert _metric(body, 'suno_archiver_tasks{phase="archived"}') == 4
    assert _metric(body, 'suno_archiver_tasks{phase="pending"}') == 0  # slow_e was removed
    assert _metric(body, "suno_archiver_files_archived_total") == 4 + 2 + 2 + 4
    assert _metric(body, "suno_archiver_bytes_archived_total") > 0
    assert _metric(body, 'suno_archiver_api_calls_total{outcome="ok"}') >= 5
    assert _metric(body, "suno_archiver_seconds_since_api_success") < 60
    status, body = await site.get("/healthz")
    assert status == 200
    assert json.loads(body)["status"] == "ok"

    assert await daemon.stop() == 0
    assert daemon.named("daemon_stopped")
    site.check_archive()
    doc = await _status_json(site)
    assert doc["counts"]["archived"] == 4
    assert doc["problems"] == []


async def test_an_appended_id_costs_only_the_appended_line(site: Site) -> None:
    sb = site.sandbox
    sb.add_music("song_a")
    sb.add_music("song_b")
    site.list_tasks("song_a")
    daemon = await site.daemon()
    await site.wait_archived("song_a")
    with site.tasks.open("a", encoding="utf-8") as f:  # as an application appends its IDs
        f.write("song_b\n")
    await site.wait_archived("song_b")
    appended = await daemon.wait_for("task_list_appended")
    assert (appended["tasks"], appended["pending"]) == (2, 1)
    assert len(daemon.named("task_list_loaded")) == 1  # the list was read whole once
    assert await daemon.stop() == 0


async def test_a_cover_task_empty_at_first_is_archived_not_dropped(site: Site) -> None:
    """The cover endpoint answers `data: {}` for the task's first second, then generating,
    then done: the daemon asks again on its not-found backoff instead of giving up."""
    site.sandbox.add_cover("fresh_cover", empty_for_s=1.0, ready_after_s=2.0)
    site.list_tasks("fresh_cover")  # a bare ID: the music endpoint never knows it
    daemon = await site.daemon(tuning={"poll_time_scale": 0.05})

    await site.wait_archived("fresh_cover")

    assert daemon.named("task_unknown_yet") and not daemon.named("task_not_found")
    assert site.manifest("fresh_cover")["outcome"] == "archived"
    assert await daemon.stop() == 0


async def test_a_removed_task_is_never_polled_again(site: Site) -> None:
    sb = site.sandbox
    sb.add_music("slow_a", ready_after_s=3600)
    sb.add_music("song_b")
    site.list_tasks("slow_a")
    # Polls 20x sooner: slow_a is asked again at 3 s, then every second.
    daemon = await site.daemon(tuning={"poll_time_scale": 0.05})
    deadline = time.monotonic() + 30
    while _calls(sb, "slow_a") < 2:  # it is being polled on its schedule
        assert time.monotonic() < deadline, "\n".join(daemon.raw)
        await asyncio.sleep(0.05)

    site.list_tasks("song_b")
    await daemon.send(signal.SIGHUP)
    first = daemon.named("task_list_loaded")[0]
    await daemon.wait_for("task_list_loaded", where=lambda e: e is not first)
    await site.wait_archived("song_b")
    while True:  # a poll of slow_a that started before the edit has ended
        _, body = await site.get("/metrics")
        if _metric(body, "suno_archiver_tasks_in_flight") == 0:
            break
        await asyncio.sleep(0.05)
    calls = _calls(sb, "slow_a")
    await asyncio.sleep(3)  # its schedule would have polled it about three times
    assert _calls(sb, "slow_a") == calls
    assert await daemon.stop() == 0


async def test_restart_fetches_no_file_and_polls_no_archived_task(site: Site) -> None:
    sb = site.sandbox
    sb.add_music("song_a")
    sb.add_cover("cover_b")
    sb.add_music("later_c", ready_after_s=3600)
    site.list_tasks("song_a", "cover_b", "later_c")
    first = await site.daemon()
    await site.wait_archived("song_a", "cover_b")
    await first.wait_for(
        "task_list_loaded"
    )  # later_c was polled once (PENDING) at start; its next poll is a minute away
    for _ in range(50):
        if _calls(sb, "later_c"):
            break
        await asyncio.sleep(0.1)
    assert await first.stop() == 0
    calls, hits = dict(sb.api.calls), dict(sb.cdn.hits)

    second = await site.daemon()
    await second.wait_for("task_list_loaded")
    await asyncio.sleep(3)  # a dozen watch cycles
    assert dict(sb.api.calls) == calls  # no archived task polled, later_c kept its schedule
    assert dict(sb.cdn.hits) == hits  # no file fetched again
    assert await second.stop() == 0
    site.check_archive()


async def test_sigkill_mid_download_leaves_no_partial_file_and_a_restart_completes(
    site: Site,
) -> None:
    sb = site.sandbox
    sb.add_music("big_a", tracks=1, seconds=1800)  # ~29 MB: still downloading when killed
    site.list_tasks("big_a")
    daemon = await site.daemon()
    temp = site.archive / TEMP_DIR
    for _ in range(2000):
        if any(p.name != LOCK_FILE for p in temp.iterdir()):
            break
        await asyncio.sleep(0.005)
    else:
        raise AssertionError("no download started")
    await daemon.stop(signal.SIGKILL)
    assert site.manifest("big_a") is None
    assert not list(site.archive.glob("big_a/*.mp3"))  # nothing under a final name but whole

    again = await site.daemon()
    await site.wait_archived("big_a", timeout=60)
    assert await again.stop() == 0
    site.check_archive()


async def test_sigterm_lets_in_flight_files_finish_within_the_grace_period_then_exits_0(
    site: Site,
) -> None:
    sb = site.sandbox
    # A stalled read fails after 2 s and resumes with Range: big_a's song cannot be complete
    # before that, so it is in flight at SIGTERM and finishes within the 6 s grace period.
    site.configure(grace_s=6, download_timeout_s=2)
    sb.add_music("hung_b")
    sb.add_music("big_a", tracks=1, seconds=120)
    sb.cdn.set_faults("big_a-1.mp3", FileFaults(stall_after_bytes=600_000))
    sb.api.fail_next(1, "hang")  # hung_b's poll never answers: in flight until cancelled
    site.list_tasks("hung_b")
    daemon = await site.daemon()
    deadline = time.monotonic() + 20
    while not _calls(sb, "hung_b"):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    site.list_tasks("hung_b", "big_a")
    await daemon.send(signal.SIGHUP)
    while not sb.cdn.hits["big_a-1.mp3"]:
        assert time.monotonic() < deadline, "\n".join(daemon.raw)
        await asyncio.sleep(0.01)
    assert site.manifest("big_a") is None

    started = time.monotonic()
    assert await daemon.stop() == 0
    elapsed = time.monotonic() - started

    assert 6 - 0.5 < elapsed < 6 + 5, elapsed  # waited out the grace period for hung_b
    assert daemon.named("daemon_stopping")[0]["grace_s"] == 6
    archived = daemon.named("task_archived")
    assert [e["task_id"] for e in archived] == ["big_a"]
    assert daemon.events.index(daemon.named("daemon_stopping")[0]) < daemon.events.index(
        archived[0]
    )  # finished after SIGTERM, within the grace period
    assert site.manifest("big_a") is not None
    assert daemon.named("abandoned_in_flight")  # hung_b could not finish in time
    assert site.manifest("hung_b") is None
    assert site.temp_leftovers() == []
    site.check_archive()


async def test_api_outage_keeps_it_running_and_it_catches_up(site: Site) -> None:
    sb = site.sandbox
    sb.add_music("song_a")
    sb.add_music("song_b")
    sb.api.fail_next(1, "http500")
    sb.api.fail_next(1, "http455")
    sb.api.fail_next(1, "http502")
    site.list_tasks("song_a", "song_b")
    daemon = await site.daemon()
    await site.wait_archived("song_a", "song_b", timeout=40)
    assert len(daemon.named("api_retry")) == 3
    _, body = await site.get("/metrics")
    assert _metric(body, "suno_archiver_api_retries_total") == 3
    assert _metric(body, 'suno_archiver_api_calls_total{outcome="maintenance"}') == 1
    assert _metric(body, 'suno_archiver_api_calls_total{outcome="transient"}') == 2
    assert await daemon.stop() == 0
    site.check_archive()


async def test_an_api_outage_outlasting_the_clients_retries_is_retried_by_the_engine(
    site: Site,
) -> None:
    sb = site.sandbox
    sb.add_music("song_a")
    for fault in ("http500", "http455", "http502", "http455") * 2:  # 8 failed calls in a row
        sb.api.fail_next(1, fault)
    site.list_tasks("music:song_a")
    daemon = await site.daemon(tuning={"retry_base_s": 0.3})  # 30 s in production
    await site.wait_archived("song_a", timeout=60)
    # The client tries 4 times a lookup; the engine retries the task after each 4 failures.
    retries = daemon.named("task_retry_later")
    assert [e["attempt"] for e in retries] == [1, 2]
    assert all(e["task_id"] == "song_a" for e in retries)
    assert daemon.running
    _, body = await site.get("/metrics")
    assert _metric(body, 'suno_archiver_api_calls_total{outcome="error"}') == 2
    assert _metric(body, "suno_archiver_api_retries_total") == 6
    assert _calls(sb, "song_a") == 9
    assert await daemon.stop() == 0
    site.check_archive()


async def test_a_wrong_key_is_said_plainly_and_retried_slowly(site: Site) -> None:
    sb = site.sandbox
    site.configure(api_key="wrong-key-0123456789")
    sb.add_music("song_a")
    site.list_tasks("song_a")
    daemon = await site.daemon()
    paused = await daemon.wait_for("archiving_paused")
    assert paused["level"] == "error" and paused["cause"] == "api_key"
    assert "key" in paused["error"].lower()
    assert paused["retry_in_s"] >= 60
    await asyncio.sleep(3)
    assert daemon.running
    assert sb.api.total_calls == 1  # no hammering with a key that cannot work
    _, body = await site.get("/metrics")
    assert _metric(body, 'suno_archiver_api_calls_total{outcome="auth_rejected"}') == 1
    assert _metric(body, "suno_archiver_storage_pauses_total") == 0
    assert await daemon.stop() == 0
    assert not any("wrong-key-0123456789" in line for line in daemon.raw)


@pytest.mark.usefixtures("aws_env")
async def test_storage_refusing_access_pauses_without_counting_a_rejected_key(
    site: Site, server: MotoServer
) -> None:
    sb = site.sandbox
    s3 = boto3.session.Session().client("s3", endpoint_url=server.url)
    s3.create_bucket(Bucket="pause-test")
    site.configure(
        storage=f'backend = "s3"\nbucket = "pause-test"\nendpoint_url = "{server.url}"\n'
        'region = "us-east-1"\ncache_dir = "cache"'
    )
    sb.add_music("song_a")
    sb.add_music("song_b")
    site.list_tasks("song_a")
    daemon = await site.daemon()
    await daemon.wait_for("task_archived", where=lambda e: e["task_id"] == "song_a")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket="pause-test"):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket="pause-test", Key=obj["Key"])
    s3.delete_bucket(Bucket="pause-test")  # the bucket goes away while the daemon runs

    site.list_tasks("song_a", "song_b")
    paused = await daemon.wait_for("archiving_paused")
    assert paused["cause"] == "storage" and "pause-test" in paused["error"]
    _, body = await site.get("/metrics")
    assert _metric(body, "suno_archiver_storage_pauses_total") == 1
    assert 'outcome="auth_rejected"' not in body  # the key was fine all along
    assert await daemon.stop() == 0


async def test_a_missing_task_list_is_waited_for(site: Site) -> None:
    sb = site.sandbox
    sb.add_music("song_a")
    daemon = await site.daemon()
    missing = await daemon.wait_for("task_list_missing")
    assert missing["waiting"] is True
    site.list_tasks("song_a")
    await site.wait_archived("song_a")
    assert len(daemon.named("task_list_missing")) == 1  # said once, not every 2 s
    assert await daemon.stop(signal.SIGINT) == 0


@contextlib.asynccontextmanager
async def notify_socket(path: Path) -> AsyncIterator[list[str]]:
    """A systemd stand-in: every datagram sent to `path` (NOTIFY_SOCKET), in order."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    received: list[str] = []

    async def drain() -> None:
        while True:
            with contextlib.suppress(BlockingIOError):
                while True:
                    received.append(sock.recv(4096).decode())
            await asyncio.sleep(0.02)

    reader = asyncio.create_task(drain())
    try:
        yield received
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        sock.close()


async def test_systemd_notify_socket_gets_ready_watchdog_status_and_stopping(
    site: Site, tmp_path: Path
) -> None:
    sb = site.sandbox
    sb.add_music("song_a")
    site.list_tasks("song_a")
    async with notify_socket(tmp_path / "notify.sock") as received:
        daemon = await site.daemon(
            {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "1000000"}
        )
        await site.wait_archived("song_a")
        await asyncio.sleep(2.5)
        assert await daemon.stop() == 0
        await asyncio.sleep(0.1)
    ready = [m for m in received if m.startswith("READY=1")]
    assert len(ready) == 1
    assert "STATUS=" in ready[0]
    assert received.count("WATCHDOG=1") >= 4  # every 0.5 s
    assert "STATUS=1 archived" in received
    assert received[-1].startswith("STOPPING=1")
    assert received.index(ready[0]) < received.index("WATCHDOG=1")


async def test_sigterm_while_starting_sends_no_ready_after_stopping(
    site: Site, tmp_path: Path
) -> None:
    site.sandbox.add_music("song_a")
    os.mkfifo(site.tasks)  # the first read of the task list blocks until the test writes it
    async with notify_socket(tmp_path / "notify.sock") as received:
        daemon = await site.daemon({"NOTIFY_SOCKET": str(tmp_path / "notify.sock")}, started=None)
        deadline = time.monotonic() + 20
        while True:  # opens once the daemon has opened the list to read it
            try:
                fifo = os.open(site.tasks, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:
                assert time.monotonic() < deadline and daemon.running, "\n".join(daemon.raw)
                await asyncio.sleep(0.02)
        await daemon.send(signal.SIGTERM)  # mid-start: the list is being read
        await daemon.wait_for("daemon_stopping")
        os.write(fifo, b"song_a\n")
        os.close(fifo)
        assert await daemon.stop() == 0
        await asyncio.sleep(0.1)
    assert received and received[0].startswith("STOPPING=1")
    assert not [m for m in received if "READY=1" in m], received
    assert not daemon.named("daemon_ready")
    assert daemon.named("task_list_loaded")  # the read finished; then the daemon stopped


# --- metrics, in process ------------------------------------------------------------------------


def _state(task_id: str, **changes: Any) -> TaskState:
    base = TaskState(task_id, None, Phase.PENDING, 0.0, 0.0, 0, 0, None, None, 0.0)
    return dataclasses.replace(base, **changes)


def test_metrics_count_api_answers_and_failures_from_task_steps() -> None:
    now = [1000.0]
    metrics = Metrics(clock=lambda: now[0])
    metrics.seed([_state("a"), _state("b"), _state("c")])
    now[0] = 1010.0
    metrics.task_changed(_state("a", polls=1))
    metrics.task_changed(_state("b", attempts=1, last_error="HTTP 500"))
    metrics.task_changed(_state("c", unknown_polls=1))  # unknown yet: asked again later
    metrics.task_changed(_state("c", unknown_polls=2, phase=Phase.NOT_FOUND))
    metrics.task_changed(_state("a", polls=2, phase=Phase.ARCHIVED))
    value = metrics.registry.get_sample_value
    assert value("suno_archiver_api_calls_total", {"outcome": "ok"}) == 2
    assert value("suno_archiver_api_calls_total", {"outcome": "error"}) == 1
    assert value("suno_archiver_api_calls_total", {"outcome": "not_found"}) == 2
    assert value("suno_archiver_tasks_ended_total", {"phase": "archived"}) == 1
    now[0] = 1015.0
    assert value("suno_archiver_seconds_since_api_success") == 5.0


def test_metrics_count_logged_retries_and_stored_files() -> None:
    metrics = Metrics()
    event = {"event": "api_retry", "error_class": "SlowDown"}
    assert metrics.log_processor(None, "warning", event) is event
    metrics.log_processor(None, "info", {"event": "task_archived", "files": 4, "bytes": 1000})
    value = metrics.registry.get_sample_value
    assert value("suno_archiver_api_retries_total") == 1
    assert value("suno_archiver_api_calls_total", {"outcome": "slow_down"}) == 1
    assert value("suno_archiver_files_archived_total") == 4
    assert value("suno_archiver_bytes_archived_total") == 1000


def test_pauses_are_counted_by_their_cause() -> None:
    metrics = Metrics()
    value = metrics.registry.get_sample_value
    metrics.log_processor(None, "error", {"event": "archiving_paused", "cause": "storage"})
    assert value("suno_archiver_api_calls_total", {"outcome": "auth_rejected"}) is None
    assert value("suno_archiver_storage_pauses_total") == 1
    metrics.log_processor(None, "error", {"event": "archiving_paused", "cause": "api_key"})
    assert value("suno_archiver_api_calls_total", {"outcome": "auth_rejected"}) == 1
    metrics.log_processor(None, "error", {"event": "archiving_paused", "cause": "api_url"})
    assert value("suno_archiver_api_calls_total", {"outcome": "auth_rejected"}) == 1
    assert value("suno_archiver_api_calls_total", {"outcome": "wrong_endpoint"}) == 1
    assert value("suno_archiver_storage_pauses_total") == 1


def test_health_turns_bad_when_pending_tasks_get_no_api_answer() -> None:
    now = [0.0]
    metrics = Metrics(clock=lambda: now[0])
    counts = {Phase.PENDING: 1}
    metrics.bind(lambda: counts, dict, lambda: 0)
    assert metrics.health()[0]
    now[0] = 1000.0
    metrics.tick()
    ok, body = metrics.health()
    assert not ok and body["status"] == "unhealthy"
    counts.update({Phase.PENDING: 0, Phase.ARCHIVED: 1})  # nothing pending: idle is healthy
    assert metrics.health()[0]
    now[0] = 1100.0  # the loop stopped ticking
    assert not metrics.health()[0]
