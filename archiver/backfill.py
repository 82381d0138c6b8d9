"""`backfill`: the engine fed once from a task-list file, run until every task has ended."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from archiver.assemble import open_engine
from archiver.browse.indexer import Indexer, refresh_logged
from archiver.config import Config
from archiver.errors import StorageFull
from archiver.state import Phase, TaskState
from archiver.status import PHASE_LABELS
from archiver.tasklist import BadLine, read_task_list

log = structlog.get_logger()

# Ended without everything archived: a new backfill tries these again.
RETRYABLE = (Phase.PARTIAL, Phase.NOT_FOUND, Phase.TIMED_OUT)


@dataclass(frozen=True)
class BackfillReport:
    tasks: tuple[TaskState, ...]
    bad_lines: tuple[BadLine, ...]
    stopped: StorageFull | None = None  # the run stopped taking tasks: the storage is full

    @property
    def complete(self) -> bool:
        """Every listed task archived (now or before) and no line skipped."""
        return not self.bad_lines and all(t.phase is Phase.ARCHIVED for t in self.tasks)


async def backfill(
    config: Config,
    ids_file: Path,
    *,
    on_start: Callable[[Mapping[str, TaskState]], None] | None = None,
    on_change: Callable[[TaskState], None] | None = None,
    retry_base_s: float = 30.0,
    poll_time_scale: float = 1.0,
) -> BackfillReport:
    tasklist = read_task_list(ids_file)
    for bad in tasklist.bad_lines:
        log.warning("task_line_skipped", file=str(ids_file), line=bad.line_no, reason=bad.reason)
    async with open_engine(
        config,
        fatal_errors=True,
        on_change=on_change,
        retry_base_s=retry_base_s,
        poll_time_scale=poll_time_scale,
    ) as engine:
        engine.set_tasks(tasklist.tasks, retry=RETRYABLE)
        if on_start is not None:
            on_start(engine.tasks)
        try:
            await engine.run(asyncio.Event(), until_done=True)
        except StorageFull as exc:  # the tasks not archived stay pending for the next run
            return BackfillReport(tuple(engine.tasks.values()), tasklist.bad_lines, exc)
        if config.index.enabled:
            await refresh_logged(Indexer(engine.state, engine.storage))
        return BackfillReport(tuple(engine.tasks.values()), tasklist.bad_lines)


def format_summary(report: BackfillReport, archive: str) -> str:
    """The closing lines: counts, then every task that did not end archived, by name."""
    archived = sum(t.phase is Phase.ARCHIVED for t in report.tasks)
    lines = [f"{archived} of {len(report.tasks)} tasks archived in {archive}"]
    for bad in report.bad_lines:
        lines.append(f"  skipped    line {bad.line_no}: {bad.reason}: {bad.text!r}")
    for task in report.tasks:
        if task.phase is not Phase.ARCHIVED:
            detail = task.last_error or task.last_status or ""
            lines.append(f"  {PHASE_LABELS[task.phase]:<10} {task.task_id}  {detail}".rstrip())
    return "\n".join(lines)
