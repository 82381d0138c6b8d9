"""Verify: `suno-archiver verify` of a local archive against `sha256sum -c` over the same files,
`reindex` of a large archive, and the S3 calls a verify costs.

Local: the archive is made by a real backfill; sha256sum checks a SHA256SUMS file written from
the manifests (the same files, the same bytes). The runs alternate (sha256sum, verify, verify,
sha256sum, …), both reading from a warm page cache, so that what is compared is the hashing
and the walk, not the disk.

Reindex: `verify_manifests` task folders, each with a real manifest (its task ID changed),
and a state deleted; then a backfill of every ID must ask the API nothing.

S3: a backfill into moto's server, then a verify in this process with a counting client:
requests by operation, per file, without and with --read-data.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from archiver.config import load_config
from archiver.storage import s3client
from archiver.tasks.manifest import stored_entries
from archiver.verify.check import verify
from archiver.verify.s3_view import S3View
from bench.options import Options
from bench.procs import (
    BenchServer,
    MotoS3,
    Run,
    archiver_command,
    log_tail,
    run_child,
    s3_env,
    write_config,
    write_ids,
)
from bench.report import MB, Table, mb, median, verdict

TARGET = 0.9  # local verify's speed against sha256sum -c over the same files
REINDEX_TARGET_S = 10.0


def _backfill(server: BenchServer, group: str, folder: Path, table: Table, **kw: Any) -> Path:
    """A backfilled archive of the server's `group` tasks; returns its config."""
    ids = write_ids(folder / "ids.txt", server.tasks[group])
    config = write_config(folder / "archive.toml", server, archive=folder / "archive", **kw)
    log = folder / "backfill.log"
    run = run_child(
        [*archiver_command(), "backfill", str(ids), "--config", str(config)],
        log=log,
        cwd=folder,
        env=s3_env() if "s3" in kw else None,
    )
    if run.returncode != 0:
        table.failures.append(
            f"backfill for the verify bench exited {run.returncode}: {log_tail(log)}"
        )
    return config


def _sums(archive: Path) -> tuple[Path, int, int]:
    """SHA256SUMS of every file the manifests name: (its path, files, bytes)."""
    lines, total = [], 0
    for manifest in sorted(archive.glob("*/manifest.json")):
        for entry in stored_entries(json.loads(manifest.read_bytes())).values():
            lines.append(f"{entry['sha256']}  {entry['path']}\n")
            total += entry["bytes"]
    sums = archive.parent / "SHA256SUMS"
    sums.write_text("".join(lines))
    return sums, len(lines), total


def _local_rows(opts: Options, work: Path, table: Table) -> None:
    folder = work / "local"
    folder.mkdir()
    with BenchServer("--songs", str(opts.verify_tasks), "--seconds", str(opts.seconds)) as server:
        config = _backfill(server, "songs", folder, table)
    if table.failures:
        return
    archive = folder / "archive"
    sums, files, size = _sums(archive)
    theirs: list[Run] = []
    ours: list[Run] = []
    for n in range(opts.rounds):
        sides = ("sha256sum", "verify") if n % 2 == 0 else ("verify", "sha256sum")
        for side in sides:
            log = folder / f"{side}-{n}.log"
            if side == "sha256sum":
                run = run_child(["sha256sum", "-c", "--quiet", str(sums)], log=log, cwd=archive)
                theirs.append(run)
            else:
                argv = [*archiver_command(), "verify", "--config", str(config)]
                run = run_child(argv, log=log, cwd=folder)
                ours.append(run)
            if run.returncode != 0:
                table.failures.append(f"{side} exited {run.returncode}: {log_tail(log)}")
                return
    ratios = [t.wall_s / o.wall_s for t, o in zip(theirs, ours, strict=True)]
    ratio = median(ratios)
    wall = median([r.wall_s for r in theirs])
    table.add("sha256sum -c (baseline)", files, mb(size), f"{wall:.2f}",
              f"{size / wall / MB:.0f}", "-", "1")  # fmt: skip
    wall = median([r.wall_s for r in ours])
    table.add("suno-archiver verify (local)", files, mb(size), f"{wall:.2f}",
              f"{size / wall / MB:.0f}", mb(max(r.max_rss for r in ours)),
              f"{ratio:.2f} (target >= {TARGET}: {verdict(ratio >= TARGET)})")  # fmt: skip
    table.notes += [
        "vs sha256sum: the median of the rounds' ratios of wall time (sha256sum / verify): "
        + ", ".join(f"{r:.3f}" for r in ratios),
        f"CPU time (median): sha256sum {median([r.cpu_s for r in theirs]):.2f} s, verify "
        f"{median([r.cpu_s for r in ours]):.2f} s (verify hashes in "
        f"{min(4, os.cpu_count() or 1)} threads; sha256sum in one)",
        "verify's wall time is the whole command: Python start-up, the walk, every manifest, "
        "every file re-hashed, the state read",
    ]


