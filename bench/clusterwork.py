"""`--only cluster`, part two: several daemons on one PostgreSQL state. Throughput of two daemons
against one on the same tasks when downloads are the bottleneck (the bench server sends every
file at a capped rate), and the takeover of a daemon killed with SIGKILL: from the kill to its
last task leased by the other daemon (or archived), against lease_s + 5 s.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psycopg

from archiver.sandbox.postgres import PgCluster
from archiver.state.pgstore import PgStore
from bench.cluster import pg_config
from bench.daemonscale import _Daemon, _wait
from bench.options import Options
from bench.procs import BenchServer, log_tail, write_ids
from bench.report import Table, verdict

SPEEDUP_TARGET = 1.7
TAKEOVER_MARGIN_S = 5.0
RATE = 262_144  # bytes per second of each file the bench server sends (a slow file host)


def _archived(archive: Path, ids: list[str]) -> int:
    return sum((archive / task_id / "manifest.json").exists() for task_id in ids)


def _new_state(cluster: PgCluster) -> str:
    """A new database with the state's tables (so that it can be asked before a daemon ran)."""
    url = cluster.url(cluster.database())
    PgStore.open(url, "bench").close()
    return url


def _run(
    folder: Path, server: BenchServer, cluster: PgCluster, ids: list[str], daemons: int
) -> float | None:
    """Seconds from the daemons' start until every task of `ids` is archived (None: not
    within 20 minutes)."""
    folder.mkdir()
    url = _new_state(cluster)
    archive = folder / "archive"
    running = []
    for n in range(daemons):
        own = folder / f"d{n}"
        own.mkdir()
        config = pg_config(own / "archive.toml", server, archive, url)
        with config.open("a") as f:
            f.write(f'[tasks]\nlist = "{write_ids(own / "tasks.txt", ids)}"\n')
        running.append(_Daemon(config, own / "daemon.log"))
    try:
        took = _wait(lambda: _archived(archive, ids) == len(ids), 1200.0)
    finally:
        for daemon in running:
            daemon.stop()
    return took


def _takeover(folder: Path, server: BenchServer, cluster: PgCluster, ids: list[str],
              lease_s: float) -> tuple[float | None, int]:  # fmt: skip
    """Two daemons; once the first holds leases, kill -9 it: (seconds until every task it
    held is leased by the other or archived, tasks it held)."""
    folder.mkdir()
    url = _new_state(cluster)
    archive = folder / "archive"
    daemons = []
    for n in range(2):
        own = folder / f"d{n}"
        own.mkdir()
        config = pg_config(own / "archive.toml", server, archive, url, lease_s=lease_s)
        with config.open("a") as f:
            f.write(f'[tasks]\nlist = "{write_ids(own / "tasks.txt", ids)}"\n')
        daemons.append(_Daemon(config, own / "daemon.log"))
    victim = daemons[0]
    try:
        with psycopg.connect(url, autocommit=True) as db:

            def held() -> list[str]:
                return [row[0] for row in db.execute(
                    "SELECT task_id FROM tasks WHERE lease_owner LIKE %s",
                    (f"%:{victim.proc.pid}:%",),
                )]  # fmt: skip

            if _wait(lambda: bool(held()), 120.0) is None:
                raise RuntimeError(f"the first daemon took no lease: {log_tail(victim.log)}")
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait()
            killed = time.monotonic()
            taken = held()
            took = _wait(lambda: not held(), lease_s * 4)
            return (None if took is None else time.monotonic() - killed), len(taken)
    finally:
        for daemon in daemons:
            daemon.stop()


def measure(opts: Options, work: Path, cluster: PgCluster) -> Table:
    table = Table(
        f"Several daemons on one PostgreSQL state: {opts.cluster_tasks} tasks, files sent at "
        f"{RATE // 1024} KiB/s each",
        ["measure", "value", "target"],
    )
    with BenchServer(
        "--songs", str(opts.cluster_tasks), "--seconds", str(opts.cluster_seconds),
        "--rate", str(RATE),
    ) as server:  # fmt: skip
        ids = server.tasks["songs"]
        one = _run(work / "one", server, cluster, ids, 1)
        two = _run(work / "two", server, cluster, ids, 2)
        lease_s = opts.cluster_lease_s
        took, held = _takeover(work / "takeover", server, cluster, ids, lease_s)
    if one is None or two is None:
        table.failures.append("the tasks were not all archived within 20 minutes")
        return table
    speedup = one / two
    table.add("one daemon", f"{one:.1f} s ({opts.cluster_tasks / one:.1f} tasks/s)", "-")
    table.add("two daemons", f"{two:.1f} s ({opts.cluster_tasks / two:.1f} tasks/s)", "-")
    table.add(
        "two against one", f"{speedup:.2f} times",
        f">= {SPEEDUP_TARGET:g} times: {verdict(speedup >= SPEEDUP_TARGET)}",
    )  # fmt: skip
    limit = lease_s + TAKEOVER_MARGIN_S
    if took is None:
        table.failures.append(f"the killed daemon's {held} tasks were not taken over")
    else:
        table.add(
            f"takeover after kill -9 (lease_s = {lease_s:g}, {held} tasks held)",
            f"{took:.1f} s", f"<= {limit:g} s: {verdict(took <= limit)}",
        )  # fmt: skip
    table.notes.append(
        "each daemon downloads 4 files at once ([download] concurrency); every file comes at "
        "the capped rate, so one daemon's throughput is bounded by its downloads; the daemons "
        "share one local archive folder (shared_local = true) and one database"
    )
    table.notes.append(
        "takeover: from the SIGKILL until no task is leased by the killed daemon (each taken "
        "by the other, whose next look at a task it could not claim is at most 5 s later)"
    )
    return table
