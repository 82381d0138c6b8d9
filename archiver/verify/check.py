"""`verify`: every manifest in storage, every file it names, every file none names; then the
state, read-only, for the manifests it does not know and the tasks it calls archived that have
none.

Folders are checked in a bounded pool of threads (the view says how many are worth it), one
folder a thread, streamed from the listing so memory follows the pool, not the archive.

Beside a running daemon nothing is reported that is only half done: the state is read after
the walk (a task archived meanwhile is known by then); a folder without a manifest whose task
the state calls pending is being archived, not strays; and a problem that could be the walk
racing a writer (no manifest, files the manifest does not name) is looked at again before it
is reported.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from archiver.state.opening import StateRef, read_state, state_exists
from archiver.state.protocol import Store
from archiver.storage.base import check_key
from archiver.storage.tempdir import TEMP_NAME
from archiver.tasks.manifest import decode_manifest, manifest_key, stored_entries
from archiver.tasks.taskstate import PHASE_OF_OUTCOME, Phase
from archiver.verify.findings import (
    Category,
    Listed,
    Problem,
    Tally,
    VerifyReport,
    check_entry,
    is_ours,
    is_task_folder,
    leftover,
    sort_problems,
    stray,
)
from archiver.verify.view import ArchiveView, Folder

# Phases whose task has a manifest (SPEC: written last, so it exists once the phase is set).
WITH_MANIFEST = tuple(PHASE_OF_OUTCOME.values())

# What the caller is told as folders are done: (folders done, folders listed so far, tally).
OnProgress = Callable[[int, int, Tally], None]


@dataclass
class _FolderResult:
    name: str
    manifest: dict[str, Any] | None = None  # the readable manifest, if any
    unreadable: bool = False  # a manifest is there but cannot be used
    problems: list[Problem] = field(default_factory=list)
    unnamed: list[Listed] = field(default_factory=list)  # files no manifest names (yet)


def verify(
    view: ArchiveView,
    state_ref: StateRef | None,
    *,
    only: Collection[str] | None = None,
    asked: bool = True,
    read_data: bool = False,
    on_progress: OnProgress | None = None,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.time,
) -> VerifyReport:
    """Check the archive `view` shows against its manifests and the state `state_ref` names
    (None, or a SQLite path with no file: every manifest is unknown to it). `only`: these task IDs;
    `asked`: each of them should have a manifest (unless the state has it pending), not only
    those the state calls archived. `stop` set: the walk ends early (the daemon stops)."""
    started = time.monotonic()
    checker = _Checker(view, read_data=read_data, now=clock(), on_progress=on_progress, stop=stop)
    results = list(checker.run(view.folders(only)))
    state_found = state_exists(state_ref)
    state_ctx: AbstractContextManager[Store | None] = (
        read_state(state_ref) if state_found and state_ref is not None else nullcontext(None)
    )
    with state_ctx as state:
        problems = checker.tally.problems + _against_state(view, results, state, only, asked)
    return VerifyReport(
        archive=view.location,
        manifests=checker.tally.manifests,
        files=checker.tally.files,
        bytes_read=checker.tally.bytes_read,
        seconds=time.monotonic() - started,
        problems=sort_problems(problems),
        state_found=state_found,
    )


class _Checker:
    def __init__(
        self,
        view: ArchiveView,
        *,
        read_data: bool,
        now: float,
        on_progress: OnProgress | None,
        stop: threading.Event | None,
    ) -> None:
        self._stop = stop
        self._view = view
        self._read_data = read_data
        self._now = now
        self._on_progress = on_progress
        self._lock = threading.Lock()
        self._done = self._listed = 0
        self.tally = Tally()

    def run(self, folders: Iterable[Folder]) -> Iterator[_FolderResult]:
        """Each folder's result, checked `view.workers` at a time (and as many listed ahead)."""
        workers = self._view.workers
        with ThreadPoolExecutor(workers, thread_name_prefix="verify") as pool:
            running: set[Future[_FolderResult]] = set()
            try:
                for folder in folders:
                    if self._stop is not None and self._stop.is_set():
                        break
                    if len(running) >= 2 * workers:
                        done, running = wait(running, return_when=FIRST_COMPLETED)
                        yield from (f.result() for f in done)
                    self._listed += 1
                    running.add(pool.submit(self._folder, folder))
                for future in running:
                    yield future.result()
            finally:
                for future in running:
                    future.cancel()

    def _folder(self, folder: Folder) -> _FolderResult:
        files = folder.files if folder.files is not None else self._view.list_folder(folder.name)
        result = _FolderResult(folder.name)
        if folder.name == TEMP_NAME:
            result.problems = [p for f in files.values() if (p := leftover(f, self._now))]
        elif not is_task_folder(folder.name):
            result.problems = [stray(f, None) for f in files.values() if not is_ours(f.key)]
        else:
            self._task_folder(folder.name, files, result)
        with self._lock:
            self._done += 1
            self.tally.problems += result.problems
            if self._on_progress is not None:
                self._on_progress(self._done, self._listed, self.tally)
        return result

    def _task_folder(self, task_id: str, files: dict[str, Listed], result: _FolderResult) -> None:
        key = manifest_key(task_id)
        if files.pop(key, None) is None:
            result.unnamed = list(files.values())
            return
        doc, problem = read_manifest(self._view, task_id)
        with self._lock:
            self.tally.manifests += 1
        if doc is None:
            result.unreadable = True
            if problem is not None:
                result.problems.append(problem)
            return
        result.manifest = doc
        for entry in stored_entries(doc).values():
            problem = self._file(task_id, entry, files)
            if problem is not None:
                result.problems.append(problem)
        result.unnamed = list(files.values())

    def _file(
        self, task_id: str, entry: dict[str, Any], files: dict[str, Listed]
    ) -> Problem | None:
        path = entry["path"]
        try:
            check_key(path)
        except ValueError:
            return Problem(
                Category.CORRUPT, manifest_key(task_id), f"names an unsafe path {path!r}", task_id
            )
        listed = files.pop(path, None) if path in files else self._view.stat(path)
        try:
            seen = (
                None
                if listed is None
                else self._view.observe(entry, listed, read_data=self._read_data)
            )
        except OSError as exc:  # local: a file the disk cannot read back (EIO)
            detail = f"cannot be read: {exc.strerror or exc}"
            return Problem(Category.CORRUPT, path, detail, task_id)
        with self._lock:
            self.tally.files += 1
            self.tally.bytes_read += seen.bytes_read if seen else 0
        return check_entry(entry, seen, task_id)


