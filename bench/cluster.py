"""`--only cluster`, part one: the daemon on a PostgreSQL state of N archived tasks (a throwaway
cluster on loopback, archiver/sandbox/postgres.py), then IDs appended to its list one at a time,
as daemonscale.py measures the SQLite state; and the database round trips each archived task
costs, counted by a proxy between the daemon and the server (bench/pgproxy.py).

Part two (several daemons: throughput and takeover) is bench/clusterwork.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg

from archiver.sandbox.postgres import PgCluster
from archiver.state.pgstore import PgStore
from archiver.tasks.taskstate import Phase
from bench.daemonscale import (
    CPU_TARGET_S,
    RSS_TARGET_MB,
    STARTUP_TARGET_S,
    _appends,
    _Daemon,
    _rss,
    _wait,
)
from bench.options import Options
from bench.pgproxy import RoundTrips
from bench.procs import BenchServer, log_tail, write_config, write_ids
from bench.report import Table, mb, median, verdict

ROUND_TRIPS_AIM = 6


def seed_archived(url: str, ids: list[str]) -> None:
    """A PostgreSQL state in which every ID is archived, written directly with COPY (the run
    that archived them is not what is measured)."""
    PgStore.open(url, "bench").close()  # the tables
    with (
        psycopg.connect(url) as db,
        db.cursor().copy(
            "COPY tasks (task_id, kind, phase, first_seen_at, next_poll_at, polls, last_status, "
            "updated_at) FROM STDIN"
        ) as copy,
    ):
        for task_id in ids:
            copy.write_row((task_id, "music", Phase.ARCHIVED.value, 1.0, 1.0, 1, "SUCCESS", 1.0))
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("VACUUM ANALYZE tasks")


def pg_config(
    path: Path, server: BenchServer, archive: Path, url: str, *, lease_s: float | None = None
) -> Path:
    """write_config's archive.toml on the PostgreSQL state at `url` (several daemons on this
    one host share the archive folder; the index is not kept on PostgreSQL yet)."""
    config = write_config(path, server, archive=archive)
    lease = f"lease_s = {lease_s}\n" if lease_s is not None else ""
    with config.open("a") as f:
        f.write(f'[state]\nurl = "{url}"\nshared_local = true\n{lease}[index]\nenabled = false\n')
    return config


def measure(opts: Options, work: Path, cluster: PgCluster) -> Table:
    appends = opts.appends
    table = Table(
        f"The daemon on a PostgreSQL state: {opts.cluster_ids:,} archived tasks listed, then "
        f"{appends} IDs appended one at a time",
        ["measure", "value", "target"],
    )
    folder = work / "pg-scale"
    folder.mkdir()
    archived = [f"{n:032x}" for n in range(opts.cluster_ids)]
    ids_file = write_ids(folder / "tasks.txt", archived)
    url = cluster.url(cluster.database())
    seeded = time.monotonic()
    seed_archived(url, archived)
    seeded = time.monotonic() - seeded
    archive = folder / "archive"
    with (
        BenchServer("--tiny", str(appends)) as server,
        RoundTrips(cluster.port).running() as trips,
    ):
        proxied = url.replace(f":{cluster.port}/", f":{trips.port}/")
        config = pg_config(folder / "archive.toml", server, archive, proxied)
        with config.open("a") as f:
            f.write(f'[tasks]\nlist = "{ids_file}"\n')
        daemon = _Daemon(config, folder / "daemon.log")
        try:
            ready = _wait(daemon.ready, 300.0)
            if ready is None or daemon.proc.poll() is not None:
                table.failures.append(f"the daemon did not start: {log_tail(daemon.log)}")
                return table
            rss_ready = _rss(daemon.proc.pid)
            idle_from, idle_at = trips.count, time.monotonic()
            time.sleep(10.0)  # the background: heartbeat, lease renewal, the look for changes
            idle_rate = (trips.count - idle_from) / (time.monotonic() - idle_at)
            before, started = trips.count, time.monotonic()
            to_call, to_archived, cpu, rss_after = _appends(
                server, daemon, ids_file, archive, server.tasks["tiny"]
            )
            spent = time.monotonic() - started
            per_task = (trips.count - before) / appends
            background = idle_rate * spent / appends
            ended = daemon.stop()
        finally:
            daemon.stop()
        if ended is None:
            table.failures.append(f"the daemon did not stop: {log_tail(daemon.log)}")
            return table
    rows = [
        ("start-up to ready", f"{ready:.2f} s", ready <= STARTUP_TARGET_S,
         f"<= {STARTUP_TARGET_S:g} s"),
        ("start-up + first append → its first API call", f"{ready + to_call[0]:.2f} s",
         ready + to_call[0] <= STARTUP_TARGET_S, f"<= {STARTUP_TARGET_S:g} s"),
        ("RSS when ready", f"{mb(rss_ready)} MB", rss_ready / 1e6 <= RSS_TARGET_MB,
         f"<= {RSS_TARGET_MB:g} MB"),
        (f"RSS after {appends} appends", f"{mb(rss_after)} MB",
         rss_after / 1e6 <= RSS_TARGET_MB, f"<= {RSS_TARGET_MB:g} MB"),
        ("peak RSS, start to exit", f"{mb(ended.max_rss)} MB",
         ended.max_rss / 1e6 <= RSS_TARGET_MB, f"<= {RSS_TARGET_MB:g} MB"),
        ("CPU per appended ID", f"{cpu * 1000:.1f} ms", cpu <= CPU_TARGET_S,
         f"<= {CPU_TARGET_S * 1000:g} ms"),
        ("append → first API call", f"median {median(to_call):.3f} s, max {max(to_call):.3f} s",
         None, "-"),
        ("append → archived",
         f"median {median(to_archived):.3f} s, max {max(to_archived):.3f} s", None, "-"),
        ("database round trips per archived task",
         f"{per_task - background:.1f} (+ {background:.1f} background)",
         per_task - background <= ROUND_TRIPS_AIM, f"aim <= {ROUND_TRIPS_AIM}"),
    ]  # fmt: skip
    for name, value, met, target in rows:
        table.add(name, value, target if met is None else f"{target}: {verdict(met)}")
    table.notes.append(
        f"the state is written directly with COPY, every listed ID archived (seeded in "
        f"{seeded:.1f} s, not measured); each appended ID is a tiny task of the bench server"
    )
    table.notes.append(
        "round trips are counted by a proxy between the daemon and the server during the "
        "appends, divided by their number (adding the ID, then every step of its task); the "
        "background (heartbeat and lease renewal every lease_s / 3, the look for tasks other "
        f"daemons changed every 2 s: {idle_rate:.2f} round trips/s idle) is measured apart "
        "and subtracted"
    )
    return table
