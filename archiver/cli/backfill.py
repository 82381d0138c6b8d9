"""`backfill`: the engine fed once from a task-list file, run until every task has ended."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from archiver.browse.indexer import Indexer, refresh_logged
from archiver.config import Config
from archiver.engine.assemble import open_engine
from archiver.errors import StorageFull
from archiver.service.sender import EventSender, sender_for
from archiver.tasks.listfile import ListFile
from archiver.tasks.tasklist import BadLine, open_task_list, tasks_of
from archiver.tasks.taskstate import PHASE_LABELS, RETRYABLE, Phase, TaskState

# At the end, task events still due get this long to go out; what is left waits in the
# outbox for the next `run` (or `events --redeliver`).
EVENTS_FLUSH_S = 10.0

log = structlog.get_logger()

# Ended without everything archived: a new backfill tries these again.


@dataclass(frozen=True)
class BackfillReport:
    counts: Mapping[Phase, int]  # the listed tasks by phase
    not_archived: tuple[TaskState, ...]  # in list order
    bad_lines: tuple[BadLine, ...]
    stopped: StorageFull | None = None  # the run stopped taking tasks: the storage is full

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def complete(self) -> bool:
        """Every listed task archived (now or before) and no line skipped."""
        return not self.bad_lines and not self.not_archived


async def backfill(
    config: Config,
    ids_file: Path,
    *,
    on_start: Callable[[Mapping[Phase, int]], None] | None = None,
    on_change: Callable[[TaskState], None] | None = None,
    retry_base_s: float = 30.0,
    poll_time_scale: float = 1.0,
) -> BackfillReport:
    """Archive every task of `ids_file`. `on_start` gets the counts by phase, a mapping the
    engine keeps up to date as tasks change (`on_change`)."""
    changed = False  # a task changed: the index may lag behind
    sender: EventSender | None = None  # [events] urls: sent beside the engine

    def note_change(task: TaskState) -> None:
        nonlocal changed
        changed = True
        if sender is not None:
            sender.task_changed(task)
        if on_change is not None:
            on_change(task)

    # A missing list is said before anything opens; held open while it is read (a FIFO's
    # writer keeps a reader).
    with open_task_list(ids_file):
        async with open_engine(
            config,
            fatal_errors=True,
            on_change=note_change,
            retry_base_s=retry_base_s,
            poll_time_scale=poll_time_scale,
        ) as engine:
            bad: list[BadLine] = []
            await ListFile(ids_file).read(
                lambda items: engine.stage(tasks_of(items, bad)), engine.stage_bare
            )
            conflicts = engine.set_tasks(retry=RETRYABLE)
            bad.extend(c.as_bad_line() for c in conflicts)
            bad.sort(key=lambda line: line.line_no)
            for line in bad:
                log.warning(
                    "task_line_skipped", file=str(ids_file), line=line.line_no, reason=line.reason
                )
            if on_start is not None:
                on_start(engine.counts)
            stopped = None
            sender = sender_for(config, engine.state, engine.storage)
            sending = asyncio.create_task(sender.run()) if sender else None
            try:
                await engine.run(asyncio.Event(), until_done=True)
            except StorageFull as exc:  # the tasks not archived stay pending for the next run
                stopped = exc
            finally:
                if sender is not None and sending is not None:
                    sender.finish()  # what is due gets a last try; what fails waits for `run`
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(sending, EVENTS_FLUSH_S)
            if stopped is None and config.index.enabled:
                indexer = Indexer(engine.state, engine.storage)
                await refresh_logged(indexer, changed=changed)
            return BackfillReport(
                dict(engine.counts), tuple(engine.not_archived()), tuple(bad), stopped
            )


def format_summary(report: BackfillReport, archive: str) -> str:
    """The closing lines: counts, then every task that did not end archived, by name."""
    archived = report.counts.get(Phase.ARCHIVED, 0)
    lines = [f"{archived} of {report.total} tasks archived in {archive}"]
    for bad in report.bad_lines:
        lines.append(f"  skipped    line {bad.line_no}: {bad.reason}: {bad.text!r}")
    for task in report.not_archived:
        detail = task.last_error or task.last_status or ""
        lines.append(f"  {PHASE_LABELS[task.phase]:<10} {task.task_id}  {detail}".rstrip())
    return "\n".join(lines)
