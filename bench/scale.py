"""Scale: start-up with a long task list, and a rerun over tasks already archived.

Start-up is the time from starting `suno-archiver backfill` to its first API call, as the bench
server sees it (the list is parsed, every ID is in the state and the engine is polling); the
run is then interrupted (SIGINT). Peak RSS is the child's own, from start to exit.

The rerun archives `rerun_tasks` tiny tasks once for real, then runs the same backfill again:
it must finish without one API call or download (counted by the server).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from bench.options import Options
from bench.procs import (
    BenchServer,
    Run,
    archiver_command,
    log_tail,
    run_child,
    write_config,
    write_ids,
)
from bench.report import Table, mb, verdict

RERUN_TARGET_S = 5.0
FIRST_CALL = "first API call"


def _startup(server: BenchServer, ids: Path, config: Path, work: Path, name: str) -> Run:
    calls_before = server.stats()[0]

    def watch() -> str | None:
        return FIRST_CALL if server.stats()[0] > calls_before else None

    return run_child(
        [*archiver_command(), "backfill", str(ids), "--config", str(config)],
        log=work / f"{name}.log",
        cwd=work,
        watch=watch,
        interrupt_on=FIRST_CALL,
    )


def _startup_rows(opts: Options, work: Path, table: Table) -> None:
    with BenchServer() as server:  # knows no task: every ID is "not found", which is fine here
        for label, count, runs in (
            ("1 ID (baseline)", 1, ("new state",)),
            (f"{opts.ids:,} IDs", opts.ids, ("new state", "state already holds them")),
        ):
            folder = work / f"startup-{count}"
            folder.mkdir()
            ids = write_ids(
                folder / "ids.txt",
                [hashlib.md5(f"scale:{i}".encode()).hexdigest() for i in range(count)],
            )
            config = write_config(folder / "archive.toml", server, archive=folder / "archive")
            for n, state in enumerate(runs):
                run = _startup(server, ids, config, folder, f"run{n}")
                if FIRST_CALL not in run.marks:
                    table.failures.append(
                        f"{label}: no API call before exit {run.returncode}: "
                        f"{log_tail(folder / f'run{n}.log')}"
                    )
                    continue
                table.add(
                    f"start-up, {label}, {state}",
                    f"{run.marks[FIRST_CALL]:.2f} s to the first API call",
                    mb(run.max_rss),
                    "-",
                    "-",
                )


def _counted_backfill(
    server: BenchServer, ids: Path, config: Path, folder: Path, table: Table, label: str
) -> tuple[Run, int, int]:
    """One backfill; returns it with the API calls and downloads the server saw meanwhile."""
    calls, downloads = server.stats()
    log = folder / "backfill.log"
    run = run_child(
        [*archiver_command(), "backfill", str(ids), "--config", str(config)], log=log, cwd=folder
    )
    calls_after, downloads_after = server.stats()
    if run.returncode != 0:
        table.failures.append(f"{label}: exited {run.returncode}: {log_tail(log)}")
    return run, calls_after - calls, downloads_after - downloads


def _rerun_rows(opts: Options, work: Path, table: Table) -> None:
    folder = work / "rerun"
    folder.mkdir()
    with BenchServer("--tiny", str(opts.rerun_tasks)) as server:
        ids = write_ids(folder / "ids.txt", server.tasks["tiny"])
        config = write_config(folder / "archive.toml", server, archive=folder / "archive")
        label = f"first run: archive {opts.rerun_tasks:,} tasks (baseline)"
        run, calls, downloads = _counted_backfill(server, ids, config, folder, table, label)
        table.add(label, f"{run.wall_s:.2f} s", mb(run.max_rss), f"{calls} / {downloads}", "-")
        for label, forget_state in (
            (f"rerun over {opts.rerun_tasks:,} archived tasks", False),
            ("rerun, state deleted (manifests trusted)", True),
        ):
            if forget_state:
                for path in folder.glob("archive.state.sqlite3*"):
                    path.unlink()
            run, calls, downloads = _counted_backfill(server, ids, config, folder, table, label)
            nothing = calls == downloads == 0
            if not nothing:
                table.failures.append(f"{label}: {calls} API calls, {downloads} downloads")
            target = f"0 calls, 0 downloads: {verdict(nothing)}"
            if not forget_state:  # the target is for the ordinary rerun
                target = f"< {RERUN_TARGET_S:g} s: {verdict(run.wall_s < RERUN_TARGET_S)}; {target}"
            table.add(
                label, f"{run.wall_s:.2f} s", mb(run.max_rss), f"{calls} / {downloads}", target
            )


def measure(opts: Options, work: Path) -> Table:
    table = Table(
        "Scale: a long task list, and a rerun over archived tasks",
        ["run", "time", "peak RSS MB", "API calls / downloads", "target"],
    )
    _startup_rows(opts, work, table)
    _rerun_rows(opts, work, table)
    table.notes.append(
        "start-up includes the Python start (see the 1-ID row); the run is interrupted at its "
        "first API call"
    )
    return table
