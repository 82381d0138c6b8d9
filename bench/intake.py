"""The HTTP intake: callback → manifest latency, and record-info calls per song with callbacks
beside polling alone.

The real daemon (`suno-archiver run` as a child process, the intake on 127.0.0.1) against the
stand-in API in this process. Each music task (2 songs of `--seconds`, 3 minutes by default)
finishes at a time drawn from 60-240 s after its creation; the daemon's schedule and those times
are compressed by `--intake-scale` (0.1: 6-24 s) so that a run takes half a minute: the counts
do not depend on it (every delay of the schedule is scaled alike) and the callback → manifest
latency does not either (the poll is at once, the download is real).

- polling alone: every task is in the task list from its creation, no callback;
- callbacks: no list; the vendor calls back `text` at 1/4 of the time, `first` at 3/4 and
  `complete` when it finished, as kie.ai and sunoapi.org do. Latency: from the `complete`
  callback's answer to the task's manifest in the archive.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from archiver.config.listen import parse_listen
from archiver.sandbox import Sandbox, fake_hex_id
from bench.options import Options
from bench.report import Table, median, percentile, verdict

FINISH_S = (60.0, 240.0)
SONGS_PER_TASK = 2
LATENCY_TARGET_S = 1.0
CALLS_TARGET = 1.5
TOKEN = "bench-intake-token-0123456789"
# `run` with a compressed polling schedule (the same knob the daemon tests use).
_SCALED_RUN = (
    "import functools, sys, archiver.cli.daemon as d; "
    "d.run_daemon = functools.partial(d.run_daemon, poll_time_scale=float(sys.argv[1])); "
    "from archiver.cli.main import main; sys.exit(main(sys.argv[2:]))"
)


@dataclass
class _Result:
    calls: int
    tasks: int
    latencies: list[float]
    wall_s: float
    answers: list[float]  # seconds from each callback's POST to its answer


def _free_listen() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def _configure(folder: Path, sandbox: Sandbox, listen: str, listed: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "token").write_text(TOKEN)
    (folder / "tasks.txt").write_text("".join(f"{t}\n" for t in listed))
    (folder / "archive.toml").write_text(
        f'[api]\nbase_url = "{sandbox.base_url}"\napi_key = "sandbox-key"\n'
        "requests_per_second = 50\n"
        '[tasks]\nlist = "tasks.txt"\n[storage]\npath = "archive"\n'
        f'[intake]\nlisten = "{listen}"\ntoken_file = "token"\n'
    )


async def _wait_listening(listen: str, proc: asyncio.subprocess.Process) -> None:
    host, port = parse_listen(listen)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.returncode is None:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise RuntimeError(f"the daemon did not listen on {listen}")


async def _manifest(path: Path, deadline: float) -> float:
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.parent.name}: no manifest in time")
        await asyncio.sleep(0.005)
    return time.monotonic()


async def _one_run(opts: Options, folder: Path, callbacks: bool) -> _Result:
    rng = random.Random(opts.seed)
    scale = opts.intake_scale
    sandbox = Sandbox()
    await sandbox.start()
    try:
        finish = {
            fake_hex_id(f"intake-{callbacks}-{i}"): rng.uniform(*FINISH_S) * scale
            for i in range(opts.intake_tasks)
        }
        for task_id, ready_s in finish.items():
            sandbox.api.add_music(task_id, ready_after_s=ready_s, seconds=opts.seconds)
        listen = _free_listen()
        _configure(folder, sandbox, listen, [] if callbacks else list(finish))
        log = (folder / "daemon.log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _SCALED_RUN, str(scale), "run", "--config", "archive.toml",
            cwd=folder, stdout=log, stderr=log,
        )  # fmt: skip
        try:
            await _wait_listening(listen, proc)
            start = time.monotonic()
            for task_id in finish:  # created now: their clocks start
                sandbox.api.music[task_id].started = sandbox.api.clock()
            archive = folder / "archive"
            # Polling alone finds a song within a minute (scaled) of its end; 2 minutes is lost.
            deadline = start + max(FINISH_S) * scale + 120 * scale + 60
            answers: list[float] = []
            if callbacks:
                async with aiohttp.ClientSession() as http:
                    latencies = await asyncio.gather(
                        *(
                            _called_back(http, listen, archive, task_id, ready_s, start, deadline)
                            for task_id, ready_s in finish.items()
                        )
                    )
                answers = [a for _latency, task_answers in latencies for a in task_answers]
            else:
                await asyncio.gather(
                    *(_manifest(archive / t / "manifest.json", deadline) for t in finish)
                )
                latencies = []
            wall_s = time.monotonic() - start
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            await proc.wait()
            log.close()
        calls = sum(n for (_e, t), n in sandbox.api.calls.items() if t in finish)
        return _Result(calls, len(finish), [lat for lat, _ in latencies], wall_s, answers)
    finally:
        await sandbox.stop()


async def _called_back(
    http: aiohttp.ClientSession,
    listen: str,
    archive: Path,
    task_id: str,
    ready_s: float,
    start: float,
    deadline: float,
) -> tuple[float, list[float]]:
    """Call back as the vendor does: the seconds from the `complete` answer to the manifest,
    and how long each callback waited for its answer."""
    url = f"http://{listen}/callback/{TOKEN}"
    answers = []
    for stage, at in (("text", 0.25), ("first", 0.75), ("complete", 1.0)):
        await asyncio.sleep(max(0.0, start + ready_s * at - time.monotonic()) + 0.01)
        body = {"code": 200, "data": {"callbackType": stage, "task_id": task_id, "data": []}}
        sent = time.monotonic()
        async with http.post(url, data=json.dumps(body)) as resp:
            resp.raise_for_status()
        answers.append(time.monotonic() - sent)
    answered = time.monotonic()
    latency = await _manifest(archive / task_id / "manifest.json", deadline) - answered
    return latency, answers


def measure(opts: Options, work: Path) -> Table:
    table = Table(
        f"Intake: {opts.intake_tasks} music tasks of {SONGS_PER_TASK} songs of "
        f"{opts.seconds:g} s, finishing 60-240 s after creation (x{opts.intake_scale:g})",
        ["feed", "record-info calls / song", "callback → manifest median s", "p95 s",
         "callback answered in, max ms", "wall s"],
    )  # fmt: skip
    polled = asyncio.run(_one_run(opts, work / "polling", callbacks=False))
    called = asyncio.run(_one_run(opts, work / "callbacks", callbacks=True))
    songs = polled.tasks * SONGS_PER_TASK
    table.add("polling alone", f"{polled.calls / songs:.2f}", "", "", "", f"{polled.wall_s:.0f}")
    per_song = called.calls / songs
    lat_median = median(called.latencies)
    table.add(
        "callbacks (text, first, complete)",
        f"{per_song:.2f} (target <= {CALLS_TARGET:g}: {verdict(per_song <= CALLS_TARGET)}; "
        f"{called.calls / polled.calls:.2f} of polling alone)",
        f"{lat_median:.2f} (target <= {LATENCY_TARGET_S:g}: "
        f"{verdict(lat_median <= LATENCY_TARGET_S)})",
        f"{percentile(called.latencies, 95):.2f}",
        f"{max(called.answers) * 1000:.0f} (SPEC: < 1 s: {verdict(max(called.answers) < 1.0)})",
        f"{called.wall_s:.0f}",
    )
    if called.calls < called.tasks:
        table.failures.append(f"callbacks: {called.calls} calls for {called.tasks} tasks")
    table.notes.append(
        "the latency includes downloading, tagging and storing both songs (2.9 MB each at 3 min)"
    )
    return table
