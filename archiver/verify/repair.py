"""`verify --repair`: fix what can be fixed without risk, with the engine's own parts.

- A missing or corrupt file is fetched again (fresh URLs from record-info; when the API no
  longer knows the task, the URLs of the record the manifest kept), tagged and stored by the
  Archivist exactly as when it was archived, and the manifest is rewritten last. It must be
  the same bytes as before (its source SHA-256): other bytes are a conflict, reported, and
  nothing is stored.
- A corrupt file (or manifest) is first moved aside under `.suno-archiver-quarantine/<when>/`
  (S3: copied there, then removed), never deleted.
- A task the state calls archived whose manifest is gone is set back to pending, for the
  engine to archive again; a manifest the state does not know is added to it.
- Strays are left where they are: verify lists them, a person decides.

What cannot be repaired (an expired URL, a conflict) is listed, and the manifest keeps
describing the file as it was archived.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import structlog

from archiver.config import Config
from archiver.engine.assemble import Pipeline, open_pipeline
from archiver.errors import ApiError, ApiUnusable, StorageError
from archiver.fetch.archiving import Archived, NotRestored
from archiver.kinds import KINDS, decide, files_to_fetch, of
from archiver.kinds.base import ArchiveNow
from archiver.kinds.records import Kind, Record
from archiver.state.outbox import NewEvent
from archiver.tasks.events import REPAIRED
from archiver.tasks.manifest import manifest_key, stored_entries
from archiver.tasks.taskstate import PHASE_OF_OUTCOME, Phase
from archiver.verify.backends import open_view
from archiver.verify.check import WITH_MANIFEST, OnProgress, read_manifest, verify
from archiver.verify.findings import Category, Problem, VerifyReport, sort_problems
from archiver.verify.view import ArchiveView

log = structlog.get_logger()

_FILE_PROBLEMS = (Category.MISSING, Category.CORRUPT)


@dataclass(frozen=True, slots=True)
class Action:
    what: str  # restored | quarantined | pending | indexed | not-repaired
    path: str
    detail: str

    def line(self) -> str:
        return f"{self.what:<16} {self.path}  {self.detail}"


@dataclass(frozen=True)
class Repaired:
    found: VerifyReport  # the first pass
    actions: tuple[Action, ...]
    final: VerifyReport  # what is left: the first pass's other problems, the repairs rechecked


async def verify_and_repair(
    config: Config,
    *,
    only: list[str] | None = None,
    read_data: bool = False,
    on_progress: OnProgress | None = None,
) -> Repaired:
    """Verify, repair what was found, and verify the repaired tasks again. UsageError when the
    state is in use by a running daemon (repair writes it)."""
    view = await asyncio.to_thread(open_view, config.storage)
    try:
        found = await asyncio.to_thread(
            verify, view, config.state, only=only, read_data=read_data, on_progress=on_progress
        )
        if found.intact:
            return Repaired(found, (), found)
        async with open_pipeline(config) as pipeline:
            actions = await repair(pipeline, view, found.problems)
        touched = sorted({p.task_id for p in found.problems if _by_files(p) and p.task_id})
        recheck = (
            await asyncio.to_thread(verify, view, config.state, only=touched, read_data=read_data)
            if touched
            else None
        )
        left = await asyncio.to_thread(_still_there, view, found.problems, actions, touched)
    finally:
        await asyncio.to_thread(view.close)
    final = replace(
        found,
        problems=sort_problems([*left, *(recheck.problems if recheck else ())]),
        bytes_read=found.bytes_read + (recheck.bytes_read if recheck else 0),
        seconds=found.seconds + (recheck.seconds if recheck else 0),
    )
    return Repaired(found, tuple(actions), final)


async def repair(
    pipeline: Pipeline,
    view: ArchiveView,
    problems: Sequence[Problem],
    *,
    clock: Callable[[], float] = time.time,
) -> list[Action]:
    stamp = datetime.fromtimestamp(clock(), UTC).strftime("%Y%m%dT%H%M%SZ")
    by_task: dict[str, list[Problem]] = defaultdict(list)
    for problem in problems:
        if _by_files(problem) and problem.task_id:
            by_task[problem.task_id].append(problem)
    actions: list[Action] = []
    for task_id, found in by_task.items():
        with structlog.contextvars.bound_contextvars(task_id=task_id):
            actions += await _repair_task(pipeline, view, task_id, found, stamp, clock())
    actions += await _follow_archive(pipeline, view, problems, clock())
    return actions


def _by_files(problem: Problem) -> bool:
    """A problem repair fixes by fetching (a file, or a manifest that cannot be used)."""
    return problem.category in _FILE_PROBLEMS


async def _repair_task(
    pipeline: Pipeline,
    view: ArchiveView,
    task_id: str,
    found: list[Problem],
    stamp: str,
    now: float,
) -> list[Action]:
    actions: list[Action] = []
    mkey = manifest_key(task_id)
    doc = None if any(p.path == mkey for p in found) else await _manifest(view, task_id)
    for problem in found:
        if problem.category is Category.CORRUPT:
            try:
                kept = await asyncio.to_thread(view.quarantine, problem.path, stamp)
            except StorageError as exc:
                return [*actions, Action("not-repaired", problem.path, str(exc))]
            actions.append(Action("quarantined", problem.path, f"{problem.detail}; kept as {kept}"))
    bad = [p.path for p in found if p.path != mkey]
    entries = stored_entries(doc) if doc else {}
    expect = {
        stem_role: e.get("source_sha256") or e["sha256"]
        for stem_role, e in entries.items()
        if e["path"] in bad
    }
    try:
        record = await _record(pipeline, task_id, doc, set(expect))
    except ApiError as exc:
        if isinstance(exc, ApiUnusable):
            raise
        return [*actions, *_not_repaired(bad or [mkey], f"the API cannot give it again: {exc}")]
    task_failed = doc["outcome"] == "failed" if doc else _failed(record)
    try:
        result = await pipeline.archivist.archive(
            record, files_to_fetch(record), task_failed=task_failed, final=True, expect=expect
        )
    except (NotRestored, StorageError) as exc:
        log.warning("repair_failed", error=str(exc))
        return [*actions, *_not_repaired(bad or [mkey], str(exc))]
    kind, phase = of(record).kind, PHASE_OF_OUTCOME[result.outcome]
    pipeline.state.adopt(
        [(task_id, kind, phase, record.status)],
        now,
        _repaired(pipeline, task_id, kind, phase, result, now),
    )
    actions += [
        Action("restored", path, "fetched again: the same bytes as archived") for path in bad
    ]
    if not bad:
        actions.append(Action("restored", mkey, f"archived again: {result.outcome}"))
    actions += _not_repaired([task_id], "; ".join(result.problems)) if result.problems else []
    return actions


def _repaired(
    pipeline: Pipeline, task_id: str, kind: Kind, phase: Phase, result: Archived, now: float
) -> NewEvent | None:
    """The `task.repaired` event of a task whose files were put back, when events are kept."""
    events = pipeline.events
    if events is None or REPAIRED not in events.types:
        return None
    error = "; ".join(result.problems) or None
    return NewEvent(REPAIRED, task_id, kind.value, phase.value, error, now, events.urls)


async def _manifest(view: ArchiveView, task_id: str) -> dict[str, Any] | None:
    doc, _ = await asyncio.to_thread(read_manifest, view, task_id)
    return doc


async def _record(
    pipeline: Pipeline, task_id: str, doc: dict[str, Any] | None, wanted: set[tuple[str, str]]
) -> Record:
    """The task's record with URLs for every `wanted` file: a fresh one from the API, or the
    one the manifest kept (its URLs may still work when the API has forgotten the task)."""
    kind = Kind(doc["kind"]) if doc else None
    try:
        _, record = await pipeline.api.lookup(task_id, kind)
        if _covers(record, wanted) or doc is None:
            return record
    except ApiUnusable:
        raise
    except ApiError:
        if doc is None:
            raise
    kept = KINDS[Kind(doc["kind"])].parse(doc["raw"], task_id)
    if not _covers(kept, wanted):
        raise ApiError("no URL for it in the API's record, nor in the manifest's")
    return kept


def _covers(record: Record, wanted: set[tuple[str, str]]) -> bool:
    return wanted <= {(s.key_stem, s.role) for s in files_to_fetch(record)}


def _failed(record: Record) -> bool:
    """Whether the API says the task failed (what remains of it is archived all the same)."""
    decision = decide(record, age_s=0.0, give_up_after_s=float("inf"), last_status=None)
    return isinstance(decision, ArchiveNow) and decision.task_failed


def _not_repaired(paths: Iterable[str], why: str) -> list[Action]:
    return [Action("not-repaired", path, why) for path in paths]


async def _follow_archive(
    pipeline: Pipeline, view: ArchiveView, problems: Sequence[Problem], now: float
) -> list[Action]:
    """The state follows the archive: manifests it lacks are added, tasks it calls archived
    that have none go back to pending."""
    actions: list[Action] = []
    unknown = [p.task_id for p in problems if p.category is Category.UNKNOWN_TO_STATE]
    rows = []
    for task_id in unknown:
        doc = await _manifest(view, task_id)
        if task_id and doc is not None:
            phase = PHASE_OF_OUTCOME[doc["outcome"]]
            rows.append((task_id, Kind(doc["kind"]), phase, doc["status"]))
            actions.append(Action("indexed", manifest_key(task_id), f"added to the state: {phase}"))
    pipeline.state.adopt(rows, now)
    gone = [p.task_id for p in problems if p.category is Category.NO_MANIFEST and p.task_id]
    reopened = set(pipeline.state.phases_in(WITH_MANIFEST)) & set(gone)
    pipeline.state.reopen(reopened, WITH_MANIFEST, now)
    for task_id in gone:
        if task_id in reopened:
            actions.append(
                Action(
                    "pending", task_id, "set back to pending: `run` or `backfill` archives it again"
                )
            )
        else:
            actions.append(Action("not-repaired", task_id, "not archived: list it for `backfill`"))
    return actions


def _still_there(
    view: ArchiveView, found: Sequence[Problem], actions: Sequence[Action], touched: Sequence[str]
) -> list[Problem]:
    """The first pass's problems that repair did not touch and that still stand."""
    fixed = {a.path for a in actions if a.what in ("indexed", "pending")}
    left = []
    for problem in found:
        if problem.task_id in touched or problem.path in fixed:
            continue
        if problem.category is Category.STRAY and view.stat(problem.path) is None:
            continue  # a temp leftover the storage cleaned as it opened
        left.append(problem)
    return left
