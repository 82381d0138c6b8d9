"""Memory: the peak RSS of `suno-archiver backfill` archiving one MP3 of each size, to local
disk and to S3 (moto's server mode). Flat means a ten times bigger file costs no more memory.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.options import Options
from bench.procs import (
    BenchServer,
    MotoS3,
    archiver_command,
    log_tail,
    run_child,
    s3_env,
    write_config,
    write_ids,
)
from bench.report import MB, Table, mb, verdict

TARGET_MB = 100.0
FLAT_MB = 5.0  # the biggest file may cost at most this much more than the next size down


def _flatness(storage: str, peaks: dict[int, int]) -> str:
    sizes = sorted(peaks)
    smallest, below, biggest = sizes[0], sizes[-2], sizes[-1]
    growth = peaks[biggest] - peaks[below]
    note = (
        f"{storage}: {mb(below)} → {mb(biggest)} MB costs {growth / MB:+.1f} MB "
        f"(flat: within {FLAT_MB:g} MB: {verdict(growth <= FLAT_MB * MB)})"
    )
    if smallest != below:
        overall = peaks[biggest] - peaks[smallest]
        note += f"; {mb(smallest)} → {mb(biggest)} MB: {overall / MB:+.1f} MB"
    return note


def measure(opts: Options, work: Path) -> Table:
    sizes = [round(size * MB) for size in opts.mp3_mb]
    table = Table(
        "Memory: peak RSS archiving one MP3 of " + ", ".join(mb(s) for s in sizes) + " MB",
        ["storage", "MP3 MB", "peak RSS MB", "wall s", "target"],
    )
    floor = run_child([*archiver_command(), "--version"], log=work / "version.log", cwd=work)
    table.add("(suno-archiver --version: imports only)", "-", mb(floor.max_rss), "-", "baseline")
    single = [arg for size in sizes for arg in ("--single", str(size))]
    with BenchServer(*single) as server, MotoS3("bench", work / "moto.log") as s3:
        task_of_size = dict(zip(sizes, server.tasks["single"], strict=True))
        for storage in ("local", "s3"):
            peaks: dict[int, int] = {}
            for size, task_id in task_of_size.items():
                folder = work / f"{storage}-{size}"
                folder.mkdir()
                ids = write_ids(folder / "ids.txt", [task_id])
                config = write_config(
                    folder / "archive.toml",
                    server,
                    archive=folder / "archive",
                    s3=s3 if storage == "s3" else None,
                )
                log = folder / "backfill.log"
                run = run_child(
                    [*archiver_command(), "backfill", str(ids), "--config", str(config)],
                    log=log,
                    cwd=folder,
                    env=s3_env(),
                )
                shutil.rmtree(folder / "archive", ignore_errors=True)  # the disk space back
                if run.returncode != 0:
                    table.failures.append(
                        f"{storage}, {mb(size)} MB: backfill exited {run.returncode}: "
                        f"{log_tail(log)}"
                    )
                    continue
                peaks[size] = run.max_rss
                ok = run.max_rss < TARGET_MB * MB
                table.add(
                    storage,
                    mb(size),
                    mb(run.max_rss),
                    f"{run.wall_s:.1f}",
                    f"< {TARGET_MB:g} MB: {verdict(ok)}",
                )
            if len(peaks) == len(sizes):
                table.notes.append(_flatness(storage, peaks))
    table.notes.append(
        "peak RSS: the child's own ru_maxrss (see bench/launch.py), from start-up to exit"
    )
    return table