def _reindex_rows(opts: Options, work: Path, table: Table) -> None:
    folder = work / "reindex"
    folder.mkdir()
    with BenchServer("--tiny", "1") as server:
        _backfill(server, "tiny", folder, table)
        archive = folder / "archive"
        [template_path] = archive.glob("*/manifest.json")
        template = template_path.read_text()
        original = json.loads(template)["task_id"]
        ids = [
            hashlib.md5(f"reindex:{i}".encode()).hexdigest() for i in range(opts.verify_manifests)
        ]
        for task_id in ids:
            (archive / task_id).mkdir()
            (archive / task_id / "manifest.json").write_text(template.replace(original, task_id))
        for path in folder.glob("archive.state.sqlite3*"):
            path.unlink()
        config = folder / "archive.toml"
        log = folder / "reindex.log"
        run = run_child(
            [*archiver_command(), "reindex", "--config", str(config)], log=log, cwd=folder
        )
        if run.returncode != 0:
            table.failures.append(f"reindex exited {run.returncode}: {log_tail(log)}")
            return
        calls, downloads = server.stats()
        ids_file = write_ids(folder / "all.txt", [original, *ids])
        log = folder / "backfill-after.log"
        after = run_child(
            [*archiver_command(), "backfill", str(ids_file), "--config", str(config)],
            log=log,
            cwd=folder,
        )
        calls_after, downloads_after = server.stats()
    asked = calls_after - calls + downloads_after - downloads
    if after.returncode != 0 or asked:
        table.failures.append(f"backfill after reindex: exit {after.returncode}, {asked} requests")
    n = f"{len(ids) + 1:,}"
    fast = run.wall_s < REINDEX_TARGET_S
    table.add(f"reindex {n} manifests (state deleted)", n, "-", f"{run.wall_s:.2f}", "-",
              mb(run.max_rss), f"< {REINDEX_TARGET_S:g} s: {verdict(fast)}")  # fmt: skip
    table.add(f"then backfill of the {n} IDs", n, "-", f"{after.wall_s:.2f}", "-",
              mb(after.max_rss), f"0 API calls, 0 downloads: {verdict(not asked)}")  # fmt: skip


def _s3_rows(opts: Options, work: Path, table: Table) -> None:
    folder = work / "s3"
    folder.mkdir()
    with (
        BenchServer("--tiny", str(opts.s3_verify_tasks)) as server,
        MotoS3("verify-bench", folder / "moto.log") as s3,
    ):
        config_path = _backfill(server, "tiny", folder, table, s3=s3)
        if table.failures:
            return
        os.environ.update(s3_env())
        config = load_config(config_path, os.environ, read_key=False)
        for label, read_data in (
            ("verify (S3: HEAD a file)", False),
            ("verify --read-data (S3)", True),
        ):
            seen: Counter[str] = Counter()
            client = s3client.build_client(config.storage)
            client.meta.events.register(
                "before-send.s3",
                lambda event_name, seen=seen, **_: seen.update([event_name.rsplit(".", 1)[-1]]),
            )
            view = S3View(config.storage, client=client)
            started = time.monotonic()
            try:
                report = verify(view, config.state.path, read_data=read_data)
            finally:
                view.close()
            wall = time.monotonic() - started
            if not report.intact:
                table.failures.append(f"{label}: {len(report.problems)} problems")
            per_file = ", ".join(f"{op} {n / report.files:.2f}" for op, n in sorted(seen.items()))
            table.add(label, report.files, mb(report.bytes_read), f"{wall:.2f}", "-", "-",
                      f"requests a file: {per_file}")  # fmt: skip


def measure(opts: Options, work: Path) -> Table:
    table = Table(
        "Verify: local against sha256sum -c, reindex, S3 requests",
        ["run", "files", "MB read", "wall s", "MB/s", "peak RSS MB", "vs baseline / target"],
    )
    _local_rows(opts, work, table)
    _reindex_rows(opts, work, table)
    _s3_rows(opts, work, table)
    return table
