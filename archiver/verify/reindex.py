"""`reindex`: the state rebuilt from the manifests in storage, after a lost state or to adopt
an archive copied from elsewhere.

One pass: every `<task_id>/manifest.json` is read (a bounded pool of threads: local reads are
cheap, S3 GETs are round trips) and the state takes each task's phase from its manifest's
outcome, all rows in one transaction. A task the state calls archived, partial or failed whose
manifest is gone goes back to pending, for the engine to archive again: the state follows the
archive. An unreadable manifest leaves its task's row as it is (`verify` reports it).

What no manifest records stays as the state has it: a task the HTTP intake was given keeps that
mark (`via_http`), so `run` keeps it when the list does not name it. Into a new state (the old
one lost) every task comes as a listed one: SPEC's manifest does not say how a task was given.

Afterwards `backfill` and `run` ask the API nothing about the tasks the manifests show
archived or failed: their rows are no longer pending.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from archiver.config import Config
from archiver.kinds.records import Kind
from archiver.state.opening import open_state
from archiver.tasks.taskstate import PHASE_OF_OUTCOME, Phase
from archiver.verify.backends import open_view
from archiver.verify.check import WITH_MANIFEST, read_manifest
from archiver.verify.findings import Problem, is_task_folder
from archiver.verify.view import ArchiveView

_BATCH = 1000  # manifests read at once from S3

Row = tuple[str, Kind, Phase, str | None]  # task_id, kind, phase, the API's last status


@dataclass(frozen=True)
class ReindexReport:
    archive: str
    state: str  # the state as messages name it (a path, or a URL without its password)
    adopted: dict[Phase, int]  # tasks by the phase their manifest gave them
    reopened: int  # tasks the state said had a manifest, set back to pending
    unreadable: tuple[Problem, ...]
    seconds: float


def reindex(config: Config, *, clock: Callable[[], float] = time.time) -> ReindexReport:
    """Rebuild the state of `config` from its archive's manifests. UsageError when the state
    is in use (a daemon runs with it) or cannot be written; StorageAccessError when the
    storage cannot be read."""
    started = time.monotonic()
    view = open_view(config.storage)
    try:
        state = open_state(config.state)
        try:
            rows: list[Row] = []
            unreadable: list[Problem] = []
            for row, problem in _manifests(view):
                if row is not None:
                    rows.append(row)
                elif problem is not None:
                    unreadable.append(problem)
            now = clock()
            state.adopt(rows, now)
            kept = {row[0] for row in rows} | {p.task_id for p in unreadable}
            gone = [tid for tid in state.phases_in(WITH_MANIFEST) if tid not in kept]
            reopened = state.reopen(gone, WITH_MANIFEST, now)
        finally:
            state.close()
    finally:
        view.close()
    adopted = dict.fromkeys(PHASE_OF_OUTCOME.values(), 0)
    for _, _, phase, _ in rows:
        adopted[phase] += 1
    return ReindexReport(
        view.location,
        config.state.where,
        adopted,
        reopened,
        tuple(unreadable),
        time.monotonic() - started,
    )


def _manifests(view: ArchiveView) -> Iterator[tuple[Row | None, Problem | None]]:
    """Every task folder's row (or why its manifest cannot be used), in listing order. Local
    reads are parsed in this thread: parsing holds the GIL, and threads handing 100,000 small
    results over cost more than they save (16 s instead of 3 s). S3 GETs are round trips:
    `view.read_workers` at a time, in batches, so memory stays bounded."""
    names = (f.name for f in view.folders(None) if is_task_folder(f.name))
    if view.read_workers == 1:
        yield from (_row(view, name) for name in names)
        return
    with ThreadPoolExecutor(view.read_workers, thread_name_prefix="reindex") as pool:
        while batch := list(itertools.islice(names, _BATCH)):
            yield from pool.map(lambda name: _row(view, name), batch)


def _row(view: ArchiveView, task_id: str) -> tuple[Row | None, Problem | None]:
    doc, problem = read_manifest(view, task_id)
    if doc is None:
        return None, problem
    return (task_id, Kind(doc["kind"]), PHASE_OF_OUTCOME[doc["outcome"]], doc["status"]), None


def format_reindex(report: ReindexReport) -> str:
    total = sum(report.adopted.values())
    counts = ", ".join(f"{n} {phase.value}" for phase, n in report.adopted.items() if n)
    lines = [p.line() for p in report.unreadable]
    lines.append(
        f"{total} manifests in {report.archive} → {report.state}"
        + (f": {counts}" if counts else "")
        + f" ({report.seconds:.1f} s)"
    )
    if report.reopened:
        lines.append(
            f"  {report.reopened} tasks the state had as archived have no manifest: "
            "set back to pending, to be archived again"
        )
    if report.unreadable:
        lines.append(f"  {len(report.unreadable)} unreadable manifests left out")
    return "\n".join(lines)
