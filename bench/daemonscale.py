"""The daemon at scale: a list and a state of N archived tasks, `run` started, then IDs
appended to the list one at a time, as an application does for years.

Measured from outside the daemon: start-up to `daemon_ready` (its log), its resident set
(/proc), the CPU seconds it spends per appended ID (/proc, over all the appends: the line
read, the API calls and downloads of a tiny task, the manifest), the time from the append to
the first API call (the bench server's count) and to the manifest in the archive. Then a
`backfill` over the same list, every ID archived: it must make no API call.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from archiver.state.store import StateStore
from archiver.tasks.taskstate import Phase
from bench import seedview
from bench.options import Options
from bench.procs import BenchServer, archiver_command, log_tail, write_config, write_ids
from bench.report import Table, mb, median, verdict

STARTUP_TARGET_S = 5.0
RSS_TARGET_MB = 100.0
CPU_TARGET_S = 0.020
FIRST_CALL_TARGET_S = 0.5
RERUN_TARGET_S = 10.0
_TICK_S = 0.002
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _archived_state(path: Path, ids: list[str]) -> None:
    """A state in which every ID is archived, written directly (the run that archived them
    is not what is measured)."""
    with StateStore.open(path) as state, state.transaction() as db:
        db.executemany(
            "INSERT INTO tasks (task_id, kind, phase, first_seen_at, next_poll_at, polls, "
            "last_status, updated_at) VALUES (?, 'music', ?, 1.0, 1.0, 1, 'SUCCESS', 1.0)",
            ((task_id, Phase.ARCHIVED.value) for task_id in sorted(ids)),
        )


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime


def _rss(pid: int) -> int:
    return _status_kb(pid, "VmRSS:") * 1024


def _status_kb(pid: int, field: str) -> int:
    """A kB field of /proc/<pid>/status (0 once the process has exited)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def _wait(condition: Callable[[], bool], timeout_s: float) -> float | None:
    """Seconds until `condition()` held, None if it did not within `timeout_s`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if condition():
            return time.monotonic() - start
        time.sleep(_TICK_S)
    return None


class _Daemon:
    def __init__(self, config: Path, log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [*archiver_command(), "run", "--config", str(config)],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            cwd=log.parent,
        )

    def ready(self) -> bool:
        return b'"daemon_ready"' in self.log.read_bytes() or self.proc.poll() is not None

    def stop(self) -> _Exit | None:
        """SIGTERM, then what the shutdown cost (its index rewrite) and the run's peak RSS;
        None when it had already ended (or would not end)."""
        ended = None
        if self.proc.poll() is None:
            cpu, start = _cpu_s(self.proc.pid), time.monotonic()
            self.proc.send_signal(signal.SIGTERM)
            ended = _reap(self.proc, 120.0)
            if ended is not None:
                ended = _Exit(time.monotonic() - start, ended.cpu_s - cpu, ended.max_rss)
        self._out.close()
        return ended


@dataclass(frozen=True)
class _Exit:
    wall_s: float
    cpu_s: float  # the whole run's, or (from stop) its shutdown's
    max_rss: int  # bytes, the whole run's peak


def _reap(proc: subprocess.Popen[bytes], timeout_s: float) -> _Exit | None:
    """Wait for `proc` (killed after `timeout_s`: None): its own CPU time from wait4, its peak
    RSS from VmHWM, read until it exits (wait4's ru_maxrss would be this process's own when
    that is larger: Linux keeps it across exec)."""
    start = time.monotonic()
    peak = 0
    while time.monotonic() - start < timeout_s:
        peak = max(peak, _status_kb(proc.pid, "VmHWM:") * 1024)
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            cpu = usage.ru_utime + usage.ru_stime
            return _Exit(time.monotonic() - start, cpu, peak)
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    return None


def _appends(
    server: BenchServer, daemon: _Daemon, ids_file: Path, archive: Path, new: list[str]
) -> tuple[list[float], list[float], float, int]:
    """(append → first call, append → archived, CPU s per ID, RSS after) over `new`."""
    pid = daemon.proc.pid
    to_call: list[float] = []
    to_archived: list[float] = []
    cpu_before = _cpu_s(pid)
    for task_id in new:
        calls = server.stats()[0]
        start = time.monotonic()
        with ids_file.open("a") as f:
            f.write(f"{task_id}\n")
        called = _wait(lambda calls=calls: server.stats()[0] > calls, 30.0)
        manifest = archive / task_id / "manifest.json"
        done = _wait(manifest.exists, 60.0)
        if called is None or done is None:
            raise RuntimeError(f"{task_id} was not archived: {log_tail(daemon.log)}")
        to_call.append(called)
        to_archived.append(time.monotonic() - start)
    cpu = (_cpu_s(pid) - cpu_before) / len(new)
    return to_call, to_archived, cpu, _rss(pid)


def _rerun(server: BenchServer, config: Path, ids_file: Path, folder: Path) -> tuple[float, int]:
    calls = server.stats()[0]
    log = folder / "rerun.log"
    start = time.monotonic()
    with log.open("wb") as out:
        code = subprocess.call(
            [*archiver_command(), "backfill", str(ids_file), "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=folder,
        )
    wall = time.monotonic() - start
    if code != 0:
        raise RuntimeError(f"backfill rerun exited {code}: {log_tail(log)}")
    return wall, server.stats()[0] - calls


def measure(opts: Options, work: Path) -> Table:
    appends = opts.appends
    table = Table(
        f"The daemon at scale: {opts.ids:,} archived tasks listed, then {appends} IDs appended "
        "one at a time",
        ["measure", "value", "target"],
    )
    folder = work / "daemon"
    folder.mkdir()
    archived = [f"{n:032x}" for n in range(opts.ids)]
    ids_file = write_ids(folder / "tasks.txt", archived)
    state = folder / "state.sqlite3"
    _archived_state(state, archived)
    archive = folder / "archive"
    seeded = time.monotonic()
    if opts.index:
        seedview.seed(state, archive, archived)
    seeded = time.monotonic() - seeded
    with BenchServer("--tiny", str(appends)) as server:
        config = write_config(folder / "archive.toml", server, archive=archive)
        with config.open("a") as f:
            f.write(f'[tasks]\nlist = "{ids_file}"\n[state]\npath = "{state}"\n')
            if not opts.index:
                f.write("[index]\nenabled = false\n")
        daemon = _Daemon(config, folder / "daemon.log")
        try:
            ready = _wait(daemon.ready, 120.0)
            if ready is None or daemon.proc.poll() is not None:
                table.failures.append(f"the daemon did not start: {log_tail(daemon.log)}")
                return table
            rss_ready = _rss(daemon.proc.pid)
            to_call, to_archived, cpu, rss_after = _appends(
                server, daemon, ids_file, archive, server.tasks["tiny"]
            )
            ended = daemon.stop()
        finally:
            daemon.stop()
        if ended is None:
            table.failures.append(f"the daemon did not stop: {log_tail(daemon.log)}")
            return table
        rerun_s, rerun_calls = _rerun(server, config, ids_file, folder)

    flat = rss_after - rss_ready
    rows = [
        (
            "start-up to ready",
            f"{ready:.2f} s",
            ready <= STARTUP_TARGET_S,
            f"<= {STARTUP_TARGET_S:g} s",
        ),
        (
            "RSS when ready",
            f"{mb(rss_ready)} MB",
            rss_ready / 1e6 <= RSS_TARGET_MB,
            f"<= {RSS_TARGET_MB:g} MB",
        ),
        (
            f"RSS after {appends} appends",
            f"{mb(rss_after)} MB ({flat / 1e6:+.1f} MB)",
            rss_after / 1e6 <= RSS_TARGET_MB,
            f"<= {RSS_TARGET_MB:g} MB, flat",
        ),
        (
            "CPU per appended ID",
            f"{cpu * 1000:.1f} ms",
            cpu <= CPU_TARGET_S,
            f"<= {CPU_TARGET_S * 1000:g} ms",
        ),
        (
            "shutdown: SIGTERM to exit" + (", the index rewritten" if opts.index else ""),
            f"{ended.wall_s:.2f} s, {ended.cpu_s:.2f} CPU-s",
            None,
            "-",
        ),
        (
            "peak RSS, start to exit",
            f"{mb(ended.max_rss)} MB",
            ended.max_rss / 1e6 <= RSS_TARGET_MB,
            f"<= {RSS_TARGET_MB:g} MB",
        ),
        (
            "append → first API call",
            f"median {median(to_call):.3f} s, max {max(to_call):.3f} s",
            median(to_call) <= FIRST_CALL_TARGET_S,
            f"median <= {FIRST_CALL_TARGET_S:g} s",
        ),
        (
            "append → archived",
            f"median {median(to_archived):.3f} s, max {max(to_archived):.3f} s",
            None,
            "-",
        ),
        (
            f"backfill rerun over the {opts.ids:,} archived",
            f"{rerun_s:.2f} s, {rerun_calls} API calls",
            rerun_s <= RERUN_TARGET_S and rerun_calls == 0,
            f"<= {RERUN_TARGET_S:g} s, no API call",
        ),
    ]
    for name, value, met, target in rows:
        table.add(name, value, target if met is None else f"{target}: {verdict(met)}")
    if rerun_calls:
        table.failures.append(f"the backfill rerun made {rerun_calls} API calls")
    table.notes.append(
        "the state is written directly with every listed ID archived; each appended ID is a "
        "tiny task of the bench server (two 0.2 s MP3s and their images), finished at once"
    )
    if opts.index:
        shards = sum(p.stat().st_size for p in (archive / "browse").rglob("*") if p.is_file())
        table.notes.append(
            "as an indexed archive has them, the state holds each archived task's view row and "
            f"the archive its index.html and shard files ({mb(shards)} MB) written from them "
            f"(seeded in {seeded:.1f} s, not measured; bench/seedview.py); the daemon rewrites "
            "what changed at most once a minute and at shutdown"
        )
    table.notes.append(
        "CPU per appended ID is the daemon's user + system time over all the appends, divided "
        "by their number: reading the line, the API call, the downloads, the manifest"
    )
    return table
