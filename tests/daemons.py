"""A `suno-archiver run` child and its work folder (archive.toml, tasks.txt, the archive, the
state), for the tests that run the daemon as a real subprocess against the stand-in API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from archive_checks import LOCK_FILE, TEMP_DIR, verify_archive

from archiver.sandbox import Sandbox

REPO = Path(__file__).resolve().parent.parent

Event = dict[str, Any]
LOCAL = 'path = "archive"'


def free_port() -> int:
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
        self.metrics_port = free_port()
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


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics:\n{text}")


def task_calls(sandbox: Sandbox, task_id: str) -> int:
    return sum(n for (_endpoint, tid), n in sandbox.api.calls.items() if tid == task_id)