def read_manifest(view: ArchiveView, task_id: str) -> tuple[dict[str, Any] | None, Problem | None]:
    """The task's manifest, or why it cannot be used (no problem when there is none)."""
    key = manifest_key(task_id)
    data = view.read(key)
    if data is None:
        return None, None
    try:
        doc = decode_manifest(data)
    except ValueError as exc:
        return None, Problem(Category.CORRUPT, key, f"unreadable: {exc}", task_id)
    if doc["task_id"] != task_id:
        detail = f"is the manifest of task {doc['task_id']!r}"
        return None, Problem(Category.CORRUPT, key, detail, task_id)
    return doc, None


def _against_state(
    view: ArchiveView,
    results: list[_FolderResult],
    state: Store | None,
    only: Collection[str] | None,
    asked: bool,
) -> list[Problem]:
    """What the walk found, against the state read now (after the walk)."""
    problems: list[Problem] = []
    task_folders = {r.name: r for r in results if is_task_folder(r.name)}
    phases = {tid: s.phase for tid, s in state.get_many(task_folders).items()} if state else {}
    for name, result in task_folders.items():
        phase = phases.get(name)
        if result.manifest is not None:
            if phase is None:
                detail = "the state has no row for this task (`reindex` adds it)"
                problems.append(
                    Problem(Category.UNKNOWN_TO_STATE, manifest_key(name), detail, name)
                )
            problems += _strays(view, name, result)
        elif not result.unreadable and phase not in (Phase.PENDING, *WITH_MANIFEST):
            problems += _strays(view, name, result)  # unless a manifest came meanwhile
    # Tasks that should have a manifest: those the state says were archived, those asked for.
    claimed: dict[str, Phase | None] = dict(state.phases_in(WITH_MANIFEST)) if state else {}
    if only is not None:
        known = {tid: s.phase for tid, s in state.get_many(only).items()} if state else {}
        claimed = {
            tid: known.get(tid)
            for tid in only
            if known.get(tid) in WITH_MANIFEST or (asked and known.get(tid) is not Phase.PENDING)
        }
    for task_id, phase in claimed.items():
        result = task_folders.get(task_id)
        if result is not None and (result.manifest is not None or result.unreadable):
            continue
        if view.read(manifest_key(task_id)) is None:  # none written since the walk passed
            said = f"the state says {phase}" if phase else "asked for"
            detail = f"{said}, storage has no manifest"
            if result is not None and result.unnamed:
                detail += f" ({len(result.unnamed)} files in its folder)"
            problems.append(Problem(Category.NO_MANIFEST, task_id, detail, task_id))
    return problems


def _strays(view: ArchiveView, task_id: str, result: _FolderResult) -> list[Problem]:
    """The folder's files no manifest names, as its manifest says now: a writer may have
    written a new one (naming more files) since the walk read it."""
    if not result.unnamed:
        return []
    doc, _ = read_manifest(view, task_id)
    named = {e["path"] for e in stored_entries(doc).values()} if doc else set()
    return [stray(f, task_id) for f in result.unnamed if f.key not in named]
