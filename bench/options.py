"""What to measure and how big: the full defaults, and `--quick` (the smoke test's sizes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MEASUREMENTS = (
    "throughput", "memory", "polling", "scale", "intake", "verify", "browse", "events",
)  # fmt: skip
# Run only when asked (`--only cluster`): it needs Debian's PostgreSQL (initdb, pg_ctl).
ON_REQUEST = ("cluster",)


@dataclass(frozen=True)
class Options:
    only: tuple[str, ...] = MEASUREMENTS
    workdir: Path | None = None  # None: a temporary folder, removed afterwards
    # throughput
    # music tasks of two tracks each: 200 (1.2 GB) measures the sustained rate; at 50 the
    # archiver's fixed ~0.3 s of start-up is a fifth of its wall time (docs/benchmarks.md)
    tasks: int = 200
    seconds: float = 180.0  # length of each track (128 kbit/s: 2.9 MB for 3 minutes)
    parallel: int = 4  # files at once, both sides ([download] concurrency is 4 by default)
    rounds: int = 5  # alternating runs of each side; the median is reported
    # memory: one task of one MP3 per size (100 MB: above the 64 MiB S3 multipart threshold)
    mp3_mb: tuple[float, ...] = (10.0, 100.0, 1000.0)
    # polling
    poll_tasks: int = 600
    seed: int = 1
    # scale
    ids: int = 100_000
    rerun_tasks: int = 10_000
    appends: int = 100  # IDs appended one at a time to the daemon's list
    index: bool = True  # the daemon case keeps index.html current, as `run` does by default
    # intake: music tasks called back about, and the time compression of the run
    intake_tasks: int = 30
    intake_scale: float = 0.1
    # verify: songs of two `seconds` tracks re-hashed (100: 0.6 GB), manifests reindexed,
    # tiny tasks verified in a bucket
    verify_tasks: int = 100
    verify_manifests: int = 100_000
    s3_verify_tasks: int = 50
    # browse: tracks on the page (music tasks of two), and whether chromium opens it
    index_tracks: int = 100_000
    open_page: bool = True
    # events: music tasks the daemon archives with [events] (and without), and the outbox the
    # sender delivers alone
    events_tasks: int = 20
    events_outbox: int = 100_000
    # cluster: archived tasks in the PostgreSQL state, tasks (of two tracks this long) archived
    # by one daemon then two, and the lease of the takeover case
    cluster_ids: int = 1_000_000
    cluster_tasks: int = 200
    cluster_seconds: float = 8.0  # 128 KB a track: 0.5 s at the bench server's capped rate
    cluster_lease_s: float = 10.0


QUICK = Options(
    tasks=4,
    rounds=1,
    mp3_mb=(1.0, 20.0),
    poll_tasks=60,
    ids=5_000,
    rerun_tasks=100,
    appends=3,
    intake_tasks=3,
    intake_scale=0.02,
    verify_tasks=2,
    verify_manifests=500,
    s3_verify_tasks=3,
    index_tracks=1_000,
    open_page=False,
    events_tasks=2,
    events_outbox=2_000,
    cluster_ids=2_000,
    cluster_tasks=8,
    cluster_seconds=2.0,
    cluster_lease_s=5.0,
)
