"""`python -m bench`: run the benchmarks and print one Markdown table per measurement.

Exit status 0 when every measurement ran and its checks held (targets missed are reported in
the tables, not by the exit status), 1 when a check failed (e.g. a rerun made an API call).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench import (
    browse,
    cluster,
    clusterwork,
    daemonscale,
    events,
    intake,
    machine,
    memory,
    polling,
    scale,
    throughput,
    verify,
)
from bench.options import MEASUREMENTS, ON_REQUEST, QUICK, Options
from bench.report import Table


def _sizes(text: str) -> tuple[float, ...]:
    sizes = tuple(sorted(float(part) for part in text.split(",")))
    if len(sizes) < 2 or sizes[0] <= 0:
        raise argparse.ArgumentTypeError("two or more sizes > 0, e.g. 10,100,1000")
    return sizes


def _parse(argv: list[str] | None) -> Options:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny sizes (the smoke test): < 60 s")
    p.add_argument(
        "--only",
        action="append",
        choices=MEASUREMENTS + ON_REQUEST,
        help="run this measurement (repeatable; cluster only when named: it needs PostgreSQL)",
    )
    p.add_argument("--workdir", type=Path, help="keep the files here (default: a temp folder)")
    sizes = p.add_argument_group("sizes (defaults: full run; --quick scales them down)")
    sizes.add_argument("--tasks", type=int, help="throughput: tasks of 2 tracks")
    sizes.add_argument("--seconds", type=float, help="throughput: track length (s)")
    sizes.add_argument("--parallel", type=int, help="throughput: files at once, both sides")
    sizes.add_argument("--rounds", type=int, help="throughput: runs of each side")
    sizes.add_argument(
        "--mp3-mb", type=_sizes, help="memory: MP3 sizes in MB, comma-separated (10,100,1000)"
    )
    sizes.add_argument("--poll-tasks", type=int, help="polling: simulated tasks")
    sizes.add_argument("--seed", type=int, help="polling: random seed of the finish times")
    sizes.add_argument("--ids", type=int, help="scale: IDs in the long task list")
    sizes.add_argument("--rerun-tasks", type=int, help="scale: archived tasks rerun")
    sizes.add_argument("--appends", type=int, help="scale: IDs appended to the daemon's list")
    sizes.add_argument(
        "--no-index",
        dest="index",
        action="store_false",
        default=None,
        help="scale: the daemon case without index.html (run keeps it current by default)",
    )
    sizes.add_argument(
        "--tracks", "--index-tracks", dest="index_tracks", type=int,
        help="browse: tracks in the archive (100,000; the targets are set at 1,000,000)",
    )  # fmt: skip
    sizes.add_argument("--intake-tasks", type=int, help="intake: music tasks called back about")
    sizes.add_argument(
        "--intake-scale", type=float, help="intake: time compression of the run (0.1)"
    )
    sizes.add_argument("--events-tasks", type=int, help="events: music tasks through the daemon")
    sizes.add_argument("--events-outbox", type=int, help="events: events the sender delivers")
    sizes.add_argument("--verify-tasks", type=int, help="verify: songs re-hashed locally")
    sizes.add_argument("--verify-manifests", type=int, help="verify: manifests reindexed")
    args = p.parse_args(argv)
    opts = QUICK if args.quick else Options()
    given = {k: v for k, v in vars(args).items() if v is not None and k not in ("quick", "only")}
    if args.only:
        given["only"] = tuple(dict.fromkeys(args.only))
    return replace(opts, **given)


def _measure(name: str, opts: Options, work: Path, curl: str | None) -> list[Table]:
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    if name == "throughput":
        return [throughput.measure(opts, folder, curl)]
    if name == "memory":
        return [memory.measure(opts, folder)]
    if name == "polling":
        return [polling.measure(opts)]
    if name == "intake":
        return [intake.measure(opts, folder)]
    if name == "verify":
        return [verify.measure(opts, folder)]
    if name == "browse":
        return [browse.measure(opts, folder)]
    if name == "events":
        return [events.measure(opts, folder)]
    if name == "cluster":
        return _cluster(opts, folder)
    return [scale.measure(opts, folder), daemonscale.measure(opts, folder)]


def _cluster(opts: Options, folder: Path) -> list[Table]:
    from archiver.sandbox.postgres import running_cluster

    with running_cluster() as pg:
        if pg is None:
            table = Table("Several daemons on one PostgreSQL state", ["measure", "value"])
            table.failures.append("PostgreSQL is not installed (apt-get install postgresql)")
            return [table]
        return [cluster.measure(opts, folder, pg), clusterwork.measure(opts, folder, pg)]


def main(argv: list[str] | None = None) -> int:
    opts = _parse(argv)
    started = time.perf_counter()
    failed = False
    with contextlib.ExitStack() as stack:
        if opts.workdir is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="suno-bench-")))
        else:
            work = opts.workdir.resolve()
            work.mkdir(parents=True, exist_ok=True)
        print(machine.describe(work), flush=True)
        curl = shutil.which("curl") if shutil.which("sha256sum") else None
        for name in opts.only:
            t0 = time.perf_counter()
            tables = _measure(name, opts, work, curl)
            tables[-1].notes.append(f"measured in {time.perf_counter() - t0:.0f} s")
            for table in tables:
                failed = failed or bool(table.failures)
                print(table.render(), flush=True)
    print(f"python -m bench: {time.perf_counter() - started:.0f} s in all", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
