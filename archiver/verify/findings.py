"""What `verify` finds, decided without I/O: a file's entry against what storage shows, which
names in the archive are the archiver's own, and the report's lines and JSON.

The categories are the SPEC's: `missing` (a manifest names a file storage lacks), `corrupt`
(size or SHA-256 differ, or the manifest itself is unreadable or another task's), `stray` (a
file no manifest names, or a temp file a run left more than a day ago), `no-manifest` (the
state calls the task archived, partial or failed, and its manifest is gone), `unknown-to-state`
(a manifest the state has no row for).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from archiver.kinds.records import is_id
from archiver.storage.tempdir import LOCK_NAME, TEMP_NAME
from archiver.tasks.manifest import manifest_key

QUARANTINE_NAME = ".suno-archiver-quarantine"
ROOT_VIEWS = frozenset({"index.html", "playlist.m3u8"})  # written at the root by `index`
VIEW_FOLDERS = frozenset({"browse", "playlists"})  # its shard files and playlists, likewise
# A state kept inside the archive folder (when the archive is a filesystem root): its files.
_STATE_PREFIX = ".suno-archiver.state.sqlite3"
LEFTOVER_AFTER_S = 86400.0  # a temp file younger than this may belong to a running archiver


class Category(StrEnum):
    MISSING = "missing"
    CORRUPT = "corrupt"
    STRAY = "stray"
    NO_MANIFEST = "no-manifest"
    UNKNOWN_TO_STATE = "unknown-to-state"


@dataclass(frozen=True, slots=True)
class Problem:
    category: Category
    path: str  # archive-relative: the file, the manifest, or the task's folder
    detail: str
    task_id: str | None = None

    def line(self) -> str:
        return f"{self.category.value:<16} {self.path}  {self.detail}"


@dataclass(frozen=True, slots=True)
class Listed:
    """A file as storage lists it."""

    key: str  # archive-relative, "/"-separated
    size: int
    mtime: float  # epoch seconds


@dataclass(frozen=True, slots=True)
class Observed:
    """What storage says of a file's content. `sha256` None: storage reports none we can
    compare (an S3 object another tool wrote without ours) and it was not read."""

    size: int
    sha256: str | None
    bytes_read: int = 0


def check_entry(entry: Mapping[str, Any], seen: Observed | None, task_id: str) -> Problem | None:
    """A stored file's manifest entry against what storage shows of it (None: nothing there)."""
    path = entry["path"]
    if seen is None:
        return Problem(Category.MISSING, path, f"named by {manifest_key(task_id)}", task_id)
    if seen.size != entry["bytes"]:
        detail = f"{seen.size} bytes, the manifest says {entry['bytes']}"
        return Problem(Category.CORRUPT, path, detail, task_id)
    if seen.sha256 is not None and seen.sha256 != entry["sha256"].lower():
        detail = f"sha256 {seen.sha256}, the manifest says {entry['sha256']}"
        return Problem(Category.CORRUPT, path, detail, task_id)
    return None


def is_ours(key: str) -> bool:
    """Whether `key` is one of the archiver's own files that no manifest names: the root's
    index and playlist, the browse page's shard files and playlists, the quarantine, the temp
    folder (its leftovers: see `leftover`), the lock, a state kept in the archive folder."""
    top, _, rest = key.partition("/")
    if not rest:
        return key in ROOT_VIEWS or key == LOCK_NAME or key.startswith(_STATE_PREFIX)
    return top in (QUARANTINE_NAME, TEMP_NAME) or top in VIEW_FOLDERS


def is_task_folder(name: str) -> bool:
    """Whether a folder at the root is a task's: named by an ID, and not the browse page's."""
    return bool(name) and is_id(name) and name not in VIEW_FOLDERS


def leftover(listed: Listed, now: float) -> Problem | None:
    """A file in the temp folder: a leftover once no run can still be using it."""
    name = listed.key.rpartition("/")[2]
    if name == LOCK_NAME or now - listed.mtime < LEFTOVER_AFTER_S:
        return None
    days = (now - listed.mtime) / 86400
    return Problem(Category.STRAY, listed.key, f"temp file left by a run {days:.0f} days ago")


def stray(listed: Listed, task_id: str | None) -> Problem:
    return Problem(Category.STRAY, listed.key, "no manifest names it", task_id)


@dataclass
class Tally:
    """Counts for the summary, added to from the checking threads (under the caller's lock)."""

    manifests: int = 0
    files: int = 0
    bytes_read: int = 0
    problems: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class VerifyReport:
    archive: str
    manifests: int
    files: int
    bytes_read: int
    seconds: float
    problems: tuple[Problem, ...]
    state_found: bool

    @property
    def intact(self) -> bool:
        return not self.problems

    def counts(self) -> dict[Category, int]:
        found = Counter(p.category for p in self.problems)
        return {c: found[c] for c in Category}


def sort_problems(problems: Iterable[Problem]) -> tuple[Problem, ...]:
    return tuple(sorted(problems, key=lambda p: (p.path, p.category)))


def format_report(report: VerifyReport) -> str:
    """One line per problem, then the summary."""
    lines = [p.line() for p in report.problems]
    mib = report.bytes_read / (1024 * 1024)
    checked = (
        f"{report.manifests} manifests, {report.files} files, {mib:.1f} MiB read "
        f"in {report.seconds:.1f} s"
    )
    if report.intact:
        lines.append(f"{report.archive}: intact ({checked})")
    else:
        counts = ", ".join(f"{n} {c.value}" for c, n in report.counts().items() if n)
        lines.append(f"{report.archive}: {len(report.problems)} problems: {counts} ({checked})")
    if not report.state_found:
        lines.append("  no state found: every manifest is unknown to it (`reindex` rebuilds it)")
    return "\n".join(lines)


def report_json(report: VerifyReport) -> dict[str, Any]:
    return {
        "archive": report.archive,
        "intact": report.intact,
        "manifests": report.manifests,
        "files": report.files,
        "bytes_read": report.bytes_read,
        "seconds": round(report.seconds, 3),
        "state_found": report.state_found,
        "counts": {c.value: n for c, n in report.counts().items()},
        "problems": [
            {"category": p.category.value, "path": p.path, "task_id": p.task_id, "detail": p.detail}
            for p in report.problems
        ],
    }
